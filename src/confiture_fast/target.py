"""What we do to the target besides COPY: emptying, deferring foreign keys, sequences, ANALYZE.

Foreign keys are dropped before the load so that each table can be emptied and loaded in its own
transaction, and recreated after. Their definitions are written to a table on the target in the
same transaction that drops them, so a crash at any moment leaves a record the next run replays.
"""

from __future__ import annotations

import msgspec
import psycopg

from .catalog import STATE_SCHEMA, quote_ident
from .plan import Plan

_STATE = f"{quote_ident(STATE_SCHEMA)}.pending_ddl"


class Restored(msgspec.Struct, frozen=True):
    table: str
    name: str
    valid: bool  # False: rows violate it; recreated NOT VALID so nothing is lost
    error: str | None = None


def trigger_mode(conn: psycopg.Connection) -> str:
    """'replica' when our role may set session_replication_role (FK and user triggers do not fire);
    otherwise 'disable-user-triggers': ALTER TABLE ... DISABLE TRIGGER USER inside the load's own
    transaction, so no other session ever sees the triggers disabled."""
    row = conn.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user").fetchone()
    if row and row[0]:
        return "replica"
    if conn.info.server_version >= 150000:
        ok = conn.execute("SELECT has_parameter_privilege('session_replication_role', 'SET')").fetchone()[0]
        if ok:
            return "replica"
    return "disable-user-triggers"


def ensure_state(conn: psycopg.Connection) -> None:
    with conn.transaction():
        conn.execute(f"CREATE SCHEMA IF NOT EXISTS {quote_ident(STATE_SCHEMA)}")
        conn.execute(f"""CREATE TABLE IF NOT EXISTS {_STATE} (
            id bigserial PRIMARY KEY, table_name text NOT NULL, relation text NOT NULL,
            name text NOT NULL, create_sql text NOT NULL, dropped_at timestamptz NOT NULL DEFAULT now())""")


def pending(conn: psycopg.Connection) -> list[tuple[int, str, str, str, str]]:
    """Constraints dropped by this or an earlier (interrupted) run and not yet recreated."""
    exists = conn.execute("SELECT to_regclass(%s)", (_STATE,)).fetchone()[0]
    if exists is None:
        return []
    return conn.execute(f"SELECT id, table_name, relation, name, create_sql FROM {_STATE} ORDER BY id").fetchall()


def defer_foreign_keys(conn: psycopg.Connection, plan: Plan, relations: dict[str, str]) -> None:
    """Records then drops the plan's deferred foreign keys, in one transaction."""
    if not plan.deferred_fks:
        return
    ensure_state(conn)
    with conn.transaction():
        for fk in plan.deferred_fks:
            rel = relations[fk.table]
            conn.execute(f"INSERT INTO {_STATE} (table_name, relation, name, create_sql) VALUES (%s, %s, %s, %s)",
                         (fk.table, rel, fk.name,
                          f"ALTER TABLE {rel} ADD CONSTRAINT {quote_ident(fk.name)} {fk.definition}"))
            conn.execute(f"ALTER TABLE {rel} DROP CONSTRAINT {quote_ident(fk.name)}")


def empty(conn: psycopg.Connection, relations: tuple[str, ...]) -> None:
    """Empties tables that are not loaded but must be emptied (--cascade). Never CASCADE."""
    if relations:
        with conn.transaction():
            conn.execute(f"TRUNCATE ONLY {', '.join(relations)}")


def restore_deferred(conn: psycopg.Connection) -> list[Restored]:
    """Recreates every pending constraint. One that the data violates is recreated NOT VALID and
    reported, so the target keeps its definition and the user sees which rows to look at."""
    out = []
    for id_, table, relation, name, create_sql in pending(conn):
        try:
            with conn.transaction():
                conn.execute(create_sql)
                conn.execute(f"DELETE FROM {_STATE} WHERE id = %s", (id_,))
            out.append(Restored(table, name, True))
        except psycopg.errors.DuplicateObject:
            with conn.transaction():
                conn.execute(f"DELETE FROM {_STATE} WHERE id = %s", (id_,))
            out.append(Restored(table, name, True))
        except psycopg.errors.ForeignKeyViolation as exc:
            with conn.transaction():
                conn.execute(create_sql + " NOT VALID")
                conn.execute(f"DELETE FROM {_STATE} WHERE id = %s", (id_,))
            detail = (exc.diag.message_detail or str(exc)).strip()
            out.append(Restored(table, name, False, detail))
    return out


def sync_sequences(src: psycopg.Connection, dst: psycopg.Connection, plan: Plan) -> None:
    """Gives each target sequence owned by a synced column the source's current value."""
    with dst.transaction():
        for seq in plan.sequences:
            last, called = src.execute(f"SELECT last_value, is_called FROM {seq.source}").fetchone()
            dst.execute("SELECT setval(%s::regclass, %s, %s)", (seq.target, last, called))


def analyze(conn: psycopg.Connection, relations: list[str]) -> None:
    for rel in relations:
        conn.execute(f"ANALYZE {rel}")
