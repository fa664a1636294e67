"""`confiture-fast demo`: the whole product on a machine with nothing else installed.

A throwaway PostgreSQL, a sample shop database full of fake PII ("production"), an empty database
("local"), an anonymized sync through the real command line that also creates the schema there
(--create-schema), and a before/after look; then one customer's data alone, with every foreign key
intact (--where), into a third database ("support").
"""

from __future__ import annotations

import os
import secrets
import tempfile
from pathlib import Path
from typing import Callable

from rich.console import Console
from rich.table import Table

from . import pg, sample
from .embedded import ThrowawayServer
from .errors import SyncError


def _peek(uri: str) -> list[tuple]:
    with pg.scratch(uri, "demo") as conn:
        return conn.execute("SELECT id, email, phone, full_name, ssn, password_hash FROM users ORDER BY id LIMIT 5"
                            ).fetchall()


def run_demo(sync: Callable[[list[str]], int], users: int = 30_000, keep: bool = False) -> None:
    """The demo; `sync` runs the command line's sync with these arguments and returns its exit code."""
    console = Console(stderr=True, highlight=False)
    server = ThrowawayServer().start()
    try:
        console.print(f"[bold]1.[/] throwaway PostgreSQL started ({server.version}) on 127.0.0.1:{server.port}")
        prod = server.create_database("production")
        local = server.create_database("local")
        counts = sample.create_shop(prod, users=users)
        console.print("[bold]2.[/] 'production' filled with fake PII: "
                      + ", ".join(f"{t} {n:,} rows" for t, n in counts.items()) + "; 'local' is an empty database")
        work = Path(tempfile.mkdtemp(prefix="confiture-fast-demo-"))
        rules = work / "anonymization.yaml"
        rules.write_text(sample.SHOP_RULES_YAML)
        os.environ.setdefault("ANONYMIZATION_SECRET", secrets.token_hex(32))
        console.print(f"[bold]3.[/] confiture-fast sync --from production --to local --create-schema "
                      f"--anonymize-config {rules}")
        code = sync(["--from", prod, "--to", local, "--create-schema", "--anonymize-config", str(rules),
                     "--show-progress"])
        if code:
            raise SyncError("the demo's sync failed (see above)")
        before, after = _peek(prod), _peek(local)
        table = Table(title="4. the same rows, before (production) and after (local)", title_justify="left")
        for col in ("id", "column", "production", "local"):
            table.add_column(col, overflow="fold")
        names = ("email", "phone", "full_name", "ssn", "password_hash")
        for b, a in zip(before, after):
            for i, name in enumerate(names, 1):
                table.add_row(str(b[0]) if i == 1 else "", name, repr(b[i]), repr(a[i]))
            table.add_section()
        console.print(table)
        support = server.create_database("support")
        customer = min(42, users)
        console.print(f"[bold]5.[/] one customer's data: confiture-fast sync --from production --to support "
                      f"--create-schema --anonymize-config {rules} --where \"users: id = {customer}\"")
        if sync(["--from", prod, "--to", support, "--create-schema", "--anonymize-config", str(rules),
                 "--where", f"users: id = {customer}", "--no-progress"]):
            raise SyncError("the demo's subset sync failed (see above)")
        with pg.scratch(support, "demo") as conn:
            rows = [(t, conn.execute(f"SELECT count(*) FROM public.{pg.quote_ident(t)}").fetchone()[0]) for t in counts]
        console.print(f"   'support' now holds customer {customer} and only what belongs to them or they reference: "
                      + ", ".join(f"{t} {n:,}" for t, n in rows))
        if keep:
            console.print(f"kept running: production {prod}\n              local      {local}\n"
                          f"              support    {support}\n"
                          f"stop it with: pg_ctl -D {server.root}/data stop")
    finally:
        if not keep:
            server.stop()
