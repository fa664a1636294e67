"""A worker process: loads work units, each in its own target transaction, under the coordinator's
exported source snapshot. Connections are kept across units and dropped after any failure."""

from __future__ import annotations

import os
import re
import time

import msgspec
import psycopg

from . import _pump
from .catalog import quote_ident
from .plan import TablePlan, Unit
from .request import BATCH_BYTES, LoadOptions
from .strategies import Rewriter

APP_NAME = "confiture-fast"  # every session we open is named so (pg_stat_activity), plus its purpose

# An empty search_path first (as pg_dump does): nothing another role created in a schema on the path
# (a function or operator in public) can capture a name in our statements, which are all qualified.
SESSION_SETTINGS = ("SELECT pg_catalog.set_config('search_path', '', false)", "SET statement_timeout = 0",
                    "SET idle_in_transaction_session_timeout = 0", "SET lock_timeout = 0", "SET DateStyle = 'ISO, YMD'", "SET IntervalStyle = 'postgres'",
                    "SET extra_float_digits = 3", "SET client_encoding = 'UTF8'")


# Every source session: read-only, and never a silent subset under row-level security (as pg_dump:
# a query that a policy would filter fails instead). The empty search_path also reaches the sessions
# of scan and verify, which open theirs with these options alone.
SOURCE_OPTIONS = "-c default_transaction_read_only=on -c row_security=off -c search_path="


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


# Connection lost, server shutting down or restarting, serialization failure, deadlock: worth a retry.
_TRANSIENT = ("08", "57P01", "57P02", "57P03", "40001", "40P01")


class UnitFailed(Exception):
    """A unit failed; the message names the table and the cause. Picklable for the process pool.

    `column` is the target column the server's CONTEXT named, if any."""

    @property
    def transient(self) -> bool:
        if self.sqlstate is None:
            return self.side in ("source", "target") and any(
                w in self.message for w in ("connection", "server closed", "terminat"))
        return self.sqlstate.startswith(_TRANSIENT)

    def __init__(self, table: str, message: str, side: str = "", sqlstate: str | None = None,
                 column: str | None = None):
        super().__init__(table, message, side, sqlstate, column)
        self.table, self.message, self.side, self.sqlstate, self.column = table, message, side, sqlstate, column

    def __str__(self) -> str:
        return f"{self.table}: {self.message}"

    def fix(self, checkpoint: str | None) -> str:
        """What to do: for a transient failure, the same command again (resume_fix); for one that a rerun
        would only repeat, the cause to remove first (a rule whose output does not fit, drift, the encoding)."""
        if self.transient:
            return resume_fix(checkpoint)
        state, side = self.sqlstate or "", self.side or "the"
        col = f" {self.column}" if self.column else ""
        then = f"; then resume with --resume --checkpoint {checkpoint}" if checkpoint else "; then sync again"
        if state == "22001":
            cause = (f"a value is longer than the target column{col} allows: a rule whose output does not fit it, or "
                     "a target column narrower than the source's (drift): use a rule with a shorter output, or widen "
                     "the target column (--dry-run shows the types)")
        elif state in ("22021", "22P05") and self.side == "source":
            cause = ("the source holds text that is not valid in its own encoding or cannot be read as UTF-8 (e.g. "
                     "bytes above 127 in a SQL_ASCII database): repair or convert those values on the source")
        elif state in ("22021", "22P05"):
            cause = ("the source holds text that the target database's encoding cannot take: create the target with "
                     "the source's encoding (createdb -E ENCODING -T template0), or repair those values on the source")
        elif state == "23514":
            cause = (f"a row breaks a CHECK constraint{' of' + col if col else ''} on the target (named above), which "
                     "the source does not have (drift) or a rule's output does not satisfy: align the target's "
                     "schema with the source's, or change the rule")
        elif state == "23502":
            cause = (f"a NULL arrives in the NOT NULL target column{col}: a rule that writes NULL on it, or the column "
                     "is nullable on the source (drift): change the rule or align the target's schema")
        elif state == "23505":
            cause = ("duplicates in a unique target column: a rule that is not unique on it (allow_duplicates), or "
                     "the target has a unique constraint the source lacks (drift)")
        elif state.startswith(("22", "23")):
            cause = (f"a value does not fit the target column{col}: a rule's output, or a type or constraint that "
                     "differs from the source's (drift): compare the column on both sides (--dry-run shows the types)")
        elif state == "42501":
            cause = f"grant the {side} role the privilege named above"
        elif state.startswith("42"):
            cause = (f"the {side} schema changed while the sync ran, or this is a bug: compare both schemas "
                     "(--dry-run), and report it with --debug if they agree")
        elif state.startswith("53"):
            cause = f"free the {side} server's resource named above (disk space, memory, connections)"
        elif state == "57014":
            cause = f"a statement_timeout or pg_cancel_backend on the {side} server stopped it: lift it"
        elif self.side:
            cause = f"remove the cause named above on the {side} server"
        else:
            cause = "fix the rule or value named above"
        return cause + then


def resume_fix(checkpoint: str | None) -> str:
    """The fix of a transient failure: the same command again, resuming when there is a checkpoint."""
    if checkpoint:
        return f"resume with the same command plus --resume --checkpoint {checkpoint}"
    return "rerun the same command (with --checkpoint FILE, a rerun can --resume)"


_COPY_CONTEXT = re.compile(r"^COPY ([^,\n]+), line (\d+)(?:, column ([^:\n]+))?", re.M)
_FIELD = re.compile(r"\n(?:DETAIL|HINT|CONTEXT|QUERY|LOCATION|STATEMENT|WHERE|INTERNAL QUERY):  ")
_QUOTED_AT_END = re.compile(r'(: )".*"$', re.S)
_QUOTED_VALUE = re.compile(r'^(value )".*"( is out of range)', re.S)


def server_error(text: str, primary: str | None = None, context: str | None = None) -> tuple[str, str | None]:
    """(one line, column): a server error's primary message and where the CONTEXT says it happened (COPY
    table, line, column). Never a value: the DETAIL and the CONTEXT quote rows, and a primary message's
    quoted value (`invalid input syntax for type integer: "..."`) may be production data."""
    text = text.strip()
    if primary is None and text.startswith("ERROR:  "):
        text = text[len("ERROR:  "):]
        primary = _FIELD.split(text, maxsplit=1)[0]
        if context is None and "\nCONTEXT:  " in text:
            context = text.split("\nCONTEXT:  ", 1)[1]
    elif primary is None:  # libpq's own text (connection lost, FATAL from the server): its first line
        primary = text.removeprefix("FATAL:  ").splitlines()[0] if text else ""
    primary = _QUOTED_VALUE.sub(r'\1"..."\2', _QUOTED_AT_END.sub(r'\1"..."', primary.strip()))
    line = " ".join(primary.split()) or "connection lost"
    m = _COPY_CONTEXT.search(context or "")
    if m is None:
        return line, None
    where = f"COPY {m.group(1)}, line {m.group(2)}" + (f", column {m.group(3)}" if m.group(3) else "")
    return f"{line} ({where})", m.group(3)


def read_failed(command: str, where: str, exc: psycopg.Error):
    """A server error that stopped scan or verify, which change nothing: one line without values (as
    the load's, server_error), and a fix by its cause."""
    from .errors import SyncError

    diag = exc.diag
    line, _ = server_error(str(exc), diag.message_primary, diag.context)
    state = exc.sqlstate or ""
    if state.startswith(_TRANSIENT) or (exc.sqlstate is None and isinstance(exc, psycopg.OperationalError)):
        fix = "rerun the same command"
    elif state == "42501":
        fix = "grant the role the privilege named above"
    elif state.startswith("42"):
        fix = "the schema changed while it ran, or differs between the sides: compare them (sync --dry-run)"
    else:
        fix = "remove the cause named above (--debug shows the server's full message)"
    return SyncError(f"{command} stopped{where}: {line}", f"{fix}; {command} changes nothing")


def _failed(table: str, side: str, exc: BaseException) -> UnitFailed:
    """A UnitFailed from a psycopg error or a PumpError, with the one-line server message."""
    diag = getattr(exc, "diag", None)
    primary = diag.message_primary if diag is not None else None
    context = diag.context if diag is not None else getattr(exc, "context", None)
    text = exc.message if isinstance(exc, _pump.PumpError) else str(exc)
    message, column = server_error(text or "", primary, context)
    return UnitFailed(table, f"{side}: {message}", side, getattr(exc, "sqlstate", None), column)


def prepare_session(conn: psycopg.Connection) -> None:
    for s in SESSION_SETTINGS:
        conn.execute(s)


def open_source(conninfo: str, snapshot: str | None = None) -> psycopg.Connection:
    """A read-only session; with `snapshot`, inside a transaction that sees exactly that snapshot."""
    conn = psycopg.connect(conninfo, autocommit=True, options=SOURCE_OPTIONS, application_name=f"{APP_NAME} worker")
    prepare_session(conn)
    if snapshot is not None:
        conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        conn.execute(f"SET TRANSACTION SNAPSHOT '{snapshot}'")
    return conn


def open_target(conninfo: str) -> psycopg.Connection:
    conn = psycopg.connect(conninfo, autocommit=True, application_name=f"{APP_NAME} worker")
    prepare_session(conn)
    _pump.check_libpq(conn)
    return conn


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
            raise _failed(table, "source", exc) from None
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
        for attempt in range(self.cfg.load.retries + 1):
            try:
                result = self._load_once(table, unit)
            except UnitFailed as exc:
                if attempt >= self.cfg.load.retries or not exc.transient:
                    raise
                notes.append(f"{table.name} ({unit.relation}), attempt {attempt + 2} of {self.cfg.load.retries + 1}, "
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
