"""A worker process: loads work units, each in its own target transaction, under the coordinator's
exported source snapshot. Connections are kept across units and dropped after any failure."""

from __future__ import annotations

import os
import time

import msgspec
import psycopg

from . import _pump, pg
from .errors import RewriteError, UnitFailed
from .pg import quote_ident
from .plan import TablePlan, Unit
from .request import BATCH_BYTES, LoadOptions
from .strategies import BinaryRewriter, Rewriter


class WorkerConfig(msgspec.Struct, frozen=True):
    source: str  # conninfo (holds the password: never logged)
    target: str
    snapshot: str
    trigger_mode: str
    load: LoadOptions


class UnitResult(msgspec.Struct, frozen=True):
    table: str
    relation: str
    rows: int
    bytes_in: int
    bytes_out: int
    seconds: float
    retries: list[str] = []  # one line per retried failure, for the log


def _failed(table: str, side: str, exc: BaseException) -> UnitFailed:
    """A UnitFailed from a psycopg error or a PumpError, with the one-line server message."""
    diag = getattr(exc, "diag", None)
    primary = diag.message_primary if diag is not None else None
    context = diag.context if diag is not None else getattr(exc, "context", None)
    text = exc.message if isinstance(exc, _pump.PumpError) else str(exc)
    message, column = pg.server_error(text or "", primary, context)
    return UnitFailed(table, f"{side}: {message}", side, getattr(exc, "sqlstate", None), column)


def as_table_owner(conn: psycopg.Connection, relation: str) -> None:
    """A superuser loads a table that a lesser role owns as that role (SET LOCAL ROLE, for this
    transaction only): the CHECKs, defaults, generated columns, domain CHECKs and policies that its
    owner wrote then run with the owner's privileges, never a superuser's, as PostgreSQL does itself
    for index builds and ANALYZE."""
    row = conn.execute(
        "SELECT o.rolname FROM pg_catalog.pg_class c JOIN pg_catalog.pg_roles o ON o.oid = c.relowner "
        "WHERE c.oid = %s::regclass AND NOT o.rolsuper AND o.rolname <> current_user "
        "AND (SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user)", (relation,)).fetchone()
    if row is not None:
        conn.execute(f"SET LOCAL ROLE {quote_ident(row[0])}")


_ENABLE = {"O": "ENABLE", "A": "ENABLE ALWAYS", "R": "ENABLE REPLICA"}


def user_triggers_off(conn: psycopg.Connection, relation: str, replica: bool) -> list[str]:
    """Disables, in the open transaction, every user trigger of `relation` that would fire in this
    session (row, statement and TRUNCATE triggers; ENABLE ALWAYS ones in either mode, ENABLE REPLICA
    ones in replica mode, plain ENABLE ones otherwise) and returns the statements that restore each
    one's exact mode, to run before the commit. Names come from pg_trigger, quoted: no SQL text is
    read back. A partitioned table's rows reach its partitions, whose own triggers (also those declared
    on one partition only) are handled each on its table (ONLY), the parent's first."""
    firing = ["A", "R" if replica else "O"]
    rows = conn.execute(
        "SELECT t.tgrelid::regclass::text, t.tgname, t.tgenabled FROM pg_catalog.pg_trigger t "
        "LEFT JOIN pg_catalog.pg_partition_tree(%s::regclass) p ON p.relid = t.tgrelid "
        "WHERE (t.tgrelid = %s::regclass OR p.relid IS NOT NULL) AND NOT t.tgisinternal AND t.tgenabled = ANY(%s) "
        "ORDER BY coalesce(p.level, 0), 1, 2", (relation, relation, firing)).fetchall()
    restore = []
    for rel, name, mode in rows:
        conn.execute(f"ALTER TABLE ONLY {rel} DISABLE TRIGGER {quote_ident(name)}")
        restore.append(f"ALTER TABLE ONLY {rel} {_ENABLE[mode]} TRIGGER {quote_ident(name)}")
    return restore


def rewriter_for(table: TablePlan, binary: bool):
    """The rewriter of the table's rows in the COPY format its units use; None without a rule."""
    if not table.rules:
        return None
    if binary:
        return BinaryRewriter(table.name, list(table.columns), list(table.rules), table.jsonb_columns)
    return Rewriter(table.name, list(table.columns), list(table.rules))


class Worker:
    """Holds one source and one target connection and loads units one after the other."""

    def __init__(self, cfg: WorkerConfig, counters=None, slot: int = 0):
        self.cfg = cfg
        self.counters = counters
        self.slot = slot
        self.src: psycopg.Connection | None = None
        self.dst: psycopg.Connection | None = None

    def _connect(self, table: str) -> None:
        try:
            if self.src is None or self.src.closed:
                self.src = pg.source(self.cfg.source, "worker", self.cfg.snapshot)
        except psycopg.Error as exc:
            raise _failed(table, "source", exc) from None
        if self.dst is None or self.dst.closed:
            self.dst = pg.target(self.cfg.target, "worker")
            _pump.check_libpq(self.dst)

    def close(self) -> None:
        for conn in (self.src, self.dst):
            if conn is not None:
                conn.close()
        self.src = self.dst = None

    def load(self, table: TablePlan, unit: Unit) -> UnitResult:
        """Loads one unit, retrying transient failures up to `retries` times with backoff."""
        notes: list[str] = []
        for attempt in range(self.cfg.load.retries + 1):
            try:
                result = self._load_once(table, unit)
            except UnitFailed as exc:
                if attempt >= self.cfg.load.retries or not exc.transient:
                    raise
                notes.append(f"{table.name} ({unit.relation}), attempt {attempt + 2} of {self.cfg.load.retries + 1}, "
                             f"after: {exc.detail}")
                time.sleep(min(2 ** attempt, 30))
            else:
                return msgspec.structs.replace(result, retries=notes)
        raise AssertionError("unreachable")

    def _load_once(self, table: TablePlan, unit: Unit) -> UnitResult:
        start = time.perf_counter()
        try:
            self._connect(table.name)
            dst = self.dst
            rewriter = rewriter_for(table, unit.binary)
            replica = self.cfg.trigger_mode == "replica"
            dst.execute("BEGIN")
            if replica:
                dst.execute("SET LOCAL session_replication_role = replica")
            as_table_owner(dst, unit.relation)
            restore = user_triggers_off(dst, unit.relation, replica)
            if unit.owns_relation:  # FREEZE (in copy_in) needs the table emptied in this transaction
                dst.execute(f"TRUNCATE ONLY {unit.relation}")
            rows_out, rows_in, bytes_in, bytes_out = _pump.pump(
                self.src, dst, unit.copy_out.encode(), unit.copy_in.encode(), rewriter, self.cfg.load.batch_size,
                BATCH_BYTES, self.counters, self.slot, unit.binary)
            if rows_out != rows_in:
                raise UnitFailed(table.name, f"row count mismatch on {unit.relation}: read {rows_out} rows "
                                             f"from the source, the target took {rows_in}")
            for statement in restore:
                dst.execute(statement)
            dst.execute("COMMIT")
        except UnitFailed:
            self.close()
            raise
        except _pump.PumpError as exc:
            self.close()
            raise _failed(table.name, exc.side, exc) from None
        except psycopg.Error as exc:
            self.close()
            raise _failed(table.name, "target", exc) from None
        except RewriteError as exc:  # the message names table, row and column
            self.close()
            raise UnitFailed(table.name, str(exc)) from None
        except BaseException:
            self.close()
            raise
        return UnitResult(table.name, unit.relation, rows_in, bytes_in, bytes_out, time.perf_counter() - start)


# -- process pool glue: one Worker per process ----------------------------------------------------
_worker: Worker | None = None
_slot: tuple | None = None  # (counters, slot): this process's progress counters, until its first unit
_current = None  # shared array: which task each slot's counters follow


def _die_with_parent() -> None:
    """Linux: if the coordinator is killed, its workers die too, and the servers roll back their
    transactions, rather than finishing tables nobody will record."""
    import ctypes
    import signal

    try:
        ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
    if os.getppid() == 1:
        os._exit(1)


def init_process(counters, current, slots) -> None:
    """Pool initializer: takes the next free progress slot. The process starts while the plan is
    made (coordinator.Workers), so what it loads with comes with its first unit."""
    import signal

    global _slot, _current
    _current = current
    _die_with_parent()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the coordinator decides how to stop
    with slots.get_lock():
        slot = slots.value
        slots.value += 1
    _slot = (memoryview(counters).cast("B").cast("q"), slot)


def ready() -> None:
    """A task of nothing: submitted, it makes the pool start a process now (interpreter, imports, initializer)."""


def run_unit(cfg: WorkerConfig, table: TablePlan, unit_index: int, task_id: int) -> UnitResult:
    """Loads one unit; `current[slot]` tells the coordinator which task this process's counters follow."""
    global _worker
    assert _slot is not None
    if _worker is None:
        _worker = Worker(cfg, *_slot)
    _worker.counters[2 * _worker.slot] = _worker.counters[2 * _worker.slot + 1] = 0
    _current[_worker.slot] = task_id + 1
    try:
        return _worker.load(table, table.units[unit_index])
    finally:
        _current[_worker.slot] = 0
