"""The coordinator: the Session (both connections and the source snapshot), the load phase, which
hands work units to worker processes (largest first) and follows their progress, and the report of
a run. It schedules and reports only: preparing and finishing the target are prepare.py's and
finish.py's, and sync.py runs the phases in order."""

from __future__ import annotations

import concurrent.futures as cf
import ipaddress
import multiprocessing as mp
from pathlib import Path

import msgspec
import psycopg

from . import checkpoint as ckpt
from . import pg
from .catalog import Catalog, read_catalog, with_key_ranges
from .errors import ConfigError, Terminated, UnitFailed, resume_fix
from .finish import Finished, Finisher, Restored
from .pg import Identity, identity
from .plan import Plan, Selection, TablePlan, select_tables
from .progress import ProgressView
from .request import LoadOptions
from .worker import UnitResult, WorkerConfig, init_process, ready, run_unit


class TableResult(msgspec.Struct, frozen=True):
    table: str
    rows: int
    bytes: int
    seconds: float
    anonymized_columns: list[str]
    status: str  # synced | skipped | failed
    error: str | None = None
    subset: bool = False  # only the subset's rows (--where, --sample), else the whole table
    mode: str = "full"  # full | incremental (incremental.py)
    reason: str | None = None  # under --incremental, why the table was reloaded in full
    inserted: int | None = None  # rows inserted, updated, deleted: incremental ones (a full load inserts `rows`)
    updated: int | None = None
    deleted: int | None = None


class SyncResult(msgspec.Struct, frozen=True):
    ok: bool
    tables: list[TableResult]
    total_rows: int
    seconds: float
    cascade: list[str]
    constraints: list[Restored]
    error: str | None = None
    interrupted: str | None = None  # SIGINT or SIGTERM
    fix: str | None = None  # what to do about `error`: a rerun only when it is transient
    sequences_not_reset: list[str] = []  # by name, with why (their table failed, or setval did)
    created: list[str] = []  # --create-schema: what was created ('table public.users', ...)
    not_created: list[str] = []  # --create-schema: views, functions and the like left out, with why


PROTECTED_CONNECT_TIMEOUT = 2  # seconds per protected environment (libpq's minimum), all at once


def _address(host: str | None, port: str | int | None, db: str | None) -> tuple[str, str, str] | None:
    """(host, port, database) normalized for the cheap comparison: every loopback spelling and unix
    socket is one machine; None when a part is unknown."""
    if host is None or port is None or db is None:
        return None
    h = host.lower().rstrip(".")
    if h.startswith(("/", "@")) or h in ("localhost", "localhost.localdomain"):
        h = "loopback"
    else:
        try:
            h = "loopback" if ipaddress.ip_address(h.strip("[]")).is_loopback else h.strip("[]")
        except ValueError:
            pass
    return h, str(port), db


def refuse_protected(conn: psycopg.Connection, env, what: str, env_dir: Path,
                     known: dict[str, Identity] | None = None, warn=lambda msg: None) -> None:
    """Refuses the database that `conn` reached through `env` (given as `what`, e.g. "--to") when it is
    a protected environment's: its own file says so, or a protected file of env_dir points at it.

    Cheap first: the address (host, port, database) as libpq resolves both sides. Then by identity,
    on a short connection to each protected environment (all at once), so that another file, a URI,
    another host name or a tunnel to the same server is refused too. `known` gives the identities of
    protected environments already connected (the sync's source), by file. A protected environment
    that cannot be reached, or whose ${VAR} is not set, cannot be compared: `warn` says so and the run
    goes on. Refusing would stop every sync made where production is out of reach (and teach people to
    drop `protected:`); a target that is production is normally reachable the way its file says."""
    from .config import protected_environments

    fix = "choose another {what}: confiture-fast never writes into a protected environment"
    if env.protected:
        raise ConfigError(f"{what} {env.name} is protected: confiture-fast never writes into it",
                          fix.format(what=what) + (f" (or set protected: false in {env.file})" if env.file else ""))
    mine = identity(conn)
    here = _address(conn.info.host, conn.info.port, conn.info.dbname)
    protected, notes = protected_environments(env_dir)
    for note in notes:
        warn(f"cannot tell whether a protected environment is {what} {env.display()}: {note}")
    to_connect = []
    for p in protected:
        if env.file is not None and p.env.file == env.file:
            continue
        if (known or {}).get(p.env.file) is not None:
            same = known[p.env.file].same_database(mine)
        elif here is not None and here == _address(p.env.libpq("host"), p.env.libpq("port"), p.env.libpq("dbname")):
            same = True
        else:
            to_connect.append(p)
            continue
        if same:
            _refuse(env, what, p.env, fix)
    if not to_connect:
        return
    with cf.ThreadPoolExecutor(len(to_connect)) as pool:
        results = list(pool.map(_protected_identity, to_connect))
    for p, result in zip(to_connect, results):
        if isinstance(result, Identity):
            if result.same_database(mine):
                _refuse(env, what, p.env, fix)
        else:
            warn(f"could not check that {what} {env.display()} is not the protected environment {p.env.name} "
                 f"({p.env.file}): {result}; went on (set what it needs to have it compared)")


def _refuse(env, what: str, protected, fix: str) -> None:
    raise ConfigError(f"{what} {env.display()} is the database of the protected environment {protected.name} "
                      f"({protected.file}): confiture-fast never writes into it", fix.format(what=what))


def _protected_identity(p) -> Identity | str:
    """The identity of a protected environment's database, or why it cannot be had (never its password)."""
    if p.unset:
        names = sorted(set(p.unset.values()))
        return f"{', '.join(names)} {'is' if len(names) == 1 else 'are'} not set"
    try:
        with pg.probe(p.env.conninfo(), PROTECTED_CONNECT_TIMEOUT) as conn:
            return identity(conn)
    except psycopg.Error as exc:
        return pg.first_line(exc, p.env.conninfo())


def _connect(what: str, conninfo: str, display: str) -> psycopg.Connection:
    try:
        return pg.source(conninfo, "coordinator") if what == "source" else pg.target(conninfo, "coordinator")
    except psycopg.OperationalError as exc:
        raise pg.connect_failed(what, display, exc, conninfo) from None


class Session:
    """Connections to both sides and the exported snapshot; opened before planning."""

    def __init__(self, source: str, target: str, source_display: str, target_display: str):
        self.source_conninfo, self.target_conninfo = source, target
        self.source_display, self.target_display = source_display, target_display
        self.src = _connect("source", source, source_display)
        try:
            self.dst = _connect("target", target, target_display)
        except BaseException:
            self.src.close()
            raise
        self.src_identity, self.dst_identity = identity(self.src), identity(self.dst)
        if self.src_identity.same_database(self.dst_identity):
            self.close()
            raise ConfigError(f"source and target are the same database ({target_display})",
                              "point --to at another database")
        self.snapshot = pg.export_snapshot(self.src)

    def refuse_protected_target(self, source_env, target_env, env_dir: Path, warn) -> None:
        """refuse_protected for --to; the source, when protected, is compared through its open connection."""
        known = {source_env.file: self.src_identity} if source_env.file and source_env.protected else {}
        try:
            refuse_protected(self.dst, target_env, "--to", env_dir, known, warn)
        except BaseException:
            self.close()
            raise

    def catalogs(self, selection: Selection | None = None) -> tuple[Catalog, Catalog]:
        """Both catalogs; with `selection`, the source's key ranges of the selected tables, under the snapshot."""
        src = read_catalog(self.src)
        if selection is not None:
            src = with_key_ranges(self.src, src, select_tables(src, selection, []))
        return src, read_catalog(self.dst)

    def close(self) -> None:
        for conn in (self.src, self.dst):
            if not conn.closed:
                conn.close()

    def __enter__(self) -> "Session":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class RunOptions(msgspec.Struct, frozen=True):
    load: LoadOptions = LoadOptions()
    checkpoint: Path | None = None
    checkpoint_state: ckpt.Checkpoint | None = None  # what to write (fresh, or the one being resumed)
    live_progress: bool = False
    quiet: bool = False


class Load:
    """The load's bookkeeping: per-table unit results, failures, the checkpoint, an interruption."""

    def __init__(self, plan: Plan, opts: RunOptions, view: ProgressView, console, finisher: Finisher):
        self.plan, self.opts, self.view, self.console, self.finisher = plan, opts, view, console, finisher
        self.todo = [t for t in plan.tables if t.name not in plan.completed]
        self.units: dict[str, list[UnitResult]] = {t.name: [] for t in self.todo}
        self.failed: dict[str, str] = {}
        self.error: str | None = None
        self.fix: str | None = None  # for self.error; None: rerun (or --resume)
        # a resumed run reloads partially loaded tables whole: their old slice states no longer hold
        self.cp = msgspec.structs.replace(opts.checkpoint_state, partial_tables={}) if opts.checkpoint_state else None
        self.started: set[str] = set()
        self.interrupted: str | None = None  # SIGINT or SIGTERM

    def loaded(self) -> set[str]:
        """The tables whose every unit is committed, in this run or (resumed) an earlier one."""
        return {t.name for t in self.todo if len(self.units[t.name]) == len(t.units)} | set(self.plan.completed)

    def start(self, name: str) -> None:
        if name not in self.started:
            self.started.add(name)
            self.view.started(name)

    def unit_done(self, table: TablePlan, index: int, r: UnitResult) -> None:
        self.start(table.name)
        for note in r.retries:
            self.console.print(f"retried {note}", markup=False)
        self.units[table.name].append(r)
        if len(self.units[table.name]) < len(table.units) and table.shared_relations and self.cp is not None \
                and self.opts.checkpoint is not None:
            self._save(self.cp.with_slice(table.name, len(table.units), index, r.rows))
        if len(self.units[table.name]) == len(table.units):
            rows = sum(u.rows for u in self.units[table.name])
            self.view.finished(table.name, rows, max(u.seconds for u in self.units[table.name]),
                               sum(u.bytes_in for u in self.units[table.name]))
            self.finisher.table_loaded(table.name, table.relation)
            if self.cp is not None and self.opts.checkpoint is not None:
                self._save(self.cp.with_table(table.name, rows))

    def _save(self, cp: ckpt.Checkpoint) -> None:
        """Writes the checkpoint; if that fails (disk full, folder removed) the run stops like on a failed
        table, so that what was deferred is still rebuilt."""
        try:
            ckpt.write(self.opts.checkpoint, cp)
        except OSError as exc:
            self.cp = None
            if self.error is None:
                self.error = (f"the checkpoint {self.opts.checkpoint} could not be written ({exc.strerror or exc}): "
                              "the sync stopped")
                self.fix = (f"make room for {self.opts.checkpoint} (disk space, its folder); then "
                            f"{resume_fix(self.opts.checkpoint)}")
        else:
            self.cp = cp

    def unit_failed(self, table: TablePlan, message: str, failure: UnitFailed | None = None,
                    fix: str | None = None) -> None:
        self.failed.setdefault(table.name, message)
        if self.error is None:
            self.error = message
            self.fix = failure.fix_for(self.opts.checkpoint) if failure is not None else fix

    def table_result(self, t: TablePlan) -> TableResult:
        if t.name in self.plan.completed:
            done = self.opts.checkpoint_state.completed_tables[t.name]
            return TableResult(t.name, done.rows_synced, 0, 0.0, t.anonymized_columns, "skipped", subset=t.subset)
        units = self.units[t.name]
        rows, size = sum(u.rows for u in units), sum(u.bytes_in for u in units)
        secs = max((u.seconds for u in units), default=0.0)
        if len(units) == len(t.units):
            return TableResult(t.name, rows, size, secs, t.anonymized_columns, "synced", subset=t.subset)
        why = self.failed.get(t.name, "not started: the sync stopped before it")
        if units and t.shared_relations:
            why += f" — PARTIALLY LOADED: {len(units)} of {len(t.units)} slices committed; rerun (or --resume) reloads it"
        elif t.shared_relations:
            why += " — the table was emptied and not reloaded; rerun (or --resume) reloads it"
        return TableResult(t.name, rows, size, secs, t.anonymized_columns, "failed", why, t.subset)


class Workers:
    """The worker processes. Each is spawned (a fresh interpreter, which imports psycopg, the pump and
    the strategies: about 0.3 s of CPU), so the first is started before the plan is made and is ready
    when the load begins; the pool starts the others, up to `parallel`, as the load hands out more
    units than there are idle workers, so a plan of one unit never pays for a second process."""

    def __init__(self, parallel: int):
        ctx = mp.get_context("spawn")
        self.counters = ctx.RawArray("q", 2 * parallel)
        self.current = ctx.RawArray("q", parallel)
        self.pool = cf.ProcessPoolExecutor(parallel, mp_context=ctx, initializer=init_process,
                                           initargs=(self.counters, self.current, ctx.Value("i", 0)))
        self.started = self.pool.submit(ready)

    def stop(self) -> None:
        """Kills the workers: their connections drop and the servers roll back their transactions."""
        processes = list((self.pool._processes or {}).values())  # noqa: SLF001 - the pool has no public kill
        for proc in processes:
            proc.kill()
        for proc in processes:
            proc.join(5)

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> "Workers":
        return self

    def __exit__(self, exc_type, *exc) -> None:
        if exc_type is not None:
            self.stop()
        self.close()


def load(session: Session, plan: Plan, opts: RunOptions, console, finisher: Finisher, mode: str,
         workers: Workers) -> Load:
    """The load phase: every unit in worker processes, largest first; each table handed to `finisher`
    as soon as its last unit is committed. A failed unit stops the others from starting.

    Ctrl-C / SIGTERM (KeyboardInterrupt here) stop the workers at once, which rolls back their
    in-flight transactions; the interruption is recorded in the result, and finishing runs as after
    any other load."""
    cfg = WorkerConfig(session.source_conninfo, session.target_conninfo, session.snapshot, mode, opts.load)
    with ProgressView(console, opts.live_progress, {t.name: t.est_rows for t in plan.tables},
                      quiet=opts.quiet) as view:
        state = Load(plan, opts, view, console, finisher)
        try:
            _load(state, cfg, workers)
        except KeyboardInterrupt as exc:
            state.interrupted = "SIGTERM" if isinstance(exc, Terminated) else "SIGINT"
            state.error = state.error or f"interrupted by {state.interrupted}: the tables being loaded were rolled back"
    return state


def report(load: Load, finished: Finished, seconds: float) -> SyncResult:
    """The run's result, table by table, from what the load and finishing did."""
    plan, error = load.plan, finished.error
    ordered = [load.table_result(t) for t in plan.tables]
    return SyncResult(ok=error is None, tables=ordered, total_rows=sum(r.rows for r in ordered if r.status != "failed"),
                      seconds=seconds, cascade=list(plan.cascade), constraints=finished.constraints,
                      error=error, interrupted=load.interrupted, sequences_not_reset=finished.sequences_not_reset,
                      fix=(load.fix or resume_fix(load.opts.checkpoint)) if error is not None else None)


def _load(state: Load, cfg: WorkerConfig, workers: Workers) -> None:
    """Hands the units to worker processes, largest first, and follows them until done or failed; the
    workers end with the load, before the finish."""
    tasks = [(t, i) for t in state.todo for i in range(len(t.units))]
    tasks.sort(key=lambda ti: -ti[0].units[ti[1]].est_bytes)
    counters, current = workers.counters, workers.current
    cf.wait([workers.started])  # the first worker is up: a plan of one unit needs no second one
    if tasks and workers.started.exception() is not None:
        state.unit_failed(tasks[0][0], f"a worker process did not start: {workers.started.exception()}",
                          fix="remove the cause named above, then sync again")
        return
    try:
        futures = {workers.pool.submit(run_unit, cfg, t, i, k): (t, i) for k, (t, i) in enumerate(tasks)}
        pending = set(futures)
        finished_units: dict[tuple[str, int], int] = {}
        while pending:
            finished, pending = cf.wait(pending, timeout=0.25, return_when=cf.FIRST_COMPLETED)
            for f in finished:
                t, i = futures[f]
                try:
                    r = f.result()
                except UnitFailed as exc:
                    state.unit_failed(t, str(exc), exc)
                except cf.process.BrokenProcessPool:
                    state.unit_failed(t, f"{t.name}: a worker process died while loading it")
                except cf.CancelledError:
                    pass
                except Exception as exc:  # noqa: BLE001 - e.g. the worker refused psycopg's libpq
                    state.unit_failed(t, f"{t.name}: {exc}", fix="remove the cause named above, then sync again")
                else:
                    finished_units[(t.name, i)] = (r.rows, r.bytes_in)
                    state.unit_done(t, i, r)
            if state.error is not None:
                for f in pending:
                    f.cancel()
            _poll(state, tasks, counters, current, finished_units)
    except BaseException:
        workers.stop()
        raise
    finally:
        workers.close()


def _poll(state: Load, tasks, counters, current, finished_units) -> None:
    """Adds up the rows and bytes of finished and running units per table, from the shared counters."""
    rows: dict[str, list[int]] = {}
    for (name, _), (n, b) in finished_units.items():
        acc = rows.setdefault(name, [0, 0])
        acc[0] += n
        acc[1] += b
    for slot, task in enumerate(current):
        if task > 0:
            table, unit = tasks[task - 1]
            if (table.name, unit) not in finished_units:
                acc = rows.setdefault(table.name, [0, 0])
                acc[0] += counters[2 * slot]
                acc[1] += counters[2 * slot + 1]
                state.start(table.name)
    for name, (n, b) in rows.items():
        if name in state.started and len(state.units[name]) < len(state.plan.table(name).units):
            state.view.update(name, n, b)
