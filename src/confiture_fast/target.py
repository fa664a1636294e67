"""The target's state, which preparing and finishing share: our state schema (guarded), the keys
that sign its pending_ddl records, the records themselves, our target sessions and the run lock.

Deferred indexes and foreign keys are recorded in pending_ddl in the transaction that drops them
(prepare.py), so a crash at any moment leaves a record that the next run rebuilds (finish.py).

The target is not trusted: another role may have written anything into it. The state schema is used
only when our role (or a role it belongs to) owns it and everything in it, and a record is executed
only when its HMAC verifies (see StateKeys): SQL text read back from the target is never run on trust.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import threading
import time
from pathlib import Path

import msgspec
import psycopg

from . import pg
from .catalog import STATE_SCHEMA
from .errors import ConfigError, SyncError
from .pg import quote_ident

STATE_TABLE = f"{quote_ident(STATE_SCHEMA)}.pending_ddl"
SYNC_STATE_TABLE = f"{quote_ident(STATE_SCHEMA)}.sync_state"
_SIGNED = ("table_name", "name", "phase", "create_sql")  # the record's fields a MAC covers, in this order,
# and fallback_sql after them when it is set
PENDING_DDL = "confiture-fast pending_ddl v1"  # what a pending_ddl record's MAC is over, before its fields
FORGET_HINT = f"DELETE FROM {STATE_TABLE} WHERE id = {{id}}"

Item = tuple[int, str, str, int, str, str | None]  # a verified record: id, table, name, phase, create_sql, fallback_sql


def _fields(table: str, name: str, phase: int, create_sql: str, fallback_sql: str | None) -> tuple:
    """What a record's MAC covers: every statement it may execute."""
    return (table, name, phase, create_sql) + ((fallback_sql,) if fallback_sql is not None else ())


# -- the keys that sign our records ---------------------------------------------------------------
def key_file() -> Path:
    """The signing key kept outside the target: a 0600 file in the user's state folder."""
    import platformdirs

    return platformdirs.user_state_path("confiture-fast") / "pending-ddl.key"


class StateKeys:
    """Signs and verifies pending_ddl records (HMAC-SHA256 over every field a record executes).

    Two keys, either of which verifies a record: a random key in a 0600 file in the user's state
    folder (always; created on first use), and one derived from the anonymization secret when there
    is one, so that a team sharing the secret (a laptop and CI) can finish each other's interrupted
    runs. A record that neither verifies was not written by us, or was altered: it is never executed,
    kept, and reported by id with the statement that forgets it once a person has looked at it."""

    def __init__(self, secret: bytes | None = None, path: Path | None = None):
        self.path = path or key_file()
        self._secret = hmac.new(secret, b"confiture-fast pending_ddl v1", hashlib.sha256).digest() if secret else None
        self._local: bytes | None = None

    def _load(self, create: bool) -> bytes | None:
        if self._local is not None:
            return self._local
        fix = f"chmod 600 {self.path} (or delete it: records it signed then need the secret, or a person)"
        try:
            st = self.path.stat()
        except FileNotFoundError:
            if not create:
                return None
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
                fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(fd, "w") as f:
                    f.write(secrets.token_hex(32) + "\n")
            except FileExistsError:
                pass
            except OSError as exc:
                raise ConfigError(f"cannot create the key file {self.path}: {exc.strerror}",
                                  "make the folder writable (it holds the key that signs the target's pending_ddl "
                                  "records), or set XDG_STATE_HOME to a writable folder") from None
            st = self.path.stat()
        if st.st_mode & 0o077 or st.st_uid != os.geteuid():
            raise ConfigError(f"the key file {self.path} is not private to this user", fix)
        try:
            self._local = bytes.fromhex(self.path.read_text().strip())
        except ValueError:
            raise ConfigError(f"the key file {self.path} is damaged", f"delete {self.path}") from None
        return self._local

    def ready(self) -> None:
        """Creates the local key now, so that a problem with it stops the run before the target is written."""
        self._load(create=True)

    @staticmethod
    def _message(fields, domain: str) -> bytes:
        return msgspec.json.encode([domain, *fields])

    def sign(self, fields, domain: str = PENDING_DDL) -> tuple[bytes, bytes | None]:
        """The MACs of `fields`; `domain` names the kind of record, so that no record of one kind
        verifies as one of another."""
        msg = self._message(fields, domain)
        local = hmac.new(self._load(create=True), msg, hashlib.sha256).digest()
        return local, hmac.new(self._secret, msg, hashlib.sha256).digest() if self._secret else None

    def verify(self, fields, mac: bytes | None, mac_secret: bytes | None, domain: str = PENDING_DDL) -> bool:
        msg = self._message(fields, domain)
        local = self._load(create=False)
        ok_local = local is not None and mac is not None and hmac.compare_digest(
            hmac.new(local, msg, hashlib.sha256).digest(), bytes(mac))
        ok_secret = self._secret is not None and mac_secret is not None and hmac.compare_digest(
            hmac.new(self._secret, msg, hashlib.sha256).digest(), bytes(mac_secret))
        return ok_local or ok_secret


# -- the state schema: ours, and nothing else in it -----------------------------------------------
MINE = """WITH RECURSIVE mine(oid) AS (
    SELECT oid FROM pg_roles WHERE rolname = current_user
    UNION SELECT m.roleid FROM pg_auth_members m JOIN mine ON m.member = mine.oid)
"""
# Explicit membership, not pg_has_role(): that is true of every role for a superuser, which is
# exactly the role an attacker with CREATE on the database hopes runs the sync.
_STATE_SQL = MINE + """
SELECT n.oid, n.nspowner::regrole::text, n.nspowner IN (SELECT oid FROM mine),
       c.oid, c.relname, c.relkind, c.relowner::regrole::text, c.relowner IN (SELECT oid FROM mine), current_user
FROM pg_namespace n LEFT JOIN pg_class c ON c.relnamespace = n.oid AND c.relname IN ('pending_ddl', 'sync_state')
WHERE n.nspname = %(schema)s
"""
_FOREIGN_SQL = """
SELECT pg_describe_object(d.classid, d.objid, d.objsubid) FROM pg_depend d
WHERE d.refclassid = 'pg_namespace'::regclass AND d.refobjid = %(ns)s
  AND NOT (d.classid = 'pg_class'::regclass AND (d.objid = ANY(%(tables)s) OR d.objid IN (
      SELECT s.objid FROM pg_depend s JOIN pg_class sc ON sc.oid = s.objid AND sc.relkind = 'S'
      WHERE s.classid = 'pg_class'::regclass AND s.refclassid = 'pg_class'::regclass
        AND s.refobjid = ANY(%(tables)s) AND s.deptype = 'a')))
UNION ALL SELECT 'sequence ' || c.oid::regclass::text || ' owned by ' || c.relowner::regrole::text
FROM pg_class c WHERE c.relnamespace = %(ns)s AND c.relkind = 'S' AND c.relowner NOT IN (SELECT oid FROM mine)
UNION ALL SELECT 'trigger ' || quote_ident(tgname) || ' on ' || tgrelid::regclass::text FROM pg_trigger
WHERE tgrelid = ANY(%(tables)s)
UNION ALL SELECT 'rule ' || quote_ident(rulename) || ' on ' || ev_class::regclass::text FROM pg_rewrite
WHERE ev_class = ANY(%(tables)s)
UNION ALL SELECT 'policy ' || quote_ident(polname) || ' on ' || polrelid::regclass::text FROM pg_policy
WHERE polrelid = ANY(%(tables)s)
UNION ALL SELECT 'index ' || i.indexrelid::regclass::text || ' on ' || i.indrelid::regclass::text FROM pg_index i
WHERE i.indrelid = ANY(%(tables)s) AND NOT (i.indisprimary AND i.indexprs IS NULL AND i.indpred IS NULL)
UNION ALL SELECT 'constraint ' || quote_ident(conname) || ' on ' || conrelid::regclass::text FROM pg_constraint
WHERE conrelid = ANY(%(tables)s) AND contype NOT IN ('p', 'n')
UNION ALL SELECT 'a default on ' || d.adrelid::regclass::text || '.' || quote_ident(a.attname) FROM pg_attrdef d
JOIN pg_attribute a ON a.attrelid = d.adrelid AND a.attnum = d.adnum
WHERE d.adrelid = ANY(%(tables)s)
  AND NOT (d.adrelid = %(table)s AND a.attname = 'id'
           AND pg_get_expr(d.adbin, d.adrelid) ~ '^nextval\\(''[^'']+''::regclass\\)$')
  AND NOT (d.adrelid = %(table)s AND a.attname = 'dropped_at' AND pg_get_expr(d.adbin, d.adrelid) = 'now()')
UNION ALL SELECT 'the type ' || format_type(atttypid, atttypmod) || ' of ' || attrelid::regclass::text || '.'
    || quote_ident(attname)
FROM pg_attribute WHERE attrelid = ANY(%(tables)s) AND attnum > 0 AND NOT attisdropped AND atttypid >= 16384
"""


class StateInfo(msgspec.Struct, frozen=True):
    schema: bool  # the state schema exists (and is ours)
    table: bool  # its pending_ddl table exists (and is ours, with nothing planted on it)
    signed: bool  # the table has the MAC columns (an older version wrote none)
    has_fallback: bool = False  # the table has the fallback_sql column (an older version had none)
    sync_state: bool = False  # its sync_state table (incremental.py) exists, ours, with nothing planted on it


def check_state(conn: psycopg.Connection) -> StateInfo:
    """Refuses a state schema or table that another role owns or has added anything to: its records
    could then say anything, and would run with our privileges. Reads only pg_catalog, never the tables."""
    rows = conn.execute(_STATE_SQL, {"schema": STATE_SCHEMA}).fetchall()
    if not rows:
        return StateInfo(False, False, False)
    ns, ns_owner, ns_mine, *_, me = rows[0]
    s = quote_ident(STATE_SCHEMA)
    drop = f"if you did not create it, inspect it and drop it: DROP SCHEMA {s} CASCADE"
    if not ns_mine:
        raise ConfigError(f"the target's state schema {STATE_SCHEMA} is owned by {ns_owner}, not by {me} (or a role "
                          f"it belongs to): what it holds could run with {me}'s privileges, so it is not used",
                          f"if {ns_owner} is trusted: ALTER SCHEMA {s} OWNER TO {quote_ident(me)} (and its tables, "
                          f"ALTER TABLE {STATE_TABLE} OWNER TO {quote_ident(me)}); otherwise {drop}")
    tables: dict[str, int] = {}
    for _, _, _, oid, name, kind, owner, mine, _ in rows:
        if oid is None:
            continue
        shown = f"{STATE_SCHEMA}.{name}"
        if kind != "r":
            raise ConfigError(f"{shown} on the target is not confiture-fast's table (relkind {kind!r})",
                              f"inspect it and drop it ({drop})")
        if not mine:
            raise ConfigError(f"{shown} on the target is owned by {owner}, not by {me} (or a role it belongs to): its "
                              "records could say anything, so it is not used",
                              f"if {owner} is trusted: ALTER TABLE {s}.{quote_ident(name)} OWNER TO {quote_ident(me)}; "
                              f"otherwise {drop}")
        tables[name] = oid
    planted = [r[0] for r in conn.execute(MINE + _FOREIGN_SQL, {"ns": ns, "table": tables.get("pending_ddl", 0),
                                                                "tables": list(tables.values())})]
    if planted:
        raise ConfigError(f"the target's state schema {STATE_SCHEMA} holds {planted[0]}, which confiture-fast did "
                          "not create: it could run with our privileges, so the state is not used"
                          + (f" (and {len(planted) - 1} more)" if len(planted) > 1 else ""),
                          f"inspect and remove it ({drop})")
    columns = set(conn.execute(
        "SELECT attname FROM pg_attribute WHERE attrelid = %s AND attname IN ('mac', 'mac_secret', 'fallback_sql') "
        "AND NOT attisdropped", (tables.get("pending_ddl", 0),)).fetchall())
    return StateInfo(True, "pending_ddl" in tables, {("mac",), ("mac_secret",)} <= columns,
                     ("fallback_sql",) in columns, "sync_state" in tables)


def ensure_state(conn: psycopg.Connection, sync_state: bool = False) -> None:
    """Creates the state schema and table where missing (their owner is then our role), adds the MAC
    columns to an older, empty table, and checks the result in the same transaction. With `sync_state`,
    also the table of the incremental state (incremental.py: one signed record per table)."""
    with conn.transaction():
        before = check_state(conn)
        if not before.schema:
            conn.execute(f"CREATE SCHEMA {quote_ident(STATE_SCHEMA)}")
        if not before.table:
            conn.execute(f"""CREATE TABLE {STATE_TABLE} (
                id bigserial PRIMARY KEY, table_name text NOT NULL, name text NOT NULL, phase int NOT NULL,
                create_sql text NOT NULL, dropped_at timestamptz NOT NULL DEFAULT now(), mac bytea NOT NULL,
                mac_secret bytea, fallback_sql text)""")
        elif not (before.signed and before.has_fallback):
            conn.execute(f"ALTER TABLE {STATE_TABLE} ADD COLUMN IF NOT EXISTS mac bytea, "
                         "ADD COLUMN IF NOT EXISTS mac_secret bytea, ADD COLUMN IF NOT EXISTS fallback_sql text")
        if sync_state and not before.sync_state:
            conn.execute(f"CREATE TABLE {SYNC_STATE_TABLE} (table_name text PRIMARY KEY, record bytea NOT NULL, "
                         "mac bytea NOT NULL, mac_secret bytea)")
        check_state(conn)


def records(conn: psycopg.Connection, keys: StateKeys) -> tuple[list[Item], list[tuple]]:
    """(verified records, the others as (id, table, name)), by phase then id."""
    info = check_state(conn)
    if not info.table:
        return [], []
    macs = "mac, mac_secret" if info.signed else "NULL::bytea, NULL::bytea"
    fallback = "fallback_sql" if info.has_fallback else "NULL::text"
    rows = conn.execute(f"SELECT id, {', '.join(_SIGNED)}, {fallback}, {macs} FROM {STATE_TABLE} "
                        "ORDER BY phase, id").fetchall()
    good, bad = [], []
    for id_, table, name, phase, sql, fallback_sql, mac, mac_secret in rows:
        if keys.verify(_fields(table, name, phase, sql, fallback_sql), mac, mac_secret):
            good.append((id_, table, name, phase, sql, fallback_sql))
        else:
            bad.append((id_, table, name))
    return good, bad


def unverified(bad: list[tuple]) -> str:
    return (f"it was not written by confiture-fast with this machine's key ({key_file()}) or this anonymization "
            f"secret, or it was altered: it is never executed (it may be another machine's: rerun there, or with "
            f"the secret it used; otherwise check its create_sql, run it yourself if it is right, then "
            f"{FORGET_HINT.format(id=bad[0])})")


def pending(conn: psycopg.Connection, keys: StateKeys) -> list[Item]:
    """Constraints and indexes dropped by this or an earlier (interrupted) run and not yet rebuilt,
    whose records verify."""
    return records(conn, keys)[0]


def write_records(conn: psycopg.Connection, keys: StateKeys, deferred) -> None:
    """Records each deferred statement, signed, in the caller's transaction."""
    for d in deferred:
        mac, mac_secret = keys.sign(_fields(d.table, d.name, d.phase, d.create_sql, d.fallback_sql))
        conn.execute(f"INSERT INTO {STATE_TABLE} ({', '.join(_SIGNED)}, fallback_sql, mac, mac_secret) "
                     "VALUES (%s, %s, %s, %s, %s, %s, %s)",
                     (d.table, d.name, d.phase, d.create_sql, d.fallback_sql, mac, mac_secret))


def forget(conn: psycopg.Connection, id_: int) -> None:
    """Removes a record whose statement now stands on the target (in the caller's transaction)."""
    conn.execute(f"DELETE FROM {STATE_TABLE} WHERE id = %s", (id_,))


def forget_tables(conn: psycopg.Connection, tables: list[str]) -> None:
    """Forgets every record of `tables` (display names), which were dropped: nothing is left to rebuild."""
    if check_state(conn).table:
        conn.execute(f"DELETE FROM {STATE_TABLE} WHERE table_name = ANY(%s)", (tables,))


def drop_state(conn: psycopg.Connection) -> bool:
    """Drops our state schema when it holds no record; False, and kept, while one is left to finish."""
    info = check_state(conn)
    if info.table and conn.execute(f"SELECT count(*) FROM {STATE_TABLE}").fetchone()[0]:
        return False
    if info.schema:
        conn.execute(f"DROP SCHEMA {quote_ident(STATE_SCHEMA)} CASCADE")
    return True


# -- one run at a time, and waits explained -------------------------------------------------------
_LOCK_KEY = 0x63667374  # 'cfst': with the database's oid, the advisory lock of a run into that database
_DB_OID = "(SELECT oid FROM pg_database WHERE datname = current_database())"


def lock_target(conn: psycopg.Connection, wait_for_it: bool, say) -> None:
    """Takes the target's run lock (a session advisory lock, released when `conn` closes, also when
    the process dies). While another run holds it: waits, saying once who holds it, or with
    `wait_for_it` False fails at once."""
    told = False
    while not conn.execute(f"SELECT pg_try_advisory_lock(%s, {_DB_OID}::int)", (_LOCK_KEY,)).fetchone()[0]:
        row = conn.execute(
            "SELECT a.pid, a.application_name, to_char(a.backend_start, 'YYYY-MM-DD HH24:MI:SS') FROM pg_locks l "
            "JOIN pg_stat_activity a ON a.pid = l.pid WHERE l.locktype = 'advisory' AND l.granted "
            f"AND l.database = {_DB_OID} AND l.classid = %s::oid AND l.objid = {_DB_OID} AND l.objsubid = 2",
            (_LOCK_KEY,)).fetchone()
        who = (f"pid {row[0]}" + (f", {row[1]}" if row[1] else "") + (f", started {row[2]}" if row[2] else "")
               if row else "a session that just ended")
        if not wait_for_it:
            raise SyncError(f"another sync into this target is running ({who}); with --no-wait this one does not wait",
                            "wait for it to finish and rerun, or rerun without --no-wait to wait for it")
        if not told:
            say(f"waiting: another sync into this target is running ({who}); this one starts when it ends")
            told = True
        time.sleep(0.5)


_WAITS_SQL = """
SELECT a.pid, coalesce(l.relation::regclass::text, l.locktype), b.pid, b.application_name, b.state
FROM pg_stat_activity a
JOIN pg_locks l ON l.pid = a.pid AND NOT l.granted
CROSS JOIN LATERAL unnest(pg_blocking_pids(a.pid)) AS bp(pid)
LEFT JOIN pg_stat_activity b ON b.pid = bp.pid
WHERE a.datname = current_database() AND a.application_name LIKE %(app)s AND a.pid <> pg_backend_pid()
  AND coalesce(b.application_name, '') NOT LIKE %(app)s
"""


class LockWatch:
    """While the run goes on, says once per wait when one of our target sessions has waited `after`
    seconds for a lock held by a session not ours: which table, and who holds it."""

    def __init__(self, conninfo: str, say, after: float = 3.0, every: float = 1.0):
        self._conninfo, self._say, self._after, self._every = conninfo, say, after, every
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="lock-watch", daemon=True)

    def __enter__(self) -> "LockWatch":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(5)

    def _watch(self) -> None:
        try:
            conn = pg.target(self._conninfo, "watch")
        except psycopg.Error:
            return
        first: dict[tuple, float] = {}
        told: set[tuple] = set()
        with conn:
            while not self._stop.wait(self._every):
                try:
                    rows = conn.execute(_WAITS_SQL, {"app": pg.APP_NAME + "%"}).fetchall()
                except psycopg.Error:
                    return
                now = time.monotonic()
                for pid, rel, blocker, app, state in rows:
                    key = (pid, rel, blocker)
                    first.setdefault(key, now)
                    if key not in told and now - first[key] >= self._after:
                        told.add(key)
                        self._say(f"waiting for a lock on {rel} on the target: held by pid {blocker}"
                                  f" ({app or 'unknown application'}{', ' + state if state else ''}); "
                                  "the sync goes on when it is released")
