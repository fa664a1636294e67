"""`sync --incremental`: a table brought to what a full sync would copy now, by copying only the rows
that changed on the source since the last sync into this target. It needs SELECT on the source only
(a primary or a hot standby): no extension, no replication slot, nothing written there.

Every row version carries the 32-bit id of the transaction that wrote it (`xmin`). Every sync records
on the target (our state schema, one signed record per table, target.StateKeys) the 64-bit xmin of the
snapshot it copied under (the horizon) and fingerprints of what decides a row's text there: the
databases and tables, the columns, the rules, the secret. The next --incremental run copies again the
rows whose xmin lies in [horizon, the new snapshot's xmax) modulo 2^32, deletes the keys the source
no longer has (per-range key counts and hashes compared between the two sides, keys fetched only
where a range differs), all in one target transaction per table with its indexes in place; it falls
back to a full reload of a table, and says why, whenever it cannot be sure. docs/how-it-works.md
("Incremental sync") argues why no changed row is missed.
"""

from __future__ import annotations

import hashlib
import time
from concurrent.futures import ThreadPoolExecutor

import msgspec
import psycopg

from . import _pump, pg
from .catalog import Catalog, Table
from .errors import UnitFailed
from .pg import quote_ident
from .plan import Plan, TablePlan
from .request import BATCH_BYTES
from .target import SYNC_STATE_TABLE, StateKeys, check_state, ensure_state

XID_SPACE = 1 << 32
MAX_DISTANCE = 1 << 31  # a 32-bit xid is unambiguous only within half of its space
LARGE_SHARE = 0.05  # a table with more of its rows changed is reloaded in full (measured: see how-it-works)
BUCKET_ROWS = 16  # rows per key range compared between the two sides: small, so that scattered deletes
MAX_BUCKETS = 1 << 20  # (1% of the rows) leave most ranges equal and their keys unfetched
SURVEY_WORK_MEM = "256MB"  # the per-range GROUP BY's hash table (about 100 bytes a range), in memory
_DOMAIN = "confiture-fast sync_state v1"  # what a state record's MAC is over, before its fields
_INTEGER = ("int2", "int4", "int8")


# -- the record ---------------------------------------------------------------------------------
class TableState(msgspec.Struct, frozen=True):
    """What a sync recorded about one table it left equal to the source at `horizon`."""

    source: str  # the source database (system identifier, or running instance, and name)
    source_table: int  # oids: a table dropped and created again is another table
    target_table: int
    columns: str  # fingerprints (never a value): the columns copied and the target's extra ones
    rules: str  # the rules applied, with the keys the secret derives for them
    secret: str  # the secret's fingerprint ('' without one)
    key: tuple[str, ...]  # the source's primary key columns ((): none)
    horizon: int  # pg_snapshot_xmin of the snapshot the rows were copied under (64 bits)


def _digest(*parts: object) -> str:
    return hashlib.blake2b(msgspec.json.encode(parts), digest_size=8).hexdigest()


def source_fingerprint(ident) -> str:
    """The source database as far as its transaction ids go: a standby shares its primary's (same
    system identifier); without the right to read that identifier, the running server instead."""
    return _digest(ident.database, ident.system or ident.instance)


def table_state(t: TablePlan, source: str, oids: tuple[int, int], secret_fp: str, key: tuple[str, ...],
                horizon: int) -> TableState:
    rules = [(r.column, r.strategy, msgspec.to_builtins(r.params), hashlib.blake2b(r.key, digest_size=8).hexdigest(),
              r.is_array, r.key_index) for r in t.rules]
    return TableState(source, oids[0], oids[1], _digest(t.columns, t.extra_target_columns, t.skipped_generated,
                                                        t.type_changes),
                      _digest(t.columns, rules), secret_fp, key, horizon)


# -- the pure decisions -------------------------------------------------------------------------
def xid_window(horizon: int, xmin: int, xmax: int) -> tuple[int, int] | str:
    """(lo, hi): the 32-bit xmins that rows written at or after the 64-bit `horizon` and before `xmax`
    carry, as [lo, hi) modulo 2^32; or why no such window tells them apart. `xmin` and `xmax` are the
    current snapshot's: with `xmin` below the horizon, a transaction that the last sync saw committed may
    still be running here (a hot standby that has not replayed as far), and its rows would be missed."""
    if xmin < horizon:
        return ("the source has not yet seen every transaction that the last sync saw committed (a hot standby "
                "behind the server the last sync read, another server, or one restored from a backup)")
    if xmax - horizon >= MAX_DISTANCE:
        return (f"{xmax - horizon:,} transactions ran on the source since the last sync, more than 2^31: "
                "32-bit transaction ids no longer tell the newer rows apart")
    return horizon % XID_SPACE, xmax % XID_SPACE


def window_predicate(lo: int, hi: int) -> str:
    """The SQL condition on a row's xmin for the window [lo, hi) modulo 2^32 (lo > hi: it wraps past 0)."""
    x = "xmin::text::bigint"
    if lo == hi:
        return "false"
    if lo < hi:
        return f"({x} >= {int(lo)} AND {x} < {int(hi)})"
    return f"({x} >= {int(lo)} OR {x} < {int(hi)})"


def full_reason(now: TableState, before: TableState | None, xmax: int, blockers: list[str]) -> str | None:
    """Why the table is reloaded in full rather than incrementally (None: it can go incremental).
    `now.horizon` is the current snapshot's xmin, `xmax` its xmax."""
    if blockers:
        return blockers[0]
    if before is None:
        return "no state recorded by an earlier sync into this target"
    for field, why in (("source", "the last sync came from another source database"),
                       ("source_table", "the source table was created again since the last sync"),
                       ("target_table", "the target table was created again since the last sync"),
                       ("columns", "the table's columns changed since the last sync"),
                       ("secret", "the anonymization secret changed since the last sync"),
                       ("rules", "its anonymization rules changed since the last sync"),
                       ("key", "its primary key changed since the last sync")):
        if getattr(now, field) != getattr(before, field):
            return why
    window = xid_window(before.horizon, now.horizon, xmax)
    return window if isinstance(window, str) else None


RULED = ("rules on the target table (CREATE RULE, written on the target) would run on the refresh's DELETE and "
         "INSERT; a full load's TRUNCATE and COPY fire none")


def blockers(t: TablePlan, dst: Table, key: tuple[str, ...], trigger_mode: str,
             referenced: bool, ruled: bool = False) -> list[str]:
    """What keeps a table from an incremental refresh whatever was recorded."""
    out = [RULED] if ruled else []
    if t.subset:
        out.append("a subset (--where, --sample, --subset-config): its closure is not re-evaluated incrementally, "
                   "the subset is reloaded")
    if not key:
        out.append("no primary key on the source: changed and deleted rows cannot be told apart")
    elif missing := [c for c in key if c not in t.columns]:
        out.append(f"its primary key column {missing[0]} is not copied")
    ruled = {r.column: r for r in t.rules if r.column in key}
    for r in ruled.values():
        if r.key_index >= 0 and t.columns[r.key_index] not in key:
            out.append(f"the pseudonym of its key column {r.column} depends on {t.columns[r.key_index]}, not in the key")
    if trigger_mode != "replica" and (dst.foreign_keys or referenced):
        out.append("its foreign keys would be checked row by row (the target role may not set "
                   "session_replication_role), so rows could not be replaced in any order")
    return out


def too_large(changed: int, total: int) -> str | None:
    """Why so many changed rows make a full reload the faster way (None: few enough)."""
    if total and changed > LARGE_SHARE * total:
        return (f"{changed:,} of its {total:,} rows changed (more than {LARGE_SHARE:.0%}: a full reload with its "
                "indexes rebuilt is faster)")
    return None


def bucket_width(lo: int | None, hi: int | None, rows: int) -> int:
    """The width of the integer key ranges compared between the sides: about BUCKET_ROWS rows each."""
    if lo is None or hi is None:
        return 1
    n = max(1, min(MAX_BUCKETS, rows // BUCKET_ROWS))
    return max(1, (hi - lo) // n + 1)


def differing(src: dict[int, tuple[int, int]], dst: dict[int, tuple[int, int]]) -> list[int]:
    """The key ranges whose (count, hash sum) differ between the source and the target."""
    return sorted(b for b in src.keys() | dst.keys() if src.get(b) != dst.get(b))


# -- the choice, made while planning (read only, also for --dry-run) ---------------------------------
class Survey(msgspec.Struct, frozen=True):
    """One table's comparison of both sides, under the snapshot: what the apply will do."""

    changed: int  # source rows in the xid window (inserted or updated since the last sync, or false positives)
    source_rows: int
    target_rows: int
    buckets: tuple[int, ...]  # key ranges whose keys differ (to fetch); () with no range: nothing to delete
    width: int = 0  # of the ranges of a single integer key (0: the whole table is one range)
    sweep_all: bool = False  # fetch every source key (the key is pseudonymized, or most ranges differ)


class Choice(msgspec.Struct, frozen=True):
    table: str
    mode: str  # incremental | full
    reason: str | None = None  # why full
    survey: Survey | None = None
    window: tuple[int, int] | None = None
    key: tuple[str, ...] = ()


class Increment(msgspec.Struct, frozen=True):
    """The run's choices and what recording its state needs."""

    horizon: int  # this run's snapshot xmin, recorded for every table it syncs
    xmax: int
    source: str
    secret: str
    choices: dict[str, Choice]
    states: dict[str, TableState]  # this run's, per selected table, to record once synced
    asked: bool  # --incremental

    @property
    def applied(self) -> list[str]:
        return [n for n, c in self.choices.items() if c.mode == "incremental"]


def snapshot_bounds(src: psycopg.Connection) -> tuple[int, int]:
    """(xmin, xmax) of the exported snapshot, 64 bits: `src` is the coordinator's snapshot session."""
    lo, hi = src.execute("SELECT pg_catalog.pg_snapshot_xmin(pg_catalog.pg_current_snapshot())::text::bigint, "
                         "pg_catalog.pg_snapshot_xmax(pg_catalog.pg_current_snapshot())::text::bigint").fetchone()
    return lo, hi


_KEY_SQL = """
SELECT r, array_agg(a.attname::text ORDER BY k.n)
FROM unnest(%s::text[]) r JOIN pg_catalog.pg_class c ON c.oid = r::regclass
JOIN pg_catalog.pg_index i ON i.indrelid = c.oid AND i.indisprimary
CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY k(attnum, n)
JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attnum = k.attnum
GROUP BY r
"""


def _oids(conn: psycopg.Connection, relations: list[str]) -> dict[str, int]:
    return dict(conn.execute("SELECT r, r::regclass::oid::bigint FROM unnest(%s::text[]) r", (relations,)).fetchall())


def _ruled(conn: psycopg.Connection, oids: list[int]) -> set[int]:
    """The tables among `oids` that have rules (pg_rewrite: names only, no rule text is read)."""
    return {r for (r,) in conn.execute("SELECT DISTINCT ev_class::oid::bigint FROM pg_catalog.pg_rewrite "
                                       "WHERE ev_class = ANY(%s::oid[])", (oids,))}


def read_states(conn: psycopg.Connection, keys: StateKeys) -> tuple[dict[str, TableState], list[str]]:
    """The recorded states that verify, by table; and the tables whose record does not (never used)."""
    if not check_state(conn).sync_state:
        return {}, []
    good, bad = {}, []
    for name, record, mac, mac_secret in conn.execute(f"SELECT table_name, record, mac, mac_secret FROM {SYNC_STATE_TABLE}"):
        record = bytes(record)
        if keys.verify((name, record.hex()), mac, mac_secret, _DOMAIN):
            try:
                good[name] = msgspec.json.decode(record, type=TableState)
                continue
            except msgspec.ValidationError:
                pass
        bad.append(name)
    return good, bad


def choose(session, src_cat: Catalog, dst_cat: Catalog, plan: Plan, keys: StateKeys, trigger_mode: str,
           secret_fp: str, asked: bool, skip: frozenset[str] = frozenset()) -> Increment:
    """Per selected table: incremental or full, and why; with `asked` False (a full sync), only the
    states to record. `skip`: the tables --create-schema creates (nothing is recorded for them yet) and
    those the checkpoint being resumed completed (left as they are)."""
    src, dst = session.src, session.dst
    horizon, xmax = snapshot_bounds(src)
    source = source_fingerprint(session.src_identity)
    tables = [t for t in plan.tables if t.name not in skip]
    src_rel = {t.name: src_cat.tables[t.key].qualified for t in tables}
    src_oids = _oids(src, list(src_rel.values()))
    dst_oids = _oids(dst, [t.relation for t in tables])
    pk = {rel: tuple(cols) for rel, cols in src.execute(_KEY_SQL, (list(src_rel.values()),))}
    states = {t.name: table_state(t, source, (src_oids[src_rel[t.name]], dst_oids[t.relation]), secret_fp,
                                  pk.get(src_rel[t.name], ()), horizon) for t in tables if not t.subset}
    choices: dict[str, Choice] = {}
    if asked:
        before, unverified = read_states(dst, keys)
        referenced = {fk.ref_table for t in dst_cat.tables.values() for fk in t.foreign_keys}
        ruled = _ruled(dst, list(dst_oids.values()))
        for t in tables:
            now = states.get(t.name) or table_state(t, source, (0, 0), secret_fp, (), horizon)
            why = ("its recorded state does not verify (not written with this machine's key or this secret)"
                   if t.name in unverified else
                   full_reason(now, before.get(t.name), xmax,
                               blockers(t, dst_cat.tables[t.key], now.key, trigger_mode,
                                        t.key in referenced, dst_oids[t.relation] in ruled)))
            if why is None:
                window = xid_window(before[t.name].horizon, horizon, xmax)
                survey = _survey(src, dst, t, src_cat.tables[t.key], dst_cat.tables[t.key], now.key, window)
                why = too_large(survey.changed, survey.source_rows)
                choices[t.name] = (Choice(t.name, "full", why, survey) if why else
                                   Choice(t.name, "incremental", None, survey, window, now.key))
            else:
                choices[t.name] = Choice(t.name, "full", why)
    return Increment(horizon, xmax, source, secret_fp, choices, states, asked)


def _from(t: Table) -> str:
    """What to read a table's rows from: a partitioned table through its parent (every leaf), else ONLY it."""
    return t.qualified if t.kind == "p" else f"ONLY {t.qualified}"


def _int_key(t: TablePlan, table: Table, key: tuple[str, ...]) -> bool:
    col = table.column(key[0]) if len(key) == 1 else None
    return (col is not None and col.base_type in _INTEGER and not col.is_array
            and not any(r.column == key[0] for r in t.rules))


def _both(src, dst, src_sql: str, dst_sql: str) -> tuple[list, list]:
    """One query on each side at the same time (two servers), each in a transaction (the source's a
    savepoint of the snapshot's) with SURVEY_WORK_MEM: the rows of each."""
    def run(conn, query):
        with conn.transaction():
            conn.execute(f"SET LOCAL work_mem = '{SURVEY_WORK_MEM}'")
            return conn.execute(query).fetchall()

    with ThreadPoolExecutor(1) as pool:
        there = pool.submit(run, dst, dst_sql)
        try:
            here = run(src, src_sql)
        finally:
            rows = there.result()
    return here, rows


def _survey(src, dst, t: TablePlan, s: Table, d: Table, key: tuple[str, ...], window: tuple[int, int]) -> Survey:
    """Compares both sides (the source under the snapshot, in a savepoint of its transaction): the rows
    in the window, and the keys, first whole (count and hash sum: equal, nothing was deleted), then,
    for a single integer key that differs, per range. The source and the target are read at once."""
    changed = window_predicate(*window)
    kcols = ", ".join(quote_ident(k) for k in key)
    integer = _int_key(t, s, key)
    k = quote_ident(key[0])
    if any(r.column in key for r in t.rules):
        hashed = "0"  # the target holds pseudonyms: only the counts compare
    elif integer:
        hashed = f"sum(pg_catalog.hashint8({k}::int8))"  # 32-bit hashes: their sum stays a bigint
    else:
        hashed = f"sum(pg_catalog.hashtextextended(ROW({kcols})::text, 0))"
    with src.transaction():
        ((n, h, c),), ((m, g),) = _both(src, dst, f"SELECT count(*), {hashed}, count(*) FILTER (WHERE {changed}) "
                                                  f"FROM {_from(s)}", f"SELECT count(*), {hashed} FROM {_from(d)}")
        if (n, h) == (m, g) and (hashed != "0" or c == 0):
            # the same keys on both sides (with a pseudonymized key: nothing changed, so the target
            # holds every source key, and equal counts mean none was deleted)
            return Survey(c, n, m, ())
        if not integer or hashed == "0":
            return Survey(c, n, m, (0,), 0, sweep_all=True)
        lo, hi = src.execute(f"SELECT min({k}), max({k}) FROM {_from(s)}").fetchone()
        width = bucket_width(lo, hi, n)
        agg = f"{k}::int8 / {width}, count(*), {hashed} FROM"
        here, there = _both(src, dst, f"SELECT {agg} {_from(s)} GROUP BY 1", f"SELECT {agg} {_from(d)} GROUP BY 1")
    ranges = differing({b: (x, y) for b, x, y in here}, {b: (x, y) for b, x, y in there})
    if len(ranges) > len(here) // 2:
        return Survey(c, n, m, (0,), 0, sweep_all=True)
    return Survey(c, n, m, tuple(ranges), width)


# -- the apply: one target transaction per table -----------------------------------------------------
class Applied(msgspec.Struct, frozen=True):
    table: str
    inserted: int
    updated: int
    deleted: int
    seconds: float
    bytes: int


def _key_rewriter(t: TablePlan, key: tuple[str, ...]):
    """The rewriter of the key columns alone (None: none is ruled), so that fetched keys are the target's."""
    from .strategies import Rewriter

    pos = {c: i for i, c in enumerate(key)}
    rules = [msgspec.structs.replace(r, index=pos[r.column],
                                     key_index=pos[t.columns[r.key_index]] if r.key_index >= 0 else -1)
             for r in t.rules if r.column in pos]
    return Rewriter(t.name, list(key), rules) if rules else None


def apply_table(src: psycopg.Connection, dst: psycopg.Connection, t: TablePlan, s: Table, c: Choice,
                state: TableState, keys: StateKeys, trigger_mode: str, batch_size: int) -> Applied:
    """Replaces the changed rows and deletes the vanished keys of one table, and records its new state,
    in one target transaction (its indexes and constraints stay in place; its user triggers do not
    fire, as in a full sync's load). Raises UnitFailed."""
    from .worker import _failed as failed
    from .worker import as_table_owner, rewriter_for, user_triggers_off

    start = time.perf_counter()
    cols = ", ".join(quote_ident(x) for x in t.columns)
    key = c.key
    on = " AND ".join(f"t.{quote_ident(k)} = s.{quote_ident(k)}" for k in key)
    survey, replica = c.survey, trigger_mode == "replica"
    binary = bool(t.units and t.units[0].binary)
    if survey.changed == 0 and not survey.buckets:  # nothing to do but move the horizon on
        with dst.transaction():
            _write_state(dst, keys, t.name, state)
        return Applied(t.name, 0, 0, 0, time.perf_counter() - start, 0)
    try:
        dst.execute("BEGIN")
        _write_state(dst, keys, t.name, state)
        if replica:
            dst.execute("SET LOCAL session_replication_role = replica")
        dst.execute(f"LOCK TABLE {t.relation} IN ROW EXCLUSIVE MODE")  # CREATE RULE waits for our commit
        if _ruled(dst, [state.target_table]):
            raise UnitFailed(t.name, f"{t.relation}: {RULED}: rerun, the table will be reloaded in full")
        as_table_owner(dst, t.relation)
        restore = user_triggers_off(dst, t.relation, replica)
        dst.execute(f"CREATE TEMP TABLE confiture_fast_rows ON COMMIT DROP AS SELECT {cols} FROM {t.relation} "
                    "WITH NO DATA")
        fmt = " (FORMAT binary)" if binary else ""
        rewriter = rewriter_for(t, binary)
        read, staged, size, _ = _pump.pump(
            src, dst, f"COPY (SELECT {cols} FROM {_from(s)} WHERE {window_predicate(*c.window)}) TO STDOUT{fmt}".encode(),
            f"COPY pg_temp.confiture_fast_rows FROM STDIN{fmt}".encode(), rewriter, batch_size, BATCH_BYTES,
            None, 0, binary)
        if read != staged:
            raise UnitFailed(t.name, f"row count mismatch on {t.relation}: read {read} changed rows from the source, "
                                     f"the target took {staged}")
        deleted = 0
        if survey.buckets:
            kcols = ", ".join(quote_ident(k) for k in key)
            where, target_where = "true", "true"
            if survey.width and not survey.sweep_all:
                ranges = "'{" + ",".join(str(int(b)) for b in survey.buckets) + "}'::int8[]"
                where = f"{quote_ident(key[0])}::int8 / {survey.width} IN (SELECT unnest({ranges}))"  # a hash semi-join
                target_where = f"t.{where}"
            dst.execute(f"CREATE TEMP TABLE confiture_fast_keys ON COMMIT DROP AS SELECT {kcols} FROM {t.relation} "
                        "WITH NO DATA")
            _pump.pump(src, dst, f"COPY (SELECT {kcols} FROM {_from(s)} WHERE {where}) TO STDOUT".encode(),
                       b"COPY pg_temp.confiture_fast_keys FROM STDIN", _key_rewriter(t, key), batch_size,
                       BATCH_BYTES, None, 0, False)
            dst.execute("ANALYZE pg_temp.confiture_fast_keys")
            deleted = dst.execute(f"DELETE FROM {t.relation} t WHERE {target_where} AND NOT EXISTS "
                                  f"(SELECT 1 FROM pg_temp.confiture_fast_keys s WHERE {on})").rowcount
        if staged:
            dst.execute("ANALYZE pg_temp.confiture_fast_rows")
        updated = dst.execute(f"DELETE FROM {t.relation} t USING pg_temp.confiture_fast_rows s WHERE {on}").rowcount
        dst.execute(f"INSERT INTO {t.relation} ({cols}) OVERRIDING SYSTEM VALUE SELECT {cols} "
                    "FROM pg_temp.confiture_fast_rows")
        for statement in restore:
            dst.execute(statement)
        dst.execute("COMMIT")
    except _pump.PumpError as exc:
        raise failed(t.name, exc.side, exc) from None
    except psycopg.Error as exc:
        raise failed(t.name, "target", exc) from None
    return Applied(t.name, staged - updated, updated, deleted, time.perf_counter() - start, size)


def _write_state(dst: psycopg.Connection, keys: StateKeys, name: str, state: TableState) -> None:
    record = msgspec.json.encode(state)
    mac, mac_secret = keys.sign((name, record.hex()), _DOMAIN)
    dst.execute(f"INSERT INTO {SYNC_STATE_TABLE} (table_name, record, mac, mac_secret) VALUES (%s, %s, %s, %s) "
                "ON CONFLICT (table_name) DO UPDATE SET record = EXCLUDED.record, mac = EXCLUDED.mac, "
                "mac_secret = EXCLUDED.mac_secret", (name, record, mac, mac_secret))


def forget(dst: psycopg.Connection, names: list[str]) -> None:
    """Forgets the state of the tables about to be emptied and reloaded, before they are touched: until a
    sync records them again, they are no base for an incremental run."""
    if names and check_state(dst).sync_state:
        with dst.transaction():
            dst.execute(f"DELETE FROM {SYNC_STATE_TABLE} WHERE table_name = ANY(%s)", (names,))


def record(dst: psycopg.Connection, keys: StateKeys, inc: Increment, synced: list[str]) -> str | None:
    """Records this run's state of the `synced` tables (loaded in full under this run's snapshot); where
    the target role may not create the state schema, nothing (a later --incremental reloads them in
    full). Returns why nothing could be recorded, or None."""
    todo = [n for n in synced if n in inc.states]
    if not todo:
        return None
    try:
        if not check_state(dst).schema and not dst.execute(
                "SELECT pg_catalog.has_database_privilege(pg_catalog.current_database(), 'CREATE')").fetchone()[0]:
            return "the target user may not create the state schema"
        ensure_state(dst, sync_state=True)
        with dst.transaction():
            for name in todo:
                _write_state(dst, keys, name, inc.states[name])
    except psycopg.Error as exc:
        return pg.primary(exc)
    return None


def annotate(result, inc: Increment, out: Outcome, tables: list[TablePlan]):
    """The run's result with each table's mode (and why full, under --incremental) and, for the tables
    refreshed incrementally, their rows inserted, updated and deleted."""
    from .coordinator import TableResult

    rows = []
    for r in result.tables:
        c = inc.choices.get(r.table)
        rows.append(msgspec.structs.replace(r, mode="full", reason=c.reason if c else None,
                                            inserted=r.rows if r.status == "synced" else None))
    for t in tables:
        if (a := out.applied.get(t.name)) is not None:
            rows.append(TableResult(t.name, a.inserted + a.updated, a.bytes, a.seconds, t.anonymized_columns, "synced",
                                    mode="incremental", inserted=a.inserted, updated=a.updated, deleted=a.deleted))
        else:
            why = out.failed.get(t.name, "not started: the sync stopped before it")
            rows.append(TableResult(t.name, 0, 0, 0.0, t.anonymized_columns, "failed", why, mode="incremental"))
    total = sum(r.rows for r in rows if r.status != "failed")
    return msgspec.structs.replace(result, tables=rows, total_rows=total)


class Outcome(msgspec.Struct):
    """What the apply did: the tables brought up to date, and the first failure (the rest not started)."""

    applied: dict[str, Applied]
    failed: dict[str, str]
    error: str | None = None
    fix: str | None = None


def apply(session, tables: list[TablePlan], src_cat: Catalog, inc: Increment, keys: StateKeys, trigger_mode: str,
          batch_size: int, say) -> Outcome:
    """Each incremental table in its own target transaction, one after the other, read under the
    run's snapshot; stops at the first failure (that table's transaction is rolled back, and its
    recorded state with it: the next run starts from the same place)."""
    out = Outcome({}, {})
    if not tables:
        return out
    ensure_state(session.dst, sync_state=True)
    src = pg.source(session.source_conninfo, "incremental", session.snapshot)
    dst = pg.target(session.target_conninfo, "incremental")
    try:
        _pump.check_libpq(dst)
        for t in tables:
            try:
                done = apply_table(src, dst, t, src_cat.tables[t.key], inc.choices[t.name], inc.states[t.name], keys,
                                   trigger_mode, batch_size)
            except UnitFailed as exc:
                out.failed[t.name] = str(exc)
                out.error, out.fix = str(exc), exc.fix_for(None)
                break
            out.applied[t.name] = done
            say(f"{t.name}: incremental: {done.inserted:,} inserted, {done.updated:,} updated, "
                f"{done.deleted:,} deleted")
    finally:
        src.close()
        dst.close()
    return out
