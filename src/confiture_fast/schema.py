"""--create-schema: what the selected tables need and the target lacks, read from the source's catalog
and created on the target.

The DDL is built here from the source's catalog (format_type, pg_get_expr, pg_get_*def), never by
parsing pg_dump's output, and every name we write is quoted here. Three steps:
  read_source/read_existing  the facts (queries only; the source session's snapshot)
  plan_schema                pure: what is missing, in dependency order, and what cannot come (unit-tested)
  apply                      one target transaction: the pre-data statements, and the post-data ones
                             recorded (signed) as pending_ddl, which the finish phase builds after the load
Text read back from the target is never executed: the target is only asked which names exist.
"""

from __future__ import annotations

import msgspec
import psycopg
from psycopg import sql as _sql

from .catalog import INDEX_DEF, INDEX_DEF_FROM, STATE_SCHEMA, display_name, qualify, quote_ident
from .errors import ConfigError, SyncError, ValidationError

Node = tuple[str, int]  # ('type' | 'func' | 'seq' | 'rel' | 'con' | 'index' | 'trigger' | 'ext' | 'other', source oid)


class SeqFact(msgspec.Struct, frozen=True):
    schema: str
    name: str
    type: str  # format_type of the sequence's type
    start: int
    increment: int
    min: int
    max: int
    cache: int
    cycle: bool
    owned_by: tuple[str, str, str] | None = None  # (schema, table, column): OWNED BY, not identity


class ColumnFact(msgspec.Struct, frozen=True):
    name: str
    type: str  # format_type()
    not_null: bool = False
    default: str | None = None  # pg_get_expr(); the expression when generated
    generated: str = ""  # '' | 's' (STORED) | 'v' (VIRTUAL)
    identity: str = ""  # '' | 'a' (ALWAYS) | 'd' (BY DEFAULT)
    identity_seq: SeqFact | None = None
    collation: str | None = None  # quoted and qualified, when not the type's
    storage: str | None = None  # attstorage, when not the type's
    compression: str | None = None  # attcompression, when set
    statistics: int | None = None  # attstattarget, when set
    comment: str | None = None
    inherited: bool = False  # from a parent (inheritance or partitioning): not declared, only adjusted
    parent_default: str | None = None  # what it inherits
    parent_not_null: bool = False
    parent_storage: str | None = None


class TableFact(msgspec.Struct, frozen=True):
    oid: int
    schema: str
    name: str
    kind: str  # 'r' | 'p'
    root: int  # the selected table it belongs to (itself, or the root of its partition tree)
    columns: tuple[ColumnFact, ...] = ()
    unlogged: bool = False
    partkey: str | None = None  # pg_get_partkeydef(): 'RANGE (created_at)'
    bound: str | None = None  # pg_get_expr(relpartbound): 'FOR VALUES ...' or 'DEFAULT'
    parents: tuple[tuple[str, str], ...] = ()  # the partition's parent, or INHERITS (...) in order
    options: tuple[tuple[str, str], ...] = ()
    comment: str | None = None
    replident: str = "d"
    row_security: bool = False

    @property
    def qualified(self) -> str:
        return qualify(self.schema, self.name)


class TypeFact(msgspec.Struct, frozen=True):
    oid: int
    schema: str
    name: str
    kind: str  # 'e' enum | 'd' domain | 'c' composite | 'r' range | other: not created
    labels: tuple[str, ...] = ()
    base: str = ""  # domain: format_type of its base
    not_null: bool = False
    default: str | None = None
    collation: str | None = None
    checks: tuple[tuple[str, str], ...] = ()  # domain: (name, pg_get_constraintdef)
    attributes: tuple[tuple[str, str, str | None], ...] = ()  # composite: (name, type, collation)
    range: tuple[tuple[str, str], ...] = ()  # range: (option, value written as is)
    canonical: bool = False  # range with a canonical function: not created
    comment: str | None = None


class FuncFact(msgspec.Struct, frozen=True):
    oid: int
    schema: str
    name: str
    args: str  # pg_get_function_identity_arguments
    definition: str | None  # pg_get_functiondef; None: an aggregate or window function, not created
    comment: str | None = None
    opaque: bool = False  # a body whose calls pg_depend does not track (PL/pgSQL, SQL without BEGIN ATOMIC)


class ConFact(msgspec.Struct, frozen=True):
    oid: int
    table: int
    name: str
    kind: str  # 'p' 'u' 'x' 'c' 'f'
    definition: str
    comment: str | None = None
    ref: tuple[str, str] | None = None  # a foreign key's referenced table
    index: str | None = None  # the index behind p/u/x
    options: tuple[tuple[str, str], ...] = ()
    clustered: bool = False
    replident: bool = False
    index_comment: str | None = None


class IndexFact(msgspec.Struct, frozen=True):
    oid: int
    table: int
    name: str
    definition: str  # CREATE INDEX, recursing into partitions
    comment: str | None = None
    clustered: bool = False
    replident: bool = False


class TriggerFact(msgspec.Struct, frozen=True):
    oid: int
    table: int
    name: str
    definition: str
    enabled: str  # 'O' 'D' 'A' 'R'
    comment: str | None = None


class ViewFact(msgspec.Struct, frozen=True):
    oid: int
    schema: str
    name: str
    kind: str  # 'v' | 'm'
    definition: str  # pg_get_viewdef(), ending with ';'
    options: tuple[tuple[str, str], ...] = ()
    comment: str | None = None
    column_comments: tuple[tuple[str, str], ...] = ()
    indexes: tuple[IndexFact, ...] = ()

    @property
    def qualified(self) -> str:
        return qualify(self.schema, self.name)


class Source(msgspec.Struct, frozen=True):
    """What the source says about the selected tables and everything they could need."""

    roots: tuple[int, ...]  # the selected tables
    tables: dict[int, TableFact]
    types: dict[int, TypeFact] = {}
    funcs: dict[int, FuncFact] = {}
    seqs: dict[int, SeqFact] = {}
    cons: tuple[ConFact, ...] = ()
    indexes: tuple[IndexFact, ...] = ()
    triggers: tuple[TriggerFact, ...] = ()
    views: dict[int, ViewFact] = {}
    deps: dict[Node, tuple[Node, ...]] = {}  # an object -> what it references (normal pg_depend)
    members: dict[Node, str] = {}  # an extension's member -> the extension's name
    ext_schemas: dict[str, str] = {}  # extension -> the schema it is installed in
    described: dict[Node, str] = {}  # pg_describe_object of what cannot be created
    schema_comments: dict[str, str] = {}


class Existing(msgspec.Struct, frozen=True):
    """What the target has: never created. A type or function the created objects would use instead
    of the source's must be the source's (compared) and owned by us or a superuser."""

    schemas: frozenset[str] = frozenset()
    relations: frozenset[tuple[str, str]] = frozenset()
    types: frozenset[tuple[str, str]] = frozenset()
    funcs: frozenset[tuple[str, str, str]] = frozenset()
    extensions: frozenset[str] = frozenset()
    version: int = 180000
    pending: frozenset[tuple[str, str]] = frozenset()  # (table, name) of verified pending_ddl records
    type_defs: dict[tuple[str, str], TypeFact] = {}  # the target's enums, domains, composites, ranges
    func_defs: dict[tuple[str, str, str], str | None] = {}  # pg_get_functiondef, by signature
    owners: dict[tuple[str, str, str, str], str] = {}  # ('type', s, n, '') / ('func', s, n, args) -> not ours
    me: str = ""


class Step(msgspec.Struct, frozen=True):
    """One object created before the load: its statements run in the one pre-data transaction."""

    kind: str  # 'schema', 'extension', 'type', 'function', 'sequence', 'table'
    name: str
    statements: tuple[str, ...]


class Post(msgspec.Struct, frozen=True):
    """One object created after the load, recorded as a pending_ddl item: phase 1 with its table's
    indexes (after that table's load), 2 foreign keys, 3 triggers, 4 and on views by depth."""

    kind: str
    table: str  # display name the record is filed under
    name: str
    phase: int
    statements: tuple[str, ...]
    fallback: tuple[str, ...] | None = None  # a foreign key the rows violate: created NOT VALID

    @property
    def create_sql(self) -> str:
        """As a pending_ddl record holds it (target.write_records): one transaction of statements."""
        return ";\n".join(self.statements)

    @property
    def fallback_sql(self) -> str | None:
        return ";\n".join(self.fallback) if self.fallback else None


class SchemaPlan(msgspec.Struct, frozen=True):
    pre: tuple[Step, ...] = ()
    post: tuple[Post, ...] = ()
    not_created: tuple[str, ...] = ()  # 'view public.v: it reads public.audit, which is not synced'
    tables: tuple[tuple[str, str], ...] = ()  # (schema, name) of the selected tables it creates

    @property
    def count(self) -> int:
        return len(self.pre) + len(self.post)

    def listing(self) -> list[str]:
        return [f"{s.kind} {s.name}" for s in self.pre] + [
            f"{p.kind} {p.name}{'' if p.name == p.table else ' on ' + p.table} (after the load)" for p in self.post]


# -- planning (pure) -----------------------------------------------------------------------------
def _lit(text: str) -> str:
    return _sql.Literal(text).as_string(None)


def _options(opts) -> str:
    return "(" + ", ".join(f"{quote_ident(k)} = {_lit(v)}" for k, v in opts) + ")"


def _seq_options(s: SeqFact) -> str:
    return (f"INCREMENT BY {s.increment} MINVALUE {s.min} MAXVALUE {s.max} START WITH {s.start} CACHE {s.cache} "
            + ("CYCLE" if s.cycle else "NO CYCLE"))


def _comment(what: str, text: str | None) -> list[str]:
    return [f"COMMENT ON {what} IS {_lit(text)}"] if text is not None else []


def _type_sql(t: TypeFact, version: int) -> list[str]:
    q = qualify(t.schema, t.name)
    if t.kind == "e":
        out = [f"CREATE TYPE {q} AS ENUM (" + ", ".join(_lit(x) for x in t.labels) + ")"]
    elif t.kind == "d":
        out = [f"CREATE DOMAIN {q} AS {t.base}" + (f" COLLATE {t.collation}" if t.collation else "")
               + (f" DEFAULT {t.default}" if t.default is not None else "") + (" NOT NULL" if t.not_null else "")]
        out += [f"ALTER DOMAIN {q} ADD CONSTRAINT {quote_ident(n)} {d}" for n, d in t.checks]
    elif t.kind == "c":
        out = [f"CREATE TYPE {q} AS (" + ", ".join(
            f"{quote_ident(n)} {ty}" + (f" COLLATE {c}" if c else "") for n, ty, c in t.attributes) + ")"]
    else:
        opts = [(k, v) for k, v in t.range if k != "multirange_type_name" or version >= 140000]
        out = [f"CREATE TYPE {q} AS RANGE (" + ", ".join(f"{k.upper()} = {v}" for k, v in opts) + ")"]
    return out + _comment(f"{'DOMAIN' if t.kind == 'd' else 'TYPE'} {q}", t.comment)


def _column_sql(c: ColumnFact) -> str:
    out = f"{quote_ident(c.name)} {c.type}"
    if c.collation:
        out += f" COLLATE {c.collation}"
    if c.generated:
        out += f" GENERATED ALWAYS AS ({c.default}) {'VIRTUAL' if c.generated == 'v' else 'STORED'}"
    elif c.identity:
        s = c.identity_seq
        opts = f" (SEQUENCE NAME {qualify(s.schema, s.name)} {_seq_options(s)})" if s is not None else ""
        out += f" GENERATED {'ALWAYS' if c.identity == 'a' else 'BY DEFAULT'} AS IDENTITY{opts}"
    elif c.default is not None:
        out += f" DEFAULT {c.default}"
    return out + (" NOT NULL" if c.not_null else "")


def _table_sql(t: TableFact) -> list[str]:
    q = t.qualified
    parents = [qualify(*p) for p in t.parents]
    tail = (f" PARTITION BY {t.partkey}" if t.partkey else "") + (f" WITH {_options(t.options)}" if t.options else "")
    unlogged = "UNLOGGED " if t.unlogged else ""
    if t.bound is not None:
        out = [f"CREATE {unlogged}TABLE {q} PARTITION OF {parents[0]} {t.bound}{tail}"]
    else:
        own = ", ".join(_column_sql(c) for c in t.columns if not c.inherited)
        out = [f"CREATE {unlogged}TABLE {q} ({own})" + (f" INHERITS ({', '.join(parents)})" if parents else "") + tail]
    for c in t.columns:
        col = f"ALTER TABLE {q} ALTER COLUMN {quote_ident(c.name)}"
        if c.inherited:
            if c.default != c.parent_default and not c.generated:
                out.append(f"{col} SET DEFAULT {c.default}" if c.default is not None else f"{col} DROP DEFAULT")
            if c.not_null and not c.parent_not_null:
                out.append(f"{col} SET NOT NULL")
        if c.storage != (c.parent_storage if c.inherited else None) and c.storage is not None:
            out.append(f"{col} SET STORAGE {_STORAGE[c.storage]}")
        if c.compression:
            out.append(f"{col} SET COMPRESSION {quote_ident(c.compression)}")
        if c.statistics is not None:
            out.append(f"{col} SET STATISTICS {c.statistics}")
    if t.replident in ("f", "n"):
        out.append(f"ALTER TABLE {q} REPLICA IDENTITY {'FULL' if t.replident == 'f' else 'NOTHING'}")
    out += _comment(f"TABLE {q}", t.comment)
    for c in t.columns:
        out += _comment(f"COLUMN {q}.{quote_ident(c.name)}", c.comment)
    return out


_STORAGE = {"p": "PLAIN", "e": "EXTERNAL", "m": "MAIN", "x": "EXTENDED"}
_CREATE_FUNCTION = ("CREATE OR REPLACE FUNCTION ", "CREATE OR REPLACE PROCEDURE ")


def _function_sql(f: FuncFact) -> list[str] | None:
    """CREATE, never CREATE OR REPLACE: what is on the target (by signature) is not replaced."""
    if f.definition is None or not f.definition.startswith(_CREATE_FUNCTION):
        return None
    sig = f"{qualify(f.schema, f.name)}({f.args})"
    kind = "PROCEDURE" if f.definition.startswith(_CREATE_FUNCTION[1]) else "FUNCTION"
    return ["CREATE " + f.definition[len("CREATE OR REPLACE "):]] + _comment(f"{kind} {sig}", f.comment)


_TYPE_PARTS = (("kind", "kind"), ("labels", "labels"), ("base", "base type"), ("not_null", "NOT NULL"),
               ("default", "default"), ("collation", "collation"), ("attributes", "attributes"),
               ("range", "range options"), ("canonical", "canonical function"))


def _type_difference(ours: TypeFact, theirs: TypeFact) -> str | None:
    """What differs between the source's type and the target's of the same name (the target's
    there, the source's here); None when they hold and check the same values."""
    for attr, label in _TYPE_PARTS:
        a, b = getattr(ours, attr), getattr(theirs, attr)
        if a != b:
            return f"differs in its {label} ({_shown(b)} there, {_shown(a)} here)"
    a, b = tuple(sorted(d for _, d in ours.checks)), tuple(sorted(d for _, d in theirs.checks))
    return None if a == b else f"differs in its CHECKs ({_shown(b)} there, {_shown(a)} here)"


def _shown(v) -> str:
    if isinstance(v, tuple):
        return "(" + ", ".join(_shown(x) for x in v) + ")" if v else "none"
    return "none" if v is None or v == "" else str(v)


def _toposort(nodes: list[Node], edges: dict[Node, set[Node]]) -> list[Node]:
    """Every node after what it references (depth first, in the given order otherwise)."""
    out: list[Node] = []
    state: dict[Node, int] = {}

    def visit(n: Node, path: tuple[Node, ...]) -> None:
        if state.get(n) == 2:
            return
        if state.get(n) == 1:
            raise ValidationError("--create-schema: the source's objects reference each other in a cycle:",
                                  [" -> ".join(f"{k} {o}" for k, o in path + (n,))])
        state[n] = 1
        for m in sorted(edges.get(n, ())):
            visit(m, path + (n,))
        state[n] = 2
        out.append(n)

    for n in nodes:
        visit(n, ())
    return out


_KINDS = {"type": "type", "seq": "sequence", "rel": "relation"}


class _Needs:
    """What the objects to create reference, resolved against the target: `need` collects, in
    discovery order, every source object to create; `why_not` what cannot be had, and why."""

    def __init__(self, src: Source, have: Existing, created_rels: set[tuple[str, str]]):
        self.src, self.have, self.created_rels = src, have, created_rels
        self.need: dict[Node, None] = {}
        self.extensions: dict[str, None] = {}
        self.why_not: dict[Node, str] = {}
        self.conflicts: set[str] = set()  # why_not texts that carry their own fix
        self.runs = True  # what is required now runs during the load or the rebuild (not a trigger)
        self.opaque: dict[Node, None] = {}  # such functions whose bodies' calls are not tracked

    def conflict(self, n: Node) -> str | None:
        """Why the target's type or function of that name may not stand in for the source's: another
        definition would change values silently, another owner could change it under us."""
        kind, oid = n
        have = self.have
        if kind == "type" and oid in self.src.types:
            t = self.src.types[oid]
            key = ("type", t.schema, t.name, "")
            theirs = have.type_defs.get((t.schema, t.name))
            diff = "is another kind of type" if theirs is None else _type_difference(t, theirs)
            alter = f"{'DOMAIN' if t.kind == 'd' else 'TYPE'} {qualify(t.schema, t.name)}"
        elif kind == "func" and oid in self.src.funcs:
            f = self.src.funcs[oid]
            key = ("func", f.schema, f.name, f.args)
            diff = None if have.func_defs.get(key[1:]) == f.definition else "has another definition"
            alter = f"ROUTINE {qualify(f.schema, f.name)}({f.args})"
        else:
            return None
        what = self.describe(n)
        if diff is not None:
            return (f"it needs {what}, which on the target {diff}: drop or rename the target's, or make it the "
                    "source's")
        if (owner := have.owners.get(key)) is not None:
            return (f"it needs {what}, which on the target is owned by {owner}, who could change it: if {owner} is "
                    f"trusted, ALTER {alter} OWNER TO {quote_ident(have.me)}; otherwise drop it")
        return None

    def state(self, n: Node) -> bool | None:
        """True: on the target (or comes with an extension); False: to be created; None: cannot be."""
        src, have = self.src, self.have
        kind, oid = n
        if n in src.members:
            return True
        if kind == "type" and (t := src.types.get(oid)) is not None:
            if (t.schema, t.name) in have.types:
                return True
            return False if t.kind in ("e", "d", "c", "r") and not t.canonical else None
        if kind == "func" and (f := src.funcs.get(oid)) is not None:
            return True if (f.schema, f.name, f.args) in have.funcs else (False if _function_sql(f) else None)
        if kind == "seq" and (s := src.seqs.get(oid)) is not None:
            return (s.schema, s.name) in have.relations
        if kind == "rel" and (r := src.tables.get(oid) or src.views.get(oid)) is not None:
            key = (r.schema, r.name)
            return True if key in have.relations else (False if key in self.created_rels else None)
        return None

    def describe(self, n: Node) -> str:
        kind, oid = n
        obj = _object(self.src, n)
        if kind == "func" and obj is not None:
            return f"function {display_name(obj.schema, obj.name)}({obj.args})"
        if obj is not None:
            return f"{_KINDS[kind]} {display_name(obj.schema, obj.name)}"
        return self.src.described.get(n, f"{kind} {oid}")

    def require(self, n: Node, path: tuple[Node, ...] = ()) -> str | None:
        """Adds `n` and what it references to `need` (or its extension); None, or why it cannot be had."""
        if self.runs and n[0] == "func" and (f := self.src.funcs.get(n[1])) is not None and f.opaque:
            self.opaque[n] = None  # also when something that does not run (a trigger) required it first
        if n in self.need or n in path:
            return None
        if n in self.why_not:
            return self.why_not[n]
        if n in self.src.members:
            self.extensions[self.src.members[n]] = None
            return None
        state = self.state(n)
        if state is None:
            self.why_not[n] = f"it needs {self.describe(n)}, which --create-schema does not create"
            return self.why_not[n]
        if state and (why := self.conflict(n)) is not None:
            self.why_not[n] = why
            self.conflicts.add(why)
            return why
        if n[0] == "rel":
            return None  # there, or a table created anyway
        for m in self.src.deps.get(n, ()):  # also of what the target has: the functions its CHECKs call
            if (why := self.require(m, path + (n,))) is not None:
                self.why_not[n] = why
                return why
        if not state:
            self.need[n] = None
        return None

    def require_all(self, n: Node, skip=("rel", "index")) -> str | None:
        """What an object not created before the load references: None when all of it can be had."""
        for m in self.src.deps.get(n, ()):
            if m[0] not in skip and (why := self.require(m)) is not None:
                return why
        return None


def plan_schema(src: Source, have: Existing) -> SchemaPlan:
    """What to create, in order; raises ValidationError when a selected table needs something that
    cannot be created. Views and functions of the synced schemas that cannot come are listed."""
    problems: list[str] = []
    not_created: list[str] = []
    tables = {oid: t for oid, t in src.tables.items()
              if (src.tables[t.root].schema, src.tables[t.root].name) not in have.relations}
    created_rels = {(t.schema, t.name) for t in tables.values()}
    available_rels = created_rels | have.relations
    needs = _Needs(src, have, created_rels)
    for oid in sorted(tables):
        t = tables[oid]
        for p in t.parents:
            if p not in available_rels:
                problems.append(f"{display_name(t.schema, t.name)}: its parent table {display_name(*p)} is neither "
                                "selected nor on the target: select it too, or create it on the target first")
        if (why := needs.require_all(("rel", oid), skip=("rel",))) is not None:
            fix = "" if why in needs.conflicts else ": create it on the target first"
            problems.append(f"{display_name(t.schema, t.name)}: {why}{fix}, or --exclude the table")
    if problems:
        raise ValidationError(f"--create-schema: {len(problems)} problem(s) found before creating anything:", problems)
    synced = {src.tables[r].schema for r in src.roots}
    posts = _post_data(src, tables, available_rels, needs, not_created)
    for oid, f in sorted(src.funcs.items()):
        if f.schema in synced and (f.schema, f.name, f.args) not in have.funcs:
            if _function_sql(f) is None:
                not_created.append(f"function {display_name(f.schema, f.name)}({f.args}): an aggregate or window "
                                   "function (--create-schema creates functions and procedures)")
            elif (why := needs.require(("func", oid))) is not None:
                not_created.append(f"function {display_name(f.schema, f.name)}({f.args}): {why}")
    posts += _views(src, synced, have, needs, not_created)
    _opaque_calls(needs)
    posts = [p for p in posts if (p.table, p.name) not in have.pending]  # an interrupted run's: built by the finish
    for t in tables.values():
        if t.row_security:
            not_created.append(f"row-level security of {display_name(t.schema, t.name)} and its policies "
                               "(they name roles, which differ between environments)")

    nodes = [n for n in needs.need] + [("rel", oid) for oid in sorted(tables)]
    edges: dict[Node, set[Node]] = {n: {m for m in src.deps.get(n, ()) if m in needs.need or
                                        (m[0] == "rel" and m[1] in tables)} for n in nodes}
    by_key = {(t.schema, t.name): oid for oid, t in tables.items()}
    for oid, t in tables.items():
        edges[("rel", oid)] |= {("rel", by_key[p]) for p in t.parents if p in by_key}
    order = _toposort(nodes, edges)
    schemas = {_object(src, n).schema for n in order} | {src.ext_schemas[e] for e in needs.extensions}
    steps = [Step("schema", quote_ident(s), (f"CREATE SCHEMA {quote_ident(s)}", *_comment(
        f"SCHEMA {quote_ident(s)}", src.schema_comments.get(s)))) for s in sorted(schemas - have.schemas)]
    steps += [Step("extension", e, (f"CREATE EXTENSION IF NOT EXISTS {quote_ident(e)} WITH SCHEMA "
                                    f"{quote_ident(src.ext_schemas[e])}",))
              for e in sorted(needs.extensions) if e not in have.extensions]
    owned: list[str] = []
    for n in order:
        kind, oid = n
        obj = _object(src, n)
        name = display_name(obj.schema, obj.name)
        if kind == "type":
            steps.append(Step("type", name, tuple(_type_sql(obj, have.version))))
        elif kind == "func":
            steps.append(Step("function", f"{name}({obj.args})", tuple(_function_sql(obj))))
        elif kind == "seq":
            q = qualify(obj.schema, obj.name)
            steps.append(Step("sequence", name, (f"CREATE SEQUENCE {q} AS {obj.type} {_seq_options(obj)}",)))
            if obj.owned_by is not None and obj.owned_by[:2] in available_rels:
                owned.append(f"ALTER SEQUENCE {q} OWNED BY {qualify(*obj.owned_by[:2])}.{quote_ident(obj.owned_by[2])}")
        else:
            steps.append(Step("table", name, tuple(_table_sql(obj))))
    if owned:
        steps.append(Step("sequence ownership", f"{len(owned)} sequence(s)", tuple(owned)))
    return SchemaPlan(tuple(steps), tuple(posts), tuple(not_created),
                      tuple((src.tables[r].schema, src.tables[r].name) for r in src.roots if r in tables))


def _opaque_calls(needs: _Needs) -> None:
    """A function the load or the rebuild runs may call, from a body we cannot follow, any function
    the target has: refused while other roles own functions there."""
    foreign = sorted(f"{display_name(s, n)}({a}) owned by {o}" for (k, s, n, a), o in needs.have.owners.items()
                     if k == "func")
    if not needs.opaque or not foreign:
        return
    others = ", ".join(foreign[:3]) + (f" and {len(foreign) - 3} more" if len(foreign) > 3 else "")
    raise ValidationError(
        "--create-schema: the load or the rebuild would run functions whose bodies' calls are not tracked, on a "
        "target where other roles own functions they could reach:",
        [f"{needs.describe(n)}; the target's: {others}" for n in needs.opaque],
        f"if those roles are trusted, ALTER ROUTINE ... OWNER TO {quote_ident(needs.have.me)}; otherwise drop "
        "their functions, or --exclude the tables that need these")


def _object(src: Source, n: Node):
    return {"type": src.types, "func": src.funcs, "seq": src.seqs, "rel": src.tables}.get(n[0], {}).get(n[1])


def _post_data(src: Source, tables: dict[int, TableFact], available_rels, needs: _Needs,
               not_created: list[str]) -> list[Post]:
    """The constraints, indexes and triggers of the created tables, each a record of its own."""
    out: list[Post] = []
    root = {oid: display_name(src.tables[t.root].schema, src.tables[t.root].name) for oid, t in tables.items()}

    def ok(n: Node, what: str) -> bool:
        if (why := needs.require_all(n)) is not None:
            not_created.append(f"{what}: {why}")
            return False
        return True

    for c in src.cons:
        if c.table not in tables:
            continue
        t = tables[c.table]
        q = t.qualified
        what = f"constraint {quote_ident(c.name)} on {display_name(t.schema, t.name)}"
        if not ok(("con", c.oid), what):
            continue
        add = f"ALTER TABLE {q} ADD CONSTRAINT {quote_ident(c.name)} {c.definition}"
        comment = _comment(f"CONSTRAINT {quote_ident(c.name)} ON {q}", c.comment)
        if c.kind == "f":
            if c.ref not in available_rels:
                not_created.append(f"foreign key {quote_ident(c.name)} on {display_name(t.schema, t.name)}: it "
                                   f"references {display_name(*c.ref)}, which is neither synced nor on the target")
                continue
            fallback = None if c.definition.endswith(" NOT VALID") else (add + " NOT VALID", *comment)
            out.append(Post("foreign key", root[c.table], c.name, 2, (add, *comment), fallback))
            continue
        stmts = [add]
        if c.index is not None:
            ix = qualify(t.schema, c.index)
            if c.options and t.kind == "r":
                stmts.append(f"ALTER INDEX {ix} SET {_options(c.options)}")
            stmts += _comment(f"INDEX {ix}", c.index_comment)
            if c.clustered:
                stmts.append(f"ALTER TABLE {q} CLUSTER ON {quote_ident(c.index)}")
            if c.replident:
                stmts.append(f"ALTER TABLE {q} REPLICA IDENTITY USING INDEX {quote_ident(c.index)}")
        out.append(Post("check constraint" if c.kind == "c" else "constraint", root[c.table], c.name, 1,
                        tuple(stmts + comment)))
    for i in src.indexes:
        if i.table in tables and ok(("index", i.oid), f"index {qualify(tables[i.table].schema, i.name)}"):
            out.append(Post("index", root[i.table], i.name, 1, tuple(_index_sql(tables[i.table], i))))
    needs.runs = False  # a trigger fires only after our run
    for tr in src.triggers:
        if tr.table not in tables:
            continue
        t = tables[tr.table]
        if not ok(("trigger", tr.oid), f"trigger {quote_ident(tr.name)} on {display_name(t.schema, t.name)}"):
            continue
        stmts = [tr.definition]
        if tr.enabled != "O":
            mode = {"D": "DISABLE", "A": "ENABLE ALWAYS", "R": "ENABLE REPLICA"}[tr.enabled]
            stmts.append(f"ALTER TABLE {t.qualified} {mode} TRIGGER {quote_ident(tr.name)}")
        stmts += _comment(f"TRIGGER {quote_ident(tr.name)} ON {t.qualified}", tr.comment)
        out.append(Post("trigger", root[tr.table], tr.name, 3, tuple(stmts)))
    return out


def _index_sql(rel, i: IndexFact) -> list[str]:
    ix = qualify(rel.schema, i.name)
    out = [i.definition] + _comment(f"INDEX {ix}", i.comment)
    if i.clustered:
        out.append(f"ALTER TABLE {rel.qualified} CLUSTER ON {quote_ident(i.name)}")
    if i.replident:
        out.append(f"ALTER TABLE {rel.qualified} REPLICA IDENTITY USING INDEX {quote_ident(i.name)}")
    return out


_VIEW = {"v": "view", "m": "materialized view"}


def _views(src: Source, synced: set[str], have: Existing, needs: _Needs, not_created: list[str]) -> list[Post]:
    """The views and materialized views of the synced schemas that read only synced tables (and views
    that come too), after the load (a materialized view is filled from the loaded rows), by depth."""
    synced_rels = {oid for oid, t in src.tables.items() if t.root in src.roots}
    depth: dict[int, int | None] = {}

    def level(oid: int, path: tuple[int, ...]) -> int | None:
        if oid in depth:
            return depth[oid]
        v = src.views[oid]
        why, d = None, 0
        for m in src.deps.get(("rel", oid), ()):
            if m[0] == "rel" and m[1] == oid:
                continue
            if m[0] == "rel" and m[1] in src.views:
                sub = None if m[1] in path else level(m[1], path + (oid,))
                if sub is None:
                    why = f"it reads {needs.describe(m)}, which is not created"
                    break
                d = max(d, sub + 1)
            elif m[0] == "rel":
                if m[1] not in synced_rels:
                    why = f"it reads {needs.describe(m)}, which is not synced"
                    break
            else:
                needs.runs = v.kind == "m"  # a materialized view is filled, running its functions, in the finish
                if (why := needs.require(m)) is not None:
                    break
        if why is None and not v.definition.endswith(";"):
            why = "its definition could not be read"
        if why is not None:
            not_created.append(f"{_VIEW[v.kind]} {display_name(v.schema, v.name)}: {why}")
        depth[oid] = None if why is not None else d
        return depth[oid]

    out = []
    for oid, v in sorted(src.views.items(), key=lambda kv: (kv[1].schema, kv[1].name)):
        if v.schema not in synced or (v.schema, v.name) in have.relations or (d := level(oid, ())) is None:
            continue
        q, what = v.qualified, _VIEW[v.kind].upper()
        check = dict(v.options).get("check_option")
        opts = [(k, x) for k, x in v.options if k != "check_option"]
        stmt = (f"CREATE {what} {q}" + (f" WITH {_options(opts)}" if opts else "") + " AS\n" + v.definition[:-1]
                + (f"\n WITH {check.upper()} CHECK OPTION" if check in ("local", "cascaded") else "")
                + ("\n WITH DATA" if v.kind == "m" else ""))
        stmts = [stmt, *_comment(f"{what} {q}", v.comment)]
        stmts += [s for c, text in v.column_comments for s in _comment(f"COLUMN {q}.{quote_ident(c)}", text)]
        stmts += [s for i in v.indexes for s in _index_sql(v, i)]
        out.append(Post(_VIEW[v.kind], display_name(v.schema, v.name), display_name(v.schema, v.name), 4 + d,
                        tuple(stmts)))
    return out


# -- reading (queries only) ----------------------------------------------------------------------
_SYSTEM = "('pg_catalog', 'information_schema', '" + STATE_SCHEMA + "')"


def _node_sql(c: str, o: str) -> str:
    """(kind, oid) of the object that pg_depend's (classid, objid) belongs to, as a planner node: a
    column default or a table's constraint belongs to the table, a domain's constraint and a composite
    type's relation to the type, an array type stands for its element, a view's rule for the view."""
    return f"""SELECT CASE
  WHEN {c} = 'pg_class'::regclass THEN (SELECT CASE r.relkind WHEN 'c' THEN 'type' WHEN 'S' THEN 'seq'
       WHEN 'i' THEN 'index' WHEN 'I' THEN 'index' ELSE 'rel' END FROM pg_class r WHERE r.oid = {o})
  WHEN {c} = 'pg_type'::regclass THEN (SELECT CASE WHEN r.relkind <> 'c' THEN 'rel' ELSE 'type' END
       FROM pg_type t LEFT JOIN pg_class r ON r.oid = t.typrelid WHERE t.oid = {o})
  WHEN {c} = 'pg_proc'::regclass THEN 'func'
  WHEN {c} IN ('pg_attrdef'::regclass, 'pg_rewrite'::regclass) THEN 'rel'
  WHEN {c} = 'pg_constraint'::regclass THEN (SELECT CASE WHEN x.contypid <> 0 THEN 'type' ELSE 'con' END
       FROM pg_constraint x WHERE x.oid = {o})
  WHEN {c} = 'pg_trigger'::regclass THEN 'trigger'
  WHEN {c} = 'pg_namespace'::regclass THEN 'schema'
  WHEN {c} = 'pg_extension'::regclass THEN 'ext'
  ELSE 'other' END AS kind,
CASE
  WHEN {c} = 'pg_class'::regclass THEN (SELECT CASE WHEN r.relkind = 'c' THEN r.reltype ELSE r.oid END
       FROM pg_class r WHERE r.oid = {o})
  WHEN {c} = 'pg_type'::regclass THEN (SELECT CASE WHEN r.relkind <> 'c' THEN r.oid
       WHEN t.typcategory = 'A' AND t.typelem <> 0 THEN t.typelem ELSE t.oid END
       FROM pg_type t LEFT JOIN pg_class r ON r.oid = t.typrelid WHERE t.oid = {o})
  WHEN {c} = 'pg_attrdef'::regclass THEN (SELECT adrelid FROM pg_attrdef WHERE oid = {o})
  WHEN {c} = 'pg_rewrite'::regclass THEN (SELECT ev_class FROM pg_rewrite WHERE oid = {o})
  WHEN {c} = 'pg_constraint'::regclass THEN (SELECT CASE WHEN x.contypid <> 0 THEN x.contypid ELSE x.oid END
       FROM pg_constraint x WHERE x.oid = {o})
  ELSE {o} END AS oid"""


_DEPS_SQL = f"""
SELECT DISTINCT a.kind, a.oid, b.kind, b.oid, pg_describe_object(d.refclassid, d.refobjid, 0)
FROM pg_depend d
CROSS JOIN LATERAL ({_node_sql('d.classid', 'd.objid')}) a
CROSS JOIN LATERAL ({_node_sql('d.refclassid', 'd.refobjid')}) b
WHERE d.deptype = 'n' AND d.objid >= 16384 AND d.refobjid >= 16384 AND b.kind <> 'schema'
  AND (a.kind, a.oid) IS DISTINCT FROM (b.kind, b.oid)
"""

_MEMBERS_SQL = f"""
SELECT a.kind, a.oid, e.extname FROM pg_depend d JOIN pg_extension e ON e.oid = d.refobjid
CROSS JOIN LATERAL ({_node_sql('d.classid', 'd.objid')}) a
WHERE d.deptype = 'e' AND d.refclassid = 'pg_extension'::regclass
"""

_COLL = ("CASE WHEN {col} <> 0 AND {col} <> {dflt} THEN (SELECT quote_ident(cn.nspname) || '.' || "
         "quote_ident(co.collname) FROM pg_collation co JOIN pg_namespace cn ON cn.oid = co.collnamespace "
         "WHERE co.oid = {col}) END")

_TABLES_SQL = """
WITH roots AS (
  SELECT c.oid FROM unnest(%(schemas)s::text[], %(names)s::text[]) r(s, n)
  JOIN pg_namespace ns ON ns.nspname = r.s JOIN pg_class c ON c.relnamespace = ns.oid AND c.relname = r.n
), tree AS (
  SELECT oid AS root, oid FROM roots
  UNION SELECT roots.oid, t.relid FROM roots JOIN pg_class rc ON rc.oid = roots.oid AND rc.relkind = 'p'
  CROSS JOIN LATERAL pg_partition_tree(roots.oid) t
)
SELECT tree.oid, tree.root, n.nspname, c.relname, c.relkind, c.relpersistence = 'u',
       CASE WHEN c.relkind = 'p' THEN pg_get_partkeydef(c.oid) END,
       CASE WHEN c.relispartition THEN pg_get_expr(c.relpartbound, c.oid) END,
       ARRAY(SELECT ARRAY[pn.nspname, p.relname] FROM pg_inherits i JOIN pg_class p ON p.oid = i.inhparent
             JOIN pg_namespace pn ON pn.oid = p.relnamespace WHERE i.inhrelid = c.oid ORDER BY i.inhseqno),
       ARRAY(SELECT ARRAY[split_part(o, '=', 1), substr(o, strpos(o, '=') + 1)] FROM unnest(c.reloptions) o),
       obj_description(c.oid, 'pg_class'), c.relreplident::text, c.relrowsecurity
FROM tree JOIN pg_class c ON c.oid = tree.oid JOIN pg_namespace n ON n.oid = c.relnamespace
ORDER BY tree.root, tree.oid
"""

_COLUMNS_SQL = """
SELECT a.attrelid, a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull, pg_get_expr(d.adbin, d.adrelid),
       a.attgenerated::text, a.attidentity::text, """ + _COLL.format(col="a.attcollation", dflt="t.typcollation") + """,
       CASE WHEN a.attstorage <> t.typstorage THEN a.attstorage::text END, nullif(a.attcompression::text, ''),
       CASE WHEN a.attstattarget >= 0 THEN a.attstattarget::int END, col_description(a.attrelid, a.attnum),
       a.attinhcount > 0, p.def, coalesce(p.notnull, false), p.storage,
       (SELECT s.oid FROM pg_depend x JOIN pg_class s ON s.oid = x.objid AND s.relkind = 'S'
        WHERE x.classid = 'pg_class'::regclass AND x.refclassid = 'pg_class'::regclass AND x.refobjid = a.attrelid
          AND x.refobjsubid = a.attnum AND x.deptype = 'i')
FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid
LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
LEFT JOIN LATERAL (
  SELECT pg_get_expr(pd.adbin, pd.adrelid) AS def, pa.attnotnull AS notnull, pa.attstorage::text AS storage
  FROM pg_inherits i JOIN pg_attribute pa ON pa.attrelid = i.inhparent AND pa.attname = a.attname
  LEFT JOIN pg_attrdef pd ON pd.adrelid = pa.attrelid AND pd.adnum = pa.attnum
  WHERE i.inhrelid = a.attrelid ORDER BY i.inhseqno LIMIT 1) p ON a.attinhcount > 0
WHERE a.attrelid = ANY(%(oids)s::oid[]) AND a.attnum > 0 AND NOT a.attisdropped
ORDER BY a.attrelid, a.attnum
"""

_SEQS_SQL = """
SELECT s.seqrelid, n.nspname, c.relname, format_type(s.seqtypid, NULL), s.seqstart, s.seqincrement, s.seqmin,
       s.seqmax, s.seqcache, s.seqcycle,
       (SELECT ARRAY[tn.nspname, t.relname, a.attname] FROM pg_depend d JOIN pg_class t ON t.oid = d.refobjid
        JOIN pg_namespace tn ON tn.oid = t.relnamespace
        JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
        WHERE d.classid = 'pg_class'::regclass AND d.objid = s.seqrelid AND d.refclassid = 'pg_class'::regclass
          AND d.deptype = 'a' LIMIT 1)
FROM pg_sequence s JOIN pg_class c ON c.oid = s.seqrelid JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE s.seqrelid = ANY(%(oids)s::oid[])
"""

_TYPES_SQL = """
SELECT t.oid, n.nspname, t.typname, t.typtype::text,
       ARRAY(SELECT enumlabel::text FROM pg_enum WHERE enumtypid = t.oid ORDER BY enumsortorder),
       CASE WHEN t.typtype = 'd' THEN format_type(t.typbasetype, t.typtypmod) END, t.typnotnull,
       pg_get_expr(t.typdefaultbin, 0), """ + _COLL.format(col="t.typcollation", dflt="coalesce(b.typcollation, 0)") + """,
       ARRAY(SELECT ARRAY[conname::text, pg_get_constraintdef(oid)] FROM pg_constraint
             WHERE contypid = t.oid AND contype = 'c' ORDER BY conname),
       ARRAY(SELECT ARRAY[a.attname::text, format_type(a.atttypid, a.atttypmod),
                          """ + _COLL.format(col="a.attcollation", dflt="at.typcollation") + """]
             FROM pg_attribute a JOIN pg_type at ON at.oid = a.atttypid
             WHERE t.typtype = 'c' AND a.attrelid = t.typrelid AND a.attnum > 0 AND NOT a.attisdropped
             ORDER BY a.attnum),
       ARRAY(SELECT ARRAY[k, v] FROM (VALUES
               ('subtype', format_type(r.rngsubtype, NULL)),
               ('subtype_opclass', (SELECT quote_ident(on_.nspname) || '.' || quote_ident(oc.opcname)
                                    FROM pg_opclass oc JOIN pg_namespace on_ ON on_.oid = oc.opcnamespace
                                    WHERE oc.oid = r.rngsubopc AND NOT oc.opcdefault)),
               ('collation', """ + _COLL.format(col="r.rngcollation", dflt="coalesce(st.typcollation, 0)") + """),
               ('subtype_diff', CASE WHEN r.rngsubdiff <> 0 THEN r.rngsubdiff::regproc::text END),
               ('multirange_type_name', (SELECT quote_ident(mn.nspname) || '.' || quote_ident(m.typname)
                                         FROM pg_type m JOIN pg_namespace mn ON mn.oid = m.typnamespace
                                         WHERE m.oid = r.rngmultitypid))) o(k, v) WHERE t.typtype = 'r' AND v IS NOT NULL),
       coalesce(r.rngcanonical <> 0, false), obj_description(t.oid, 'pg_type')
FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
LEFT JOIN pg_type b ON b.oid = t.typbasetype LEFT JOIN pg_range r ON r.rngtypid = t.oid
LEFT JOIN pg_type st ON st.oid = r.rngsubtype
WHERE t.oid >= 16384 AND t.typtype IN ('e', 'd', 'c', 'r') AND n.nspname NOT IN """ + _SYSTEM + """
  AND (t.typtype <> 'c' OR (SELECT relkind FROM pg_class WHERE oid = t.typrelid) = 'c')
"""

_FUNCS_SQL = """
SELECT p.oid, n.nspname, p.proname, pg_get_function_identity_arguments(p.oid),
       CASE WHEN p.prokind IN ('f', 'p') THEN pg_get_functiondef(p.oid) END, obj_description(p.oid, 'pg_proc'),
       p.prosqlbody IS NULL AND (SELECT lanname FROM pg_language WHERE oid = p.prolang) NOT IN ('internal', 'c')
FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
WHERE (p.oid = ANY(%(oids)s::oid[]) OR n.nspname = ANY(%(schemas)s::text[])) AND p.oid >= 16384
  AND n.nspname NOT IN """ + _SYSTEM + """
  AND NOT EXISTS (SELECT FROM pg_depend e WHERE e.classid = 'pg_proc'::regclass AND e.objid = p.oid
                  AND e.deptype IN ('e', 'i'))
"""

_CONS_SQL = """
SELECT con.oid, con.conrelid, con.conname, con.contype::text, pg_get_constraintdef(con.oid),
       obj_description(con.oid, 'pg_constraint'),
       CASE WHEN con.contype = 'f' THEN ARRAY[rn.nspname, r.relname] END, ic.relname,
       ARRAY(SELECT ARRAY[split_part(o, '=', 1), substr(o, strpos(o, '=') + 1)] FROM unnest(ic.reloptions) o),
       coalesce(i.indisclustered, false), coalesce(i.indisreplident, false), obj_description(ic.oid, 'pg_class')
FROM pg_constraint con
LEFT JOIN pg_class r ON r.oid = con.confrelid LEFT JOIN pg_namespace rn ON rn.oid = r.relnamespace
LEFT JOIN pg_index i ON i.indexrelid = con.conindid AND con.contype IN ('p', 'u', 'x')
LEFT JOIN pg_class ic ON ic.oid = i.indexrelid
WHERE con.conrelid = ANY(%(oids)s::oid[]) AND con.contype IN ('p', 'u', 'x', 'c', 'f') AND con.conparentid = 0
  AND (con.contype <> 'c' OR con.coninhcount = 0)
ORDER BY position(con.contype IN 'puxcf'), con.conrelid, con.conname
"""

# the indexes that no constraint stands for and that are not a partition's share of its parent's
_INDEXES_SQL = """
SELECT i.indexrelid, i.indrelid, ic.relname, """ + INDEX_DEF + """,
       obj_description(i.indexrelid, 'pg_class'), i.indisclustered, i.indisreplident
FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid
""" + INDEX_DEF_FROM + """
WHERE i.indrelid = ANY(%(oids)s::oid[])
  AND NOT EXISTS (SELECT FROM pg_constraint c WHERE c.conindid = i.indexrelid AND c.conrelid = i.indrelid
                  AND c.contype IN ('p', 'u', 'x'))
  AND NOT EXISTS (SELECT FROM pg_inherits h WHERE h.inhrelid = i.indexrelid)
ORDER BY i.indrelid, ic.relname
"""

_TRIGGERS_SQL = """
SELECT t.oid, t.tgrelid, t.tgname, pg_get_triggerdef(t.oid), t.tgenabled::text, obj_description(t.oid, 'pg_trigger')
FROM pg_trigger t WHERE t.tgrelid = ANY(%(oids)s::oid[]) AND NOT t.tgisinternal AND t.tgparentid = 0
ORDER BY t.tgrelid, t.tgname
"""

_VIEWS_SQL = """
SELECT c.oid, n.nspname, c.relname, c.relkind::text, pg_get_viewdef(c.oid),
       ARRAY(SELECT ARRAY[split_part(o, '=', 1), substr(o, strpos(o, '=') + 1)] FROM unnest(c.reloptions) o),
       obj_description(c.oid, 'pg_class'),
       ARRAY(SELECT ARRAY[a.attname::text, col_description(c.oid, a.attnum)] FROM pg_attribute a
             WHERE a.attrelid = c.oid AND a.attnum > 0 AND col_description(c.oid, a.attnum) IS NOT NULL
             ORDER BY a.attnum)
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('v', 'm') AND n.nspname = ANY(%(schemas)s::text[])
  AND NOT EXISTS (SELECT FROM pg_depend e WHERE e.classid = 'pg_class'::regclass AND e.objid = c.oid AND e.deptype = 'e')
"""

MIN_SOURCE_VERSION = 140000


def read_source(conn: psycopg.Connection, selected: list[tuple[str, str]]) -> Source:
    """The facts about `selected` ((schema, name) of source tables) and what they may need, read
    under the caller's snapshot. The session's empty search_path makes every name qualified."""
    if conn.info.server_version < MIN_SOURCE_VERSION:
        raise ConfigError(f"--create-schema reads the source's catalog as PostgreSQL 14 and later write it; the "
                          f"source runs {conn.info.server_version // 10000}",
                          "create the schema on the target first (pg_dump --schema-only), and sync without "
                          "--create-schema")
    rows = conn.execute(_TABLES_SQL, {"schemas": [s for s, _ in selected], "names": [n for _, n in selected]}).fetchall()
    oids = [r[0] for r in rows]
    cols: dict[int, list[ColumnFact]] = {}
    col_rows = conn.execute(_COLUMNS_SQL, {"oids": oids}).fetchall()
    deps: dict[Node, list[Node]] = {}
    described: dict[Node, str] = {}
    for kind, oid, ref_kind, ref_oid, text in conn.execute(_DEPS_SQL):
        deps.setdefault((kind, oid), []).append((ref_kind, ref_oid))
        described.setdefault((ref_kind, ref_oid), text)
    seq_oids = {o for r in col_rows if (o := r[-1]) is not None} | {o for refs in deps.values() for k, o in refs
                                                                     if k == "seq"}
    seqs = {r[0]: SeqFact(*r[1:10], owned_by=tuple(r[10]) if r[10] else None)
            for r in conn.execute(_SEQS_SQL, {"oids": list(seq_oids)})}
    for relid, name, typ, nn, default, gen, ident, coll, storage, compression, stats, comment, inh, pdef, pnn, \
            pstorage, seq in col_rows:
        cols.setdefault(relid, []).append(ColumnFact(
            name, typ, nn, default, gen, ident, seqs.get(seq) if ident else None, coll, storage, compression, stats,
            comment, inh, pdef, pnn, pstorage))
    tables = {r[0]: TableFact(r[0], r[2], r[3], r[4], r[1], tuple(cols.get(r[0], ())), r[5], r[6], r[7],
                              tuple(tuple(p) for p in r[8]), tuple(tuple(o) for o in r[9]), r[10], r[11], r[12])
              for r in rows}
    schemas = sorted({tables[r[1]].schema for r in rows})
    types = {r[0]: _type_fact(r) for r in conn.execute(_TYPES_SQL)}
    func_oids = [o for refs in deps.values() for k, o in refs if k == "func"]
    funcs = {r[0]: FuncFact(*r) for r in conn.execute(_FUNCS_SQL, {"oids": func_oids, "schemas": schemas})}
    cons = tuple(ConFact(r[0], r[1], r[2], r[3], r[4], r[5], tuple(r[6]) if r[6] else None, r[7],
                         tuple(tuple(o) for o in r[8]), r[9], r[10], r[11])
                 for r in conn.execute(_CONS_SQL, {"oids": oids}))
    view_rows = conn.execute(_VIEWS_SQL, {"schemas": schemas}).fetchall()
    indexes = [IndexFact(*r) for r in conn.execute(_INDEXES_SQL, {"oids": oids + [r[0] for r in view_rows]})]
    views = {r[0]: ViewFact(r[0], r[1], r[2], r[3], r[4], tuple(tuple(o) for o in r[5]), r[6],
                            tuple(tuple(c) for c in r[7]), tuple(i for i in indexes if i.table == r[0]))
             for r in view_rows}
    triggers = tuple(TriggerFact(*r) for r in conn.execute(_TRIGGERS_SQL, {"oids": oids}))
    members = {(k, o): ext for k, o, ext in conn.execute(_MEMBERS_SQL)}
    ext_schemas = dict(conn.execute("SELECT e.extname, n.nspname FROM pg_extension e "
                                    "JOIN pg_namespace n ON n.oid = e.extnamespace").fetchall())
    schema_comments = {n: c for n, c in conn.execute(
        "SELECT nspname, obj_description(oid, 'pg_namespace') FROM pg_namespace "
        "WHERE obj_description(oid, 'pg_namespace') IS NOT NULL")}
    roots = tuple(dict.fromkeys(r[1] for r in rows))
    return Source(roots, tables, types, funcs, seqs, cons, tuple(i for i in indexes if i.table in tables), triggers,
                  views, {k: tuple(dict.fromkeys(v)) for k, v in deps.items()}, members, ext_schemas, described,
                  schema_comments)


def _type_fact(r) -> TypeFact:
    return TypeFact(r[0], r[1], r[2], r[3], tuple(r[4]), r[5] or "", r[6], r[7], r[8], tuple(tuple(c) for c in r[9]),
                    tuple(tuple(a) for a in r[10]), tuple(tuple(o) for o in r[11]), r[12], r[13])


def read_existing(conn: psycopg.Connection, keys) -> Existing:
    """The names the target has, and those its verified pending_ddl records will create (only
    compared with ours, never executed)."""
    from . import target as tgt

    q = lambda text: conn.execute(text).fetchall()  # noqa: E731
    type_defs = {(r[1], r[2]): _type_fact(r) for r in q(_TYPES_SQL)}
    return Existing(
        schemas=frozenset(r[0] for r in q("SELECT nspname FROM pg_namespace")),
        relations=frozenset((s, n) for s, n in q("SELECT n.nspname, c.relname FROM pg_class c "
                                                  "JOIN pg_namespace n ON n.oid = c.relnamespace")),
        types=frozenset((s, n) for s, n in q("SELECT n.nspname, t.typname FROM pg_type t "
                                              "JOIN pg_namespace n ON n.oid = t.typnamespace")),
        funcs=frozenset((s, n, a) for s, n, a in q(
            "SELECT n.nspname, p.proname, pg_get_function_identity_arguments(p.oid) FROM pg_proc p "
            f"JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname NOT IN {_SYSTEM}")),
        extensions=frozenset(r[0] for r in q("SELECT extname FROM pg_extension")),
        version=conn.info.server_version, pending=frozenset((i[1], i[2]) for i in tgt.pending(conn, keys)),
        type_defs={k: msgspec.structs.replace(t, oid=0, comment=None) for k, t in type_defs.items()},
        func_defs={(s, n, a): d for s, n, a, d in q(_TARGET_FUNCS_SQL)},
        owners={tuple(r[:-1]): r[-1] for r in q(tgt.MINE + _FOREIGN_OWNERS_SQL)}, me=conn.info.user)


_TARGET_FUNCS_SQL = f"""
SELECT n.nspname, p.proname, pg_get_function_identity_arguments(p.oid),
       CASE WHEN p.prokind IN ('f', 'p') THEN pg_get_functiondef(p.oid) END
FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname NOT IN {_SYSTEM}
"""

# types and functions owned by a role that is neither ours (explicit membership, as for the state
# schema) nor a superuser: such a role could alter them while we load through them
_FOREIGN_OWNERS_SQL = f"""
, foreign_(oid) AS (SELECT oid FROM pg_roles WHERE NOT rolsuper AND oid NOT IN (SELECT oid FROM mine))
SELECT 'type', n.nspname, t.typname, '', t.typowner::regrole::text FROM pg_type t
JOIN pg_namespace n ON n.oid = t.typnamespace WHERE t.typowner IN (SELECT oid FROM foreign_)
UNION ALL SELECT 'func', n.nspname, p.proname, pg_get_function_identity_arguments(p.oid), p.proowner::regrole::text
FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE p.proowner IN (SELECT oid FROM foreign_)
"""


# -- applying ------------------------------------------------------------------------------------
def apply(conn: psycopg.Connection, plan: SchemaPlan, keys) -> None:
    """Creates the pre-data objects and records the post-data ones (signed) in ONE transaction:
    a failure leaves nothing behind, and once it commits a rerun finds the tables and finishes the
    records. A DDL error names the object and its statement's first line."""
    from . import target as tgt

    if not plan.pre and not plan.post:
        return
    with conn.transaction():
        conn.execute("SET LOCAL check_function_bodies = off")
        for step in plan.pre:
            for stmt in step.statements:
                try:
                    conn.execute(stmt)
                except psycopg.errors.InsufficientPrivilege as exc:
                    raise ConfigError(_failed(step, stmt, exc), _privilege_fix(step, conn)) from None
                except psycopg.Error as exc:
                    raise SyncError(_failed(step, stmt, exc),
                                    "nothing was created (the transaction was rolled back): remove the cause on the "
                                    "target, or create that object there yourself, and rerun") from None
        if plan.post:
            try:
                tgt.ensure_state(conn)
            except psycopg.errors.InsufficientPrivilege:
                raise ConfigError(f"--create-schema records what it builds after the load in the state schema "
                                  f"{STATE_SCHEMA}, which {conn.info.user} may not create on the target",
                                  _privilege_fix(Step("schema", STATE_SCHEMA, ()), conn)) from None
            tgt.write_records(conn, keys, plan.post)


def _failed(step: Step, stmt: str, exc: psycopg.Error) -> str:
    why = (exc.diag.message_primary or str(exc).strip().splitlines()[0]).strip()
    return f"--create-schema: creating {step.kind} {step.name} failed: {why} (statement: {stmt.splitlines()[0]})"


def _privilege_fix(step: Step, conn: psycopg.Connection) -> str:
    me = quote_ident(conn.info.user)  # the transaction is aborted: nothing more may be asked
    if step.kind == "extension":
        return (f"have an administrator run CREATE EXTENSION IF NOT EXISTS {quote_ident(step.name)} on the target "
                "database (or make the target role a superuser there), then rerun; nothing was created")
    return (f"GRANT CREATE ON DATABASE {quote_ident(conn.info.dbname)} TO {me} (and CREATE on the schemas that "
            "exist), then rerun; nothing was created")


def as_planned(target, source, plan: SchemaPlan):
    """The target's catalog as it will be once `plan`'s tables exist: the source's tables, loadable by
    our role, without the indexes, keys and triggers that come after the load. Planning the sync
    against it checks the rules' fit against the source's columns before anything is created."""
    tables = dict(target.tables)
    for key in plan.tables:
        t = source.tables[key]
        tables[key] = msgspec.structs.replace(
            t, indexes=(), foreign_keys=(), user_triggers=(), can_load=True, owned=True, row_security=(),
            sequences=tuple(msgspec.structs.replace(s, can_update=True) for s in t.sequences))
    partitions = {**target.partitions, **{k: v for k, v in source.partitions.items() if v in plan.tables}}
    return msgspec.structs.replace(target, tables=tables, partitions=partitions,
                                   creatable_schemas=target.creatable_schemas | {s for s, _ in plan.tables})
