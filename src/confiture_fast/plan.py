"""The plan: which tables, which columns, which rules, what to empty and defer — decided and validated
in full before anything is written to the target. Every problem is reported at once."""

from __future__ import annotations

import fnmatch

import msgspec
from psycopg import sql

from . import strategies, typediff
from .catalog import Catalog, Column, ForeignKey, Index, Table, ambiguous, display_name, qualify, quote_ident
from .errors import ValidationError
from .request import LoadOptions, Selection
from .rules import Origin, resolve
from .subset import SubsetPlan, rows_sql


class Unit(msgspec.Struct, frozen=True):
    """One COPY: a table, or one leaf partition of it."""

    table: str  # display name of the table it belongs to
    relation: str  # quoted name of what is read and written
    copy_out: str
    copy_in: str  # complete: FREEZE where the unit owns its relation, the format
    est_rows: int
    est_bytes: int
    owns_relation: bool  # True: the unit empties its relation itself and loads WITH (FREEZE)
    binary: bool = False  # COPY in binary format (both statements): identical built-in types, rules only on text-like ones


class TablePlan(msgspec.Struct, frozen=True):
    name: str  # display name: unique, and what checkpoints and summaries show
    key: tuple[str, str]  # (schema, name) of the source table: how it is looked up in a catalog
    relation: str  # quoted, qualified
    columns: tuple[str, ...]  # copied, by name, in this order on both sides
    rules: tuple[strategies.FieldRule, ...]
    origins: tuple[Origin, ...]  # where each rule comes from: origins[i] is that of rules[i]
    skipped_generated: tuple[str, ...]
    extra_target_columns: tuple[str, ...]
    units: tuple[Unit, ...]
    est_rows: int
    est_bytes: int
    has_user_triggers: bool  # on the target: disabled during the load when replica mode is not allowed
    type_changes: tuple[str, ...] = ()  # accepted type differences, 'amount: numeric(12,2) -> numeric(14,2), lossless widening'
    subset: bool = False  # only the rows of the subset's closure (--where, --sample), else the whole table
    jsonb_columns: tuple[int, ...] = ()  # indexes in `columns` of jsonb and jsonb[] ones: in COPY binary their values carry a version byte

    @property
    def anonymized_columns(self) -> list[str]:
        return [r.column for r in self.rules if r.strategy not in strategies.IDENTITY]

    @property
    def shared_relations(self) -> list[str]:
        """Relations loaded by several slices: emptied once, up front."""
        return sorted({u.relation for u in self.units if not u.owns_relation})


class Deferred(msgspec.Struct, frozen=True):
    """A constraint or index dropped before the load and recreated after it.

    Phase 1 (indexes, primary keys, unique constraints) is rebuilt before phase 2 (foreign keys,
    which need the referenced unique index)."""

    table: str  # display name
    name: str
    phase: int
    drop_sql: str
    create_sql: str  # one or more statements, run in one transaction: the object and what its DROP lost
    key: tuple[str, str]  # (schema, name) of the table
    fallback_sql: str | None = None  # run instead when rows violate it: a foreign key, created NOT VALID


class Kept(msgspec.Struct, frozen=True):
    """An index or constraint left in place during the load (maintained row by row), because other
    objects depend on it and its DROP would fail."""

    table: str  # display name
    name: str
    why: str  # e.g. 'rule _RETURN on view v depends on it'


class SequenceSync(msgspec.Struct, frozen=True):
    """A target sequence that a column of a synced table uses, and where its value comes from."""

    table: str
    column: str
    source: str | None  # the source column's sequence; None: the source column has none
    target: str
    exact: bool = True  # SELECT on the source sequence: last_value and is_called as they are
    start: int = 1  # the source sequence's start, when only pg_sequence_last_value() may read it and says NULL
    follow: str | None = None  # source None: 'SELECT max(col)::bigint FROM relation' on the target, set past it


class Plan(msgspec.Struct, frozen=True):
    tables: tuple[TablePlan, ...]  # largest first: the order workers take them in
    completed: tuple[str, ...]  # selected, but already synced by the run being resumed
    cascade: tuple[str, ...]  # unselected target tables emptied because of --cascade
    cascade_relations: tuple[str, ...]
    deferred: tuple[Deferred, ...]  # target indexes and constraints dropped before the load, rebuilt after
    sequences: tuple[SequenceSync, ...]
    anonymize: bool
    warnings: tuple[str, ...] = ()  # printed before the load: CHECK constraints a rule's output may not satisfy
    kept: tuple[Kept, ...] = ()  # target indexes and constraints that other objects need: loaded with them
    subset: SubsetPlan | None = None  # --where, --sample, --subset-config: the closure, planned and checked

    def table(self, name: str) -> TablePlan:
        return next(t for t in self.tables if t.name == name)


def _is_pattern(s: str) -> bool:
    return any(ch in s for ch in "*?[")


def _matches(table: Table, pattern: str) -> bool:
    return fnmatch.fnmatchcase(table.display, pattern) or fnmatch.fnmatchcase(f"{table.schema}.{table.name}", pattern)


def _unknown(catalog: Catalog, name: str) -> str:
    """Why an exact name selects nothing: a partition is loaded with its partitioned table, never alone."""
    roots = {root.key: root for _, root in catalog.find_partition(name)}
    if roots:
        shown = " or ".join(catalog.spelling(r) for r in roots.values())
        return f"{name!r} is a partition of {shown}: select {shown} (its partitions are copied with it)"
    return f"unknown table {name!r} on the source"


def select_tables(catalog: Catalog, sel: Selection, problems: list[str]) -> list[Table]:
    """--tables (exact names), --include (patterns), --exclude (names or patterns); default: all.
    An exact name that designates several tables is an error (see Catalog.find), even in --exclude."""
    chosen: dict[tuple[str, str], Table] = {}
    for name in sel.tables:
        hits = catalog.find(name)
        if len(hits) == 1:
            chosen[hits[0].key] = hits[0]
        elif not hits:
            problems.append(f"--tables: {_unknown(catalog, name)}")
        else:
            problems.append(f"--tables: {name!r} is {ambiguous(catalog, hits)}")
    for pattern in sel.include:
        hits = [t for t in catalog.tables.values() if _matches(t, pattern)] if _is_pattern(pattern) else catalog.find(pattern)
        if not hits:
            problems.append(f"--include: {pattern!r} matches no table on the source" if _is_pattern(pattern)
                            else f"--include: {_unknown(catalog, pattern)}")
        elif len(hits) > 1 and not _is_pattern(pattern):
            problems.append(f"--include: {pattern!r} is {ambiguous(catalog, hits)}")
            continue
        chosen.update((t.key, t) for t in hits)
    if not sel.tables and not sel.include:
        chosen = dict(catalog.tables)
    for pattern in sel.exclude:
        if _is_pattern(pattern):
            hits = [t for t in catalog.tables.values() if _matches(t, pattern)]
        else:
            hits = catalog.find(pattern)
            if not hits:
                problems.append(f"--exclude: {_unknown(catalog, pattern)}")
            elif len(hits) > 1:
                problems.append(f"--exclude: {pattern!r} is {ambiguous(catalog, hits)}")
        for t in hits:
            chosen.pop(t.key, None)
    return list(chosen.values())


def row_security_problem(table: Table, role: str, side: str) -> str:
    """Row-level security would show our role a part of the table: refused, never copied or compared in part."""
    where = ", ".join(table.row_security)
    return (f"{table.display}: row-level security on {where} hides rows from the {side} role {role}: "
            f"connect as a role with BYPASSRLS (ALTER ROLE {role} BYPASSRLS) or as the table's owner "
            "(unless it has FORCE ROW LEVEL SECURITY), or --exclude it")


def _type_problem(src: Column, dst: Column, ruled: bool) -> tuple[str | None, str | None]:
    """(problem, note): types are compared in full, through domains and with typmods; only the
    lossless widenings listed in typediff pass, and --dry-run names each."""
    return typediff.compare(src, dst, ruled)


def _check_warnings(table: str, column: str, strategy: str, dst: Table | None) -> list[str]:
    """CHECK constraints of the target (of the column's domains, and of its table where they read the
    column) that a rule's output may not satisfy: a row that does not fails the load. NULL satisfies
    a CHECK, so the null strategy (NOT NULL is a fit check) and keep are not warned about."""
    if dst is None or strategy in strategies.IDENTITY | strategies.NULLING or (col := dst.column(column)) is None:
        return []
    checks = [f"domain {c.on}: {c.definition}" for c in col.domain_checks]
    checks += [f"{c.name}: {c.definition}" for c in dst.checks if column in c.columns]
    if not checks:
        return []
    return [f"{table}.{column}: the {strategy} output may not satisfy the target's {'; '.join(checks)} "
            "(a row that does not fails the load): check the rule's output against it"]


def _through_parent(src: Table, dst: Table) -> bool:
    """A partitioned table is read through its parent when the target's leaves do not match its own."""
    dst_leaves = {(leaf.schema, leaf.name) for leaf in dst.leaves}
    return src.kind == "p" and (dst.kind != "p" or not {(x.schema, x.name) for x in src.leaves} <= dst_leaves)


STREAM_CORES = 2  # cores one COPY stream keeps busy on loopback: the source printing, the target parsing and writing
MIN_SLICE_BYTES = 32 << 20  # a table that dominates the plan is never cut into slices smaller than this


def streams(parallel: int, cores: int) -> int:
    """How many COPY streams run at once with profit: one per worker, and one per STREAM_CORES cores.
    Measured on 2 cores (users 1M anonymized, production-like servers, 5 runs each): 2 slices
    instead of one table 0.97x paired (0.73-1.09), 3 slices 0.96x (0.81-1.17): noise, for 20-25%
    more CPU of ours; so 2 cores keep one stream."""
    return max(1, min(parallel, cores // STREAM_CORES))


def _spread(est_bytes: int, total_bytes: int, streams: int) -> int:
    """Slices for a table that dominates the plan: one that alone takes longer than an even share
    of the streams would leave the other workers idle at the end, so it is cut into one slice per
    stream. What a slice loses: it cannot load WITH (FREEZE) (the table is emptied up front, not in
    its transaction), so the first reads of its rows (the index builds, ANALYZE) set their hint bits
    and write those pages again, and a failed slice leaves the table partly loaded until a rerun; with
    one stream per two cores the gain is the other cores' whole load throughput, which outweighs it."""
    if streams < 2 or est_bytes * streams <= total_bytes:
        return 1
    return max(1, min(streams, est_bytes // MIN_SLICE_BYTES))


def _units(src: Table, dst: Table, columns: tuple[str, ...], max_bytes: int, binary: bool,
           subset: SubsetPlan | None = None, spread: int = 1) -> tuple[Unit, ...]:
    """One unit per leaf (or for the table), each split into key or ctid ranges when larger than
    `max_bytes`, or into `spread` of them (a table that dominates the plan, see _spread). A unit that
    is alone on its relation empties it itself and loads with FREEZE.
    Tables with user triggers on the target are never split: disabling them without replica mode
    takes a lock that would make the slices wait for each other.
    With no column to copy (a table of none, or only generated ones) the rows still count: COPY
    without a column list moves rows of zero columns, `()` being a syntax error."""
    cols = ", ".join(quote_ident(c) for c in columns)
    listed = f" ({cols})" if columns else ""
    fmt = " (FORMAT binary)" if binary else ""

    def copy_in(rel: str, owns: bool) -> str:
        options = ["FORMAT binary"] * binary + ["FREEZE"] * owns
        return f"COPY {rel}{listed} FROM STDIN" + (f" WITH ({', '.join(options)})" if options else "")

    # A partitioned target table has no rows of its own: it cannot be emptied ONLY nor take FREEZE. Rows
    # go through it to its leaves, and it is emptied whole, up front (target.empty).
    owns = dst.kind != "p"
    if subset is not None and (place := subset.place(src.display)) is not None:
        return _subset_units(src, dst, cols, binary, copy_in, owns, subset, *place)
    if _through_parent(src, dst):
        return (Unit(src.display, dst.qualified, f"COPY (SELECT {cols} FROM {src.qualified}) TO STDOUT{fmt}",
                     copy_in(dst.qualified, owns), src.est_rows, src.est_bytes, owns, binary),)
    units = []
    for leaf in src.leaves:
        rel = leaf.qualified if src.kind == "p" else dst.qualified
        n = max(1, min(leaf.pages, max(spread, -(-leaf.est_bytes // max_bytes))))
        if n == 1:
            alone = owns or src.kind == "p"
            units.append(Unit(src.display, rel, f"COPY {leaf.qualified}{listed} TO STDOUT{fmt}", copy_in(rel, alone),
                              leaf.est_rows, leaf.est_bytes, alone, binary))
            continue
        for where in _slice_conditions(leaf, n):
            units.append(Unit(src.display, rel,
                              f"COPY (SELECT {cols} FROM ONLY {leaf.qualified} WHERE {where}) TO STDOUT{fmt}",
                              copy_in(rel, False), leaf.est_rows // n, leaf.est_bytes // n, False, binary))
    return tuple(units)


def _in_subset(subset: SubsetPlan | None, src: Table) -> bool:
    return subset is not None and subset.place(src.display) is not None


def _subset_units(src, dst, cols, binary, copy_in, owns, subset, group, tag) -> tuple[Unit, ...]:
    """A subset table's rows: one unit per leaf (each runs the closure once: never sliced), or one through
    its parent; the estimate is the closure's count, shared among the leaves by their sizes."""
    rows = subset.rows.get(src.display, src.est_rows)
    scale = rows / src.est_rows if src.est_rows else 0.0
    fmt = " (FORMAT binary)" if binary else ""
    if _through_parent(src, dst):
        return (Unit(src.display, dst.qualified, f"COPY ({rows_sql(group, tag, cols, src.qualified, False)}) TO STDOUT{fmt}",
                     copy_in(dst.qualified, owns), rows, int(src.est_bytes * scale), owns, binary),)
    units = []
    for leaf in src.leaves:
        rel = leaf.qualified if src.kind == "p" else dst.qualified
        alone = owns or src.kind == "p"
        n = rows if len(src.leaves) == 1 else int(leaf.est_rows * scale)
        units.append(Unit(src.display, rel, f"COPY ({rows_sql(group, tag, cols, leaf.qualified, True)}) TO STDOUT{fmt}",
                          copy_in(rel, alone), n, int(leaf.est_bytes * scale), alone, binary))
    return tuple(units)


# Types whose value in COPY binary is its text (jsonb's after a version byte), as are their arrays' elements.
TEXT_LIKE = frozenset({"text", "varchar", "bpchar", "json", "jsonb"})


def _binary(src: Table, dst: Table, columns: tuple[str, ...], rules: tuple[strategies.FieldRule, ...]) -> bool:
    """COPY's binary format spares both servers the text parsing and printing of numbers, dates and
    the like (a quarter of the target's CPU on a table of numbers, timestamps and jsonb). It is used
    where every column is of the same built-in type on both sides, whose binary form does not depend on
    the server (types of extensions and composites carry OIDs), and every rewritten column and per-row
    key is TEXT_LIKE (a key not an array): there the binary rewriter hands the strategies the very text
    the text path would."""
    for name in columns:
        a, b = src.column(name), dst.column(name)
        if a is None or b is None or not (a.binary_safe and b.binary_safe and a.type == b.type
                                          and a.resolved_type == b.resolved_type and a.typmod == b.typmod):
            return False
    for r in rules:
        if r.strategy in strategies.IDENTITY:
            continue
        if src.column(r.column).base_type not in TEXT_LIKE:
            return False
        if r.key_index >= 0 and ((key := src.column(columns[r.key_index])).base_type not in TEXT_LIKE or key.is_array):
            return False
    return True


def _slice_conditions(leaf, n: int) -> list[str]:
    """n WHERE clauses that cover the leaf exactly once: ranges of its integer primary key where it has
    one (each slice an index range scan), ctid page ranges otherwise (TID range scans). The first and
    last ranges are open, so rows beyond the estimates are never missed."""
    if leaf.key is not None and leaf.key_range is not None:
        lo, hi = leaf.key_range
        step = max(1, -(-(hi - lo + 1) // n))
        col = quote_ident(leaf.key)
        bounds = [lo + k * step for k in range(1, n) if lo + k * step <= hi]
        edges = [None, *bounds, None]
        return [" AND ".join(filter(None, (f"{col} >= {a}" if a is not None else "",
                                           f"{col} < {b}" if b is not None else ""))) or "true"
                for a, b in zip(edges, edges[1:])]
    step = -(-leaf.pages // n)
    return [f"ctid >= '({k * step},0)'::tid" + (f" AND ctid < '({(k + 1) * step},0)'::tid" if k < n - 1 else "")
            for k in range(n)]


def build_plan(source: Catalog, target: Catalog, sel: Selection, rules, secret: bytes | None, *,
               cascade: bool = False, completed: frozenset[str] = frozenset(),
               slice_size: int = LoadOptions().slice_size, subset: SubsetPlan | None = None,
               streams: int = 1) -> Plan:
    """Validates everything against both catalogs; raises ValidationError listing every problem.
    Tables larger than `slice_size` MiB (--slice-size) are split into slices, and so is a table that
    dominates the plan when `streams` (plan.streams) COPY streams can run at once.

    `completed` tables (from a checkpoint being resumed) stay in the plan but are not emptied,
    loaded, or have their indexes rebuilt. With `subset`, its tables copy only the closure's rows, and
    the problems found planning and checking it are reported with the others."""
    problems: list[str] = list(subset.problems) if subset is not None else []
    selected = select_tables(source, sel, problems)
    keys = {t.key for t in selected}
    names = {t.display for t in selected}

    resolution = resolve(source, rules, target)
    problems += resolution.problems
    if secret is None and any(strategies.STRATEGIES[r.strategy].keyed for r in resolution.rules + resolution.refused
                              if r.strategy in strategies.STRATEGIES):
        problems.append("the rules use keyed strategies (email, phone, name, hash, ...) but no secret was given: "
                        "export ANONYMIZATION_SECRET=$(openssl rand -hex 32), or pass --secret-file PATH")
    table_rules = resolution.by_table()

    # Schema verification, all differences together.
    total_bytes = sum(t.est_bytes for t in selected if t.display not in completed)
    plans: list[TablePlan] = []
    warnings: list[str] = []
    for src in selected:
        dst = target.tables.get(src.key)
        if dst is None:
            problems.append(f"{src.display}: missing on the target (pass --create-schema to create it from the "
                            "source, create it yourself, or --exclude it)")
            continue
        if dst.row_security:  # the incremental survey and DELETE would see a part, and run the owner's policy
            problems.append(row_security_problem(dst, target.role, "target"))
        if not src.can_read:
            problems.append(f"{src.display}: permission denied on the source: GRANT SELECT ON {src.qualified} "
                            "to the source user, or --exclude it")
        elif src.row_security:
            problems.append(row_security_problem(src, source.role, "source"))
        elif not _through_parent(src, dst) and (hidden := [x.qualified for x in src.leaves if not x.can_read]):
            problems.append(f"{src.display}: permission denied on the source for its partition(s) "
                            f"{', '.join(hidden)}, which are read one by one: GRANT SELECT ON {', '.join(hidden)} "
                            "to the source user, or --exclude it")
        if not dst.can_load:
            problems.append(f"{src.display}: permission denied on the target: the target user needs INSERT and "
                            f"TRUNCATE on {dst.qualified}")
        columns: list[str] = []
        type_changes: list[str] = []
        rules_here = table_rules.get(src.key, {})
        ruled = {c for c, r in rules_here.items() if r.strategy not in strategies.IDENTITY}
        for col in src.columns:
            tcol = dst.column(col.name)
            if col.generated:
                if tcol is not None and not tcol.generated:
                    problems.append(
                        f"{src.display}.{col.name}: generated on the source, a plain column on the target, where it "
                        "would arrive empty (NULL or its default); copying the computed value instead could copy "
                        "PII that rules on its inputs mask: make it generated on the target too (the same "
                        "GENERATED ALWAYS AS expression), or drop it there")
                continue
            if tcol is None:
                problems.append(f"{src.display}.{col.name}: missing on the target")
            elif tcol.generated:
                problems.append(f"{src.display}.{col.name}: generated on the target but not on the source")
            else:
                why, note = _type_problem(col, tcol, col.name in ruled)
                if why is not None:
                    problems.append(f"{src.display}.{col.name}: {why}")
                    continue
                if note is not None:
                    type_changes.append(f"{src.display}.{col.name}: {note}")
                columns.append(col.name)
        extra = []
        for tcol in dst.columns:
            if src.column(tcol.name) is None:
                if tcol.not_null and not (tcol.has_default or tcol.identity or tcol.generated):
                    problems.append(f"{src.display}.{tcol.name}: only on the target, NOT NULL and without a default")
                extra.append(tcol.name)
        if all(c.generated for c in src.columns) and (own := [c.name for c in dst.columns if not c.generated]):
            problems.append(f"{src.display}: no column to copy on the source, and COPY cannot load rows of no "
                            f"columns into the target's {', '.join(own)}: drop them on the target (or make them "
                            "generated there too), or --exclude it")
        index = {c: i for i, c in enumerate(columns)}
        applied = [r for c, r in rules_here.items() if c in index]
        warnings += [w for r in applied for w in _check_warnings(src.display, r.column, r.strategy, dst)]
        field_rules = tuple(
            strategies.FieldRule(index=index[r.column], column=r.column, strategy=r.strategy,
                                 key=strategies.derive_key(secret, r.spec.seed) if secret is not None else b"\0" * 16,
                                 params=r.params, is_array=src.column(r.column).is_array,
                                 key_index=index.get(getattr(r.params, "per_row_key", None) or "", -1))
            for r in applied)
        plans.append(TablePlan(
            name=src.display, key=src.key, relation=dst.qualified, columns=tuple(columns), rules=field_rules,
            origins=tuple(r.origin for r in applied),
            skipped_generated=tuple(c.name for c in src.columns if c.generated),
            extra_target_columns=tuple(extra),
            units=(units := _units(src, dst, tuple(columns), slice_size << 20 if not dst.user_triggers else 1 << 62,
                                   _binary(src, dst, tuple(columns), field_rules), subset,
                                   _spread(src.est_bytes, total_bytes, streams)
                                   if src.kind != "p" and not dst.user_triggers else 1)),
            est_rows=sum(u.est_rows for u in units) if (part := _in_subset(subset, src)) else src.est_rows,
            est_bytes=sum(u.est_bytes for u in units) if part else src.est_bytes,
            has_user_triggers=bool(dst.user_triggers), type_changes=tuple(type_changes), subset=part,
            jsonb_columns=tuple(i for i, c in enumerate(columns) if src.column(c).base_type == "jsonb")))

    # What may be emptied: exactly the selected tables, unless --cascade names more: every table whose
    # foreign key references an emptied one, transitively (as TRUNCATE ... CASCADE would reach them).
    cascade_tables: dict[tuple[str, str], Table] = {}
    emptied = set(keys)
    while True:
        reaching = {t.key: t for t in target.tables.values() if t.key not in emptied
                    and any(fk.ref_table in emptied for fk in t.foreign_keys)}
        if not cascade:
            for t in sorted(reaching.values(), key=lambda t: t.display):
                into = next(fk for fk in t.foreign_keys if fk.ref_table in emptied)
                problems.append(f"{t.display} is not selected but its foreign key {into.name} references "
                                f"{display_name(*into.ref_table)}, which will be emptied: select it too, "
                                "or pass --cascade to empty it")
        if not cascade or not reaching:
            break
        cascade_tables.update(reaching)
        emptied |= reaching.keys()
    loaded = {t.key for t in selected if t.display not in completed}
    deferred, kept = _deferred(target, loaded, loaded | set(cascade_tables), problems)
    for d in deferred:
        owner_needed = target.tables[d.key]
        if d.phase == 2 and not owner_needed.owned:
            problems.append(f"{d.table}: its foreign key {d.name} must be dropped during the load and recreated "
                            "after, which needs the target user to own the table (ALTER TABLE ... OWNER TO)")

    sequences = _sequences(source, target, selected, problems)

    if problems:
        raise ValidationError(f"{len(problems)} problem(s) found before touching the target:", problems)
    plans.sort(key=lambda p: (-p.est_bytes, p.name))
    cascaded = sorted(cascade_tables.values(), key=lambda t: t.display)
    return Plan(tables=tuple(plans), completed=tuple(sorted(completed & names)), cascade=tuple(t.display for t in cascaded),
                cascade_relations=tuple(t.qualified for t in cascaded),
                deferred=deferred, sequences=sequences, anonymize=rules is not None, warnings=tuple(warnings),
                kept=kept, subset=subset)


def _sequences(source: Catalog, target: Catalog, selected: list[Table], problems: list[str]) -> tuple[SequenceSync, ...]:
    """Every sequence a column of a selected table uses on the target (owned, identity, or named by
    its default), paired with the sequence the same source column uses. Where the source column has
    none, an integer target sequence follows the loaded values instead. Privileges are checked here:
    the source role must read the source's sequence, the target role must set the target's."""
    out = []
    for src in selected:
        dst = target.tables.get(src.key)
        if dst is None:
            continue
        for tseq in dst.sequences:
            candidates = [s for s in src.sequences if s.column == tseq.column]
            sseq = next((s for s in candidates if s.name == tseq.name), candidates[0] if candidates else None)
            where = f"{src.display}.{tseq.column}"
            if not tseq.can_update:
                problems.append(f"{where}: the target user cannot reset its sequence {tseq.name} after the load: "
                                f"GRANT UPDATE ON SEQUENCE {tseq.name} TO {quote_ident(target.role)}")
            if sseq is not None:
                if not (sseq.can_select or sseq.can_usage):
                    problems.append(f"{where}: the source user cannot read its sequence {sseq.name}: GRANT SELECT ON "
                                    f"SEQUENCE {sseq.name} TO {quote_ident(source.role)}, or --exclude {src.display}")
                out.append(SequenceSync(src.display, tseq.column, sseq.name, tseq.name, sseq.can_select, sseq.start))
                continue
            col, tcol = src.column(tseq.column), dst.column(tseq.column)
            if col is not None and not col.generated and tcol is not None and tcol.base_type in ("int2", "int4", "int8") \
                    and not tcol.is_array:
                out.append(SequenceSync(src.display, tseq.column, None, tseq.name,
                                        follow=f"SELECT max({quote_ident(tseq.column)})::bigint FROM {dst.qualified}"))
    return tuple(out)


def _literal(text: str) -> str:
    return sql.Literal(text).as_string(None)


def _fk_sql(fk: ForeignKey) -> tuple[str, str]:
    """(create, create NOT VALID), each with the comment its DROP loses."""
    add = f"ALTER TABLE {fk.relation} ADD CONSTRAINT {quote_ident(fk.name)} {fk.definition}"
    comment = (f";\nCOMMENT ON CONSTRAINT {quote_ident(fk.name)} ON {fk.relation} IS {_literal(fk.comment)}"
               if fk.comment is not None else "")
    return add + comment, add + " NOT VALID" + comment


def _index_sql(t: Table, ix: Index) -> str:
    """The statements that give the index (and its constraint) back everything a DROP takes: its
    tablespace, storage parameters (pg_get_constraintdef() leaves out a constraint's WITH (...)),
    statistics targets, comments, CLUSTER mark and replica identity. Each is one statement, separated
    by ';\n' (target._reconcile compares them one by one); names and values are quoted here."""
    out = []
    if ix.tablespace is not None:
        out.append(f"SET LOCAL default_tablespace = {quote_ident(ix.tablespace)}")
    index = qualify(t.schema, ix.name)
    if ix.constraint is None:
        out.append(ix.definition)
    else:
        out.append(f"ALTER TABLE {t.qualified} ADD CONSTRAINT {quote_ident(ix.constraint)} {ix.constraint_def}")
        if ix.options and t.kind == "r":
            out.append(f"ALTER INDEX {index} SET (" + ", ".join(f"{quote_ident(k)} = {_literal(v)}"
                                                                for k, v in ix.options) + ")")
    out += [f"ALTER INDEX {index} ALTER COLUMN {n} SET STATISTICS {target}" for n, target in ix.statistics]
    if ix.comment is not None:
        out.append(f"COMMENT ON INDEX {index} IS {_literal(ix.comment)}")
    if ix.constraint is not None and ix.constraint_comment is not None:
        out.append(f"COMMENT ON CONSTRAINT {quote_ident(ix.constraint)} ON {t.qualified} IS "
                   f"{_literal(ix.constraint_comment)}")
    if ix.clustered:
        out.append(f"ALTER TABLE {t.qualified} CLUSTER ON {quote_ident(ix.name)}")
    if ix.replica_identity:
        out.append(f"ALTER TABLE {t.qualified} REPLICA IDENTITY USING INDEX {quote_ident(ix.name)}")
    return ";\n".join(out)


def _deferred(target: Catalog, loaded: set[tuple[str, str]], emptied: set[tuple[str, str]],
              problems: list[str]) -> tuple[tuple[Deferred, ...], tuple[Kept, ...]]:
    """Foreign keys from or into emptied tables (so each table can be emptied on its own), declared on
    the table or on one of its partitions, and the indexes of loaded tables (building an index once is
    much faster than maintaining it row by row). Indexes stay where our role could not create them
    again (no CREATE on the schema, not the owner), and where an object that is not deferred itself
    depends on them (a view grouping by the primary key): those are kept, and said so."""
    out, kept = [], []
    for t in target.tables.values():
        for fk in t.foreign_keys:
            if fk.table in emptied or fk.ref_table in loaded:
                if fk.dependents:
                    problems.append(f"{t.display}: its foreign key {fk.name} must be dropped during the load, but "
                                    f"{', '.join(d.description for d in fk.dependents)} depends on it: drop that first, "
                                    "or leave the tables out")
                create, fallback = _fk_sql(fk)
                out.append(Deferred(t.display, fk.name, 2,
                                    f"ALTER TABLE {fk.relation} DROP CONSTRAINT {quote_ident(fk.name)}", create, t.key,
                                    fallback))
    dropped_fks = {(fk.relation, fk.name) for t in target.tables.values() for fk in t.foreign_keys
                   if fk.table in emptied or fk.ref_table in loaded}
    for t in target.tables.values():
        if t.key not in loaded or t.schema not in target.creatable_schemas or not t.owned:
            continue
        for ix in t.indexes:
            name = ix.constraint or ix.name
            blockers = [d.description for d in ix.dependents if (d.fk_relation, d.fk_name) not in dropped_fks]
            if blockers:
                kept.append(Kept(t.display, name, f"{', '.join(blockers)} depends on it"))
            elif ix.constraint is not None:
                out.append(Deferred(t.display, name, 1, f"ALTER TABLE {t.qualified} DROP CONSTRAINT {quote_ident(name)}",
                                    _index_sql(t, ix), t.key))
            else:
                out.append(Deferred(t.display, name, 1, f"DROP INDEX {qualify(t.schema, ix.name)}", _index_sql(t, ix),
                                    t.key))
    return tuple(out), tuple(kept)
