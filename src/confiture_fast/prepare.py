"""Preparing the target before the load: the checks that would stop the run (preflight, read-only,
also for --dry-run), then deferring indexes and foreign keys into signed pending_ddl records and
emptying what no single unit empties.

Foreign keys are dropped before the load so that each table can be emptied and loaded in its own
transaction; their definitions are recorded in the transaction that drops them (target.py), and
finish.py rebuilds them.
"""

from __future__ import annotations

import msgspec
import psycopg

from . import pg
from .catalog import STATE_SCHEMA
from .errors import ConfigError, SyncError, ValidationError
from .pg import quote_ident
from .plan import Plan
from .target import STATE_TABLE, StateKeys, check_state, ensure_state, records, unverified, write_records
from .worker import user_triggers_off


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


def preflight(conn: psycopg.Connection, plan: Plan, keys: StateKeys, warn) -> Plan:
    """Everything about the target's state and triggers that would stop the run, checked before
    anything is written: the state schema is ours and every record in it verifies; the state can be
    created where the plan needs it (else, when only indexes were to be dropped, they stay in place
    and the load maintains them: `warn` says so); no user trigger would fire that our role may not
    disable. Returns the plan to run."""
    info = check_state(conn)
    _, bad = records(conn, keys) if info.table else ([], [])
    if bad:
        raise ValidationError(
            f"{len(bad)} record(s) in {STATE_TABLE} on the target cannot be verified as written by confiture-fast:",
            [f"record {id_}: {table}: {name}" for id_, table, name in bad], unverified([bad[0][0]]))
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
                          f"table's owner may disable it" + _more(stuck),
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
                          f"{parent}'s owner" + _more(routed),
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
                          + _more(unreachable),
                          f"GRANT USAGE ON SCHEMA {quote_ident(schema)} TO {quote_ident(owner)}, or --exclude the table")
    return plan


def _more(found: list) -> str:
    """A refusal names the first offender; the rest are counted, so that fixing one is not a surprise."""
    return f" ({len(found) - 1} more such)" if len(found) > 1 else ""


_MODES = {"O": "ENABLE", "A": "ENABLE ALWAYS", "R": "ENABLE REPLICA", "D": "DISABLE"}


def defer(conn: psycopg.Connection, plan: Plan, keys: StateKeys) -> None:
    """Records (signed), then drops, the plan's deferred constraints and indexes, in one transaction."""
    if not plan.deferred:
        return
    ensure_state(conn)
    with conn.transaction():
        write_records(conn, keys, plan.deferred)
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


def prepare(conn: psycopg.Connection, plan: Plan, keys: StateKeys, mode: str) -> None:
    """The prepare phase: defers the plan's indexes and constraints, then empties the tables that
    the cascade names and those loaded in several slices."""
    try:
        defer(conn, plan, keys)
        empty(conn, plan.cascade_relations + tuple(r for t in plan.tables if t.name not in plan.completed
                                                   for r in t.shared_relations), mode)
    except psycopg.Error as exc:
        raise SyncError(f"preparing the target failed: {pg.primary(exc)}",
                        "check that the target role owns the selected tables") from None
