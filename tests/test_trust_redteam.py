"""Red-team review of issue 12 ("the target is not trusted"): variations of its cases and interactions
between points built separately, against real servers."""

from __future__ import annotations

import tempfile
import uuid
from pathlib import Path

from conftest import run_cli


def new_role(pair, prefix: str) -> str:
    """A role of the target server (roles are shared by the whole server: a unique name)."""
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    pair.target(f"CREATE ROLE {name} LOGIN")
    return name


def test_a_cast_planted_on_the_target_never_runs_in_verify(pair):
    """A role that owns a type on the target can give it a cast to text. verify must never call it:
    it would run with verify's rights (here a superuser, who may write files or run programs)."""
    proof = Path(tempfile.gettempdir()) / f"cf-pwned-{uuid.uuid4().hex}"  # where the server may write
    dev = new_role(pair, "dev")
    pair.source("CREATE TYPE public.addr AS (street text, city text);"
                "CREATE TABLE public.homes (a public.addr, note text);"
                "INSERT INTO public.homes VALUES (ROW('1 Main St','Paris'), 'x'), (ROW('2 High St','Rome'), 'y')")
    pair.target(f"GRANT CREATE ON SCHEMA public TO {dev}")
    pair.target(f"SET ROLE {dev}; CREATE TYPE public.addr AS (street text, city text);"
                "CREATE TABLE public.homes (a public.addr, note text);"
                "CREATE FUNCTION public.addr_text(public.addr) RETURNS text LANGUAGE plpgsql AS $$ BEGIN "
                f"EXECUTE pg_catalog.format('COPY (SELECT 1) TO %L', '{proof}'); "
                "RETURN ($1).street; END $$;"
                "CREATE CAST (public.addr AS text) WITH FUNCTION public.addr_text(public.addr)")
    assert pair.sync().returncode == 0
    assert pair.qt("SELECT count(*) FROM public.homes") == [(2,)]
    res = run_cli("verify", "--from", pair.src, "--to", pair.dst, "--no-pii-patterns", "--format", "json", cwd=pair.tmp)
    ran = proof.exists()
    proof.unlink(missing_ok=True)
    assert not ran, "verify ran a cast written by another role on the target, as a superuser"
    assert res.returncode == 0, res.stderr
