"""Subsets (--where, --sample, --subset-config): which rows of the selected tables a sync copies.

The tables given a condition are the roots, their matching rows the seed rows. Children, recursively:
a row whose foreign key references a seed row or a child row is included. Parents, recursively: every
row an included row's foreign key references is included, and parents do not pull in their other
children. Selected tables that no foreign-key path connects to a root are copied whole.

Why it is planned so: the closure must be computed on the source without writing to it (a hot standby
works) and without holding key sets in our processes. Each group of tables that foreign keys connect
to a root becomes one recursive query (`WITH RECURSIVE closure(t, down, rel, tid)`): a row of the
closure names one source row by its table's number in the group, whether it was reached downwards (a
seed or a child: it pulls in its children), and its tableoid and ctid, which are stable inside the
sync's one exported snapshot. The executor deduplicates the rows (UNION), so cycles and
self-references terminate; each step reads one row back by ctid and follows one foreign key through
the index on its columns. Each COPY of a subset table runs that query and reads its own rows by ctid.
Conditions are user SQL, run only on the source, only inside the snapshot's read-only transaction.

This module parses the flags (parse), plans the closure from the catalog (plan: pure), writes its SQL,
and checks the conditions and counts the rows on the source (check).
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import msgspec
import psycopg
import yaml

from . import config, pg
from .catalog import Catalog, ForeignKey, Table, ambiguous, display_name, quote_ident
from .errors import ValidationError
from .request import Subset, SubsetRoot

# The sample's hash key when no secret is given: documented (docs/how-it-works.md), so a sample is
# reproducible anywhere; with a secret, the key is derived from it.
FIXED_SAMPLE_KEY = b"confiture-fast subset sample"
SAMPLE_BUCKETS = 1_000_000  # a sample of P% keeps the rows whose hash falls in the first P * 10,000 buckets
_SAMPLE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?|\.\d+)\s*%\s*$")


class Seed(msgspec.Struct, frozen=True):
    """A root: its table, number in its group, and the predicate its seed rows satisfy (SQL over the table)."""

    table: str  # display name
    tag: int
    conditions: tuple[str, ...]  # as given; all must hold
    sample: float | None  # percent
    predicate: str  # the conditions and the sample's hash test, ANDed


class Edge(msgspec.Struct, frozen=True):
    """One step of the closure: from the rows of table `frm` to the rows of table `to` through a foreign key.
    'child': `to` references `frm` (taken from rows reached downwards only); 'parent': `frm` references `to`."""

    kind: str
    frm: int  # tag of the table the step starts from
    to: int
    fk: str  # the foreign key's name
    columns: tuple[str, ...]  # its referencing columns (on fk_table)
    ref_columns: tuple[str, ...]  # the referenced ones (a primary key or any UNIQUE columns)
    describe: str  # 'users -> orders: child, orders(user_id) references users(id)'


class Group(msgspec.Struct, frozen=True):
    """Tables that foreign keys connect to at least one root, and the closure's steps among them, in order."""

    tables: tuple[str, ...]  # display names; a table's tag is its index
    relations: tuple[str, ...]  # by tag, what FROM reads: 'ONLY "public"."users"', or a partitioned table
    seeds: tuple[Seed, ...]
    edges: tuple[Edge, ...]  # breadth first: the children steps from the roots, then the parents steps


class SubsetPlan(msgspec.Struct, frozen=True):
    """The planned subset: its groups, the selected tables copied whole, and what the source said."""

    groups: tuple[Group, ...]
    whole: tuple[str, ...]  # display names of selected tables no foreign key connects to a root
    problems: tuple[str, ...] = ()  # found while planning or checking: build_plan reports them with its own
    rows: dict[str, int] = {}  # rows of each subset table, counted under the snapshot (check)
    scans: tuple[str, ...] = ()  # sequential scans the closure's plan does on the source (no index to follow)

    def place(self, table: str) -> tuple[Group, int] | None:
        """The group of a subset table and its tag there; None for a table copied whole."""
        for g in self.groups:
            if table in g.tables:
                return g, g.tables.index(table)
        return None


# ---- the flags ----------------------------------------------------------------------------------------

def _split(text: str) -> tuple[str, str] | None:
    """'TABLE: REST' -> (TABLE, REST), the colon being the first outside double quotes."""
    quoted = False
    for i, ch in enumerate(text):
        if ch == '"':
            quoted = not quoted
        elif ch == ":" and not quoted:
            table, rest = text[:i].strip(), text[i + 1:].strip()
            return (table, rest) if table and rest else None
    return None


def _percent(value, where: str, problems: list[str]) -> float | None:
    m = _SAMPLE_RE.match(value) if isinstance(value, str) else None
    p = float(m.group(1)) if m else None
    if p is None or not 0 < p <= 100 or round(p * SAMPLE_BUCKETS / 100) < 1:  # below one bucket: no row
        problems.append(f"{where}: the sample must be a percentage above 0 and at most 100 (at least 0.0001%, "
                        f"one row in a million), like '1%' or '0.5%' (got {value!r})")
        return None
    return p


def parse(where: tuple[str, ...] | list[str], sample: tuple[str, ...] | list[str], config: Path | None) -> Subset:
    """The three inputs into one Subset; every malformed entry reported at once (ValidationError, exit 2)."""
    problems: list[str] = []
    roots: list[SubsetRoot] = []
    for text in where:
        parts = _split(text)
        if parts is None:
            problems.append(f"--where {text!r}: write it as 'TABLE: CONDITION', e.g. --where \"users: id = 42\"")
        else:
            roots.append(SubsetRoot(parts[0], "--where", where=(parts[1],)))
    for text in sample:
        parts = _split(text)
        if parts is None:
            problems.append(f"--sample {text!r}: write it as 'TABLE: P%', e.g. --sample \"users: 1%\"")
        elif (p := _percent(parts[1], f"--sample {text!r}", problems)) is not None:
            roots.append(SubsetRoot(parts[0], "--sample", sample=p))
    if config is not None:
        roots += _read_config(config, problems)
    if problems:
        raise ValidationError(f"{len(problems)} problem(s) in the subset:", problems,
                              "see 'Subsets' in the user guide for the forms these take")
    return Subset(tuple(roots))


def _read_config(path: Path, problems: list[str]) -> list[SubsetRoot]:
    """--subset-config: `TABLE: {where: "...", sample: "1%"}` per table."""
    try:
        text = path.read_text(encoding="utf-8")
        doc = yaml.safe_load(text)
        _given_twice(yaml.compose(text, Loader=yaml.SafeLoader), path, problems)
    except OSError as exc:
        problems.append(f"--subset-config {path}: cannot be read ({exc.strerror or exc}): pass an existing file")
        return []
    except (UnicodeDecodeError, yaml.YAMLError) as exc:
        problems.append(f"--subset-config {path}: not valid YAML ({str(exc).splitlines()[0]}): fix the file")
        return []
    if not isinstance(doc, dict) or not doc:
        problems.append(f"--subset-config {path}: expected a mapping of TABLE: {{where: ..., sample: ...}}")
        return []
    out = []
    for table, body in doc.items():
        at = f"--subset-config {path}: {table}"
        if not isinstance(table, str) or not isinstance(body, dict) or not body:
            problems.append(f"{at}: expected {{where: \"CONDITION\", sample: \"P%\"}} (one or both)")
            continue
        if unknown := sorted(str(k) for k in body if k not in ("where", "sample")):
            problems.append(f"{at}: unknown key(s) {', '.join(unknown)}: only where and sample are read")
        cond = body.get("where")
        if cond is not None and (not isinstance(cond, str) or not cond.strip()):
            problems.append(f"{at}: where must be a SQL condition in a string")
            cond = None
        p = _percent(body["sample"], f"{at}: sample", problems) if "sample" in body else None
        if cond is not None or p is not None:
            out.append(SubsetRoot(table, str(path), where=(cond.strip(),) if cond else (), sample=p))
    return out


def _given_twice(node, path: Path, problems: list[str]) -> None:
    """A table or a key given twice in the file: YAML keeps the last without a word, which would drop a
    condition (and copy more rows than written)."""
    if isinstance(node, yaml.MappingNode):
        for _, body in config._mapping_pairs(node, path, "", problems).values():
            if isinstance(body, yaml.MappingNode):
                config._mapping_pairs(body, path, "", problems)


# ---- the plan -----------------------------------------------------------------------------------------

def sample_key(secret: bytes | None) -> int:
    """The sample's hash seed (a signed 64-bit integer), derived from the secret or FIXED_SAMPLE_KEY."""
    digest = hashlib.blake2b(secret if secret is not None else FIXED_SAMPLE_KEY, digest_size=8,
                             person=b"cf-subset-sample").digest()
    return int.from_bytes(digest, "big", signed=True)


def sample_predicate(primary_key: tuple[str, ...], percent: float, key: int) -> str:
    """The rows whose primary key's text form (of the column, or of the ROW of a composite key) hashes
    (hashtextextended, built in and stable across versions: hash partitioning relies on it) into the
    first `percent` of the buckets."""
    if len(primary_key) == 1:
        text = f"{quote_ident(primary_key[0])}::text"
    else:
        text = f"ROW({', '.join(quote_ident(c) for c in primary_key)})::text"
    buckets = round(percent * SAMPLE_BUCKETS / 100)
    return f"(pg_catalog.hashtextextended({text}, {key}) & 9223372036854775807) % {SAMPLE_BUCKETS} < {buckets}"


def _fk_text(fk: ForeignKey) -> str:
    cols = ", ".join(fk.columns)
    refs = ", ".join(fk.ref_columns)
    return f"{display_name(*fk.table)}({cols}) references {display_name(*fk.ref_table)}({refs})"


def plan(catalog: Catalog, selected: list[Table], subset: Subset, secret: bytes | None) -> SubsetPlan:
    """The closure over the selected tables: roots resolved (several entries for one table are ANDed),
    groups found, and each group's steps in breadth-first order. Problems are collected, never raised."""
    problems: list[str] = []
    chosen = {t.key: t for t in selected}
    conditions: dict[tuple[str, str], list[str]] = {}
    samples: dict[tuple[str, str], float] = {}
    for root in subset.roots:
        flag = root.origin if root.origin.startswith("--") else f"--subset-config {root.origin}"
        hits = catalog.find(root.table)
        if not hits:
            inside = [r for _, r in catalog.find_partition(root.table)]
            problems.append(f"{flag}: {root.table!r} is a partition of {catalog.spelling(inside[0])}: give the "
                            "condition on that table" if inside else f"{flag}: unknown table {root.table!r} on the source")
            continue
        if len(hits) > 1:
            problems.append(f"{flag}: {root.table!r} is {ambiguous(catalog, hits)}")
            continue
        t = hits[0]
        if t.key not in chosen:
            problems.append(f"{flag}: {t.display} is not among the selected tables (--tables, --include, --exclude): "
                            "select it too, or drop its condition")
            continue
        conditions.setdefault(t.key, []).extend(root.where)
        if root.sample is not None:
            if t.key in samples:
                problems.append(f"{flag}: {t.display} is given a sample twice: keep one")
            elif not t.primary_key:
                problems.append(f"{flag}: {t.display} has no primary key, which the sample hashes to choose rows: "
                                "use --where on it instead (e.g. a condition on a key column)")
            samples[t.key] = root.sample
    roots = list(dict.fromkeys([*conditions, *samples]))
    key = sample_key(secret)

    # The groups: tables connected to a root by foreign keys among the selected tables, in either direction.
    fks = [fk for t in selected for fk in t.foreign_keys if fk.table in chosen and fk.ref_table in chosen]
    neighbours: dict[tuple[str, str], list[tuple[str, str]]] = {k: [] for k in chosen}
    for fk in fks:
        neighbours[fk.table].append(fk.ref_table)
        neighbours[fk.ref_table].append(fk.table)
    groups, placed = [], set()
    for r in roots:
        if r in placed:
            continue
        members, todo = [r], [r]
        placed.add(r)
        while todo:
            for n in neighbours[todo.pop(0)]:
                if n not in placed:
                    placed.add(n)
                    members.append(n)
                    todo.append(n)
        groups.append(_group(chosen, members, [x for x in roots if x in members], fks, conditions, samples, key))
    whole = tuple(sorted(t.display for k, t in chosen.items() if k not in placed))
    return SubsetPlan(tuple(groups), whole if roots else (), tuple(problems))


def _group(chosen, members, roots, fks, conditions, samples, key) -> Group:
    """The steps in order: children breadth first from the roots (only rows reached downwards pull in
    children), then parents breadth first from every table reached so far."""
    tags = {k: i for i, k in enumerate(members)}
    name = lambda k: chosen[k].display  # noqa: E731
    edges: list[Edge] = []

    def walk(start: list, kind: str, frm, to) -> list:
        """Breadth first from `start` along the foreign keys, `frm`/`to` telling which end a step leaves
        from and reaches; the steps go to `edges`, the tables reached (start first) are returned."""
        reached, queue = list(start), list(start)
        while queue:
            here = queue.pop(0)
            for fk in fks:
                if frm(fk) == here:
                    edges.append(Edge(kind, tags[here], tags[to(fk)], fk.name, fk.columns, fk.ref_columns,
                                      f"{name(here)} -> {name(to(fk))}: {kind}, {_fk_text(fk)}"))
                    if to(fk) not in reached:
                        reached.append(to(fk))
                        queue.append(to(fk))
        return reached

    down = walk(list(roots), "child", lambda fk: fk.ref_table, lambda fk: fk.table)
    walk(down, "parent", lambda fk: fk.table, lambda fk: fk.ref_table)
    # A parents step back along the very key a table was reached by, from a table reached no other way
    # (its other ways in being such steps too), leads to rows already included, the rows that led there:
    # left out, until none is left to leave out.
    rooted, size = {tags[r] for r in roots}, -1
    while len(edges) != size:
        size = len(edges)
        into = {t: {(e.kind, e.fk, e.frm) for e in edges if e.to == t} for t in range(len(members))}
        edges = [e for e in edges if not (e.kind == "parent" and e.frm not in rooted
                                          and into[e.frm] == {("child", e.fk, e.to)})]
    seeds = []
    for r in roots:
        conds = tuple(conditions.get(r, ()))
        parts = [f"({c}\n)" for c in conds]  # a line break: a -- comment in a condition ends there
        if r in samples and chosen[r].primary_key:
            parts.append(sample_predicate(chosen[r].primary_key, samples[r], key))
        seeds.append(Seed(name(r), tags[r], conds, samples.get(r), " AND ".join(parts)))
    # ONLY for an ordinary table: an inheritance child is a table of its own (a partitioned table reads its partitions)
    relations = tuple(chosen[k].qualified if chosen[k].kind == "p" else f"ONLY {chosen[k].qualified}" for k in members)
    return Group(tuple(name(k) for k in members), relations, tuple(seeds), tuple(edges))


# ---- its SQL ------------------------------------------------------------------------------------------

def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _step(g: Group, e: Edge) -> str:
    """The rows of table e.to one closure row of table e.frm leads to: that row read back by ctid, the
    foreign key followed on its columns (NULL keys match nothing, as in the foreign key itself)."""
    if e.kind == "child":
        pairs = zip(e.columns, e.ref_columns)  # x references p
    else:
        pairs = zip(e.ref_columns, e.columns)  # p references x
    on = " AND ".join(f"x.{quote_ident(a)} = p.{quote_ident(b)}" for a, b in pairs)
    down = " AND c.down" if e.kind == "child" else ""
    return (f"SELECT {e.to}, {'true' if e.kind == 'child' else 'false'}, x.tableoid, x.ctid "
            f"FROM {g.relations[e.frm]} p JOIN {g.relations[e.to]} x ON {on} "
            f"WHERE c.t = {e.frm}{down} AND p.tableoid = c.rel AND p.ctid = c.tid")


def closure_sql(g: Group) -> str:
    """WITH RECURSIVE closure(t, down, rel, tid): every row of the group the closure includes (a row may
    appear twice, reached downwards and upwards)."""
    seeds = " UNION ALL ".join(f"SELECT {s.tag}, true, tableoid, ctid FROM {g.relations[s.tag]} WHERE {s.predicate}"
                               for s in g.seeds)
    if not g.edges:
        return f"WITH closure(t, down, rel, tid) AS ({seeds})"
    steps = " UNION ALL ".join(_step(g, e) for e in g.edges)
    return (f"WITH RECURSIVE closure(t, down, rel, tid) AS (({seeds}) UNION "
            f"SELECT n.* FROM closure c CROSS JOIN LATERAL ({steps}) n)")


def relevant(g: Group, tag: int) -> Group:
    """The part of the group that decides which rows of table `tag` are included: the steps on a path
    into it, the seeds of the tables they start from. Each unit runs only that part."""
    needed, size = {tag}, 0
    while len(needed) != size:
        size = len(needed)
        needed |= {e.frm for e in g.edges if e.to in needed}
    return msgspec.structs.replace(g, seeds=tuple(s for s in g.seeds if s.tag in needed),
                                   edges=tuple(e for e in g.edges if e.to in needed))


def rows_sql(g: Group, tag: int, columns: str, relation: str, leaf: bool) -> str:
    """SELECT `columns` of the rows of `relation` (a leaf read ONLY, or a whole table) the closure includes:
    a leaf by a TID scan of its ctids. A table no seed leads to has none."""
    g = relevant(g, tag)
    if not g.seeds:
        return f"SELECT {columns} FROM {'ONLY ' if leaf else ''}{relation} WHERE false"
    if leaf:
        return (f"{closure_sql(g)} SELECT {columns} FROM ONLY {relation} WHERE ctid = ANY (ARRAY("
                f"SELECT c.tid FROM closure c WHERE c.t = {tag} AND c.rel = {_literal(relation)}::regclass))")
    return (f"{closure_sql(g)} SELECT {columns} FROM {relation} WHERE (tableoid, ctid) IN "
            f"(SELECT c.rel, c.tid FROM closure c WHERE c.t = {tag})")


def source_rows(g: Group, tag: int) -> str:
    """The subset's rows of a table as a FROM item, every column by name: what verify compares the target with."""
    return f"({rows_sql(g, tag, '*', g.relations[tag], False)}) AS subset"


def count_sql(g: Group) -> str:
    return f"{closure_sql(g)} SELECT t, count(*) FROM (SELECT DISTINCT t, rel, tid FROM closure) s GROUP BY t"


def _seq_scans(node: dict, out: list[str]) -> None:
    if node.get("Node Type") == "Seq Scan":
        out.append(display_name(node.get("Schema", "public"), node["Relation Name"]))
    for child in node.get("Plans", ()):
        _seq_scans(child, out)


# ---- on the source, inside the snapshot ---------------------------------------------------------------

def check(conn: psycopg.Connection, sp: SubsetPlan, count: bool = True) -> SubsetPlan:
    """Each root's predicate compiled on the source (EXPLAIN), then run until its first seed row (LIMIT 1),
    each in a savepoint of the snapshot's read-only transaction: a condition that writes (nextval(), a
    function that INSERTs) fails there, before the target is touched, rather than in a table's COPY;
    when all pass, each group's closure explained (its sequential scans) and, with `count`, counted: the
    subset's rows per table. The LIMIT 1 costs at most one more read of a root whose condition few rows
    meet and no index finds."""
    problems = list(sp.problems)
    for g in sp.groups:
        for s in g.seeds:
            seed = f"SELECT FROM {g.relations[s.tag]} WHERE {s.predicate}"
            if (exc := _error(conn, f"EXPLAIN {seed}")) is not None:
                problems.append(f"the condition on {s.table} does not compile on the source: {pg.first_line(exc)}: "
                                "fix it (one SQL condition, no statement of its own; names inside it are resolved "
                                "with an empty search_path: write public.orders)")
            elif (exc := _error(conn, f"{seed} LIMIT 1")) is not None:
                why = pg.primary(exc) if (exc.sqlstate or "")[:2] in ("25", "42") else (
                    f"error {exc.sqlstate} (its message may quote a row: run the condition yourself to read it)")
                problems.append(f"the condition on {s.table} fails on the source, in the snapshot's read-only "
                                f"transaction: {why}: write a condition that only reads (no nextval(), no function "
                                "that writes)")
    if problems:
        return msgspec.structs.replace(sp, problems=tuple(problems))
    rows: dict[str, int] = {}
    scans: list[str] = []
    for g in sp.groups:
        plan_json = conn.execute(f"EXPLAIN (FORMAT JSON, VERBOSE) {count_sql(g)}").fetchone()[0]
        _seq_scans(plan_json[0]["Plan"], scans)
        if count:
            counted = dict(conn.execute(count_sql(g)).fetchall())
            rows.update({name: counted.get(i, 0) for i, name in enumerate(g.tables)})
    return msgspec.structs.replace(sp, rows=rows, scans=tuple(dict.fromkeys(scans)))


def _error(conn: psycopg.Connection, query: str) -> psycopg.Error | None:
    """The error `query` fails with (None: it runs), in a savepoint. Sent with the extended protocol (binary
    results force it), which takes one statement only: a condition carrying statements of its own
    (`true); COMMIT; ...`) is refused here, before any later simple-protocol query could run them outside
    the snapshot."""
    conn.execute("SAVEPOINT confiture_fast_subset")
    try:
        conn.execute(query, binary=True)
    except psycopg.Error as exc:
        conn.execute("ROLLBACK TO SAVEPOINT confiture_fast_subset")
        return exc
    conn.execute("RELEASE SAVEPOINT confiture_fast_subset")
    return None
