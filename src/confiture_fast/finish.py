"""Finishing the target after the load, on one path whatever happened to the load (done, failed,
interrupted, or resumed): each table's deferred indexes and its ANALYZE as soon as it is loaded
(Finisher), then every deferred statement still recorded, foreign keys last (this run's and those an
earlier run left), the sequences of every loaded table, and the statistics.

What cannot be rebuilt stays recorded in pending_ddl (target.py) and the next run rebuilds it.
"""

from __future__ import annotations

import os
import time
from concurrent.futures import Future, ThreadPoolExecutor, wait

import msgspec
import psycopg

from . import pg
from .pg import qualify, quote_ident
from .plan import Plan
from .progress import notice_if_slow
from .target import FORGET_HINT, STATE_TABLE, Item, StateKeys, forget, pending, records, unverified


class Restored(msgspec.Struct, frozen=True):
    table: str
    name: str
    valid: bool  # False: rows violate it; recreated NOT VALID so nothing is lost
    error: str | None = None
    rebuilt: bool = True  # False: it could not be created and stays recorded for the next run


class Finished(msgspec.Struct, frozen=True):
    """What finishing did: every deferred statement it tried, the sequences it could not reset, and
    the run's error (the load's, else the first of finishing's)."""

    constraints: list[Restored]
    sequences_not_reset: list[str]
    error: str | None


def refused(conn: psycopg.Connection, keys: StateKeys) -> list[Restored]:
    """The records that do not verify, as failures to report (they stay where they are)."""
    return [Restored(table, name, False, f"record {id_} in {STATE_TABLE}: " + unverified([id_]), rebuilt=False)
            for id_, table, name in records(conn, keys)[1]]


_BUILD_MEMORY_KB = 256 << 10  # maintenance_work_mem of a rebuild session, unless the target's own is larger
_BUILD_SETTINGS = ("maintenance_work_mem", "max_parallel_maintenance_workers", "max_parallel_workers",
                   "max_worker_processes")


def build_settings(server: dict[str, str], builds: int, cores: int) -> tuple[str, ...]:
    """The SETs of a rebuild session, from the target's settings (pg_settings units: kB) when `builds`
    of them run at once on a machine of `cores`. Never below what the target has chosen: memory at
    least 256 MB (a sort that fits in memory does not spill), and at least its own
    max_parallel_maintenance_workers (measured on 2 busy cores, 1M users: the PK and UNIQUE(email)
    builds took 1.55 s with its default of 2, 2.20 s with none), raised where cores are free (a core
    left to each build beside its own) and the target's worker slots allow it (max_parallel_workers
    and max_worker_processes, shared between the builds). The cores are those of the machine that runs
    the sync: the target's on loopback, an estimate elsewhere, which the target's slots bound."""
    memory = int(server.get("maintenance_work_mem", 0))
    own = int(server.get("max_parallel_maintenance_workers", 0))
    slots = min(int(server.get("max_parallel_workers", 0)), int(server.get("max_worker_processes", 0)))
    workers = max(own, min(slots // max(1, builds), cores // max(1, builds) - 1))
    out = []
    if memory < _BUILD_MEMORY_KB:
        out.append(f"SET maintenance_work_mem = '{_BUILD_MEMORY_KB}kB'")
    if workers != own:
        out.append(f"SET max_parallel_maintenance_workers = {workers}")
    return tuple(out)


def read_build_settings(conn: psycopg.Connection, builds: int) -> tuple[str, ...]:
    server = dict(conn.execute("SELECT name, setting FROM pg_catalog.pg_settings WHERE name = ANY(%s)",
                               (list(_BUILD_SETTINGS),)).fetchall())
    return build_settings(server, builds, os.cpu_count() or 1)


def _rebuild(conninfo: str, item: Item, settings: tuple[str, ...] = ()) -> Restored:
    """Rebuilds one pending item on its own connection. A foreign key that the data violates is
    recreated NOT VALID (its fallback) and reported, so the target keeps its definition and nothing
    is lost; the next run, re-reading it without NOT VALID, validates it again. What
    cannot be created (a UNIQUE index over duplicated values, say) stays recorded and is reported
    by name, without the offending values, which may be production data."""
    try:
        with pg.target(conninfo, "finish") as conn:
            for statement in settings:
                try:
                    conn.execute(statement)
                except psycopg.Error:
                    pass  # not allowed to this role (or by a pooler): the build runs with the target's own value
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
        return Restored(item[1], item[2], False, pg.primary(exc), rebuilt=False)


def _rebuild_once(conn: psycopg.Connection, item: Item) -> Restored:
    id_, table, name, _, create_sql, fallback_sql = item
    try:
        with conn.transaction():
            conn.execute(create_sql)
            forget(conn, id_)
        return Restored(table, name, True)
    except (psycopg.errors.DuplicateObject, psycopg.errors.DuplicateTable,
            psycopg.errors.InvalidTableDefinition) as exc:
        return _reconcile(conn, item, exc)
    except psycopg.errors.ForeignKeyViolation as exc:
        if fallback_sql is None:
            raise
        with conn.transaction():
            conn.execute(fallback_sql)
            forget(conn, id_)
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
            forget(conn, id_)
        return Restored(table, name, True)
    return Restored(table, name, False, f"{pg.primary(exc)}: what exists differs from the recorded definition, which was "
                                        "not applied and stays recorded (drop what is in its way and rerun, or "
                                        f"forget the record: {FORGET_HINT.format(id=id_)})", rebuilt=False)


def restore_deferred(conn: psycopg.Connection, conninfo: str, keys: StateKeys, parallel: int = 1,
                     skip: frozenset[int] = frozenset()) -> list[Restored]:
    """Rebuilds every pending index and constraint but those of `skip` (ids tried already in this
    run): indexes first, then foreign keys, each phase on `parallel` connections at once. What fails
    stays recorded for the next run to retry; a record that does not verify is reported, never run."""
    good, bad = records(conn, keys)
    items = [i for i in good if i[0] not in skip]
    out: list[Restored] = refused(conn, keys) if bad else []
    for phase in sorted({i[3] for i in items}):
        batch = [i for i in items if i[3] == phase]
        at_once = max(1, min(parallel, len(batch)))
        settings = read_build_settings(conn, at_once)
        with ThreadPoolExecutor(at_once) as pool:
            out += list(pool.map(lambda i: _rebuild(conninfo, i, settings), batch))
    return out


class Finisher:
    """Rebuilds a table's deferred indexes, then ANALYZEs it, as soon as its load is committed, on
    up to `parallel` connections of its own, so that this work overlaps the load of the other tables
    instead of following it. Foreign keys wait for restore_deferred, after the whole load."""

    def __init__(self, conn: psycopg.Connection, conninfo: str, parallel: int, keys: StateKeys, on_loaded=None):
        self._conninfo = conninfo
        self._on_loaded = on_loaded  # called with each loaded table's name (incremental.record: its state)
        self._indexes: dict[str, list] = {}
        for item in pending(conn, keys):
            if item[3] == 1:
                self._indexes.setdefault(item[1], []).append(item)
        builds = sum(len(items) for items in self._indexes.values())
        self._settings = read_build_settings(conn, min(max(1, parallel), builds)) if builds else ()
        self._pool = ThreadPoolExecutor(max(1, parallel), thread_name_prefix="finish")
        self._builds: list[Future] = []
        self._analyzed: dict[str, Future] = {}  # table -> its ANALYZE, which follows its builds
        self.tried: set[int] = set()  # pending_ddl ids handed to a build

    def table_loaded(self, table: str, relation: str) -> None:
        if self._on_loaded is not None:
            self._on_loaded(table)
        items = self._indexes.pop(table, [])
        self.tried |= {i[0] for i in items}
        builds = [self._pool.submit(_rebuild, self._conninfo, i, self._settings) for i in items]
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
        with pg.target(self._conninfo, "finish") as conn:
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
            left.append(f"{seq.target} ({seq.table}.{seq.column}): {pg.primary(exc)}")
            continue
        if value is not None and (seq.target not in values or value > values[seq.target]):
            values[seq.target] = value
    for target, (last, called) in values.items():
        try:
            dst.execute("SELECT setval(%s::regclass, %s, %s)", (target, last, called))
        except psycopg.Error as exc:
            left.append(f"{target}: {pg.primary(exc)}")
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


def finish(src: psycopg.Connection, dst: psycopg.Connection, conninfo: str, plan: Plan, finisher: Finisher,
           loaded: set[str], keys: StateKeys, parallel: int, error: str | None, console,
           quiet: bool = False) -> Finished:
    """The finish phase. `loaded`: the tables whose every unit is committed (this run's or an earlier
    one's); `error`: the load's. The sequences of every loaded table are reset even when another table
    failed; the statistics are refreshed only when everything went well."""
    constraints: list[Restored] = []
    analyzed: set[str] = set()
    try:
        building = ", ".join(finisher.unfinished())
        with notice_if_slow(console, f"finishing: indexes and statistics of {building}", quiet=quiet):
            constraints, analyzed = finisher.close()
        with notice_if_slow(console, "finishing: rebuilding the remaining deferred constraints", quiet=quiet):
            constraints += restore_deferred(dst, conninfo, keys, parallel, frozenset(finisher.tried))
    except psycopg.Error as exc:
        error = error or (f"finishing the target failed: {pg.primary(exc)} (what was not rebuilt is recorded on the "
                          "target and rebuilt by the next run)")
    not_reset = sync_sequences(src, dst, plan, loaded)
    if error is None:
        try:
            analyze(dst, [t.relation for t in plan.tables if t.name not in plan.completed
                          and t.relation not in analyzed])
        except psycopg.Error as exc:
            error = f"finishing the target failed: {pg.primary(exc)}"
    if not_reset:
        what = f"{len(not_reset)} sequence(s) not reset: {'; '.join(not_reset)}"
        error = f"{error}; {what}" if error else f"the rows are loaded, but {what}"
    broken = [c for c in constraints if not c.rebuilt]
    if broken and error is None:
        error = (f"the rows are loaded, but {len(broken)} deferred index(es)/constraint(s) could not be rebuilt: "
                 + "; ".join(f"{c.table}: {c.name} ({c.error})" for c in broken)
                 + f"; their definitions stay in {STATE_TABLE} and the next sync rebuilds them")
    return Finished(constraints, not_reset, error)
