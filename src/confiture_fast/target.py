"""What we do to the target besides COPY: emptying, deferring foreign keys, sequences, ANALYZE.

Foreign keys are dropped before the load so that each table can be emptied and loaded in its own
transaction, and recreated after. Their definitions are written to a table on the target in the
same transaction that drops them, so a crash at any moment leaves a record the next run replays.

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
from concurrent.futures import Future, ThreadPoolExecutor, wait
from pathlib import Path

import msgspec
import psycopg

from .catalog import STATE_SCHEMA, qualify, quote_ident
from .errors import ConfigError, SyncError, ValidationError
from .plan import Plan
from .worker import APP_NAME, prepare_session, user_triggers_off

STATE_TABLE = f"{quote_ident(STATE_SCHEMA)}.pending_ddl"
_SIGNED = ("table_name", "name", "phase", "create_sql")  # the record's fields a MAC covers, in this order,
# and fallback_sql after them when it is set
_FORGET_HINT = f"DELETE FROM {STATE_TABLE} WHERE id = {{id}}"


class Restored(msgspec.Struct, frozen=True):
    table: str
    name: str
    valid: bool  # False: rows violate it; recreated NOT VALID so nothing is lost
    error: str | None = None
    rebuilt: bool = True  # False: it could not be created and stays recorded for the next run


Item = tuple[int, str, str, int, str, str | None]  # a verified record: id, table, name, phase, create_sql, fallback_sql


def _fields(table: str, name: str, phase: int, create_sql: str, fallback_sql: str | None) -> tuple:
    """What a record's MAC covers: every statement it may execute."""
    return (table, name, phase, create_sql) + ((fallback_sql,) if fallback_sql is not None else ())


def trigger_mode(conn: psycopg.Connection) -> str:
    """'replica' when our role may set session_replication_role (ORIGIN user triggers and FK
    checks do not fire); otherwise 'disable-user-triggers'. In both modes the user triggers that
    would still fire (ENABLE ALWAYS, and ENABLE REPLICA in replica mode; every enabled one otherwise)
    are disabled inside the load's own transaction and restored to their exact mode before it
    commits (worker.user_triggers_off), so no other session ever sees them disabled."""
    row = conn.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user").fetchone()
    if row and row[0]:
        return "replica"
    if conn.info.server_version >= 150000:
        ok = conn.execute("SELECT has_parameter_privilege('session_replication_role', 'SET')").fetchone()[0]
        if ok:
            return "replica"
    return "disable-user-triggers"


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
    def _message(fields) -> bytes:
        return msgspec.json.encode(["confiture-fast pending_ddl v1", *fields])

    def sign(self, fields) -> tuple[bytes, bytes | None]:
        msg = self._message(fields)
        local = hmac.new(self._load(create=True), msg, hashlib.sha256).digest()
        return local, hmac.new(self._secret, msg, hashlib.sha256).digest() if self._secret else None

    def verify(self, fields, mac: bytes | None, mac_secret: bytes | None) -> bool:
        msg = self._message(fields)
        local = self._load(create=False)
        ok_local = local is not None and mac is not None and hmac.compare_digest(
            hmac.new(local, msg, hashlib.sha256).digest(), bytes(mac))
        ok_secret = self._secret is not None and mac_secret is not None and hmac.compare_digest(
            hmac.new(self._secret, msg, hashlib.sha256).digest(), bytes(mac_secret))
        return ok_local or ok_secret


# -- the state schema: ours, and nothing else in it -----------------------------------------------
_MINE = """WITH RECURSIVE mine(oid) AS (
    SELECT oid FROM pg_roles WHERE rolname = current_user
    UNION SELECT m.roleid FROM pg_auth_members m JOIN mine ON m.member = mine.oid)
"""
# Explicit membership, not pg_has_role(): that is true of every role for a superuser, which is
# exactly the role an attacker with CREATE on the database hopes runs the sync.
_STATE_SQL = _MINE + """
SELECT n.oid, n.nspowner::regrole::text, n.nspowner IN (SELECT oid FROM mine),
       c.oid, c.relkind, c.relowner::regrole::text, c.relowner IN (SELECT oid FROM mine), current_user
FROM pg_namespace n LEFT JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = 'pending_ddl'
WHERE n.nspname = %(schema)s
"""
_T = "_confiture_fast.pending_ddl"
_FOREIGN_SQL = """
SELECT pg_describe_object(d.classid, d.objid, d.objsubid) FROM pg_depend d
WHERE d.refclassid = 'pg_namespace'::regclass AND d.refobjid = %(ns)s
  AND NOT (d.classid = 'pg_class'::regclass AND (d.objid = %(table)s OR d.objid IN (
      SELECT s.objid FROM pg_depend s JOIN pg_class sc ON sc.oid = s.objid AND sc.relkind = 'S'
      WHERE s.classid = 'pg_class'::regclass AND s.refclassid = 'pg_class'::regclass
        AND s.refobjid = %(table)s AND s.deptype = 'a')))
UNION ALL SELECT 'sequence ' || c.oid::regclass::text || ' owned by ' || c.relowner::regrole::text
FROM pg_class c WHERE c.relnamespace = %(ns)s AND c.relkind = 'S' AND c.relowner NOT IN (SELECT oid FROM mine)
UNION ALL SELECT 'trigger ' || quote_ident(tgname) || ' on """ + _T + """' FROM pg_trigger WHERE tgrelid = %(table)s
UNION ALL SELECT 'rule ' || quote_ident(rulename) || ' on """ + _T + """' FROM pg_rewrite WHERE ev_class = %(table)s
UNION ALL SELECT 'policy ' || quote_ident(polname) || ' on """ + _T + """' FROM pg_policy WHERE polrelid = %(table)s
UNION ALL SELECT 'index ' || i.indexrelid::regclass::text || ' on """ + _T + """' FROM pg_index i
WHERE i.indrelid = %(table)s AND NOT (i.indisprimary AND i.indexprs IS NULL AND i.indpred IS NULL)
UNION ALL SELECT 'constraint ' || quote_ident(conname) || ' on """ + _T + """' FROM pg_constraint
WHERE conrelid = %(table)s AND contype NOT IN ('p', 'n')
UNION ALL SELECT 'a default on """ + _T + """.' || quote_ident(a.attname) FROM pg_attrdef d
JOIN pg_attribute a ON a.attrelid = d.adrelid AND a.attnum = d.adnum
WHERE d.adrelid = %(table)s
  AND NOT (a.attname = 'id' AND pg_get_expr(d.adbin, d.adrelid) ~ '^nextval\\(''[^'']+''::regclass\\)$')
  AND NOT (a.attname = 'dropped_at' AND pg_get_expr(d.adbin, d.adrelid) = 'now()')
UNION ALL SELECT 'the type ' || format_type(atttypid, atttypmod) || ' of """ + _T + """.' || quote_ident(attname)
FROM pg_attribute WHERE attrelid = %(table)s AND attnum > 0 AND NOT attisdropped AND atttypid >= 16384
"""


class StateInfo(msgspec.Struct, frozen=True):
    schema: bool  # the state schema exists (and is ours)
    table: bool  # its pending_ddl table exists (and is ours, with nothing planted on it)
    signed: bool  # the table has the MAC columns (an older version wrote none)
    has_fallback: bool = False  # the table has the fallback_sql column (an older version had none)


def check_state(conn: psycopg.Connection) -> StateInfo:
    """Refuses a state schema or table that another role owns or has added anything to: its records
    could then say anything, and would run with our privileges. Reads only pg_catalog, never the table."""
    row = conn.execute(_STATE_SQL, {"schema": STATE_SCHEMA}).fetchone()
    if row is None:
        return StateInfo(False, False, False)
    ns, ns_owner, ns_mine, table, kind, owner, mine, me = row
    s = quote_ident(STATE_SCHEMA)
    drop = f"if you did not create it, inspect it and drop it: DROP SCHEMA {s} CASCADE"
    if not ns_mine:
        raise ConfigError(f"the target's state schema {STATE_SCHEMA} is owned by {ns_owner}, not by {me} (or a role "
                          f"it belongs to): what it holds could run with {me}'s privileges, so it is not used",
                          f"if {ns_owner} is trusted: ALTER SCHEMA {s} OWNER TO {quote_ident(me)} (and its table, "
                          f"ALTER TABLE {STATE_TABLE} OWNER TO {quote_ident(me)}); otherwise {drop}")
    if table is not None and kind != "r":
        raise ConfigError(f"{STATE_SCHEMA}.pending_ddl on the target is not confiture-fast's table (relkind {kind!r})",
                          f"inspect it and drop it ({drop})")
    if table is not None and not mine:
        raise ConfigError(f"{STATE_SCHEMA}.pending_ddl on the target is owned by {owner}, not by {me} (or a role it "
                          "belongs to): its records could say anything, so it is not used",
                          f"if {owner} is trusted: ALTER TABLE {STATE_TABLE} OWNER TO {quote_ident(me)}; otherwise {drop}")
    planted = [r[0] for r in conn.execute(_MINE + _FOREIGN_SQL, {"ns": ns, "table": table or 0})]
    if planted:
        raise ConfigError(f"the target's state schema {STATE_SCHEMA} holds {planted[0]}, which confiture-fast did "
                          "not create: it could run with our privileges, so the state is not used"
                          + (f" (and {len(planted) - 1} more)" if len(planted) > 1 else ""),
                          f"inspect and remove it ({drop})")
    columns = set(conn.execute(
        "SELECT attname FROM pg_attribute WHERE attrelid = %s AND attname IN ('mac', 'mac_secret', 'fallback_sql') "
        "AND NOT attisdropped", (table or 0,)).fetchall())
    return StateInfo(True, table is not None, {("mac",), ("mac_secret",)} <= columns, ("fallback_sql",) in columns)


def ensure_state(conn: psycopg.Connection) -> None:
    """Creates the state schema and table where missing (their owner is then our role), adds the MAC
    columns to an older, empty table, and checks the result in the same transaction."""
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
        check_state(conn)


def _records(conn: psycopg.Connection, keys: StateKeys) -> tuple[list[Item], list[tuple]]:
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


def _unverified(bad: list[tuple]) -> str:
    return (f"it was not written by confiture-fast with this machine's key ({key_file()}) or this anonymization "
            f"secret, or it was altered: it is never executed (it may be another machine's: rerun there, or with "
            f"the secret it used; otherwise check its create_sql, run it yourself if it is right, then "
            f"{_FORGET_HINT.format(id=bad[0])})")


def pending(conn: psycopg.Connection, keys: StateKeys) -> list[Item]:
    """Constraints and indexes dropped by this or an earlier (interrupted) run and not yet rebuilt,
    whose records verify."""
    return _records(conn, keys)[0]


def refused(conn: psycopg.Connection, keys: StateKeys) -> list[Restored]:
    """The records that do not verify, as failures to report (they stay where they are)."""
    return [Restored(table, name, False, f"record {id_} in {STATE_TABLE}: " + _unverified([id_]), rebuilt=False)
            for id_, table, name in _records(conn, keys)[1]]


def preflight(conn: psycopg.Connection, plan: Plan, keys: StateKeys, warn) -> Plan:
    """Everything about the target's state and triggers that would stop the run, checked before
    anything is written: the state schema is ours and every record in it verifies; the state can be
    created where the plan needs it (else, when only indexes were to be dropped, they stay in place
    and the load maintains them: `warn` says so); no user trigger would fire that our role may not
    disable. Returns the plan to run."""
    info = check_state(conn)
    _, bad = _records(conn, keys) if info.table else ([], [])
    if bad:
        raise ValidationError(
            f"{len(bad)} record(s) in {STATE_TABLE} on the target cannot be verified as written by confiture-fast:",
            [f"record {id_}: {table}: {name}" for id_, table, name in bad], _unverified([bad[0][0]]))
    if plan.deferred and not info.schema:
        if not conn.execute("SELECT has_database_privilege(current_database(), 'CREATE')").fetchone()[0]:
            me = conn.execute("SELECT current_user").fetchone()[0]
            fks = [d for d in plan.deferred if d.phase == 2]
            grant = (f"GRANT CREATE ON DATABASE {quote_ident(conn.info.dbname)} TO {quote_ident(me)}, or have an "
                     f"administrator create it: CREATE SCHEMA {quote_ident(STATE_SCHEMA)} AUTHORIZATION {quote_ident(me)}")
            if fks:
                raise ConfigError(f"{fks[0].table}: its foreign key {fks[0].name} must be dropped during the load, which "
                                  f"needs the state schema {STATE_SCHEMA} on the target to record it, and {me} may not "
                                  "create schemas in the target database", grant)
            warn(f"the target user {me} may not create the state schema {STATE_SCHEMA}, so indexes stay in place "
                 f"during the load (slower); to drop and rebuild them: {grant}")
            plan = msgspec.structs.replace(plan, deferred=())
    if plan.deferred:
        keys.ready()
    replica = trigger_mode(conn) == "replica"
    relations = [*plan.cascade_relations, *{u.relation for t in plan.tables if t.name not in plan.completed
                                            for u in t.units}]
    stuck = conn.execute(
        "SELECT c.oid::regclass::text, t.tgname, t.tgenabled FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid "
        "WHERE t.tgrelid IN (SELECT r FROM unnest(%s::text[]::regclass[]) r UNION "  # and their partitions
        "SELECT p.relid FROM unnest(%s::text[]::regclass[]) r, pg_catalog.pg_partition_tree(r) p) "
        "AND NOT t.tgisinternal AND t.tgenabled = ANY(%s) "
        "AND NOT pg_has_role(c.relowner, 'USAGE') ORDER BY 1, 2",
        (relations, relations, ["A", "R" if replica else "O"])).fetchall()
    if stuck:
        rel, name, mode = stuck[0]
        me = conn.execute("SELECT current_user").fetchone()[0]
        raise ConfigError(f"{rel}: its trigger {name} ({_MODES[mode]}) would fire during the load, and only the "
                          f"table's owner may disable it" + (f" ({len(stuck) - 1} more such)" if len(stuck) > 1 else ""),
                          f"make {me} own it (ALTER TABLE {rel} OWNER TO {quote_ident(me)}), disable the trigger "
                          f"(ALTER TABLE {rel} DISABLE TRIGGER {quote_ident(name)}), or --exclude the table")
    # Rows loaded through a partitioned table reach its partitions as the role the load runs as: the
    # parent's owner for a superuser (worker.as_table_owner). A partition another role owns would run
    # that role's CHECKs and defaults with those rights.
    units = [u.relation for t in plan.tables for u in t.units if t.name not in plan.completed]
    routed = conn.execute(
        "SELECT p.relid::regclass::text, o.rolname, r::text FROM unnest(%s::text[]::regclass[]) r, "
        "pg_catalog.pg_partition_tree(r) p JOIN pg_catalog.pg_class c ON c.oid = p.relid "
        "JOIN pg_catalog.pg_roles o ON o.oid = c.relowner WHERE p.level > 0 AND c.relowner <> "
        "(SELECT relowner FROM pg_catalog.pg_class WHERE oid = r) AND (SELECT rolsuper FROM pg_catalog.pg_roles "
        "WHERE rolname = current_user) ORDER BY 3, 1", (units,)).fetchall()
    if routed:
        leaf, owner, parent = routed[0]
        raise ConfigError(f"{leaf}: this partition of {parent} is owned by {owner}, not by the owner of {parent}, "
                          f"through which it is loaded: its CHECKs and defaults would run with the rights of "
                          f"{parent}'s owner" + (f" ({len(routed) - 1} more such)" if len(routed) > 1 else ""),
                          f"make one role own {parent} and its partitions (ALTER TABLE {leaf} OWNER TO ...), "
                          f"or --exclude the table")
    # ... and a table is loaded as its owner, who must be able to reach it through its schema.
    unreachable = conn.execute(
        "SELECT c.oid::regclass::text, o.rolname, n.nspname FROM unnest(%s::text[]::regclass[]) r "
        "JOIN pg_catalog.pg_class c ON c.oid = r JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
        "JOIN pg_catalog.pg_roles o ON o.oid = c.relowner WHERE NOT o.rolsuper AND o.rolname <> current_user "
        "AND (SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user) "
        "AND NOT pg_catalog.has_schema_privilege(c.relowner, n.oid, 'USAGE') ORDER BY 1", (units,)).fetchall()
    if unreachable:
        rel, owner, schema = unreachable[0]
        raise ConfigError(f"{rel}: it is loaded as its owner {owner} (so that its CHECKs and defaults never run with "
                          f"superuser rights), who has no USAGE on its schema {schema}"
                          + (f" ({len(unreachable) - 1} more such)" if len(unreachable) > 1 else ""),
                          f"GRANT USAGE ON SCHEMA {quote_ident(schema)} TO {quote_ident(owner)}, or --exclude the table")
    return plan


_MODES = {"O": "ENABLE", "A": "ENABLE ALWAYS", "R": "ENABLE REPLICA", "D": "DISABLE"}


def defer(conn: psycopg.Connection, plan: Plan, keys: StateKeys) -> None:
    """Records (signed), then drops, the plan's deferred constraints and indexes, in one transaction."""
    if not plan.deferred:
        return
    ensure_state(conn)
    with conn.transaction():
        for d in plan.deferred:
            mac, mac_secret = keys.sign(_fields(d.table, d.name, d.phase, d.create_sql, d.fallback_sql))
            conn.execute(f"INSERT INTO {STATE_TABLE} ({', '.join(_SIGNED)}, fallback_sql, mac, mac_secret) "
                         "VALUES (%s, %s, %s, %s, %s, %s, %s)",
                         (d.table, d.name, d.phase, d.create_sql, d.fallback_sql, mac, mac_secret))
        for d in sorted(plan.deferred, key=lambda d: -d.phase):
            conn.execute(d.drop_sql)


def empty(conn: psycopg.Connection, relations: tuple[str, ...], mode: str) -> None:
    """Empties, up front, the tables no single unit empties: those --cascade names, and those
    loaded in several slices. Never CASCADE. No ON TRUNCATE user trigger fires (user_triggers_off)."""
    if relations:
        with conn.transaction():
            if mode == "replica":
                conn.execute("SET LOCAL session_replication_role = replica")
            restore = [s for rel in relations for s in user_triggers_off(conn, rel, mode == "replica")]
            partitioned = {r for r, in conn.execute(
                "SELECT r::text FROM unnest(%s::text[]) r WHERE (SELECT relkind FROM pg_catalog.pg_class "
                "WHERE oid = r::regclass) = 'p'", (list(relations),))}
            if plain := [r for r in relations if r not in partitioned]:
                conn.execute(f"TRUNCATE ONLY {', '.join(plain)}")
            if partitioned:  # its rows are its partitions' (never inheritance children of their own)
                conn.execute(f"TRUNCATE {', '.join(sorted(partitioned))}")
            for s in restore:
                conn.execute(s)


def connect(conninfo: str, purpose: str) -> psycopg.Connection:
    """A target session of ours: named (application_name), and with our session settings (an empty
    search_path above all)."""
    conn = psycopg.connect(conninfo, autocommit=True, application_name=f"{APP_NAME} {purpose}")
    prepare_session(conn)
    return conn


def _rebuild(conninfo: str, item: Item) -> Restored:
    """Rebuilds one pending item on its own connection. A foreign key that the data violates is
    recreated NOT VALID (its fallback) and reported, so the target keeps its definition and nothing
    is lost; the next run, re-reading it without NOT VALID, validates it again. What
    cannot be created (a UNIQUE index over duplicated values, say) stays recorded and is reported
    by name, without the offending values, which may be production data."""
    try:
        with connect(conninfo, "finish") as conn:
            conn.execute("SET maintenance_work_mem = '256MB'")
            for attempt in range(5):
                try:
                    return _rebuild_once(conn, item)
                except psycopg.errors.DeadlockDetected:
                    # two foreign keys between the same tables (a cycle), rebuilt at once: one waits its turn
                    if attempt == 4:
                        raise
                    time.sleep(0.1 * (attempt + 1))
            raise AssertionError("unreachable")
    except psycopg.Error as exc:
        return Restored(item[1], item[2], False, _why(exc), rebuilt=False)


def _why(exc: psycopg.Error) -> str:
    return (exc.diag.message_primary or str(exc).strip().splitlines()[0]).strip()


def _rebuild_once(conn: psycopg.Connection, item: Item) -> Restored:
    id_, table, name, _, create_sql, fallback_sql = item
    forget = f"DELETE FROM {STATE_TABLE} WHERE id = %s"
    try:
        with conn.transaction():
            conn.execute(create_sql)
            conn.execute(forget, (id_,))
        return Restored(table, name, True)
    except (psycopg.errors.DuplicateObject, psycopg.errors.DuplicateTable,
            psycopg.errors.InvalidTableDefinition) as exc:
        return _reconcile(conn, item, exc)
    except psycopg.errors.ForeignKeyViolation as exc:
        if fallback_sql is None:
            raise
        with conn.transaction():
            conn.execute(fallback_sql)
            conn.execute(forget, (id_,))
        return Restored(table, name, False, (exc.diag.message_detail or str(exc)).strip())


_EXISTING_SQL = """
SELECT n.nspname, c.relname, con.conname, pg_get_constraintdef(con.oid)
FROM pg_constraint con JOIN pg_class c ON c.oid = con.conrelid JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE con.conname = %(name)s
UNION ALL SELECT NULL, NULL, NULL, pg_get_indexdef(i.oid) FROM pg_class i WHERE i.relname = %(name)s AND i.relkind IN ('i', 'I')
"""


def _reconcile(conn: psycopg.Connection, item: Item, exc: psycopg.Error) -> Restored:
    """The recorded object, or one in its place, exists already (another run or a person created it).
    The record is forgotten when an object of its name has exactly the definition of one of its
    statements (or of its NOT VALID fallback's), spelled as the plan spells it (plan._deferred): the
    statements are compared, never run; otherwise it stays, reported with the way out."""
    id_, table, name, _, create_sql, fallback_sql = item
    existing = {definition if schema is None else
                f"ALTER TABLE {qualify(schema, rel)} ADD CONSTRAINT {quote_ident(con)} {definition}"
                for schema, rel, con, definition in conn.execute(_EXISTING_SQL, {"name": name})}
    if existing & {*create_sql.split(";\n"), *(fallback_sql or "").split(";\n")} - {""}:
        with conn.transaction():
            conn.execute(f"DELETE FROM {STATE_TABLE} WHERE id = %s", (id_,))
        return Restored(table, name, True)
    return Restored(table, name, False, f"{_why(exc)}: what exists differs from the recorded definition, which was "
                                        "not applied and stays recorded (drop what is in its way and rerun, or "
                                        f"forget the record: {_FORGET_HINT.format(id=id_)})", rebuilt=False)


def restore_deferred(conn: psycopg.Connection, conninfo: str, keys: StateKeys, parallel: int = 1,
                     skip: frozenset[int] = frozenset()) -> list[Restored]:
    """Rebuilds every pending index and constraint but those of `skip` (ids tried already in this
    run): indexes first, then foreign keys, each phase on `parallel` connections at once. What fails
    stays recorded for the next run to retry; a record that does not verify is reported, never run."""
    good, bad = _records(conn, keys)
    items = [i for i in good if i[0] not in skip]
    out: list[Restored] = refused(conn, keys) if bad else []
    for phase in sorted({i[3] for i in items}):
        batch = [i for i in items if i[3] == phase]
        with ThreadPoolExecutor(max(1, min(parallel, len(batch)))) as pool:
            out += list(pool.map(lambda i: _rebuild(conninfo, i), batch))
    return out


class Finisher:
    """Rebuilds a table's deferred indexes, then ANALYZEs it, as soon as its load is committed, on
    up to `parallel` connections of its own, so that this work overlaps the load of the other tables
    instead of following it. Foreign keys wait for restore_deferred, after the whole load."""

    def __init__(self, conn: psycopg.Connection, conninfo: str, parallel: int, keys: StateKeys):
        self._conninfo = conninfo
        self._indexes: dict[str, list] = {}
        for item in pending(conn, keys):
            if item[3] == 1:
                self._indexes.setdefault(item[1], []).append(item)
        self._pool = ThreadPoolExecutor(max(1, parallel), thread_name_prefix="finish")
        self._builds: list[Future] = []
        self._analyzed: dict[str, Future] = {}  # table -> its ANALYZE, which follows its builds
        self.tried: set[int] = set()  # pending_ddl ids handed to a build

    def table_loaded(self, table: str, relation: str) -> None:
        items = self._indexes.pop(table, [])
        self.tried |= {i[0] for i in items}
        builds = [self._pool.submit(_rebuild, self._conninfo, i) for i in items]
        self._builds += builds
        # FIFO: by the time a thread takes this task, its builds have all been taken, so waiting is safe
        self._analyzed[table] = self._pool.submit(self._analyze, relation, builds)

    def unfinished(self) -> list[str]:
        """The tables whose indexes or statistics are still being built."""
        return [t for t, f in self._analyzed.items() if not f.done()]

    def _analyze(self, relation: str, builds: list[Future]) -> str | None:
        wait(builds)
        if any(b.exception() is not None or not b.result().rebuilt for b in builds):
            return None
        with connect(self._conninfo, "finish") as conn:
            conn.execute(f"ANALYZE {relation}")
        return relation

    def close(self) -> tuple[list[Restored], set[str]]:
        """Waits for everything started: (what was rebuilt, the relations analyzed). Raises the first
        failure, once nothing is running any more."""
        self._pool.shutdown(wait=True)
        for f in [*self._builds, *self._analyzed.values()]:
            if f.exception() is not None:
                raise f.exception()
        return [b.result() for b in self._builds], {a.result() for a in self._analyzed.values()} - {None}


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
            conn = connect(self._conninfo, "watch")
        except psycopg.Error:
            return
        first: dict[tuple, float] = {}
        told: set[tuple] = set()
        with conn:
            while not self._stop.wait(self._every):
                try:
                    rows = conn.execute(_WAITS_SQL, {"app": APP_NAME + "%"}).fetchall()
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


def sync_sequences(src: psycopg.Connection, dst: psycopg.Connection, plan: Plan,
                   loaded: set[str]) -> list[str]:
    """Sets each target sequence that a column of a `loaded` table uses: to the source sequence's
    value (the greatest, for a target sequence several columns share), or past the loaded values where
    the source column has none. Each is set on its own; returns, by name and why, those that failed
    or whose tables were not loaded."""
    values: dict[str, tuple[int, bool]] = {}
    left: list[str] = []
    for seq in plan.sequences:
        if seq.table not in loaded:
            continue
        try:
            value = _sequence_value(src, dst, seq)
        except psycopg.Error as exc:
            left.append(f"{seq.target} ({seq.table}.{seq.column}): {_why(exc)}")
            continue
        if value is not None and (seq.target not in values or value > values[seq.target]):
            values[seq.target] = value
    for target, (last, called) in values.items():
        try:
            dst.execute("SELECT setval(%s::regclass, %s, %s)", (target, last, called))
        except psycopg.Error as exc:
            left.append(f"{target}: {_why(exc)}")
    reset = set(values) | {s.target for s in plan.sequences if s.table in loaded}
    left += sorted({f"{s.target} ({s.table} was not loaded)" for s in plan.sequences if s.target not in reset})
    return left


def _sequence_value(src: psycopg.Connection, dst: psycopg.Connection, seq) -> tuple[int, bool] | None:
    """(last_value, is_called) to give the target sequence, or None when there is nothing to follow."""
    if seq.source is None:
        top = dst.execute(seq.follow).fetchone()[0]
        return None if top is None else (top, True)
    with src.transaction():  # a savepoint in the snapshot's transaction: a failure here leaves it usable
        if seq.exact:
            last, called = src.execute(f"SELECT last_value, is_called FROM {seq.source}").fetchone()
            return last, called
        last = src.execute("SELECT pg_sequence_last_value(%s::regclass)", (seq.source,)).fetchone()[0]
        return (seq.start, False) if last is None else (last, True)


def analyze(conn: psycopg.Connection, relations: list[str]) -> None:
    for rel in relations:
        conn.execute(f"ANALYZE {rel}")
