"""The coordinator: holds the source snapshot, prepares the target, hands work units to worker
processes (largest first), follows their progress, then finishes the target and reports.

Phases, in order: connect -> plan (by the caller) -> prepare target -> load -> finish -> verify.
"""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing as mp
import time
from pathlib import Path

import msgspec
import psycopg

from . import checkpoint as ckpt
from . import target as tgt
from .catalog import Catalog, read_catalog
from .errors import ConfigError, SyncError
from .plan import Plan
from .progress import ProgressView
from .worker import SESSION_SETTINGS, UnitFailed, UnitResult, Worker, WorkerConfig, init_process, open_source, run_unit


class TableResult(msgspec.Struct, frozen=True):
    table: str
    rows: int
    bytes: int
    seconds: float
    anonymized_columns: list[str]
    status: str  # synced | skipped | failed
    error: str | None = None


class SyncResult(msgspec.Struct, frozen=True):
    ok: bool
    tables: list[TableResult]
    total_rows: int
    seconds: float
    cascade: list[str]
    constraints: list[tgt.Restored]
    error: str | None = None


def _identity(conn: psycopg.Connection) -> tuple[str, str]:
    """(server, database). The server is its system identifier where our role may read it, else the
    postmaster's start time and port: two names for one server ('localhost', '127.0.0.1') agree."""
    db = conn.execute("SELECT current_database()").fetchone()[0]
    try:
        with conn.transaction():
            sysid = conn.execute("SELECT system_identifier::text FROM pg_control_system()").fetchone()[0]
    except psycopg.errors.InsufficientPrivilege:
        sysid = conn.execute("SELECT pg_postmaster_start_time()::text || ':' || current_setting('port')").fetchone()[0]
    return sysid, db


def _connect(what: str, conninfo: str, display: str, **kw) -> psycopg.Connection:
    try:
        conn = psycopg.connect(conninfo, autocommit=True, connect_timeout=10, **kw)
    except psycopg.OperationalError as exc:
        raise ConfigError(f"cannot connect to the {what} {display}: {_first_line(exc)}",
                          f"check that the server is running and the {what} settings are right") from None
    for s in SESSION_SETTINGS:
        conn.execute(s)
    return conn


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    for marker in ("FATAL:", "ERROR:"):
        if marker in text:
            text = text[text.rindex(marker):]
    return text.splitlines()[0] if text else type(exc).__name__


class Session:
    """Connections to both sides and the exported snapshot; opened before planning."""

    def __init__(self, source: str, target: str, source_display: str, target_display: str):
        self.source_conninfo, self.target_conninfo = source, target
        self.source_display, self.target_display = source_display, target_display
        self.src = _connect("source", source, source_display, options="-c default_transaction_read_only=on")
        try:
            self.dst = _connect("target", target, target_display)
        except BaseException:
            self.src.close()
            raise
        if _identity(self.src) == _identity(self.dst):
            self.close()
            raise ConfigError(f"source and target are the same database ({target_display})",
                              "point --to at another database")
        self.src.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        self.snapshot = self.src.execute("SELECT pg_export_snapshot()").fetchone()[0]

    def catalogs(self) -> tuple[Catalog, Catalog]:
        return read_catalog(self.src), read_catalog(self.dst)

    def close(self) -> None:
        for conn in (self.src, self.dst):
            if not conn.closed:
                conn.close()

    def __enter__(self) -> "Session":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class RunOptions(msgspec.Struct, frozen=True):
    parallel: int = 1
    flush_rows: int = 5000
    flush_bytes: int = 1 << 23
    checkpoint: Path | None = None
    resume_from: ckpt.Checkpoint | None = None
    fresh_checkpoint: ckpt.Checkpoint | None = None
    live_progress: bool = False


def run(session: Session, plan: Plan, opts: RunOptions, console) -> SyncResult:
    start = time.perf_counter()
    done = opts.resume_from.completed_tables if opts.resume_from else {}
    cp = opts.resume_from or opts.fresh_checkpoint
    results: dict[str, TableResult] = {}
    for t in plan.tables:
        if t.name in done:
            results[t.name] = TableResult(t.name, done[t.name].rows_synced, 0, 0.0, t.anonymized_columns, "skipped")
    todo = [t for t in plan.tables if t.name not in done]

    # Prepare the target: the record of what we drop is committed with the drop.
    dst = session.dst
    mode = tgt.trigger_mode(dst)
    try:
        tgt.defer(dst, plan)
        tgt.empty(dst, plan.cascade_relations)
    except psycopg.Error as exc:
        raise SyncError(f"preparing the target failed: {_first_line(exc)}",
                        "check the target role owns the selected tables") from None
    if cp is not None and opts.checkpoint is not None:
        ckpt.write(opts.checkpoint, cp)

    cfg = WorkerConfig(session.source_conninfo, session.target_conninfo, session.snapshot, mode,
                       opts.flush_rows, opts.flush_bytes)
    error: str | None = None
    per_table: dict[str, list[UnitResult]] = {t.name: [] for t in todo}
    failed: dict[str, str] = {}
    totals = {t.name: t.est_rows for t in plan.tables}
    tasks = [(t, i) for t in todo for i in range(len(t.units))]
    tasks.sort(key=lambda ti: -ti[0].units[ti[1]].est_bytes)
    nworkers = max(1, min(opts.parallel, len(tasks)))
    ctx = mp.get_context("spawn")
    counters = ctx.RawArray("q", 2 * nworkers)
    current = ctx.RawArray("q", nworkers)
    slots = ctx.Value("i", 0)
    started: set[str] = set()
    with ProgressView(console, opts.live_progress, totals) as view:
        if tasks:
            with cf.ProcessPoolExecutor(nworkers, mp_context=ctx, initializer=init_process,
                                        initargs=(cfg, counters, current, slots)) as pool:
                futures = {pool.submit(run_unit, t, i, k): (t, i) for k, (t, i) in enumerate(tasks)}
                pending = set(futures)
                unit_rows: dict[tuple[str, int], int] = {}
                try:
                    while pending:
                        finished, pending = cf.wait(pending, timeout=0.25, return_when=cf.FIRST_COMPLETED)
                        for f in finished:
                            t, i = futures[f]
                            try:
                                r = f.result()
                            except UnitFailed as exc:
                                failed.setdefault(t.name, str(exc))
                                error = error or str(exc)
                                continue
                            except cf.process.BrokenProcessPool:
                                failed.setdefault(t.name, f"{t.name}: a worker process died")
                                error = error or f"{t.name}: a worker process died"
                                continue
                            if t.name not in started:
                                started.add(t.name)
                                view.started(t.name)
                            per_table[t.name].append(r)
                            unit_rows[(t.name, i)] = r.rows
                            if len(per_table[t.name]) == len(t.units):
                                rows = sum(u.rows for u in per_table[t.name])
                                secs = max(u.seconds for u in per_table[t.name])
                                results[t.name] = TableResult(t.name, rows, sum(u.bytes_in for u in per_table[t.name]),
                                                              secs, t.anonymized_columns, "synced")
                                view.finished(t.name, rows, secs)
                                if cp is not None and opts.checkpoint is not None:
                                    cp = cp.with_table(t.name, rows)
                                    ckpt.write(opts.checkpoint, cp)
                        if error is not None:
                            for f in pending:
                                f.cancel()
                        _poll(view, tasks, counters, current, unit_rows, started)
                except KeyboardInterrupt:
                    for f in pending:
                        f.cancel()
                    raise
    for t in todo:
        if t.name not in results:
            results[t.name] = TableResult(t.name, sum(u.rows for u in per_table[t.name]), 0, 0.0,
                                          t.anonymized_columns, "failed", failed.get(t.name, "not started"))

    constraints: list[tgt.Restored] = []
    if error is None:
        try:
            constraints = tgt.restore_deferred(dst, session.target_conninfo, opts.parallel)
            tgt.sync_sequences(session.src, dst, plan)
            tgt.analyze(dst, [t.relation for t in todo])
        except psycopg.Error as exc:
            error = f"finishing the target failed: {_first_line(exc)}"
    else:
        try:
            constraints = tgt.restore_deferred(dst, session.target_conninfo, opts.parallel)
        except psycopg.Error:
            pass  # kept in the target's pending_ddl; the next run recreates them
    ordered = [results[t.name] for t in plan.tables]
    return SyncResult(ok=error is None, tables=ordered, total_rows=sum(r.rows for r in ordered if r.status != "failed"),
                      seconds=time.perf_counter() - start, cascade=list(plan.cascade), constraints=constraints,
                      error=error)


def _poll(view: ProgressView, tasks, counters, current, unit_rows, started: set[str]) -> None:
    """Adds up the rows of finished and running units per table, from the shared counters."""
    rows: dict[str, int] = {}
    for (name, _), n in unit_rows.items():
        rows[name] = rows.get(name, 0) + n
    for slot, task in enumerate(current):
        if task > 0:
            table, unit = tasks[task - 1]
            if (table.name, unit) not in unit_rows:
                rows[table.name] = rows.get(table.name, 0) + counters[2 * slot]
                if table.name not in started:
                    started.add(table.name)
                    view.started(table.name)
    for name, n in rows.items():
        if name in started:
            view.update(name, n)
