"""A worker process: loads work units, each in its own target transaction, under the coordinator's
exported source snapshot. Connections are kept across units and dropped after any failure."""

from __future__ import annotations

import os
import time

import msgspec
import psycopg

from . import _pump
from ._anon import Rewriter
from .plan import TablePlan, Unit

SESSION_SETTINGS = ("SET statement_timeout = 0", "SET idle_in_transaction_session_timeout = 0",
                    "SET lock_timeout = 0", "SET DateStyle = 'ISO, YMD'", "SET IntervalStyle = 'postgres'",
                    "SET extra_float_digits = 3", "SET client_encoding = 'UTF8'")


class WorkerConfig(msgspec.Struct, frozen=True):
    source: str  # conninfo (holds the password: never logged)
    target: str
    snapshot: str
    trigger_mode: str
    flush_rows: int
    flush_bytes: int
    retries: int = 0


class UnitResult(msgspec.Struct, frozen=True):
    table: str
    relation: str
    rows: int
    bytes_in: int
    bytes_out: int
    seconds: float
    retries: list[str] = []  # one line per retried failure, for the log


# Connection lost, server shutting down or restarting, serialization failure, deadlock: worth a retry.
_TRANSIENT = ("08", "57P01", "57P02", "57P03", "40001", "40P01")


class UnitFailed(Exception):
    """A unit failed; the message names the table and the cause. Picklable for the process pool."""

    @property
    def transient(self) -> bool:
        if self.sqlstate is None:
            return self.side in ("source", "target") and any(
                w in self.message for w in ("connection", "server closed", "terminat"))
        return self.sqlstate.startswith(_TRANSIENT)

    def __init__(self, table: str, message: str, side: str = "", sqlstate: str | None = None):
        super().__init__(table, message, side, sqlstate)
        self.table, self.message, self.side, self.sqlstate = table, message, side, sqlstate

    def __str__(self) -> str:
        return f"{self.table}: {self.message}"


def open_source(conninfo: str, snapshot: str | None = None) -> psycopg.Connection:
    """A read-only session; with `snapshot`, inside a transaction that sees exactly that snapshot."""
    conn = psycopg.connect(conninfo, autocommit=True, options="-c default_transaction_read_only=on")
    for s in SESSION_SETTINGS:
        conn.execute(s)
    if snapshot is not None:
        conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        conn.execute(f"SET TRANSACTION SNAPSHOT '{snapshot}'")
    return conn


def open_target(conninfo: str) -> psycopg.Connection:
    conn = psycopg.connect(conninfo, autocommit=True)
    for s in SESSION_SETTINGS:
        conn.execute(s)
    _pump.check_libpq(conn)
    return conn


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
                self.src = open_source(self.cfg.source, self.cfg.snapshot)
        except psycopg.Error as exc:
            raise UnitFailed(table, f"source: {str(exc).strip()}", "source", getattr(exc, "sqlstate", None))
        if self.dst is None or self.dst.closed:
            self.dst = open_target(self.cfg.target)

    def close(self) -> None:
        for conn in (self.src, self.dst):
            if conn is not None:
                conn.close()
        self.src = self.dst = None

    def load(self, table: TablePlan, unit: Unit) -> UnitResult:
        """Loads one unit, retrying transient failures up to `retries` times with backoff."""
        notes: list[str] = []
        for attempt in range(self.cfg.retries + 1):
            try:
                result = self._load_once(table, unit)
            except UnitFailed as exc:
                if attempt >= self.cfg.retries or not exc.transient:
                    raise
                notes.append(f"{table.name} ({unit.relation}), attempt {attempt + 2} of {self.cfg.retries + 1}, "
                             f"after: {exc.message}")
                time.sleep(min(2 ** attempt, 30))
            else:
                return msgspec.structs.replace(result, retries=notes)
        raise AssertionError("unreachable")

    def _load_once(self, table: TablePlan, unit: Unit) -> UnitResult:
        start = time.perf_counter()
        try:
            self._connect(table.name)
            dst = self.dst
            rewriter = Rewriter(table.name, list(table.columns), list(table.rules)) if table.rules else None
            toggle = self.cfg.trigger_mode != "replica" and table.has_user_triggers
            dst.execute("BEGIN")
            if self.cfg.trigger_mode == "replica":
                dst.execute("SET LOCAL session_replication_role = replica")
            elif toggle:
                dst.execute(f"ALTER TABLE {unit.relation} DISABLE TRIGGER USER")
            if unit.owns_relation:  # FREEZE (in copy_in) needs the table emptied in this transaction
                dst.execute(f"TRUNCATE ONLY {unit.relation}")
            rows_out, rows_in, bytes_in, bytes_out = _pump.pump(
                self.src, dst, unit.copy_out.encode(), unit.copy_in.encode(), rewriter, self.cfg.flush_rows,
                self.cfg.flush_bytes, self.counters, self.slot, unit.binary)
            if rows_out != rows_in:
                raise UnitFailed(table.name, f"row count mismatch on {unit.relation}: read {rows_out} rows "
                                             f"from the source, the target took {rows_in}")
            if toggle:
                dst.execute(f"ALTER TABLE {unit.relation} ENABLE TRIGGER USER")
            dst.execute("COMMIT")
        except UnitFailed:
            self.close()
            raise
        except _pump.PumpError as exc:
            self.close()
            raise UnitFailed(table.name, str(exc), exc.side, exc.sqlstate) from None
        except psycopg.Error as exc:
            self.close()
            raise UnitFailed(table.name, f"target: {str(exc).strip()}", "target",
                             getattr(exc, "sqlstate", None)) from None
        except ValueError as exc:  # RewriteError: the message names table, row and column
            self.close()
            raise UnitFailed(table.name, str(exc)) from None
        return UnitResult(table.name, unit.relation, rows_in, bytes_in, bytes_out, time.perf_counter() - start)


# -- process pool glue: one Worker per process ----------------------------------------------------
_worker: Worker | None = None
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


def init_process(cfg: WorkerConfig, counters, current, slots) -> None:
    """Pool initializer: takes the next free progress slot and prepares the worker."""
    import signal

    global _worker, _current
    _current = current
    _die_with_parent()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the coordinator decides how to stop
    with slots.get_lock():
        slot = slots.value
        slots.value += 1
    _worker = Worker(cfg, memoryview(counters).cast("B").cast("q"), slot)


def run_unit(table: TablePlan, unit_index: int, task_id: int) -> UnitResult:
    """Loads one unit; `current[slot]` tells the coordinator which task this process's counters follow."""
    assert _worker is not None
    _worker.counters[2 * _worker.slot] = _worker.counters[2 * _worker.slot + 1] = 0
    _current[_worker.slot] = task_id + 1
    try:
        return _worker.load(table, table.units[unit_index])
    finally:
        _current[_worker.slot] = 0
