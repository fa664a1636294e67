"""What the servers have: tables, columns, constraints, sequences — read from pg_catalog once, up front."""

from __future__ import annotations

import re

import msgspec

from .config import TableNameError, split_table_name
from .pg import qualify, quote_ident  # noqa: F401 - re-exported: catalog readers quote with it


class Check(msgspec.Struct, frozen=True):
    """A CHECK constraint: of a domain (`on` is the domain) or of a table (`on` is the table's display name)."""

    on: str
    name: str
    definition: str  # pg_get_constraintdef(), e.g. "CHECK (VALUE ~~ '%@corp.com'::text)"
    columns: tuple[str, ...] = ()  # for a table's CHECK: the columns it reads


class UniqueUse(msgspec.Struct, frozen=True):
    """How a unique index (or the index of a PRIMARY KEY / UNIQUE / EXCLUDE constraint) reads a column."""

    index: str
    role: str  # 'key': a key column; 'expression': inside a key expression; 'predicate': in the WHERE of a
    #            partial index; 'null_test': in that WHERE only as `col IS [NOT] NULL`; 'exclusion': in a key
    #            an exclusion constraint compares with another operator than `=`
    expression: str = ""  # for 'expression' and 'exclusion': that key as pg_get_indexdef() prints it, e.g. 'lower(email)'
    case_only: bool = False  # for 'expression': lower() or upper() of the column alone


class Column(msgspec.Struct, frozen=True):
    """A column, its type seen through domains: a column of a domain over `varchar(20)[]` has
    base_type 'varchar', max_length 20 and is_array True, exactly like a `varchar(20)[]` column (its
    COPY text is the same array literal); `type` and `domain` keep the names it was declared with."""

    name: str
    type: str  # format_type() as declared, e.g. 'character varying(20)', 'integer[]', 'corp_email'
    base_type: str  # pg_type.typname of the element type for arrays, else of the type, after resolving domains: 'varchar', 'int4'
    category: str  # pg_type.typcategory of that base type: S string, N numeric, D datetime, B bool, U user, E enum, A array...
    max_length: int | None  # varchar(n)/char(n) length in characters (also through a domain), else None
    is_array: bool  # an array, or a domain over one (at any depth)
    not_null: bool  # NOT NULL on the column or on one of its domains
    has_default: bool
    generated: bool  # GENERATED ALWAYS AS (...) STORED/VIRTUAL: never copied
    identity: bool
    unique: bool  # alone under a PRIMARY KEY or UNIQUE constraint/index without predicate: a key by itself
    binary_safe: bool = False  # a built-in type with binary send/receive: may travel in COPY's binary format
    resolved_type: str = ""  # format_type() of the type after resolving domains, with its typmod: 'character varying(20)[]'
    typmod: int = -1  # the typmod in force (the column's, else its domains'), as in pg_attribute.atttypmod
    domain: str | None = None  # the (outermost) domain it is declared with, format_type()'d, else None
    domain_checks: tuple[Check, ...] = ()  # CHECK constraints of that domain and of the domains under it
    unique_indexes: tuple[UniqueUse, ...] = ()  # every use of it by a unique or exclusion index (not as an INCLUDE column)

    @property
    def described(self) -> str:
        """Its type for messages, with what a domain stands for: 'corp_email (domain over character varying(20))'."""
        if self.domain is None or not self.resolved_type:
            return self.type
        return f"{self.type} ({'domain over' if self.type == self.domain else 'i.e.'} {self.resolved_type})"


class Dependent(msgspec.Struct, frozen=True):
    """An object that a DROP of an index or constraint would refuse to leave behind (pg_depend)."""

    description: str  # pg_describe_object(), e.g. 'rule _RETURN on view v'
    fk_relation: str | None = None  # a foreign key (its topmost parent, for partitions): where it is declared
    fk_name: str | None = None


class ForeignKey(msgspec.Struct, frozen=True):
    name: str
    table: tuple[str, str]  # (schema, name) of the referencing table (the root, for a key declared on a partition)
    columns: tuple[str, ...]
    ref_table: tuple[str, str]  # (schema, name) of the referenced table (the root, for a partition)
    ref_columns: tuple[str, ...]
    definition: str  # pg_get_constraintdef() without NOT VALID, e.g. 'FOREIGN KEY (user_id) REFERENCES users(id)'
    relation: str = ""  # quoted, qualified: the relation it is declared on (a partition, or the table itself)
    validated: bool = True  # pg_constraint.convalidated
    comment: str | None = None
    dependents: tuple[Dependent, ...] = ()


class Index(msgspec.Struct, frozen=True):
    """An index of a table, or the index behind its PRIMARY KEY / UNIQUE / EXCLUDE constraint."""

    name: str
    definition: str  # pg_get_indexdef(): a CREATE INDEX statement (recursing into partitions: no ON ONLY)
    constraint: str | None  # the constraint's name when the index backs one
    constraint_def: str | None  # pg_get_constraintdef(), e.g. 'PRIMARY KEY (id)'
    # what a DROP loses and pg_get_indexdef()/pg_get_constraintdef() do not say:
    tablespace: str | None = None
    comment: str | None = None
    constraint_comment: str | None = None
    clustered: bool = False  # ALTER TABLE ... CLUSTER ON
    replica_identity: bool = False  # ALTER TABLE ... REPLICA IDENTITY USING INDEX
    statistics: tuple[tuple[int, int], ...] = ()  # (column number, statistics target) set on the index
    dependents: tuple[Dependent, ...] = ()
    options: tuple[tuple[str, str], ...] = ()  # its storage parameters (reloptions), e.g. ('fillfactor', '70')


class Sequence(msgspec.Struct, frozen=True):
    """A sequence a column uses: owned by it (serial), its identity, or named by its default."""

    column: str
    name: str  # qualified, quoted: usable in setval()
    can_select: bool = True  # our role may read last_value and is_called exactly
    can_usage: bool = True  # pg_sequence_last_value() suffices
    can_update: bool = True  # setval()
    start: int = 1


class Leaf(msgspec.Struct, frozen=True):
    """What holds rows: an ordinary table, or one leaf partition of a partitioned one."""

    schema: str
    name: str
    est_rows: int  # pg_class.reltuples: an estimate, no scan
    est_bytes: int
    pages: int  # pg_class.relpages, for ctid slices
    key: str | None = None  # its single-column integer primary key, for key-range slices
    key_range: tuple[int, int] | None = None  # min and max of that key, read under the snapshot
    can_read: bool = True  # SELECT privilege on the leaf itself (through its parent, the parent's suffices)

    @property
    def qualified(self) -> str:
        return qualify(self.schema, self.name)


class Table(msgspec.Struct, frozen=True):
    schema: str
    name: str
    kind: str  # 'r' ordinary, 'p' partitioned
    columns: tuple[Column, ...]
    leaves: tuple[Leaf, ...]  # itself, or its leaf partitions
    foreign_keys: tuple[ForeignKey, ...]  # outgoing
    sequences: tuple[Sequence, ...]  # owned by a column (serial / identity)
    indexes: tuple[Index, ...]
    can_read: bool  # SELECT privilege for our role
    can_load: bool  # INSERT and TRUNCATE privileges
    owned: bool  # our role may ALTER it (drop and rebuild its indexes and constraints)
    user_triggers: tuple[str, ...]
    checks: tuple[Check, ...] = ()  # the table's CHECK constraints
    # itself or leaves whose row-level security would hide rows from our role (qualified names)
    row_security: tuple[str, ...] = ()
    parents: tuple[tuple[str, str], ...] = ()  # INHERITS (...): (schema, name) of each direct parent
    primary_key: tuple[str, ...] = ()  # its PRIMARY KEY's columns, in key order (a --sample hashes them)

    @property
    def key(self) -> tuple[str, str]:
        """What identifies the table everywhere: (schema, name). The display name is only shown."""
        return (self.schema, self.name)

    @property
    def display(self) -> str:
        return display_name(self.schema, self.name)

    @property
    def est_rows(self) -> int:
        return sum(leaf.est_rows for leaf in self.leaves)

    @property
    def est_bytes(self) -> int:
        return sum(leaf.est_bytes for leaf in self.leaves)

    @property
    def qualified(self) -> str:
        return qualify(self.schema, self.name)

    def column(self, name: str) -> Column | None:
        return next((c for c in self.columns if c.name == name), None)


class Catalog(msgspec.Struct, frozen=True):
    tables: dict[tuple[str, str], Table]  # by (schema, name)
    creatable_schemas: frozenset[str] = frozenset()  # where our role may create (and so rebuild) indexes
    role: str = ""  # current_user of the connection that read it
    partitions: dict[tuple[str, str], tuple[str, str]] = {}  # every partition, leaf or not -> its root table

    def find(self, key: str) -> list[Table]:
        """Every table a rule key or --tables name can mean (see config.split_table_name): more than one
        is ambiguous, and the caller asks for the quoted form (`spelling`). A bare name is the public
        table of that name, or else any table of that name."""
        return [self.tables[k] for k in _designated(self.tables, key)]

    def find_partition(self, key: str) -> list[tuple[tuple[str, str], Table]]:
        """The partitions (leaf or not) a name means, each with its root table: what to select instead."""
        return [(k, self.tables[self.partitions[k]]) for k in _designated(self.partitions, key)]

    def spelling(self, table: Table) -> str:
        """How to name `table` in a rule key or --tables: its display name where that designates it
        alone in this catalog, else the quoted form."""
        if self.find(table.display) == [table]:
            return table.display
        return quote_ident(table.name) if table.schema == "public" else qualify(table.schema, table.name)


def _designated(known, key: str) -> list[tuple[str, str]]:
    """The (schema, name) pairs of `known` that `key` can mean (see Catalog.find)."""
    try:
        meanings = split_table_name(key)
    except TableNameError:
        return []
    hits: dict[tuple[str, str], None] = {}
    for schema, name in meanings:
        if schema is not None:
            found = [(schema, name)] if (schema, name) in known else []
        elif ("public", name) in known:
            found = [("public", name)]
        else:
            found = [k for k in known if k[1] == name]
        hits.update(dict.fromkeys(found))
    return list(hits)


def _display_part(part: str) -> str:
    return quote_ident(part) if "." in part or '"' in part else part


def display_name(schema: str, name: str) -> str:
    """`name` for public tables, `schema.name` otherwise, a part double-quoted when it holds a dot or a
    double quote: distinct tables never share a display name (schema a table b is `a.b`, the public
    table "a.b" is `"a.b"`), and split_table_name reads it back."""
    name = _display_part(name)
    return name if schema == "public" else f"{_display_part(schema)}.{name}"


def ambiguous(catalog: Catalog, hits: list[Table]) -> str:
    """The end of the message for a name that designates several tables: how to write each."""
    return "ambiguous, it names " + " and ".join(catalog.spelling(t) for t in sorted(hits, key=lambda t: t.key)) + \
        ": write the one you mean as shown (in YAML, single-quote a key that starts with a double quote)"


STATE_SCHEMA = "_confiture_fast"  # our bookkeeping on the target; never synced
KEY_RANGE_MIN_BYTES = 1 << 20  # below this a table is never split, so its key range is not read

# Row-level security applies to our role unless it is a superuser or BYPASSRLS, or it has the
# privileges of the owner and the table does not FORCE it (PostgreSQL's check_enable_rls).
_RLS_APPLIES = ("(c.relrowsecurity AND NOT %(bypass)s "
                "AND NOT (pg_has_role(c.relowner, 'USAGE') AND NOT c.relforcerowsecurity))")
_BYPASS_SQL = "SELECT current_user, rolsuper OR rolbypassrls FROM pg_roles WHERE rolname = current_user"

_TABLES_SQL = """
SELECT c.oid, n.nspname, c.relname, c.relkind, greatest(c.reltuples, 0)::bigint, pg_table_size(c.oid), c.relpages,
       has_table_privilege(c.oid, 'SELECT'),
       has_table_privilege(c.oid, 'INSERT') AND has_table_privilege(c.oid, 'TRUNCATE'),
       pg_has_role(c.relowner, 'USAGE'), {rls}
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition
  AND n.nspname NOT IN ('pg_catalog', 'information_schema', %(state)s)
  AND n.nspname NOT LIKE 'pg\\_toast%%' AND n.nspname NOT LIKE 'pg\\_temp\\_%%'
ORDER BY n.nspname, c.relname
""".replace("{rls}", _RLS_APPLIES)

_LEAVES_SQL = """
SELECT root.oid, c.oid, n.nspname, c.relname, greatest(c.reltuples, 0)::bigint, pg_table_size(c.oid), c.relpages,
       {rls}, has_table_privilege(c.oid, 'SELECT')
FROM unnest(%(oids)s::oid[]) AS root(oid)
CROSS JOIN LATERAL pg_partition_tree(root.oid) t
JOIN pg_class c ON c.oid = t.relid JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE t.isleaf
""".replace("{rls}", _RLS_APPLIES)

# Each column's type is followed down through domains (and one array level, also inside a domain)
# to the type whose text form COPY carries; the typmod in force is the first one set on the way.
_COLUMNS_SQL = """
WITH RECURSIVE chain(root, oid, typmod, arr, dom_not_null, domains, depth) AS (
  SELECT t.oid, t.oid, -1, false, false, ARRAY[]::oid[], 0 FROM pg_type t
  WHERE t.oid IN (SELECT atttypid FROM pg_attribute WHERE attrelid = ANY(%(oids)s::oid[]) AND attnum > 0)
  UNION ALL
  SELECT c.root, CASE WHEN t.typtype = 'd' THEN t.typbasetype ELSE t.typelem END,
         CASE WHEN t.typtype = 'd' AND c.typmod = -1 THEN t.typtypmod ELSE c.typmod END,
         c.arr OR t.typtype <> 'd', c.dom_not_null OR (t.typtype = 'd' AND t.typnotnull AND NOT c.arr),
         c.domains || CASE WHEN t.typtype = 'd' THEN ARRAY[t.oid] ELSE ARRAY[]::oid[] END, c.depth + 1
  FROM chain c JOIN pg_type t ON t.oid = c.oid
  WHERE t.typtype = 'd' OR (t.typcategory = 'A' AND t.typelem <> 0 AND NOT c.arr)
), resolved AS (
  SELECT DISTINCT ON (root) * FROM chain ORDER BY root, depth DESC
)
SELECT a.attrelid, a.attname, format_type(a.atttypid, a.atttypmod),
       b.typname, b.typcategory,
       CASE WHEN b.typname IN ('varchar', 'bpchar') AND coalesce(nullif(a.atttypmod, -1), r.typmod) > 4
            THEN coalesce(nullif(a.atttypmod, -1), r.typmod) - 4 END,
       r.arr, a.attnotnull OR r.dom_not_null, a.atthasdef, a.attgenerated <> '', a.attidentity <> '',
       EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = a.attrelid AND i.indisunique
               AND i.indnkeyatts = 1 AND i.indkey[0] = a.attnum AND i.indpred IS NULL),
       t.oid < 16384 AND t.typsend::oid <> 0 AND t.typreceive::oid <> 0
       AND (et.oid IS NULL OR (et.oid < 16384 AND et.typsend::oid <> 0 AND et.typreceive::oid <> 0)),
       format_type(b.oid, coalesce(nullif(a.atttypmod, -1), r.typmod)) || CASE WHEN r.arr THEN '[]' ELSE '' END,
       coalesce(nullif(a.atttypmod, -1), r.typmod),
       CASE WHEN cardinality(r.domains) > 0 THEN format_type(r.domains[1], -1) END,
       ARRAY(SELECT ARRAY[format_type(con.contypid, -1), con.conname, pg_get_constraintdef(con.oid)]
             FROM unnest(r.domains) WITH ORDINALITY d(oid, n) JOIN pg_constraint con ON con.contypid = d.oid
             WHERE con.contype = 'c' ORDER BY d.n, con.conname)
FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid
JOIN resolved r ON r.root = a.atttypid JOIN pg_type b ON b.oid = r.oid
LEFT JOIN pg_type et ON et.oid = t.typelem AND t.typcategory = 'A'
WHERE a.attrelid = ANY(%(oids)s::oid[]) AND a.attnum > 0 AND NOT a.attisdropped
ORDER BY a.attrelid, a.attnum
"""

# Unique and exclusion indexes with what their uses of columns are decided from: key columns (indkey,
# 0 for an expression), the expressions and the predicate as node trees, each key as pg_get_indexdef
# prints it, and an exclusion constraint's operator for each key.
_UNIQUE_SQL = """
SELECT i.indrelid, ic.relname, i.indnkeyatts, ARRAY(SELECT k FROM unnest(i.indkey) WITH ORDINALITY u(k, n) ORDER BY n),
       coalesce(i.indexprs::text, ''), coalesce(i.indpred::text, ''),
       ARRAY(SELECT pg_get_indexdef(i.indexrelid, k, true) FROM generate_series(1, i.indnkeyatts) k ORDER BY k),
       ARRAY(SELECT ARRAY[a.attnum::text, a.attname, quote_ident(a.attname)] FROM pg_attribute a
             WHERE a.attrelid = i.indrelid AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum),
       ARRAY(SELECT o.oprname FROM pg_constraint con CROSS JOIN unnest(con.conexclop) WITH ORDINALITY x(op, k)
             JOIN pg_operator o ON o.oid = x.op
             WHERE con.conindid = i.indexrelid AND con.contype = 'x' ORDER BY x.k)
FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid
WHERE (i.indisunique OR i.indisexclusion) AND i.indrelid = ANY(%(oids)s::oid[])
"""

_VAR_RE = re.compile(r"\{VAR :varno \d+ :varattno (\d+) ")
_NULLTEST_VAR_RE = re.compile(r"\{NULLTEST :arg \{VAR :varno \d+ :varattno (\d+) ")


def _node_list(text: str) -> list[str]:
    """The elements of a node-tree list '({...} {...})' (braces inside tokens are backslash-escaped)."""
    out, depth, start, i = [], 0, 0, 0
    while i < len(text):
        ch = text[i]
        if ch == "\\":
            i += 2
            continue
        if ch == "{":
            depth += 1
            if depth == 1:
                start = i
        elif ch == "}":
            depth -= 1
            if depth == 0:
                out.append(text[start:i + 1])
        i += 1
    return out


def _unique_uses(index: str, nkey: int, indkey: list[int], exprs: str, pred: str, keys: list[str],
                 attrs: list[list[str]], operators: list[str]) -> list[tuple[str, UniqueUse]]:
    """(column, use) for every column the index reads, except as an INCLUDE column. A Var of
    attribute 0 (a whole-row reference) reads every column. A key an exclusion constraint compares
    with `=` is used as a unique key is; with another operator (`&&`, `<>`...) it is 'exclusion'."""
    names = {int(n): name for n, name, _ in attrs}
    quoted = {int(n): q for n, _, q in attrs}

    def columns(attnums) -> list[int]:
        return sorted(names) if 0 in attnums else sorted(set(attnums) & set(names))

    out = []
    expressions = iter(_node_list(exprs))
    for pos, attnum in enumerate(indkey):
        expr = next(expressions) if attnum == 0 else None
        if pos >= nkey:
            continue
        if operators and operators[pos] != "=":
            read = [attnum] if expr is None else [int(v) for v in _VAR_RE.findall(expr)]
            out += [(names[n], UniqueUse(index, "exclusion", f"{keys[pos]} WITH {operators[pos]}")) for n in columns(read)]
            continue
        if expr is None:
            out.append((names[attnum], UniqueUse(index, "key")))
            continue
        for n in columns([int(v) for v in _VAR_RE.findall(expr)]):
            q = quoted[n]
            case_only = keys[pos] in {f"{f}({q}{cast})" for f in ("lower", "upper") for cast in ("", "::text")}
            out.append((names[n], UniqueUse(index, "expression", keys[pos], case_only)))
    if pred:
        tested = [int(v) for v in _NULLTEST_VAR_RE.findall(pred)]
        read = [int(v) for v in _VAR_RE.findall(pred)]
        for n in columns(read):
            role = "null_test" if n != 0 and 0 not in read and read.count(n) == tested.count(n) else "predicate"
            out.append((names[n], UniqueUse(index, role)))
    return out


_CHECKS_SQL = """
SELECT con.conrelid, con.conname, pg_get_constraintdef(con.oid),
       ARRAY(SELECT attname FROM pg_attribute WHERE attrelid = con.conrelid AND attnum = ANY(con.conkey) ORDER BY attnum)
FROM pg_constraint con WHERE con.contype = 'c' AND con.conrelid = ANY(%(oids)s::oid[])
ORDER BY con.conrelid, con.conname
"""

_NODES_SQL = """
SELECT t.relid::oid, root.oid FROM unnest(%(oids)s::oid[]) AS root(oid) CROSS JOIN LATERAL pg_partition_tree(root.oid) t
"""

# Foreign keys declared on the tables or on any of their partitions (conparentid = 0: not inherited).
_FKEYS_SQL = """
SELECT con.conrelid, con.confrelid, con.conname, sn.nspname, s.relname,
       ARRAY(SELECT attname FROM unnest(con.conkey) WITH ORDINALITY k(n, i)
             JOIN pg_attribute ON attrelid = con.conrelid AND attnum = k.n ORDER BY k.i),
       rn.nspname, r.relname,
       ARRAY(SELECT attname FROM unnest(con.confkey) WITH ORDINALITY k(n, i)
             JOIN pg_attribute ON attrelid = con.confrelid AND attnum = k.n ORDER BY k.i),
       CASE WHEN con.convalidated THEN pg_get_constraintdef(con.oid)
            ELSE regexp_replace(pg_get_constraintdef(con.oid), ' NOT VALID$', '') END,
       con.convalidated, obj_description(con.oid, 'pg_constraint'), con.oid
FROM pg_constraint con
JOIN pg_class s ON s.oid = con.conrelid JOIN pg_namespace sn ON sn.oid = s.relnamespace
JOIN pg_class r ON r.oid = con.confrelid JOIN pg_namespace rn ON rn.oid = r.relnamespace
WHERE con.contype = 'f' AND con.conparentid = 0
  AND (con.conrelid = ANY(%(oids)s::oid[]) OR con.confrelid = ANY(%(oids)s::oid[]))
"""

# Sequences a column uses: owned by it (deptype a: serial, OWNED BY; i: identity), or named by its
# default (the pg_attrdef's dependency on the sequence), on the table or any of its partitions.
_SEQUENCES_SQL = """
SELECT rel.root, a.attname, quote_ident(n.nspname) || '.' || quote_ident(s.relname),
       has_sequence_privilege(s.oid, 'SELECT'), has_sequence_privilege(s.oid, 'USAGE'),
       has_sequence_privilege(s.oid, 'UPDATE'), q.seqstart
FROM (SELECT d.refobjid AS relid, d.refobjsubid AS attnum, d.objid AS seqid FROM pg_depend d
      WHERE d.classid = 'pg_class'::regclass AND d.refclassid = 'pg_class'::regclass AND d.deptype IN ('a', 'i')
      UNION
      SELECT ad.adrelid, ad.adnum, d.refobjid FROM pg_attrdef ad
      JOIN pg_depend d ON d.classid = 'pg_attrdef'::regclass AND d.objid = ad.oid
                      AND d.refclassid = 'pg_class'::regclass) dep
JOIN unnest(%(nodes)s::oid[], %(roots)s::oid[]) AS rel(oid, root) ON rel.oid = dep.relid
JOIN pg_class s ON s.oid = dep.seqid AND s.relkind = 'S' JOIN pg_namespace n ON n.oid = s.relnamespace
JOIN pg_sequence q ON q.seqrelid = s.oid
JOIN pg_attribute a ON a.attrelid = dep.relid AND a.attnum = dep.attnum
ORDER BY 1, 2, 3
"""

_INT_KEYS_SQL = """
SELECT i.indrelid, a.attname FROM pg_index i
JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
WHERE i.indisprimary AND i.indnkeyatts = 1 AND a.atttypid IN ('int2'::regtype, 'int4'::regtype, 'int8'::regtype)
  AND i.indrelid = ANY(%(oids)s::oid[])
"""

# pg_get_indexdef() writes "ON ONLY" for the index of a partitioned table: rebuilt so, it would stay
# invalid and leave the partitions without their indexes. Here it is rewritten to recurse (the index
# is `i` (pg_index), its relation `ic`; the query ends with INDEX_DEF_FROM).
INDEX_DEF = """CASE WHEN ic.relkind = 'I' AND starts_with(d.def, d.head || ' ON ONLY ')
            THEN d.head || ' ON ' || substr(d.def, length(d.head || ' ON ONLY ') + 1) ELSE d.def END"""
INDEX_DEF_FROM = """CROSS JOIN LATERAL (SELECT pg_get_indexdef(i.indexrelid) AS def,
                           'CREATE ' || CASE WHEN i.indisunique THEN 'UNIQUE ' ELSE '' END || 'INDEX '
                           || quote_ident(ic.relname) AS head) d"""
_INDEXES_SQL = """
SELECT i.indrelid, ic.relname, """ + INDEX_DEF + """,
       con.conname, pg_get_constraintdef(con.oid), ts.spcname,
       obj_description(i.indexrelid, 'pg_class'), obj_description(con.oid, 'pg_constraint'),
       i.indisclustered, i.indisreplident,
       ARRAY(SELECT ARRAY[attnum::int, attstattarget::int] FROM pg_attribute
             WHERE attrelid = i.indexrelid AND attstattarget >= 0 ORDER BY attnum),
       ARRAY(SELECT ARRAY[split_part(o, '=', 1), substr(o, strpos(o, '=') + 1)] FROM unnest(ic.reloptions) o),
       i.indexrelid, con.oid
FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid
LEFT JOIN pg_tablespace ts ON ts.oid = ic.reltablespace
LEFT JOIN pg_constraint con ON con.conindid = i.indexrelid AND con.conrelid = i.indrelid
     AND con.contype IN ('p', 'u', 'x')
""" + INDEX_DEF_FROM + """
WHERE i.indrelid = ANY(%(oids)s::oid[])
ORDER BY i.indrelid, ic.relname
"""

_PRIMARY_KEYS_SQL = """
SELECT i.indrelid, ARRAY(SELECT a.attname FROM unnest(i.indkey[0:i.indnkeyatts - 1]) WITH ORDINALITY k(n, o)
                         JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.n ORDER BY k.o)
FROM pg_index i WHERE i.indisprimary AND i.indrelid = ANY(%(oids)s::oid[])
"""

_INHERITS_SQL = """
SELECT i.inhrelid, n.nspname, p.relname
FROM pg_inherits i JOIN pg_class p ON p.oid = i.inhparent JOIN pg_namespace n ON n.oid = p.relnamespace
WHERE i.inhrelid = ANY(%(oids)s::oid[])
ORDER BY i.inhrelid, i.inhseqno
"""

_PARTITIONS_SQL = """
SELECT n.nspname, c.relname, rn.nspname, r.relname
FROM unnest(%(oids)s::oid[]) AS root(oid)
CROSS JOIN LATERAL pg_partition_tree(root.oid) t
JOIN pg_class c ON c.oid = t.relid JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_class r ON r.oid = root.oid JOIN pg_namespace rn ON rn.oid = r.relnamespace
WHERE t.relid <> root.oid
"""

# What depends on these indexes and constraints and would make their DROP fail (a view grouping by
# a primary key, a foreign key), a partition's clone of a constraint named by its topmost parent.
_DEPENDENTS_SQL = """
WITH RECURSIVE dep AS (
    SELECT d.refclassid = 'pg_constraint'::regclass AS is_con, d.refobjid AS ref, d.classid, d.objid, d.objsubid
    FROM pg_depend d
    WHERE d.deptype IN ('n', 'a') AND d.refclassid IN ('pg_class'::regclass, 'pg_constraint'::regclass)
      AND d.refobjid = ANY(%(oids)s::oid[])
), up AS (
    SELECT dep.is_con, dep.ref, dep.classid, dep.objid, dep.objsubid, c.oid AS con, c.conparentid AS parent
    FROM dep LEFT JOIN pg_constraint c ON dep.classid = 'pg_constraint'::regclass AND c.oid = dep.objid
    UNION ALL
    SELECT up.is_con, up.ref, 'pg_constraint'::regclass, c.oid, 0, c.oid, c.conparentid
    FROM up JOIN pg_constraint c ON c.oid = up.parent
)
SELECT DISTINCT up.is_con, up.ref, pg_describe_object(up.classid, up.objid, up.objsubid), n.nspname, r.relname,
       c.conname
FROM up LEFT JOIN pg_constraint c ON c.oid = up.con AND c.contype = 'f'
LEFT JOIN pg_class r ON r.oid = c.conrelid LEFT JOIN pg_namespace n ON n.oid = r.relnamespace
WHERE coalesce(up.parent, 0) = 0
"""

_TRIGGERS_SQL = """
SELECT tgrelid, tgname FROM pg_trigger
WHERE NOT tgisinternal AND tgrelid = ANY(%(oids)s::oid[])
"""


def read_catalog(conn) -> Catalog:
    """Reads every ordinary and partitioned table of every non-system schema (one query per kind of fact).

    Only catalogs are read, never a table's rows: a table our role may not read costs nothing unless
    it is selected (key ranges are read afterwards, for the selection: with_key_ranges)."""
    role, bypass = conn.execute(_BYPASS_SQL).fetchone()
    params = {"state": STATE_SCHEMA, "bypass": bool(bypass)}
    rows = conn.execute(_TABLES_SQL, params).fetchall()
    oids = [r[0] for r in rows]
    found: list[tuple[int, int, tuple]] = [(r[0], r[0], r[1:3] + r[4:7] + r[10:11] + r[7:8])
                                           for r in rows if r[3] == "r"]
    found += [(root, oid, tuple(leaf))
              for root, oid, *leaf in conn.execute(_LEAVES_SQL, {**params, "oids": oids})]
    keys = dict(conn.execute(_INT_KEYS_SQL, {"oids": [f[1] for f in found]}).fetchall())
    leaves: dict[int, list[Leaf]] = {}
    hidden: dict[int, list[str]] = {}
    for root, oid, (schema, name, est_rows, est_bytes, pages, rls, readable) in found:
        leaves.setdefault(root, []).append(Leaf(schema, name, est_rows, est_bytes, pages, keys.get(oid),
                                                can_read=readable))
        if rls and oid != root:
            hidden.setdefault(root, []).append(qualify(schema, name))
    root_of = {oid: root for root, oid, _ in found} | {oid: oid for oid in oids}
    unique_ix: dict[tuple[int, str], set[UniqueUse]] = {}
    for relid, index, *facts in conn.execute(_UNIQUE_SQL, {"oids": list(root_of)}).fetchall():
        for col, use in _unique_uses(index, *facts):
            unique_ix.setdefault((root_of[relid], col), set()).add(use)
    checks: dict[int, dict[str, Check]] = {}
    columns: dict[int, list[Column]] = {}
    for r in conn.execute(_COLUMNS_SQL, {"oids": oids}).fetchall():
        *fields, dom_checks = r[1:]
        columns.setdefault(r[0], []).append(Column(
            *fields, domain_checks=tuple(Check(*c) for c in dom_checks),
            unique_indexes=tuple(sorted(unique_ix.get((r[0], r[1]), ()), key=lambda u: (u.index, u.role)))))
    # and the partitioned tables inside partition trees, where foreign keys and sequences may be declared too
    root_of.update(conn.execute(_NODES_SQL, {"oids": [r[0] for r in rows if r[3] == "p"]}).fetchall())
    fk_rows = conn.execute(_FKEYS_SQL, {"oids": list(root_of)}).fetchall()
    ix_rows = conn.execute(_INDEXES_SQL, {"oids": oids}).fetchall()
    dependents: dict[tuple[bool, int], list[Dependent]] = {}  # by (a constraint?, oid)
    watched = [r[-1] for r in fk_rows] + [o for r in ix_rows for o in r[-2:] if o is not None]
    for is_con, ref, description, fk_schema, fk_table, fk_name in conn.execute(_DEPENDENTS_SQL, {"oids": watched}):
        fk_relation = qualify(fk_schema, fk_table) if fk_name is not None else None
        dependents.setdefault((is_con, ref), []).append(Dependent(description, fk_relation, fk_name))
    names = {r[0]: (r[1], r[2]) for r in rows}  # oid -> (schema, name)
    fkeys: dict[int, list[ForeignKey]] = {}
    for conrelid, confrelid, conname, sn, s, cols, rn, r, rcols, definition, valid, comment, oid in fk_rows:
        table = names[root_of[conrelid]] if conrelid in root_of else (sn, s)
        ref = names[root_of[confrelid]] if confrelid in root_of else (rn, r)
        fkeys.setdefault(root_of.get(conrelid, conrelid), []).append(ForeignKey(
            conname, table, tuple(cols), ref, tuple(rcols), definition, qualify(sn, s), valid, comment,
            tuple(dependents.get((True, oid), ()))))
    seqs: dict[int, list[Sequence]] = {}
    nodes = list(root_of)
    for root, col, *seq in conn.execute(_SEQUENCES_SQL, {"nodes": nodes, "roots": [root_of[n] for n in nodes]}):
        found_seq = Sequence(col, *seq)
        if found_seq not in seqs.setdefault(root, []):
            seqs[root].append(found_seq)
    indexes: dict[int, list[Index]] = {}
    for relid, name, definition, conname, condef, tablespace, comment, con_comment, \
            clustered, replident, stats, options, ix_oid, con_oid in ix_rows:
        deps = dependents.get((False, ix_oid), []) + dependents.get((True, con_oid), [])
        indexes.setdefault(relid, []).append(Index(
            name, definition, conname, condef, tablespace, comment, con_comment, clustered,
            replident, tuple((a, t) for a, t in stats), tuple(dict.fromkeys(deps)),
            tuple((k, v) for k, v in options)))
    triggers: dict[int, list[str]] = {}
    for relid, name in conn.execute(_TRIGGERS_SQL, {"oids": oids}).fetchall():
        triggers.setdefault(relid, []).append(name)
    parents: dict[int, list[tuple[str, str]]] = {}
    for relid, schema, name in conn.execute(_INHERITS_SQL, {"oids": oids}).fetchall():
        parents.setdefault(relid, []).append((schema, name))
    primary = dict(conn.execute(_PRIMARY_KEYS_SQL, {"oids": oids}).fetchall())
    partitions = {(s, n): (rs, r) for s, n, rs, r in
                  conn.execute(_PARTITIONS_SQL, {"oids": [r[0] for r in rows if r[3] == "p"]}).fetchall()}
    display_of = {r[0]: display_name(r[1], r[2]) for r in rows}
    for relid, conname, definition, cols in conn.execute(_CHECKS_SQL, {"oids": list(root_of)}).fetchall():
        root = root_of[relid]
        checks.setdefault(root, {}).setdefault(conname, Check(display_of[root], conname, definition, tuple(cols)))
    tables = {}
    for oid, schema, name, kind, _, _, _, can_read, can_load, owned, rls in rows:
        t = Table(
            schema=schema, name=name, kind=kind, columns=tuple(columns.get(oid, ())),
            leaves=tuple(sorted(leaves.get(oid, []), key=lambda leaf: (leaf.schema, leaf.name))),
            foreign_keys=tuple(fkeys.get(oid, ())), sequences=tuple(seqs.get(oid, ())),
            indexes=tuple(indexes.get(oid, ())), can_read=can_read, can_load=can_load, owned=owned,
            user_triggers=tuple(sorted(triggers.get(oid, ()))), checks=tuple(checks.get(oid, {}).values()),
            row_security=((qualify(schema, name),) if rls else ()) + tuple(sorted(hidden.get(oid, ()))),
            parents=tuple(parents.get(oid, ())), primary_key=tuple(primary.get(oid, ())),
        )
        tables[t.key] = t
    creatable = conn.execute(
        "SELECT nspname FROM pg_namespace WHERE has_schema_privilege(oid, 'CREATE')").fetchall()
    return Catalog(tables, frozenset(r[0] for r in creatable), role, partitions)


def with_key_ranges(conn, catalog: Catalog, tables) -> Catalog:
    """The catalog with the min and max of the integer key of the large leaves of `tables` (the
    selection), read under the caller's snapshot. Tables our role cannot read in full are skipped:
    the planner refuses them with the fix."""
    wanted = {(t.schema, t.name) for t in tables if t.can_read and not t.row_security}
    out = {}
    for k, t in catalog.tables.items():
        if (t.schema, t.name) in wanted:
            leaves = []
            for leaf in t.leaves:
                if leaf.key is not None and leaf.can_read and leaf.est_bytes >= KEY_RANGE_MIN_BYTES:
                    lo, hi = conn.execute(f"SELECT min({quote_ident(leaf.key)}), max({quote_ident(leaf.key)}) "
                                          f"FROM {leaf.qualified}").fetchone()
                    leaf = msgspec.structs.replace(leaf, key_range=(lo, hi) if lo is not None else None)
                leaves.append(leaf)
            t = msgspec.structs.replace(t, leaves=tuple(leaves))
        out[k] = t
    return msgspec.structs.replace(catalog, tables=out)
