"""`confiture-fast bench --incremental`: the time of `sync --incremental` against the full sync it
replaces, in one run on the same throwaway servers: a full anonymized sync of users N, orders 2N and
events 5N; then about 1% of each table's rows changed on the source (a third updated, a third deleted,
a third inserted); then `--incremental`; then `--incremental` again with nothing changed. Each run
goes through the real CLI (start-up, planning, the survey and the apply all in its time). A case of
its own beside bench.py's interleaved rounds: each run here starts from the state the previous one
left, so the three are measured once, in this order."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from contextlib import ExitStack
from typing import Callable

import msgspec

from .bench import (_BENCH_SECRET, SCHEMA, Options, Side, _connect, _create_target, _mark, _prepare_scratch, _qual,
                    _rules_yaml, _run_processes, _start_server)
from .errors import BenchError

TABLES = ("users", "orders", "events")
CHANGED_EVERY = 300  # of each table's rows, one in 300 updated, one deleted, one inserted: 1% in all


class IncrementalBench(msgspec.Struct, kw_only=True):
    command: str
    rows: dict[str, int]  # the source's, before the changes
    changed: dict[str, int]  # per table: rows updated, deleted and inserted on the source, together
    full_s: float
    incremental_s: float
    unchanged_s: float  # the second --incremental, nothing changed
    modes: dict[str, str]  # each table's mode in the first --incremental run
    counts: dict[str, tuple[int, int, int]]  # its (inserted, updated, deleted)

    @property
    def ratios(self) -> tuple[float, float]:
        return self.incremental_s / self.full_s, self.unchanged_s / self.full_s


def _change(src: Side) -> dict[str, int]:
    """About 1% of each table's rows: updated (a UNIQUE text column gets new values, so its pseudonyms
    change), deleted, and inserted with new keys."""
    out = {}
    with _connect(src) as conn:
        for t in TABLES:
            rel = _qual(t)
            cols = [r[0] for r in conn.execute(
                "SELECT attname FROM pg_attribute WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped "
                "ORDER BY attnum", (rel,))]
            unique = {r[0] for r in conn.execute(  # users' UNIQUE text column: changed and inserted rows get new values
                "SELECT a.attname FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid "
                "AND a.attnum = ANY(i.indkey) WHERE i.indrelid = %s::regclass AND i.indisunique AND NOT i.indisprimary",
                (rel,))}
            touch = ", ".join(f"{c} = 'changed-' || {c}" for c in unique) or f"{cols[-1]} = {cols[-1]}"
            n = conn.execute(f"UPDATE {rel} SET {touch} WHERE id % {CHANGED_EVERY} = 1").rowcount
            n += conn.execute(f"DELETE FROM {rel} WHERE id % {CHANGED_EVERY} = 2").rowcount
            top = conn.execute(f"SELECT max(id) FROM {rel}").fetchone()[0]
            values = ", ".join(f"'new-' || {c}" if c in unique else c for c in cols[1:])
            n += conn.execute(f"INSERT INTO {rel} OVERRIDING SYSTEM VALUE SELECT {top} + row_number() OVER (), "
                              f"{values} FROM {rel} WHERE id % {CHANGED_EVERY} = 3").rowcount
            out[t] = n
        conn.execute("VACUUM (ANALYZE) " + ", ".join(_qual(t) for t in TABLES))
    return out


def _counts(side: Side) -> dict[str, int]:
    with _connect(side) as conn:
        return {t: conn.execute(f"SELECT count(*) FROM {_qual(t)}").fetchone()[0] for t in TABLES}


def run_incremental_bench(opts: Options, log: Callable[[str], None]) -> IncrementalBench:
    from . import config, sample

    with ExitStack() as stack:
        log("starting two throwaway PostgreSQL servers")
        s1, s2 = (_start_server(stack, opts) for _ in range(2))
        src_uri, dst_uri = s1.create_database("bench_source"), s2.create_database("bench_target")
        src, dst = (Side(u, u, u, u, None) for u in (src_uri, dst_uri))
        log(f"generating users x{opts.rows:,}, orders x{2 * opts.rows:,}, events x{5 * opts.rows:,}")
        with _connect(src) as conn:
            _prepare_scratch(conn, "source")
            conn.execute(f'CREATE SCHEMA "{SCHEMA}"')
            _mark(conn)
        sample.create_bench_tables(src.conninfo, schema=SCHEMA, users=opts.rows, orders=2 * opts.rows,
                                   events=5 * opts.rows)
        with _connect(src) as conn:
            conn.execute("DROP TABLE " + ", ".join(_qual(t) for t in ("wide", "plain")))
        _create_target(dst, ["wide", "plain"])
        rules = os.path.join(stack.enter_context(tempfile.TemporaryDirectory(prefix="confiture-fast-bench-")),
                             "rules.yaml")
        with open(rules, "w") as f:
            f.write(_rules_yaml(TABLES) or "")
        env = {**os.environ, config.SECRET_ENV_VAR: _BENCH_SECRET}
        base = [sys.executable, "-m", "confiture_fast", "sync", "--from", src_uri, "--to", dst_uri,
                "--include", f"{SCHEMA}.*", "--no-progress", "--format", "json", "--anonymize-config", rules,
                *opts.load.flags()]

        def sync(extra: list[str], what: str) -> tuple[float, dict]:
            wall, _, _, out = _run_processes(lambda: [subprocess.Popen(
                base + extra, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)], what)
            result = {t["table"].split(".", 1)[1]: t for t in msgspec.json.decode(out)["tables"]}
            if _counts(dst) != _counts(src):
                raise BenchError(f"after {what} the target has {_counts(dst)} rows, the source {_counts(src)}",
                                 "an incremental run that loses rows is broken: report it")
            log(f"{what}: {wall:.2f} s")
            return wall, result

        rows = _counts(src)
        full, _ = sync([], "the full anonymized sync")
        log("changing about 1% of each table's rows on the source")
        changed = _change(src)
        incremental, first = sync(["--incremental"], "--incremental after the changes")
        unchanged, _ = sync(["--incremental"], "--incremental with nothing changed")
    return IncrementalBench(command=opts.command, rows=rows, changed=changed, full_s=full,
                            incremental_s=incremental, unchanged_s=unchanged,
                            modes={t: r["mode"] for t, r in first.items()},
                            counts={t: (r["inserted"] or 0, r["updated"] or 0, r["deleted"] or 0)
                                    for t, r in first.items()})


def render_incremental(report: IncrementalBench, console) -> None:
    inc, unchanged = report.ratios
    console.print(f"incremental bench: source {', '.join(f'{t} {n:,}' for t, n in report.rows.items())}; "
                  f"changed {', '.join(f'{t} {n:,}' for t, n in report.changed.items())}", markup=False)
    console.print(f"  full anonymized sync:             {report.full_s:7.2f} s", markup=False)
    console.print(f"  --incremental after ~1% changed:  {report.incremental_s:7.2f} s ({inc:.3f} x the full sync)",
                  markup=False)
    console.print(f"  --incremental, nothing changed:   {report.unchanged_s:7.2f} s ({unchanged:.3f} x the full sync)",
                  markup=False)
    console.print("  modes: " + ", ".join(f"{t} {m} ({i:,} inserted, {u:,} updated, {d:,} deleted)"
                                          for (t, m), (i, u, d) in zip(report.modes.items(), report.counts.values())),
                  markup=False)
