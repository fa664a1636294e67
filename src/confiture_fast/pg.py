"""The one PostgreSQL layer: every session we open, the identity of a database, identifier quoting,
and a server error told in one line without values or secrets.

No other module calls psycopg.connect (tests/unit/test_pg_layer.py checks it), so the settings of
a role are decided here once:
- source: read-only, row_security off (a policy makes a read fail, never return a part of a table,
  as pg_dump), our session settings; optionally inside a transaction on an exported snapshot.
- target: our session settings.
- probe: a short read-only look at a protected environment, only to learn its identity.
- scratch: a database we create or fill ourselves (the bench's scratch schema, sample data, the
  demo's throwaway server), with the server's defaults, since that SQL names tables on the search_path.
Every session is named (application_name "confiture-fast <purpose>": pg_stat_activity, the lock
watch) and gives up connecting after CONNECT_TIMEOUT seconds unless the conninfo says otherwise.
"""

from __future__ import annotations

import re

import msgspec
import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

from .errors import ConfigError, SyncError, transient
from .redact import Redactor

APP_NAME = "confiture-fast"
CONNECT_TIMEOUT = 10  # seconds, unless the conninfo sets connect_timeout

# An empty search_path first (as pg_dump does): nothing another role created in a schema on the path
# (a function or operator in public) can capture a name in our statements, which are all qualified.
# Values print in one form whatever the server's defaults (the rewriter and verify read ISO dates).
SESSION_SETTINGS = ("SELECT pg_catalog.set_config('search_path', '', false)", "SET statement_timeout = 0",
                    "SET idle_in_transaction_session_timeout = 0", "SET lock_timeout = 0", "SET DateStyle = 'ISO, YMD'",
                    "SET IntervalStyle = 'postgres'", "SET extra_float_digits = 3", "SET client_encoding = 'UTF8'")

# Set at connection time, so that they hold from the first statement on.
_SOURCE_OPTIONS = "-c default_transaction_read_only=on -c row_security=off -c search_path="


# --------------------------------------------------------------------------- identifiers


def quote_ident(name: str) -> str:
    """`name` as a double-quoted SQL identifier: the only quoting in the package."""
    return '"' + name.replace('"', '""') + '"'


def qualify(schema: str, name: str) -> str:
    return f"{quote_ident(schema)}.{quote_ident(name)}"


# --------------------------------------------------------------------------- sessions


def _open(conninfo: str, purpose: str, options: str | None = None,
          connect_timeout: int | None = None) -> psycopg.Connection:
    """The one call of psycopg.connect: autocommit (we open our transactions), named, bounded."""
    kw: dict = {"autocommit": True, "application_name": f"{APP_NAME} {purpose}"}
    if connect_timeout is not None:
        kw["connect_timeout"] = connect_timeout
    elif "connect_timeout" not in conninfo_to_dict(conninfo):
        kw["connect_timeout"] = CONNECT_TIMEOUT
    if options is not None:
        kw["options"] = options
    return psycopg.connect(conninfo, **kw)


def _prepare(conn: psycopg.Connection) -> None:
    """SESSION_SETTINGS in one round trip (a query of several statements, which the simple query
    protocol runs in order, stopping at the first error): one instead of eight for every session."""
    try:
        conn.execute("; ".join(SESSION_SETTINGS))
    except BaseException:
        conn.close()
        raise


def source(conninfo: str, purpose: str, snapshot: str | None = None,
           statement_timeout_ms: int | None = None) -> psycopg.Connection:
    """A read-only source session; with `snapshot`, inside a transaction that sees exactly that
    exported snapshot; with `statement_timeout_ms`, each statement bounded so."""
    conn = _open(conninfo, purpose, _SOURCE_OPTIONS)
    _prepare(conn)
    try:
        if statement_timeout_ms is not None:
            conn.execute(f"SET statement_timeout = {int(statement_timeout_ms)}")
        if snapshot is not None:
            conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            conn.execute(sql.SQL("SET TRANSACTION SNAPSHOT {}").format(sql.Literal(snapshot)))
    except BaseException:
        conn.close()
        raise
    return conn


def export_snapshot(conn: psycopg.Connection) -> str:
    """Opens, on a source session, the read-only repeatable-read transaction whose snapshot every
    worker then reads under (source(..., snapshot=)), and exports it; it stays open until the session closes."""
    conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
    return conn.execute("SELECT pg_export_snapshot()").fetchone()[0]


def target(conninfo: str, purpose: str) -> psycopg.Connection:
    """A target session with our session settings."""
    conn = _open(conninfo, purpose)
    _prepare(conn)
    return conn


def probe(conninfo: str, seconds: int) -> psycopg.Connection:
    """A read-only session that gives up connecting, and each statement, after `seconds`."""
    return _open(conninfo, "check", f"-c default_transaction_read_only=on -c statement_timeout={seconds * 1000}",
                 connect_timeout=seconds)


def scratch(conninfo: str, purpose: str, row_security: bool = True) -> psycopg.Connection:
    """A session on data we make ourselves; `row_security=False` as on a source (the bench's reads)."""
    return _open(conninfo, purpose, None if row_security else "-c row_security=off")


# --------------------------------------------------------------------------- identity


class Identity(msgspec.Struct, frozen=True):
    """What tells two connections' databases apart, whatever address, name or tunnel reached them.

    The same running server has the same postmaster start time and port (readable by any role). The
    system identifier (where our role may read it) is shared by a cluster's standbys and by clones
    restored from its backups: equal identifiers mean one database only when one side is a standby
    (writing into a standby's primary writes into the standby), never for two primaries (a staging
    server restored from production's backup is another database)."""

    database: str
    instance: str
    system: str | None
    standby: bool

    def same_database(self, other: "Identity") -> bool:
        if self.database != other.database:
            return False
        if self.instance == other.instance:
            return True
        return (self.system is not None and self.system == other.system) and (self.standby or other.standby)


def identity(conn: psycopg.Connection) -> Identity:
    db, instance, standby = conn.execute(
        "SELECT pg_catalog.current_database(), extract(epoch FROM pg_catalog.pg_postmaster_start_time())::text "
        "|| ':' || pg_catalog.current_setting('port'), pg_catalog.pg_is_in_recovery()").fetchone()
    try:
        with conn.transaction():
            system = conn.execute("SELECT system_identifier::text FROM pg_catalog.pg_control_system()").fetchone()[0]
    except psycopg.errors.InsufficientPrivilege:
        system = None
    return Identity(db, instance, system, standby)


# --------------------------------------------------------------------------- errors in one line


def _scrub(text: str, conninfo: str | None) -> str:
    """`text` without the secrets we know nor the password of `conninfo` (libpq may quote a conninfo)."""
    if conninfo:
        password = conninfo_to_dict(conninfo).get("password")
        if password:
            text = text.replace(str(password), "***")
    return Redactor.clean(text)


def first_line(exc: BaseException, conninfo: str | None = None) -> str:
    """The line of a failure that says why: the server's FATAL/ERROR line when libpq wraps it (a
    failed connection reads "connection to server at ... failed: FATAL:  ..."), else the first."""
    text = str(exc).strip()
    for marker in ("FATAL:", "ERROR:"):
        if marker in text:
            text = text[text.rindex(marker):]
    line = text.splitlines()[0] if text else type(exc).__name__
    return _scrub(line, conninfo)


def primary(exc: psycopg.Error) -> str:
    """The server's primary message (never its DETAIL, which may quote rows), else the first line."""
    return _scrub((exc.diag.message_primary or str(exc).strip().splitlines()[0]).strip(), None)


_CONNECT_FIXES = (
    ("password authentication failed", "check the user and password of the {what} (password: in its environment file, "
                                       "or the URI)"),
    ("no password supplied", "give the {what} a password (password: ${{VAR}} in its environment file, or PGPASSWORD)"),
    ("does not exist", "check the database (and user) name of the {what}, or create it: createdb NAME"),
    ("Connection refused", "check that the {what} server is running and its host and port (--source-port for a tunnel)"),
    ("timeout expired", "check the {what} host is reachable (firewall, VPN, SSH tunnel)"),
    ("could not translate host name", "check the {what} host name"),
    ("SSL", "check the {what}'s sslmode / sslrootcert settings"),
)


def connect_failed(what: str, display: str, exc: psycopg.Error, conninfo: str | None = None) -> ConfigError:
    """Connecting to the `what` ("source", "target") failed: its one line and the fix its cause asks for."""
    fix = next((f for needle, f in _CONNECT_FIXES if needle in str(exc)),
               "check that the {what} server is running and its settings are right")
    return ConfigError(f"cannot connect to the {what} {display}: {first_line(exc, conninfo)}", fix.format(what=what))


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
    line = _scrub(" ".join(primary.split()), None) or "connection lost"
    m = _COPY_CONTEXT.search(context or "")
    if m is None:
        return line, None
    where = f"COPY {m.group(1)}, line {m.group(2)}" + (f", column {m.group(3)}" if m.group(3) else "")
    return f"{line} ({where})", m.group(3)


def read_failed(command: str, where: str, exc: psycopg.Error) -> SyncError:
    """A server error that stopped scan or verify, which change nothing: one line without values (as
    the load's, server_error), and a fix by its cause."""
    diag = exc.diag
    line, _ = server_error(str(exc), diag.message_primary, diag.context)
    state = exc.sqlstate or ""
    if transient(exc.sqlstate, "source", line if isinstance(exc, psycopg.OperationalError) else ""):
        fix = "rerun the same command"
    elif state == "42501":
        fix = "grant the role the privilege named above"
    elif state.startswith("42"):
        fix = "the schema changed while it ran, or differs between the sides: compare them (sync --dry-run)"
    else:
        fix = "remove the cause named above (--debug shows the server's full message)"
    return SyncError(f"{command} stopped{where}: {line}", f"{fix}; {command} changes nothing")
