"""What we do to the target besides COPY: emptying, deferring foreign keys, sequences, ANALYZE.

Foreign keys are dropped before the load so that each table can be emptied and loaded in its own
transaction, and recreated after. Their definitions are written to a table on the target in the
same transaction that drops them, so a crash at any moment leaves a record the next run replays.
"""

from __future__ import annotations

import time
from concurrent.futures import Future, ThreadPoolExecutor, wait

import msgspec
import psycopg

from .catalog import STATE_SCHEMA, quote_ident
from .plan import Plan

STATE_TABLE = f"{quote_ident(STATE_SCHEMA)}.pending_ddl"


class Restored(msgspec.Struct, frozen=True):
    table: str
    name: str
    valid: bool  # False: rows violate it; recreated NOT VALID so nothing is lost
    error: str | None = None
    rebuilt: bool = True  # False: it could not be created and stays recorded for the next run


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
        conn.execute(f"""CREATE TABLE IF NOT EXISTS {STATE_TABLE} (
            id bigserial PRIMARY KEY, table_name text NOT NULL, name text NOT NULL, phase int NOT NULL,
            create_sql text NOT NULL, dropped_at timestamptz NOT NULL DEFAULT now())""")


def pending(conn: psycopg.Connection) -> list[tuple[int, str, str, int, str]]:
    """Constraints and indexes dropped by this or an earlier (interrupted) run and not yet rebuilt."""
    if conn.execute("SELECT to_regclass(%s)", (STATE_TABLE,)).fetchone()[0] is None:
        return []
    return conn.execute(f"SELECT id, table_name, name, phase, create_sql FROM {STATE_TABLE} ORDER BY phase, id").fetchall()


def defer(conn: psycopg.Connection, plan: Plan) -> None:
    """Records, then drops, the plan's deferred constraints and indexes, in one transaction."""
    if not plan.deferred:
        return
    ensure_state(conn)
    with conn.transaction():
        for d in plan.deferred:
            conn.execute(f"INSERT INTO {STATE_TABLE} (table_name, name, phase, create_sql) VALUES (%s, %s, %s, %s)",
                         (d.table, d.name, d.phase, d.create_sql))
        for d in sorted(plan.deferred, key=lambda d: -d.phase):
            conn.execute(d.drop_sql)


def empty(conn: psycopg.Connection, relations: tuple[str, ...], mode: str) -> None:
    """Empties, up front, the tables no single unit empties: those --cascade names, and those
    loaded in several slices. Never CASCADE. ON TRUNCATE user triggers do not fire in replica mode."""
    if relations:
        with conn.transaction():
            if mode == "replica":
                conn.execute("SET LOCAL session_replication_role = replica")
            conn.execute(f"TRUNCATE ONLY {', '.join(relations)}")


def _rebuild(conninfo: str, item: tuple[int, str, str, int, str]) -> Restored:
    """Rebuilds one pending item on its own connection. A foreign key that the data violates is
    recreated NOT VALID and reported, so the target keeps its definition and nothing is lost. What
    cannot be created (a UNIQUE index over duplicated values, say) stays recorded and is reported
    by name, without the offending values, which may be production data."""
    try:
        with psycopg.connect(conninfo, autocommit=True) as conn:
            conn.execute("SET maintenance_work_mem = '256MB'")
            conn.execute("SET statement_timeout = 0")
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
        why = (exc.diag.message_primary or str(exc).strip().splitlines()[0]).strip()
        return Restored(item[1], item[2], False, why, rebuilt=False)


def _rebuild_once(conn: psycopg.Connection, item: tuple[int, str, str, int, str]) -> Restored:
    id_, table, name, _, create_sql = item
    forget = f"DELETE FROM {STATE_TABLE} WHERE id = %s"
    try:
        with conn.transaction():
            conn.execute(create_sql)
            conn.execute(forget, (id_,))
        return Restored(table, name, True)
    except psycopg.errors.DuplicateObject:
        with conn.transaction():
            conn.execute(forget, (id_,))
        return Restored(table, name, True)
    except psycopg.errors.ForeignKeyViolation as exc:
        with conn.transaction():
            conn.execute(create_sql + " NOT VALID")
            conn.execute(forget, (id_,))
        return Restored(table, name, False, (exc.diag.message_detail or str(exc)).strip())


def restore_deferred(conn: psycopg.Connection, conninfo: str, parallel: int = 1,
                     skip: frozenset[int] = frozenset()) -> list[Restored]:
    """Rebuilds every pending index and constraint but those of `skip` (ids tried already in this
    run): indexes first, then foreign keys, each phase on `parallel` connections at once. What fails
    stays recorded for the next run to retry."""
    items = [i for i in pending(conn) if i[0] not in skip]
    out: list[Restored] = []
    for phase in sorted({i[3] for i in items}):
        batch = [i for i in items if i[3] == phase]
        with ThreadPoolExecutor(max(1, min(parallel, len(batch)))) as pool:
            out += list(pool.map(lambda i: _rebuild(conninfo, i), batch))
    return out


class Finisher:
    """Rebuilds a table's deferred indexes, then ANALYZEs it, as soon as its load is committed, on
    up to `parallel` connections of its own, so that this work overlaps the load of the other tables
    instead of following it. Foreign keys wait for restore_deferred, after the whole load."""

    def __init__(self, conn: psycopg.Connection, conninfo: str, parallel: int):
        self._conninfo = conninfo
        self._indexes: dict[str, list] = {}
        for item in pending(conn):
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
        with psycopg.connect(self._conninfo, autocommit=True) as conn:
            conn.execute("SET statement_timeout = 0")
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


def sync_sequences(src: psycopg.Connection, dst: psycopg.Connection, plan: Plan) -> None:
    """Gives each target sequence owned by a synced column the source's current value."""
    with dst.transaction():
        for seq in plan.sequences:
            last, called = src.execute(f"SELECT last_value, is_called FROM {seq.source}").fetchone()
            dst.execute("SELECT setval(%s::regclass, %s, %s)", (seq.target, last, called))


def analyze(conn: psycopg.Connection, relations: list[str]) -> None:
    for rel in relations:
        conn.execute(f"ANALYZE {rel}")
