"""What the servers have: tables, columns, constraints, sequences — read from pg_catalog once, up front."""

from __future__ import annotations

import msgspec


class Column(msgspec.Struct, frozen=True):
    name: str
    type: str  # format_type(), e.g. 'character varying(20)', 'integer[]'
    base_type: str  # the element type's name for arrays, else the type's name (pg_type.typname), e.g. 'varchar', 'int4'
    category: str  # pg_type.typcategory of the element/base type: S string, N numeric, D datetime, B bool, U user, E enum, A array...
    max_length: int | None  # varchar(n)/char(n) length in characters, else None
    is_array: bool
    not_null: bool
    has_default: bool
    generated: bool  # GENERATED ALWAYS AS (...) STORED/VIRTUAL: never copied
    identity: bool
    unique: bool  # alone under a PRIMARY KEY or UNIQUE constraint/index
