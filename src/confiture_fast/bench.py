"""`confiture-fast bench`: how fast this tool is next to a raw copy, on the same machine, in one run.

Every contender loads the same generated tables into the same target tables (emptied the same way
before each run, PK + UNIQUE(email) present), in interleaved repetitions so that the noise of a
shared machine falls on all of them alike; medians and spreads are reported, and every number is a
ratio to the floor measured in the same run: a raw libpq COPY pipe with no tool logic.

Tool runs go through the real CLI in a subprocess, so process start-up, planning, worker spawn and
the index rebuild are all in the time. CPU seconds are those of our own processes (getrusage of the
waited-for children, or the thread running the in-process pipes); peak RSS is the sum over our
process tree, sampled while the run goes. The servers' own processes are in neither.
"""


import datetime as _dt
import enum
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Callable

import msgspec
import psycopg

from . import pg
from .errors import BenchError, ConfigError
from .pg import qualify, quote_ident
from .request import LoadOptions

SCHEMA = "confiture_fast_bench"
_MARK = "scratch schema of confiture-fast bench: dropped when the bench ends"
TABLES = ("users", "orders", "events", "wide", "plain")
# Rows per table for --rows N: issue 4's proportions (orders 2N, events 5N), N for the others.
ROW_FACTOR = {"users": 1, "orders": 2, "events": 5, "wide": 1, "plain": 1}
SHAPES = {"users": ("users",), "wide": ("wide",), "plain": ("plain",), "all": ("users", "wide", "plain")}
INDEXES = {"users": 2, "orders": 1, "events": 1, "wide": 1, "plain": 1}
DEFAULT_ROWS = 400_000
SWEEP_PARALLEL = (1, 2, 4)
SWEEP_BATCH = (1000, 5000, 20000)
BASELINE = "libpq pipe"
MIN_NOISE = 0.05
_BENCH_SECRET = "confiture-fast-bench-only-secret-0123456789"
_REWRITER_MAX_ROWS = 250_000
# The throwaway servers' settings unless --server-settings default: those of issue 17's production-tuned
# servers. fsync and full_page_writes stay off, as on every throwaway server: nothing on it must survive
# a crash, and a shared disk's flushes would only add noise (--server-setting fsync=on puts them back).
PRODUCTION_SETTINGS = {"shared_buffers": "1GB", "max_wal_size": "8GB", "checkpoint_timeout": "30min",
                       "synchronous_commit": "off"}
SERVER_PROFILES = {"production": PRODUCTION_SETTINGS, "default": {}}
# Read back from both servers for the report, with any other setting given by --server-setting.
REPORTED_SETTINGS = (*PRODUCTION_SETTINGS, "fsync", "full_page_writes", "wal_level", "max_connections",
                     "work_mem", "maintenance_work_mem", "max_parallel_maintenance_workers")
PHYSICAL = "physical floor"
_WATCH_EVERY_S = 0.02


# --------------------------------------------------------------------------- results


class Sample(msgspec.Struct, frozen=True):
    wall_s: float
    cpu_s: float
    peak_rss_mib: float | None
    rows: int
    parts: dict[str, float] = {}  # seconds by part: the physical floor's pieces, a sync's phases with -v


class Run(msgspec.Struct, kw_only=True):
    name: str
    kind: str  # baseline | psql | pgcopydb | sync | rewriter
    anonymized: bool = False
    parallel: int | None = None
    batch_size: int | None = None
    rows: int = 0
    bytes: int = 0
    wall_s: float = 0.0
    wall_min_s: float = 0.0
    wall_max_s: float = 0.0
    spread: float = 0.0  # (max - min) / median of the wall times
    rows_per_s: float = 0.0
    mb_per_s: float = 0.0
    ratio: float = 0.0  # throughput / the floor's: median over rounds of floor wall / this wall
    ratio_spread: float = 0.0  # (max - min) / median of those per-round ratios
    wall_vs_psql: float | None = None  # median over rounds of this wall / the psql pipe's (issue 4's goals)
    wall_vs_physical: float | None = None  # median over rounds of this wall / the physical floor's (--floor)
    parts: dict[str, float] = {}  # median over rounds of each of the samples' parts
    cpu_s: float = 0.0
    cpu_share: float = 0.0  # cpu_s / (wall_s * cores): our share of the whole machine
    peak_rss_mib: float | None = None
    samples: list[Sample] = []


class Recommendation(msgspec.Struct, kw_only=True):
    parallel: int
    batch_size: int
    rows_per_s: float
    ties: list[str]
    why: str


class Report(msgspec.Struct, kw_only=True):
    command: str
    date: str
    version: str
    machine: dict
    source: dict
    target: dict
    dataset: dict
    repeat: int
    baseline: str
    runs: list[Run]
    recommended: Recommendation | None
    notes: list[str]


# --------------------------------------------------------------------------- measuring


_PAGE = os.sysconf("SC_PAGE_SIZE")


def _family(pid: int) -> list[int]:
    """`pid` and its descendants, from /proc/PID/task/TID/children: a few small files, where psutil's
    children() reads every process of the machine (100-200 ms on a loaded one, during which a short
    run ends unseen)."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/children") as f:
                    todo += [int(c) for c in f.read().split()]
        except OSError:
            pass  # gone already
    return out


def _rss(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/statm") as f:
            return int(f.read().split()[1]) * _PAGE
    except (OSError, IndexError, ValueError):
        return 0


def _tree_rss(pids: list[int]) -> int:
    return sum(_rss(q) for p in pids for q in _family(p))


class _RssSampler:
    """Samples the summed RSS of some process trees every 20 ms on a thread, keeps the peak (Linux)."""

    def __init__(self, pids: list[int]):
        self.procs = pids
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while True:
            self.peak = max(self.peak, _tree_rss(self.procs))
            if self._stop.wait(0.02):
                return

    def __enter__(self) -> "_RssSampler":
        # a first sample at once: on a loaded machine the thread may first run after a short run ended
        self.peak = _tree_rss(self.procs)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def _children_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def _run_processes(start: Callable[[], list[subprocess.Popen]], what: str) -> tuple[float, float, float, bytes]:
    """Starts processes, waits for all of them; (wall s, CPU s of them and their children, peak RSS MiB,
    the last one's stdout)."""
    cpu0 = _children_cpu()
    t0 = time.perf_counter()
    procs = start()
    try:
        with _RssSampler([p.pid for p in procs]) as sampler:
            outs = [p.communicate() for p in procs]
    except BaseException:
        for p in procs:
            p.kill()
            p.wait()
        raise
    wall = time.perf_counter() - t0
    cpu = _children_cpu() - cpu0
    for p, (_, err) in zip(procs, outs):
        if p.returncode != 0:
            tail = (err or b"").decode(errors="replace").strip()[-1500:]
            raise BenchError(f"{what} failed (exit {p.returncode}): {tail}",
                             "rerun with --debug; the bench stops at the first failed run")
    return wall, cpu, sampler.peak / (1 << 20), outs[-1][0] or b""


# --------------------------------------------------------------------------- the two databases


class Side(msgspec.Struct, frozen=True):
    spec: str  # what the CLI is given as --from/--to
    conninfo: str  # for psycopg (may hold a password: never shown)
    display: str
    psql_conninfo: str  # without the password, which psql gets through PGPASSWORD
    password: str | None


def _side_from_env(spec: str, env) -> Side:
    return Side(spec, env.conninfo(), env.display(), msgspec.structs.replace(env, password=None).conninfo(),
                env.password)


def _connect(side: Side) -> psycopg.Connection:
    """row_security off, as on every source session: a policy makes a read fail, never return a part."""
    return pg.scratch(side.conninfo, "bench", row_security=False)


def _qual(table: str) -> str:
    return qualify(SCHEMA, table)


def _prepare_scratch(conn: psycopg.Connection, where: str) -> None:
    """Refuses a schema of that name that the bench did not create; drops a leftover of an earlier bench."""
    row = conn.execute("SELECT obj_description(oid, 'pg_namespace') FROM pg_namespace WHERE nspname = %s",
                       (SCHEMA,)).fetchone()
    if row is not None:
        if row[0] != _MARK:
            raise ConfigError(f"the {where} already has a schema {SCHEMA} that confiture-fast bench did not create",
                              "rename or drop it: the bench needs that name for its scratch tables")
        conn.execute(f'DROP SCHEMA "{SCHEMA}" CASCADE')


def _mark(conn: psycopg.Connection) -> None:
    conn.execute(f"COMMENT ON SCHEMA \"{SCHEMA}\" IS '{_MARK}'")


def _drop_scratch(side: Side) -> bool:
    """Drops the scratch schema when it is the bench's (marked so); True when it did."""
    with _connect(side) as conn:
        row = conn.execute("SELECT obj_description(oid, 'pg_namespace') FROM pg_namespace WHERE nspname = %s",
                           (SCHEMA,)).fetchone()
        if row is not None and row[0] == _MARK:
            conn.execute(f'DROP SCHEMA "{SCHEMA}" CASCADE')
            return True
        return False


class Dataset(msgspec.Struct, kw_only=True):
    tables: tuple[str, ...]
    rows: dict[str, int]
    bytes: dict[str, int] = {}

    @property
    def total_rows(self) -> int:
        return sum(self.rows.values())

    @property
    def total_bytes(self) -> int:
        return sum(self.bytes.values())


def _create_tables(src: Side, dst: Side, tables: tuple[str, ...], rows: int) -> Dataset:
    from . import sample

    counts = {t: rows * ROW_FACTOR[t] if t in tables else 0 for t in TABLES}
    if counts["orders"] or counts["events"]:
        counts["users"] = rows  # their user_id values point into users
    unused = [t for t in TABLES if t not in tables]
    with _connect(dst) as conn:
        _prepare_scratch(conn, "target")  # refuse before spending minutes on the source's rows
    with _connect(src) as conn:
        _prepare_scratch(conn, "source")
        conn.execute(f'CREATE SCHEMA "{SCHEMA}"')
        _mark(conn)
    sample.create_bench_tables(src.conninfo, schema=SCHEMA, **counts)
    with _connect(src) as conn:
        if unused:
            conn.execute("DROP TABLE " + ", ".join(_qual(t) for t in unused))
    _create_target(dst, unused)
    return Dataset(tables=tables, rows={t: counts[t] for t in tables})


def _create_target(dst: Side, unused: list[str]) -> None:
    from . import sample

    with _connect(dst) as conn:
        _prepare_scratch(conn, "target")
        conn.execute(sample.bench_schema_sql(SCHEMA))
        _mark(conn)
        if unused:
            conn.execute("DROP TABLE " + ", ".join(_qual(t) for t in unused))


# --------------------------------------------------------------------------- contenders


class Context(msgspec.Struct, kw_only=True):
    src: Side
    dst: Side
    dataset: Dataset
    env_dir: str
    rules: str
    psql: str | None
    child_env: dict[str, str]
    verbose: bool = False


class Contender(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    kind: str
    anonymized: bool = False
    load: LoadOptions | None = None  # the sync's, None for the other pipes


def _run_baseline(ctx: Context) -> Sample:
    """The floor: each table through the compiled pump, one transaction a side, no rewriter, no tool logic.

    The connections are switched to libpq's blocking mode, as psql's are: in psycopg's nonblocking mode
    PQputCopyData queues whatever the target has not taken yet in libpq's output buffer (memory grows
    with the table) and the flushes spin (about 3x the CPU), which is no floor."""
    from ._pump import pump

    rows = 0
    nbytes = {}
    t0 = time.perf_counter()
    cpu0 = time.thread_time()
    with _RssSampler([os.getpid()]) as sampler, _connect(ctx.src) as s, _connect(ctx.dst) as d:
        s.pgconn.nonblocking = d.pgconn.nonblocking = 0
        for table in ctx.dataset.tables:
            s.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            d.execute("BEGIN")
            out = pump(s, d, f"COPY {_qual(table)} TO STDOUT".encode(), f"COPY {_qual(table)} FROM STDIN".encode())
            d.execute("COMMIT")
            s.execute("COMMIT")
            rows += out[1]
            nbytes[table] = out[2]
    cpu = time.thread_time() - cpu0
    wall = time.perf_counter() - t0
    ctx.dataset.bytes = nbytes
    return Sample(wall, cpu, sampler.peak / (1 << 20), rows)


def _run_psql(ctx: Context) -> Sample:
    """`psql \\copy to stdout | psql \\copy from stdin`, one pipe per table, one after the other."""
    env = {**os.environ}
    wall = cpu = peak = 0.0
    for table in ctx.dataset.tables:
        def start(table=table) -> list[subprocess.Popen]:
            out = subprocess.Popen([ctx.psql, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", ctx.src.psql_conninfo,
                                    "-c", f"\\copy {_qual(table)} to stdout"], stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, env={**env, **_pgpass(ctx.src)})
            into = subprocess.Popen([ctx.psql, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", ctx.dst.psql_conninfo,
                                     "-c", f"\\copy {_qual(table)} from stdin"], stdin=out.stdout,
                                    stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env={**env, **_pgpass(ctx.dst)})
            out.stdout.close()
            return [out, into]

        w, c, p, _ = _run_processes(start, f"psql pipe of {table}")
        wall, cpu, peak = wall + w, cpu + c, max(peak, p)
    return Sample(wall, cpu, peak, 0)


def _pgpass(side: Side) -> dict[str, str]:
    return {"PGPASSWORD": side.password} if side.password else {}


def _run_pgcopydb(ctx: Context, workdir: Path) -> Sample:
    """`pgcopydb clone` of the scratch schema into a target where it does not exist yet."""
    filters = workdir / "pgcopydb-filters.ini"
    filters.write_text(f"[include-only-schema]\n{SCHEMA}\n")
    run_dir = workdir / "pgcopydb"
    shutil.rmtree(run_dir, ignore_errors=True)
    cmd = ["pgcopydb", "clone", "--source", ctx.src.conninfo, "--target", ctx.dst.conninfo,
           "--filters", str(filters), "--dir", str(run_dir), "--table-jobs", str(os.cpu_count() or 1),
           "--index-jobs", str(os.cpu_count() or 1), "--no-owner", "--no-acl", "--skip-extensions"]
    wall, cpu, peak, _ = _run_processes(
        lambda: [subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                  env={**os.environ, **ctx.child_env})], "pgcopydb clone")
    return Sample(wall, cpu, peak, 0)


def physical_floor(parts: dict[str, float], cores: int) -> float:
    """The servers' work, piece by piece, spread over every core: no copy of these tables on this
    machine can take less, whatever overlaps what."""
    return sum(parts.values()) / max(cores, 1)


def _run_physical(ctx: Context, workdir: Path) -> Sample:
    """The physical floor: each table's COPY TO alone (psql into a file, its start included), its
    COPY FROM (FREEZE) of that file into the bare target table, then its constraint builds, one after
    the other, each on one core (no parallel maintenance workers), summed and divided by the cores.
    The bench tables have no foreign keys, so there is nothing to validate. The target tables end as
    they were: indexed."""
    from .sample import bench_table_ddl

    ddl = bench_table_ddl(SCHEMA)
    parts = {"copy_to": 0.0, "copy_from": 0.0, "index_builds": 0.0}
    cpu = 0.0
    cpu0 = time.thread_time()
    with _connect(ctx.dst) as d:
        d.execute("SET max_parallel_maintenance_workers = 0")
        for table in ctx.dataset.tables:
            dump = workdir / f"floor-{table}.copy"
            wall, c, _, _ = _run_processes(lambda table=table, dump=dump: [subprocess.Popen(
                [ctx.psql, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", ctx.src.psql_conninfo,
                 "-c", f"\\copy {_qual(table)} to '{dump}'"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                env={**os.environ, **_pgpass(ctx.src)})], f"COPY TO of {table}")
            parts["copy_to"] += wall
            cpu += c
            create, constraints = ddl[table]
            d.execute("BEGIN")
            d.execute(f"DROP TABLE {_qual(table)}")
            d.execute(create)
            t0 = time.perf_counter()
            with dump.open("rb") as f, d.cursor().copy(f"COPY {_qual(table)} FROM STDIN WITH (FREEZE)") as cp:
                while chunk := f.read(1 << 20):
                    cp.write(chunk)
            d.execute("COMMIT")
            parts["copy_from"] += time.perf_counter() - t0
            dump.unlink()
            t0 = time.perf_counter()
            d.execute(constraints)
            parts["index_builds"] += time.perf_counter() - t0
    cpu += time.thread_time() - cpu0
    return Sample(physical_floor(parts, os.cpu_count() or 1), cpu, None, 0, parts)


def breakdown(ticks: list[tuple[float, bool, bool]], wall: float) -> dict[str, float]:
    """Where a sync's `wall` seconds went, from polls of the target, each (seconds since the start, a
    COPY FROM running, an index build running): start-up until the first row arrives, load until the
    last COPY ends, then the finish (index builds, ANALYZE, exit); and how long index builds ran in
    all, during the load or after it (a poll that sees one counts until the next poll). Empty when no
    COPY was seen."""
    copying = [t for t, copy, _ in ticks if copy]
    if not copying:
        return {}
    first, last = copying[0], copying[-1]
    ends = [t for t, _, _ in ticks[1:]] + [wall]
    return {"startup": first, "load": last - first, "finish": max(wall - last, 0.0),
            "index_builds": sum(end - t for (t, _, index), end in zip(ticks, ends) if index)}


class _TargetWatch:
    """With -v, polls the target's progress views while a sync runs (PostgreSQL 14+): when its COPY
    FROMs and index builds run is what tells start-up, load and finish apart, seen from outside."""

    def __init__(self, side: Side):
        self.side = side
        self.ticks: list[tuple[float, bool, bool]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        try:
            with _connect(self.side) as conn:
                t0 = self.t0
                while not self._stop.is_set():
                    copy, index = conn.execute(
                        "SELECT EXISTS (SELECT FROM pg_stat_progress_copy WHERE datname = current_database() "
                        "AND command = 'COPY FROM'), EXISTS (SELECT FROM pg_stat_progress_create_index "
                        "WHERE datname = current_database())").fetchone()
                    self.ticks.append((time.perf_counter() - t0, copy, index))
                    self._stop.wait(_WATCH_EVERY_S)
        except psycopg.Error:
            self.ticks = []  # a server without those views: no breakdown, the run itself goes on

    def __enter__(self) -> "_TargetWatch":
        self.t0 = time.perf_counter()
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def parts(self, wall: float) -> dict[str, float]:
        return breakdown(self.ticks, wall)


def _run_sync(ctx: Context, c: Contender) -> Sample:
    cmd = [sys.executable, "-m", "confiture_fast", "sync", "--from", ctx.src.spec, "--to", ctx.dst.spec,
           "--env-dir", ctx.env_dir, "--include", f"{SCHEMA}.*", "--no-progress", "--format", "json",
           *c.load.flags()]
    if c.anonymized:
        cmd += ["--anonymize-config", ctx.rules]
    with ExitStack() as stack:
        watch = stack.enter_context(_TargetWatch(ctx.dst)) if ctx.verbose else None
        wall, cpu, peak, out = _run_processes(
            lambda: [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                      env={**os.environ, **ctx.child_env})], c.name)
    try:
        result = msgspec.json.decode(out)
    except msgspec.DecodeError:
        result = {}
    if not result.get("ok"):
        raise BenchError(f"{c.name} did not report success: {result.get('error') or out[-500:]!r}",
                         "rerun the same sync by hand with --debug to see why")
    return Sample(wall, cpu, peak, int(result["total_rows"]), watch.parts(wall) if watch else {})


def _reset_target(ctx: Context) -> None:
    """The same for every contender: the tables emptied, their indexes checked present."""
    with _connect(ctx.dst) as conn:
        conn.execute("TRUNCATE " + ", ".join(_qual(t) for t in ctx.dataset.tables))
        have = dict(conn.execute(
            "SELECT c.relname, count(i.indexrelid) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "LEFT JOIN pg_index i ON i.indrelid = c.oid WHERE n.nspname = %s AND c.relkind = 'r' GROUP BY 1",
            (SCHEMA,)).fetchall())
    want = {t: INDEXES[t] for t in ctx.dataset.tables}
    if have != want:
        raise BenchError(f"the target's scratch tables are not as the bench made them: indexes {have}, expected {want}",
                         "an earlier run may have failed halfway; rerun the bench")


def _loaded_rows(ctx: Context) -> dict[str, int]:
    with _connect(ctx.dst) as conn:
        return {t: conn.execute(f"SELECT count(*) FROM {_qual(t)}").fetchone()[0] for t in ctx.dataset.tables}


def _measure(ctx: Context, c: Contender, workdir: Path) -> Sample:
    if c.kind == "pgcopydb":
        with _connect(ctx.dst) as conn:
            conn.execute(f'DROP SCHEMA "{SCHEMA}" CASCADE')
        try:
            sample = _run_pgcopydb(ctx, workdir)
            loaded = _loaded_rows(ctx)
        finally:
            with _connect(ctx.dst) as conn:
                conn.execute(f'DROP SCHEMA IF EXISTS "{SCHEMA}" CASCADE')
            _create_target(ctx.dst, [t for t in TABLES if t not in ctx.dataset.tables])
    else:
        _reset_target(ctx)
        if c.kind == "baseline":
            sample = _run_baseline(ctx)
        elif c.kind == "physical":
            sample = _run_physical(ctx, workdir)
        elif c.kind == "psql":
            sample = _run_psql(ctx)
        else:
            sample = _run_sync(ctx, c)
        loaded = _loaded_rows(ctx)
    if loaded != ctx.dataset.rows:
        raise BenchError(f"{c.name} loaded {loaded} rows, the source has {ctx.dataset.rows}",
                         "a contender that loses rows is broken: report it")
    return msgspec.structs.replace(sample, rows=sum(loaded.values()))


def _rewriter_alone(ctx: Context, secret: bytes) -> Run | None:
    """The rewriter on the source's own COPY data, in memory, in the format the plan chose for each table
    (text, or binary where the rules are on text-like columns): what the anonymization costs without I/O."""
    from . import config
    from .strategies import BinaryRewriter, Rewriter
    from .catalog import read_catalog
    from .plan import Selection, build_plan

    with _connect(ctx.src) as s, _connect(ctx.dst) as d:
        plan = build_plan(read_catalog(s), read_catalog(d), Selection(include=(f"{SCHEMA}.*",)),
                          config.load_rules(Path(ctx.rules)), secret)
        work = []
        for tp in plan.tables:
            if not tp.rules:
                continue
            cols = ", ".join(quote_ident(c) for c in tp.columns)
            binary = tp.units[0].binary
            # LIMIT in the query: leaving a COPY TO before its end would have to cancel it
            query = (f"COPY (SELECT {cols} FROM {tp.relation} LIMIT {_REWRITER_MAX_ROWS}) TO STDOUT"
                     + " (FORMAT binary)" * binary)
            with s.cursor().copy(query) as cp:
                chunks = [bytes(row) for row in cp]
            rows = len(chunks) - binary  # a message a row, and in binary the trailer
            blob = b"".join(chunks)
            work.append((tp, [blob[i:i + 65536] for i in range(0, len(blob), 65536)], rows, len(blob)))
    if not work:
        return None
    rows = sum(w[2] for w in work)
    nbytes = sum(w[3] for w in work)
    walls = []
    for _ in range(3):
        t0 = time.perf_counter()
        for tp, chunks, _, _ in work:
            rw = (BinaryRewriter(tp.name, list(tp.columns), list(tp.rules), tp.jsonb_columns) if tp.units[0].binary
                  else Rewriter(tp.name, list(tp.columns), list(tp.rules)))
            for chunk in chunks:
                rw.rewrite(chunk)
            rw.finish()
        walls.append(time.perf_counter() - t0)
    samples = [Sample(w, w, None, rows) for w in walls]
    return Run(name="rewriter alone (in memory)", kind="rewriter", anonymized=True, rows=rows, bytes=nbytes,
               samples=samples)


# --------------------------------------------------------------------------- summary


def _per_round(run: Run, ref: Run | None, f: Callable[[float, float], float]) -> list[float]:
    """f(run's wall, ref's wall) for each round: both ran back to back, so a slow spell of a shared
    machine weighs on both and mostly cancels out of the ratio."""
    if ref is None or run.kind == "rewriter" or len(ref.samples) != len(run.samples):
        return []
    return [f(a.wall_s, b.wall_s) for a, b in zip(run.samples, ref.samples) if a.wall_s and b.wall_s]


def _summarize(run: Run, baseline: Run | None, psql: Run | None, cores: int, physical: Run | None = None) -> None:
    walls = [s.wall_s for s in run.samples]
    run.wall_s = statistics.median(walls)
    run.wall_min_s, run.wall_max_s = min(walls), max(walls)
    run.spread = (run.wall_max_s - run.wall_min_s) / run.wall_s if run.wall_s else 0.0
    run.rows_per_s = run.rows / run.wall_s if run.wall_s else 0.0
    run.mb_per_s = run.bytes / run.wall_s / 1e6 if run.wall_s else 0.0
    run.cpu_s = statistics.median(s.cpu_s for s in run.samples)
    run.cpu_share = run.cpu_s / (run.wall_s * cores) if run.wall_s else 0.0
    rss = [s.peak_rss_mib for s in run.samples if s.peak_rss_mib is not None]
    run.peak_rss_mib = max(rss) if rss else None
    ratios = _per_round(run, baseline, lambda mine, floor: floor / mine)
    if ratios:
        run.ratio = statistics.median(ratios)
        run.ratio_spread = (max(ratios) - min(ratios)) / run.ratio
    elif baseline is not None and baseline.rows_per_s:
        run.ratio = run.rows_per_s / baseline.rows_per_s
    vs_psql = _per_round(run, psql, lambda mine, pipe: mine / pipe)
    if vs_psql:
        run.wall_vs_psql = statistics.median(vs_psql)
    vs_physical = _per_round(run, physical, lambda mine, floor: mine / floor)
    if vs_physical:
        run.wall_vs_physical = statistics.median(vs_physical)
    names = dict.fromkeys(k for s in run.samples for k in s.parts)
    run.parts = {k: statistics.median(s.parts[k] for s in run.samples if k in s.parts) for k in names}


def _recommend(runs: list[Run]) -> Recommendation | None:
    """The fastest configuration of the tool (anonymized when the shape has rules), or among those within
    its noise the one with the fewest workers, then the batch size closest to the default."""
    syncs = [r for r in runs if r.kind == "sync"]
    cands = [r for r in syncs if r.anonymized] or syncs
    if not cands:
        return None
    best = max(cands, key=lambda r: r.ratio)
    noise = max(best.ratio_spread, MIN_NOISE)
    ties = [r for r in cands if r.ratio >= best.ratio * (1 - noise)]
    pick = min(ties, key=lambda r: (r.parallel, abs(r.batch_size - LoadOptions().batch_size), r.batch_size))
    if len(cands) == 1:
        why = "the only configuration measured: run with --sweep to compare --parallel and --batch-size values"
    elif pick is best:
        why = f"fastest of {len(cands)} configurations"
    else:
        why = (f"within noise ({noise:.0%}) of the fastest ({best.name}, {best.ratio:.2f}x the floor) "
               f"with fewer workers or the default batch size")
    return Recommendation(parallel=pick.parallel, batch_size=pick.batch_size, rows_per_s=pick.rows_per_s,
                          ties=[r.name for r in ties], why=why)


def _machine() -> dict:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cores": os.cpu_count() or 1, "cpu": model, "platform": platform.platform(),
            "python": platform.python_version(), "load_avg_at_start": [round(x, 2) for x in os.getloadavg()]}


def _server_info(side: Side, where: str, asked: dict[str, str]) -> dict:
    """The server's version and the settings it runs with, as it shows them (not as we asked)."""
    names = list(dict.fromkeys((*REPORTED_SETTINGS, *asked)))
    with _connect(side) as conn:
        version = conn.execute("SHOW server_version").fetchone()[0]
        shown = conn.execute("SELECT n, current_setting(n, true) FROM unnest(%s::text[]) n", (names,)).fetchall()
    return {"where": where, "server_version": version, "settings": {n: v for n, v in shown if v is not None}}


# --------------------------------------------------------------------------- the run


class Options(msgspec.Struct, frozen=True, kw_only=True):
    source: str | None = None
    target: str | None = None
    env_dir: str = "db/environments"
    rows: int = DEFAULT_ROWS
    shape: tuple[str, ...] = ("users",)
    repeat: int = 3
    sweep: bool = False
    load: LoadOptions = LoadOptions()  # of the tool runs; --sweep varies parallel and batch_size
    pg_bin: str | None = None
    pgcopydb: bool = False
    # the throwaway servers' settings on top of ThrowawayServer's (parse_server_settings)
    server_settings: dict[str, str] = msgspec.field(default_factory=lambda: dict(PRODUCTION_SETTINGS))
    floor: bool = False  # also measure the physical floor
    verbose: bool = False  # say where each sync's seconds go
    command: str = ""


def _contenders(opts: Options, psql: str | None, anonymize: bool) -> list[Contender]:
    """The floor first, then the other pipes, then the tool: verbatim once and anonymized over the sweep,
    or verbatim over the sweep when no table of the shape has PII rules."""
    out = [Contender(name=BASELINE, kind="baseline")]
    if psql:
        out.append(Contender(name="psql pipe", kind="psql"))
    if opts.pgcopydb:
        out.append(Contender(name="pgcopydb clone", kind="pgcopydb"))
    if opts.floor:
        out.append(Contender(name=PHYSICAL, kind="physical"))
    default = opts.load
    grid = [msgspec.structs.replace(default, parallel=p, batch_size=b) for p in SWEEP_PARALLEL
            for b in SWEEP_BATCH] if opts.sweep else []
    if default not in grid:
        grid.insert(0, default)
    if anonymize:
        out.append(Contender(name=f"sync verbatim -p{default.parallel} -b{default.batch_size}", kind="sync",
                             load=default))
    word = "anonymized" if anonymize else "verbatim"
    out += [Contender(name=f"sync {word} -p{g.parallel} -b{g.batch_size}", kind="sync", anonymized=anonymize, load=g)
            for g in grid]
    return out


def run_bench(opts: Options, log: Callable[[str], None]) -> Report:
    from . import __version__, config

    notes: list[str] = []
    if opts.pgcopydb and not shutil.which("pgcopydb"):
        raise ConfigError("--pgcopydb: pgcopydb is not on PATH", "install it (Debian: apt-get install pgcopydb)")
    secret = os.environ.get(config.SECRET_ENV_VAR) or _BENCH_SECRET
    with ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="confiture-fast-bench-")))
        if opts.source is None:
            log("starting two throwaway PostgreSQL servers with "
                + (", ".join(f"{k}={v}" for k, v in opts.server_settings.items()) or "the throwaway defaults"))
            s1, s2 = (_start_server(stack, opts) for _ in range(2))
            src_uri, dst_uri = s1.create_database("bench_source"), s2.create_database("bench_target")
            src = Side(src_uri, src_uri, src_uri, src_uri, None)
            dst = Side(dst_uri, dst_uri, dst_uri, dst_uri, None)
            where = ("embedded", "embedded")
            psql = shutil.which("psql", path=str(s1.bin_dir)) or shutil.which("psql")
        else:
            src, dst = _resolve_pair(opts, log)
            log(f"the bench writes a scratch schema {SCHEMA} into --from {src.display} and --to {dst.display} "
                "(dropped when it ends)")
            where = (src.display, dst.display)
            psql = shutil.which("psql")
        if psql is None:
            if opts.floor:
                raise ConfigError("--floor times each table's COPY TO through psql, and psql was not found",
                                  "put psql on PATH (Debian: apt-get install postgresql-client), or leave out --floor")
            notes.append("psql was not found: no psql pipe in this run")
        rules = workdir / "rules.yaml"
        rules_text = _rules_yaml(opts.shape)
        rules.write_text(rules_text or "")
        asked = opts.server_settings if opts.source is None else {}
        source_info, target_info = _server_info(src, where[0], asked), _server_info(dst, where[1], asked)
        state_existed = _state_schema_exists(dst)
        stack.callback(_cleanup, src, dst, state_existed, log)
        log(f"generating {', '.join(f'{t} x{ROW_FACTOR[t] * opts.rows:,}' for t in opts.shape)} on the source")
        dataset = _create_tables(src, dst, opts.shape, opts.rows)
        ctx = Context(src=src, dst=dst, dataset=dataset, env_dir=opts.env_dir, rules=str(rules), psql=psql,
                      child_env={config.SECRET_ENV_VAR: secret}, verbose=opts.verbose)
        contenders = _contenders(opts, psql, anonymize=rules_text is not None)
        runs = {c.name: Run(name=c.name, kind=c.kind, anonymized=c.anonymized,
                            parallel=c.load.parallel if c.load else None,
                            batch_size=c.load.batch_size if c.load else None) for c in contenders}
        # the first pass warms caches and fills dataset.bytes; it is not counted
        log("warm-up: one untimed run of the baseline")
        _measure(ctx, contenders[0], workdir)
        for rep in range(opts.repeat):
            k = rep % len(contenders)
            for c in contenders[k:] + contenders[:k]:
                s = _measure(ctx, c, workdir)
                runs[c.name].samples.append(s)
                log(f"round {rep + 1}/{opts.repeat}: {c.name:32} {s.wall_s:7.2f} s  cpu {s.cpu_s:6.2f} s"
                    + (f"  rss {s.peak_rss_mib:6.0f} MiB" if s.peak_rss_mib is not None else ""))
        rw = None
        if rules_text is not None:
            log("rewriter alone, in memory")
            rw = _rewriter_alone(ctx, secret.encode())
    out = list(runs.values()) + ([rw] if rw else [])
    for r in out:
        if r.kind != "rewriter":
            r.rows, r.bytes = dataset.total_rows, dataset.total_bytes
    if rules_text is None:
        notes.append("no table of this shape has anonymization rules: the tool runs are verbatim, "
                     "and there is no rewriter-alone run")
    cores = os.cpu_count() or 1
    base, pipe, physical = runs[BASELINE], runs.get("psql pipe"), runs.get(PHYSICAL)
    _summarize(base, base, pipe, cores, physical)
    for r in out:
        if r is not base:
            _summarize(r, base, pipe, cores, physical)
    return Report(
        command=opts.command, date=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        version=__version__, machine=_machine(), source=source_info, target=target_info,
        dataset={"schema": SCHEMA, "shape": list(opts.shape), "tables": {
            t: {"rows": dataset.rows[t], "bytes": dataset.bytes.get(t, 0)} for t in dataset.tables},
            "rows": dataset.total_rows, "bytes": dataset.total_bytes},
        repeat=opts.repeat, baseline=BASELINE, runs=out, recommended=_recommend(out), notes=notes)


def _start_server(stack: ExitStack, opts: Options):
    """A throwaway server with the bench's settings; one it refuses is a bad --server-setting."""
    from .embedded import ServerStartError, ThrowawayServer

    try:
        return stack.enter_context(ThrowawayServer(opts.pg_bin, settings=opts.server_settings))
    except ServerStartError as exc:
        raise ConfigError(f"the throwaway PostgreSQL server did not start with these settings: {exc.reason}",
                          "change or leave out the --server-setting it names, or pass --server-settings default "
                          "for the server's own defaults") from None


def parse_server_settings(profile: str | None, pairs: list[str]) -> dict[str, str]:
    """--server-settings PROFILE (production unless given) with each --server-setting NAME=VALUE on top,
    checked here: pg_ctl passes them to the server through a shell."""
    from .embedded import setting_problem

    name = profile or "production"
    if name not in SERVER_PROFILES:
        raise ConfigError(f"--server-settings {name!r} is not a profile",
                          f"give one of {', '.join(SERVER_PROFILES)}")
    settings = dict(SERVER_PROFILES[name])
    for pair in pairs:
        key, eq, value = pair.partition("=")
        key, value = key.strip(), value.strip()
        if not eq or not key or not value:
            raise ConfigError(f"--server-setting {pair!r} is not NAME=VALUE", "write it as e.g. shared_buffers=1GB")
        problem = setting_problem(key, value)
        if problem:
            raise ConfigError(f"--server-setting {pair!r}: {problem}",
                              "give a PostgreSQL setting and a plain value, e.g. work_mem=64MB")
        settings[key] = value
    return settings


def _rules_yaml(tables: tuple[str, ...]) -> str | None:
    """The benchmark rules of the tables in the run only (a rule for a missing table is an error);
    None when none of them has rules."""
    import yaml

    from .sample import bench_rules_yaml

    rules = yaml.safe_load(bench_rules_yaml(SCHEMA))
    kept = {k: v for k, v in rules.items() if k.split(".", 1)[1] in tables}
    return yaml.safe_dump(kept, sort_keys=False) if kept else None


def _state_schema_exists(side: Side) -> bool:
    from .catalog import STATE_SCHEMA

    with _connect(side) as conn:
        return conn.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (STATE_SCHEMA,)).fetchone() is not None


def _cleanup(src: Side, dst: Side, state_existed: bool, log: Callable[[str], None]) -> None:
    """Drops the scratch schema on both sides; on the target, forgets the deferred statements a failed
    contender left recorded for the scratch tables (they are gone: a later sync would report them as
    not rebuilt forever), then drops the sync's state schema when the bench made it and nothing is
    left in it."""
    from . import target
    from .catalog import STATE_SCHEMA, display_name

    dropped_on_target = False
    for side in (src, dst):
        try:
            dropped_on_target = _drop_scratch(side) and side is dst
        except psycopg.Error as exc:
            log(f"warning: could not drop {SCHEMA} on {side.display}: {exc}")
    try:
        with _connect(dst) as conn:
            if dropped_on_target:
                target.forget_tables(conn, [display_name(SCHEMA, t) for t in TABLES])
            if not state_existed:
                target.drop_state(conn)
    except (psycopg.Error, ConfigError) as exc:
        log(f"warning: could not drop {STATE_SCHEMA} on {dst.display}: {getattr(exc, 'message', exc)}")


def _resolve_pair(opts: Options, log: Callable[[str], None]) -> tuple[Side, Side]:
    """Both servers, checked: the bench writes its scratch schema into --from as well as --to, so
    neither may be a protected environment, by its own file or by identity with any protected one."""
    from . import config
    from .coordinator import refuse_protected

    if opts.source is None or opts.target is None:
        raise ConfigError("--from and --to go together", "give both, or neither for the embedded servers")
    src_env = config.resolve_environment(opts.source, Path(opts.env_dir))
    dst_env = config.resolve_environment(opts.target, Path(opts.env_dir))
    from .redact import Redactor

    Redactor.add(src_env.password)
    Redactor.add(dst_env.password)
    if src_env.protected:
        raise ConfigError(f"the source {src_env.name} is protected: the bench writes its scratch schema {SCHEMA} "
                          "into --from as well as into --to, and never into a protected database",
                          "give a scratch or staging server as --from (the bench generates its own rows)")
    if dst_env.protected:
        raise ConfigError(f"the target {dst_env.name} is protected: the bench never writes into it",
                          "give a scratch or staging server as --to")
    src, dst = _side_from_env(opts.source, src_env), _side_from_env(opts.target, dst_env)
    try:
        with _connect(src) as s, _connect(dst) as d:
            refuse_protected(s, src_env, "--from", Path(opts.env_dir), warn=log)
            refuse_protected(d, dst_env, "--to", Path(opts.env_dir), warn=log)
            same = pg.identity(s).same_database(pg.identity(d))
    except psycopg.OperationalError as exc:
        raise ConfigError(f"cannot connect: {pg.first_line(exc)}",
                          "check that both servers are running and the settings are right") from None
    if same:
        raise ConfigError("--to is the same database as --from", "give a different target database")
    return src, dst


# --------------------------------------------------------------------------- output


def _table_counts(ds: dict) -> str:
    return ", ".join(f"{t} {v['rows']:,} rows" for t, v in ds["tables"].items())


def _fmt_rss(v: float | None) -> str:
    return "-" if v is None else f"{v:,.0f}"


_HEADER = (("run", "left"), ("rows/s", "right"), ("MB/s", "right"), ("vs floor", "right"), ("time vs psql", "right"),
           ("wall s (min-max)", "right"), ("spread", "right"), ("CPU s", "right"), ("CPU share", "right"),
           ("peak RSS MiB", "right"))
_PHYSICAL_COLUMN = ("time vs phys. floor", "right")


def _header(report: Report) -> tuple[tuple[str, str], ...]:
    """The columns; the physical floor's only when it was measured."""
    if not any(r.kind == "physical" for r in report.runs):
        return _HEADER
    return (*_HEADER[:5], _PHYSICAL_COLUMN, *_HEADER[5:])


def _title(report: Report) -> str:
    ds = report.dataset
    return (f"confiture-fast bench: {ds['rows']:,} rows, {ds['bytes'] / 1e6:,.0f} MB of COPY text "
            f"({_table_counts(ds)}); median of {report.repeat}, interleaved")


def _is_recommended(report: Report, r: Run) -> bool:
    rec = report.recommended
    swept_anonymized = any(x.anonymized for x in report.runs if x.kind == "sync")
    return (rec is not None and r.kind == "sync" and r.anonymized == swept_anonymized
            and (r.parallel, r.batch_size) == (rec.parallel, rec.batch_size))


def _cells(report: Report) -> list[list[str]]:
    out = []
    physical = _header(report) != _HEADER
    for r in report.runs:
        name = r.name + (" (floor)" if r.name == report.baseline else "")
        if _is_recommended(report, r):
            name += " *"
        row = [name, f"{r.rows_per_s:,.0f}", f"{r.mb_per_s:,.1f}", f"{r.ratio:.2f}x", _fmt_times(r.wall_vs_psql),
               f"{r.wall_s:.2f} ({r.wall_min_s:.2f}-{r.wall_max_s:.2f})", f"{r.spread:.0%}",
               f"{r.cpu_s:.2f}", f"{r.cpu_share:.0%}", _fmt_rss(r.peak_rss_mib)]
        if physical:
            row.insert(5, _fmt_times(r.wall_vs_physical))
        out.append(row)
    return out


def _fmt_times(v: float | None) -> str:
    return "-" if v is None else f"{v:.2f}x"


def _settings_line(report: Report) -> str:
    """The settings both servers reported running with (SHOW), once when they agree."""
    def shown(info: dict) -> str:
        return ", ".join(f"{k}={v}" for k, v in info.get("settings", {}).items())

    src, dst = shown(report.source), shown(report.target)
    if src == dst:
        return f"server settings, as both servers show them: {src}"
    return f"server settings, as the servers show them: source {src}; target {dst}"


def _floor_line(report: Report) -> str | None:
    r = next((r for r in report.runs if r.kind == "physical"), None)
    if r is None:
        return None
    p = r.parts
    return (f"physical floor: {r.wall_s:.2f} s = (COPY TO {p.get('copy_to', 0):.2f} s + COPY FROM without indexes "
            f"{p.get('copy_from', 0):.2f} s + index builds {p.get('index_builds', 0):.2f} s) / "
            f"{report.machine['cores']} cores, medians of {report.repeat} round(s); no foreign keys to validate; "
            f"'time vs phys. floor' is each run's time as a multiple of it")


def _breakdown_lines(report: Report) -> list[str]:
    """With -v: where each sync's seconds went (medians over the rounds)."""
    out = []
    for r in report.runs:
        p = r.parts
        if r.kind == "sync" and p:
            out.append(f"where the time went, {r.name}: start-up until the first row {p['startup']:.2f} s, "
                       f"load {p['load']:.2f} s, finish after the last row {p['finish']:.2f} s (index builds, "
                       f"ANALYZE, exit); index builds ran {p['index_builds']:.2f} s in all, during the load or after")
    if out:
        out.append(f"(seen from the target's progress views, polled every {_WATCH_EVERY_S * 1000:.0f} ms)")
    return out


def _footer(report: Report) -> list[str]:
    rec = report.recommended
    m = report.machine
    lines = [f"recommended: --parallel {rec.parallel} --batch-size {rec.batch_size}  * ({rec.why})"] if rec else []
    lines.append(f"machine: {m['cores']} cores {m['cpu']}, load average at start {m['load_avg_at_start']}; "
                 f"source PostgreSQL {report.source['server_version']} ({report.source['where']}), "
                 f"target PostgreSQL {report.target['server_version']} ({report.target['where']}); "
                 f"{report.date}; confiture-fast {report.version}")
    lines.append(_settings_line(report))
    floor = _floor_line(report)
    lines += ([floor] if floor else []) + _breakdown_lines(report)
    lines += [f"note: {n}" for n in report.notes]
    return lines


def render(report: Report, console) -> None:
    """The rich table, the recommendation and the run information."""
    from rich.table import Table

    table = Table(title=_title(report), title_justify="left")
    for col, just in _header(report):
        table.add_column(col, justify=just)
    for row in _cells(report):
        table.add_row(*row)
    console.print(table)
    for line in _footer(report):
        console.print(line, markup=False, highlight=False, soft_wrap=True)


def markdown(report: Report) -> str:
    """The same table in Markdown, with the command, for docs/performance.md."""
    lines = [f"`{report.command}`", "", f"**{_title(report)}**", "",
             "| " + " | ".join(h for h, _ in _header(report)) + " |",
             "|" + "|".join("---" if j == "left" else "---:" for _, j in _header(report)) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in _cells(report)]
    lines += [""] + [line + "  " for line in _footer(report)]
    return "\n".join(lines) + "\n"


def _esc(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")


_COLORS = {"baseline": "#6b7280", "psql": "#94a3b8", "pgcopydb": "#a78bfa", "sync": "#0d9488", "anon": "#ea580c",
           "physical": "#111827"}


def svg_chart(report: Report) -> str:
    """Horizontal bars of median rows/s per configuration, min-max whiskers, the floor as a dashed line."""
    runs = [r for r in report.runs if r.kind != "rewriter"]
    base = next(r for r in runs if r.name == report.baseline)
    label_w, bar_w, row_h, top = 270, 520, 28, 64
    width, height = label_w + bar_w + 150, top + row_h * len(runs) + 56
    peak = max(r.rows / r.wall_min_s for r in runs if r.wall_min_s) * 1.05
    x = lambda v: label_w + bar_w * v / peak  # noqa: E731
    ds = report.dataset
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12">',
           f'<rect width="{width}" height="{height}" fill="#ffffff"/>',
           f'<text x="10" y="22" font-size="15" font-weight="bold">Throughput per configuration '
           f'(rows/s, median of {report.repeat} rounds; whiskers: min-max)</text>',
           f'<text x="10" y="42" fill="#374151">{_esc(_table_counts(ds))}; '
           f'{report.machine["cores"]} cores; PostgreSQL {_esc(report.source["server_version"].split()[0])} to '
           f'{_esc(report.target["server_version"].split()[0])}; {_esc(report.date)}</text>']
    for i, r in enumerate(runs):
        y = top + i * row_h
        color = _COLORS["anon" if r.anonymized else r.kind]
        name = r.name + (" *" if _is_recommended(report, r) else "")
        out.append(f'<text x="{label_w - 8}" y="{y + 17}" text-anchor="end">{_esc(name)}</text>')
        out.append(f'<rect x="{label_w}" y="{y + 5}" width="{x(r.rows_per_s) - label_w:.1f}" height="{row_h - 10}" '
                   f'fill="{color}"><title>{_esc(r.name)}: {r.rows_per_s:,.0f} rows/s</title></rect>')
        if r.wall_min_s and r.wall_max_s:
            lo, hi = x(r.rows / r.wall_max_s), x(r.rows / r.wall_min_s)
            out.append(f'<line x1="{lo:.1f}" x2="{hi:.1f}" y1="{y + row_h / 2}" y2="{y + row_h / 2}" '
                       f'stroke="#111827" stroke-width="1.5"/>')
        out.append(f'<text x="{label_w + bar_w + 10}" y="{y + 17}">{r.rows_per_s / 1e3:,.0f}k ({r.ratio:.2f}x)</text>')
    bx = x(base.rows_per_s)
    bottom = top + row_h * len(runs)
    out.append(f'<line x1="{bx:.1f}" x2="{bx:.1f}" y1="{top - 4}" y2="{bottom + 4}" stroke="#111827" '
               f'stroke-dasharray="5,4"/>')
    out.append(f'<text x="{bx:.1f}" y="{bottom + 18}" text-anchor="middle">floor: {_esc(report.baseline)} '
               f'{base.rows_per_s / 1e3:,.0f}k rows/s</text>')
    rw = next((r for r in report.runs if r.kind == "rewriter"), None)
    foot = "ratios: median over rounds of the floor's time / this time, measured in the same run"
    if rw:
        foot += f"; the rewriter alone, in memory: {rw.rows_per_s / 1e6:,.1f}M rows/s ({rw.ratio:.0f}x, not drawn)"
    out.append(f'<text x="10" y="{height - 10}" fill="#374151">{_esc(foot)}</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


# --------------------------------------------------------------------------- the command


class BenchFormat(str, enum.Enum):
    text = "text"
    json = "json"
    markdown = "markdown"


def _parse_shape(value: str) -> tuple[str, ...]:
    if value in SHAPES:
        return SHAPES[value]
    names = tuple(dict.fromkeys(v.strip() for v in value.split(",") if v.strip()))
    bad = [n for n in names if n not in TABLES]
    if bad or not names:
        raise ConfigError(f"--shape {value!r}: unknown {', '.join(bad) or 'shape'}",
                          f"give one of {', '.join(SHAPES)}, or a comma-separated list of {', '.join(TABLES)}")
    return names


# --------------------------------------------------------------------------- the subset case (issue 15)


class SubsetBench(msgspec.Struct, kw_only=True):
    """`bench --subset P`: a P% sample of users and its closure, against the full sync of the same tables,
    interleaved in one run on the same servers; wall seconds per round, peak RSS of our process tree."""

    command: str
    rows: dict[str, int]  # the source's tables
    percent: float
    subset_rows: dict[str, int]  # what the subset run loaded
    full_s: list[float] = []
    subset_s: list[float] = []
    full_rss_mib: list[float] = []
    subset_rss_mib: list[float] = []
    scans: list[str] = []  # the closure's sequential scans (--dry-run): none with the foreign keys indexed

    @property
    def ratio(self) -> float:
        return statistics.median(self.subset_s) / statistics.median(self.full_s)


def _subset_dataset(src: Side, users: int) -> dict[str, int]:
    """users N, orders 2N (foreign key to users, indexed), order_lines 4N (two per order, foreign key to
    orders, indexed): the shape the issue names, built from the bench's own users and orders."""
    from . import sample

    with _connect(src) as conn:
        _prepare_scratch(conn, "source")
        conn.execute(f'CREATE SCHEMA "{SCHEMA}"')
        _mark(conn)
    sample.create_bench_tables(src.conninfo, schema=SCHEMA, users=users, orders=2 * users)
    with _connect(src) as conn:
        conn.execute("DROP TABLE " + ", ".join(_qual(t) for t in ("events", "wide", "plain")))
        conn.execute(f"ALTER TABLE {_qual('orders')} ADD FOREIGN KEY (user_id) REFERENCES {_qual('users')}")
        conn.execute(f"CREATE INDEX ON {_qual('orders')} (user_id)")
        conn.execute(f"CREATE TABLE {_qual('order_lines')} AS SELECT o.id * 2 + k AS id, o.id AS order_id, "
                     f"'sku-' || (o.id * 7 + k) % 5000 AS sku, 1 + (o.id + k) % 9 AS qty, o.total / 2 AS amount "
                     f"FROM {_qual('orders')} o CROSS JOIN generate_series(0, 1) k")
        conn.execute(f"ALTER TABLE {_qual('order_lines')} ADD PRIMARY KEY (id), "
                     f"ADD FOREIGN KEY (order_id) REFERENCES {_qual('orders')}")
        conn.execute(f"CREATE INDEX ON {_qual('order_lines')} (order_id)")
        conn.execute(f"VACUUM (ANALYZE) {_qual('order_lines')}, {_qual('orders')}")
        return {t: conn.execute(f"SELECT count(*) FROM {_qual(t)}").fetchone()[0]
                for t in ("users", "orders", "order_lines")}


def run_subset_bench(opts: Options, percent: float, log: Callable[[str], None]) -> SubsetBench:
    """Two throwaway servers; the target's tables made by an untimed first full sync (--create-schema);
    then `repeat` rounds of the full sync and of `--sample "users: P%"`, alternating which goes first."""
    from . import config

    with ExitStack() as stack:
        log("starting two throwaway PostgreSQL servers")
        s1, s2 = (_start_server(stack, opts) for _ in range(2))
        src_uri, dst_uri = s1.create_database("bench_source"), s2.create_database("bench_target")
        src = Side(src_uri, src_uri, src_uri, src_uri, None)
        log(f"generating users x{opts.rows:,}, orders x{2 * opts.rows:,}, order_lines x{4 * opts.rows:,}")
        rows = _subset_dataset(src, opts.rows)
        env = {**os.environ, config.SECRET_ENV_VAR: _BENCH_SECRET}
        base = [sys.executable, "-m", "confiture_fast", "sync", "--from", src_uri, "--to", dst_uri,
                "--include", f"{SCHEMA}.*", "--no-progress", "--format", "json", *opts.load.flags()]
        sample_flag = ["--sample", f"{SCHEMA}.users: {percent:g}%"]

        def sync(extra: list[str], what: str) -> tuple[float, float, dict]:
            wall, _, peak, out = _run_processes(lambda: [subprocess.Popen(
                base + extra, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)], what)
            return wall, peak, msgspec.json.decode(out)

        log("untimed first full sync, creating the target's tables")
        sync(["--create-schema"], "the first full sync")
        dry = subprocess.run(base + sample_flag + ["--dry-run"], capture_output=True, env=env)
        scans = msgspec.json.decode(dry.stdout)["subset"]["scans"] if dry.returncode == 0 else []
        report = SubsetBench(command=opts.command, rows=rows, percent=percent, subset_rows={}, scans=list(scans))
        for rep in range(opts.repeat):
            order = [("full", []), ("subset", sample_flag)]
            for name, extra in (order if rep % 2 == 0 else order[::-1]):
                wall, peak, result = sync(extra, f"the {name} sync")
                loaded = {t["table"].split(".", 1)[1]: t["rows"] for t in result["tables"]}
                if name == "full" and loaded != rows:
                    raise BenchError(f"the full sync loaded {loaded}, the source has {rows}", "report it")
                if name == "subset":
                    report.subset_rows = loaded
                (report.full_s if name == "full" else report.subset_s).append(wall)
                (report.full_rss_mib if name == "full" else report.subset_rss_mib).append(peak)
                log(f"round {rep + 1}/{opts.repeat}: {name:7} {wall:7.2f} s  rss {peak:6.0f} MiB  "
                    f"{sum(loaded.values()):,} rows")
    return report


def render_subset(report: SubsetBench, console) -> None:
    med = statistics.median
    console.print(f"subset bench: --sample users {report.percent:g}% vs the full sync, {len(report.full_s)} "
                  f"interleaved rounds; source {', '.join(f'{t} {n:,}' for t, n in report.rows.items())}", markup=False)
    console.print(f"  full sync:   {med(report.full_s):7.2f} s (runs {', '.join(f'{s:.2f}' for s in report.full_s)}), "
                  f"peak RSS {max(report.full_rss_mib):.0f} MiB", markup=False)
    console.print(f"  subset sync: {med(report.subset_s):7.2f} s (runs {', '.join(f'{s:.2f}' for s in report.subset_s)}), "
                  f"peak RSS {max(report.subset_rss_mib):.0f} MiB, loaded "
                  + ", ".join(f"{t} {n:,}" for t, n in report.subset_rows.items()), markup=False)
    console.print(f"  ratio (median subset / median full): {report.ratio:.3f}; the closure's sequential scans: "
                  f"{', '.join(report.scans) or 'none'}", markup=False)
