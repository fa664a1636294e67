"""Synthetic catalogs for the unit layer: catalog.Catalog/Table/Column built directly, with the defaults
of an ordinary table our role owns and may read and load, so each test states only what it is about."""

from __future__ import annotations

from pathlib import Path

from confiture_fast.catalog import (Catalog, Column, Dependent, ForeignKey, Index, Leaf, Sequence, Table, UniqueUse,
                                    qualify, quote_ident)
from confiture_fast.config import RuleSpec, Rules

SECRET = b"unit-secret-0123456789abcdef"
_CATEGORY = {"int2": "N", "int4": "N", "int8": "N", "numeric": "N", "float8": "N", "date": "D", "timestamptz": "D",
             "bool": "B", "jsonb": "U", "inet": "I"}
_TYPE = {"int4": "integer", "int8": "bigint", "text": "text", "numeric": "numeric", "date": "date",
         "timestamptz": "timestamp with time zone", "jsonb": "jsonb", "bool": "boolean", "inet": "inet"}


def col(name: str, base: str = "text", *, unique: bool = False, not_null: bool = False, generated: bool = False,
        binary_safe: bool = True, is_array: bool = False, typmod: int = -1, has_default: bool = False,
        unique_indexes: tuple[UniqueUse, ...] = ()) -> Column:
    """A column of a built-in type named by its typname ('text', 'int4', ...)."""
    type_ = _TYPE.get(base, base) + ("[]" if is_array else "")
    return Column(name, type_, base, _CATEGORY.get(base, "S"), None, is_array, not_null, has_default, generated,
                  False, unique, binary_safe=binary_safe, resolved_type=type_, typmod=typmod,
                  unique_indexes=unique_indexes)


def leaf(schema: str, name: str, *, rows: int = 100, size: int = 8192, pages: int | None = None,
         key: str | None = None, key_range: tuple[int, int] | None = None, can_read: bool = True) -> Leaf:
    return Leaf(schema, name, rows, size, pages if pages is not None else max(1, size // 8192), key, key_range,
                can_read)


def fk(name: str, table: str, columns: tuple[str, ...], ref: str, ref_columns: tuple[str, ...], *,
       dependents: tuple[Dependent, ...] = (), comment: str | None = None) -> ForeignKey:
    """A foreign key from `table` to `ref`, both 'schema.name' or a bare public name."""
    t, r = _key(table), _key(ref)
    definition = (f"FOREIGN KEY ({', '.join(map(quote_ident, columns))}) REFERENCES {qualify(*r)}"
                  f"({', '.join(map(quote_ident, ref_columns))})")
    return ForeignKey(name, t, columns, r, ref_columns, definition, qualify(*t), comment=comment,
                      dependents=dependents)


def pk_index(table: str, column: str = "id", **kw) -> Index:
    """The index behind `table`'s PRIMARY KEY on `column`."""
    schema, name = _key(table)
    return Index(f"{name}_pkey", f"CREATE UNIQUE INDEX {name}_pkey ON {qualify(schema, name)} USING btree ({column})",
                 f"{name}_pkey", f"PRIMARY KEY ({column})", **kw)


def plain_index(table: str, name: str, column: str, **kw) -> Index:
    schema, tname = _key(table)
    return Index(name, f"CREATE INDEX {name} ON {qualify(schema, tname)} USING btree ({column})", None, None, **kw)


def table(name: str, *columns: Column, kind: str = "r", leaves: tuple[Leaf, ...] | None = None,
          foreign_keys: tuple[ForeignKey, ...] = (), indexes: tuple[Index, ...] = (),
          sequences: tuple[Sequence, ...] = (), parents: tuple[str, ...] = (), rows: int = 100, size: int = 8192,
          pages: int | None = None, key: str | None = None, key_range: tuple[int, int] | None = None,
          can_read: bool = True, can_load: bool = True, owned: bool = True, user_triggers: tuple[str, ...] = (),
          row_security: tuple[str, ...] = ()) -> Table:
    """A table 'schema.name' (or a bare public name); an ordinary table is its own single leaf."""
    schema, tname = _key(name)
    if leaves is None:
        leaves = (leaf(schema, tname, rows=rows, size=size, pages=pages, key=key, key_range=key_range),)
    return Table(schema, tname, kind, columns or (col("id", "int4"),), leaves, foreign_keys, sequences, indexes,
                 can_read, can_load, owned, user_triggers, row_security=row_security,
                 parents=tuple(_key(p) for p in parents))


def catalog(*tables: Table, creatable: tuple[str, ...] = ("public",), role: str = "sync",
            partitions: dict[str, str] | None = None) -> Catalog:
    """`partitions`: 'schema.partition' -> 'schema.root', for every partition a name may designate."""
    return Catalog({t.key: t for t in tables}, frozenset(creatable), role,
                   {_key(p): _key(r) for p, r in (partitions or {}).items()})


def rules(spec: dict[str, dict[str, str | dict]], path: str = "anonymization.yaml") -> Rules:
    """{'users': {'email': 'email', 'bio': {'strategy': 'redact', 'seed': 's'}}} as the rules file would give it."""
    tables, line = {}, 0
    for key, columns in spec.items():
        specs = []
        for column, rule in columns.items():
            line += 1
            body = {"strategy": rule} if isinstance(rule, str) else dict(rule)
            specs.append(RuleSpec(table=key, column=column, line=line, **body))
        tables[key] = tuple(specs)
    return Rules(Path(path), tables)


def _key(name: str) -> tuple[str, str]:
    schema, _, tname = name.rpartition(".")
    return (schema or "public", tname)
