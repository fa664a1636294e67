"""typediff.compare and plan._binary on synthetic columns (issue 12, points 9-10): lossless widenings are
accepted and said, narrowings and other types refused, domains seen through to their base type and CHECKs,
binary COPY only between identical types."""

from __future__ import annotations

import pytest


def _num(p, s):
    return ((p << 16) | (s & 0x7FF)) + 4


def _c(type_, base, typmod=-1, category=None, is_array=False, domain=None, checks=()):
    from confiture_fast.catalog import Check, Column

    cat = category or {"int2": "N", "int4": "N", "int8": "N", "numeric": "N", "float4": "N", "float8": "N",
                       "timestamp": "D", "timestamptz": "D", "time": "D", "timetz": "D", "interval": "T",
                       "bit": "V", "varbit": "V", "json": "U", "jsonb": "U", "date": "D", "bool": "B"}.get(base, "S")
    return Column(name="c", type=domain or (type_ + ("[]" if is_array else "")), base_type=base, category=cat, max_length=None, is_array=is_array,
                  not_null=False, has_default=False, generated=False, identity=False, unique=False,
                  resolved_type=type_ + ("[]" if is_array else ""), typmod=typmod, domain=domain,
                  domain_checks=tuple(Check(domain, f"{domain}_check", d) for d in checks))


INTERVAL_DAY = (8 << 16) | 0xFFFF  # INTERVAL_MASK(DAY) = 1 << 3, full precision
INTERVAL_FULL_3 = (0x7FFF << 16) | 3


WIDENINGS = [
    (("smallint", "int2"), ("integer", "int4")), (("smallint", "int2"), ("bigint", "int8")),
    (("integer", "int4"), ("bigint", "int8")), (("integer", "int4"), ("numeric", "numeric")),
    (("integer", "int4"), ("numeric(10,0)", "numeric", _num(10, 0))),
    (("bigint", "int8"), ("numeric(21,2)", "numeric", _num(21, 2))),
    (("numeric(12,2)", "numeric", _num(12, 2)), ("numeric(14,2)", "numeric", _num(14, 2))),
    (("numeric(12,2)", "numeric", _num(12, 2)), ("numeric(13,3)", "numeric", _num(13, 3))),
    (("numeric(12,2)", "numeric", _num(12, 2)), ("numeric", "numeric")),
    (("numeric(5,-2)", "numeric", _num(5, -2)), ("numeric(7,0)", "numeric", _num(7, 0))),
    (("real", "float4"), ("double precision", "float8")),
    (("timestamp(0)", "timestamp", 0), ("timestamp", "timestamp")),
    (("timestamp(3)", "timestamp", 3), ("timestamp(6)", "timestamp", 6)),
    (("timestamp", "timestamp"), ("timestamp(6)", "timestamp", 6)),
    (("timestamptz(0)", "timestamptz", 0), ("timestamptz(4)", "timestamptz", 4)),
    (("time(1)", "time", 1), ("time", "time")),
    (("interval day", "interval", INTERVAL_DAY), ("interval", "interval")),
    (("interval(3)", "interval", INTERVAL_FULL_3), ("interval", "interval")),
    (("varchar(10)", "varchar", 14), ("varchar(20)", "varchar", 24)),
    (("varchar(10)", "varchar", 14), ("text", "text")), (("varchar(10)", "varchar", 14), ("varchar", "varchar")),
    (("text", "text"), ("varchar", "varchar")), (("varchar", "varchar"), ("text", "text")),
    (("name", "name"), ("text", "text")),
    (("char(3)", "bpchar", 7), ("char(5)", "bpchar", 9)), (("char(3)", "bpchar", 7), ("bpchar", "bpchar")),
    (("bit(4)", "bit", 4), ("varbit(4)", "varbit", 4)), (("varbit(4)", "varbit", 4), ("varbit", "varbit")),
]


NARROWINGS = [
    (("integer", "int4"), ("smallint", "int2")), (("bigint", "int8"), ("integer", "int4")),
    (("bigint", "int8"), ("numeric(18,0)", "numeric", _num(18, 0))),
    (("integer", "int4"), ("numeric(10,2)", "numeric", _num(10, 2))),
    (("numeric(12,4)", "numeric", _num(12, 4)), ("numeric(12,2)", "numeric", _num(12, 2))),
    (("numeric(12,2)", "numeric", _num(12, 2)), ("numeric(12,4)", "numeric", _num(12, 4))),
    (("numeric(12,2)", "numeric", _num(12, 2)), ("numeric(6,2)", "numeric", _num(6, 2))),
    (("numeric", "numeric"), ("numeric(30,10)", "numeric", _num(30, 10))),
    (("numeric", "numeric"), ("integer", "int4")), (("numeric", "numeric"), ("double precision", "float8")),
    (("double precision", "float8"), ("real", "float4")), (("double precision", "float8"), ("numeric", "numeric")),
    (("bigint", "int8"), ("double precision", "float8")),
    (("timestamp", "timestamp"), ("timestamp(0)", "timestamp", 0)),
    (("timestamp(6)", "timestamp", 6), ("timestamp(5)", "timestamp", 5)),
    (("timestamp", "timestamp"), ("timestamptz", "timestamptz")),
    (("timestamptz", "timestamptz"), ("timestamp", "timestamp")),
    (("time", "time"), ("time(0)", "time", 0)), (("date", "date"), ("timestamp", "timestamp")),
    (("interval", "interval"), ("interval day", "interval", INTERVAL_DAY)),
    (("interval", "interval"), ("interval(3)", "interval", INTERVAL_FULL_3)),
    (("text", "text"), ("varchar(50)", "varchar", 54)), (("varchar", "varchar"), ("varchar(50)", "varchar", 54)),
    (("varchar(20)", "varchar", 24), ("varchar(10)", "varchar", 14)),
    (("varchar(20)", "varchar", 24), ("char(20)", "bpchar", 24)),
    (("char(5)", "bpchar", 9), ("char(3)", "bpchar", 7)), (("char(5)", "bpchar", 9), ("text", "text")),
    (("bpchar", "bpchar"), ("char(5)", "bpchar", 9)),
    (("bit(4)", "bit", 4), ("bit(8)", "bit", 8)), (("varbit(8)", "varbit", 8), ("varbit(4)", "varbit", 4)),
    (("varbit", "varbit"), ("bit(4)", "bit", 4)),
    (("json", "json"), ("jsonb", "jsonb")), (("jsonb", "jsonb"), ("json", "json")),
    (("integer", "int4"), ("text", "text")), (("text", "text"), ("citext", "citext")),
    (("vector(3)", "vector", 3, "U"), ("vector(4)", "vector", 4, "U")),
]


@pytest.mark.parametrize("src,dst", WIDENINGS, ids=lambda t: t[0])
def test_lossless_widenings_accepted(src, dst):
    from confiture_fast import typediff

    problem, note = typediff.compare(_c(*src), _c(*dst), ruled=False)
    assert problem is None and note is not None and "lossless widening" in note
    problem, _ = typediff.compare(_c(*src, is_array=True), _c(*dst, is_array=True), ruled=False)
    assert problem is None


@pytest.mark.parametrize("src,dst", NARROWINGS, ids=lambda t: t[0])
def test_narrowing_or_other_types_refused(src, dst):
    from confiture_fast import typediff

    problem, note = typediff.compare(_c(*src), _c(*dst), ruled=False)
    assert problem is not None and note is None
    assert problem.startswith("type ") and "make the target's type the same or wider" in problem
    assert typediff.compare(_c(*src, is_array=True), _c(*dst, is_array=True), ruled=False)[0] is not None


def test_arrays_and_domains_in_the_comparison():
    from confiture_fast import typediff

    text, arr = _c("text", "text"), _c("text", "text", is_array=True)
    assert "an array and a non-array" in typediff.compare(text, arr, ruled=False)[0]
    assert typediff.compare(arr, text, ruled=False)[0] is not None
    tags = _c("text", "text", is_array=True, domain="tags")
    assert typediff.compare(arr, tags, ruled=False) == (None, "text[] -> tags (domain over text[]), same base type")
    assert typediff.compare(tags, arr, ruled=False)[0] is None
    strict = _c("text", "text", domain="mail", checks=("CHECK ((VALUE ~~ '%@corp.com'::text))",))
    other = _c("text", "text", domain="mail", checks=("CHECK ((length(VALUE) < 5))",))
    assert "adds mail_check" in typediff.compare(text, strict, ruled=False)[0]
    assert "adds mail_check" in typediff.compare(other, strict, ruled=False)[0]
    assert typediff.compare(strict, strict, ruled=False) == (None, None)
    assert typediff.compare(strict, text, ruled=False)[0] is None  # dropping a CHECK narrows nothing
    # a rule writes the values: the CHECK judges the rule's output (a planner warning), not the source's
    assert typediff.compare(text, strict, ruled=True)[0] is None
    v10 = _c("varchar(10)", "varchar", 14, domain="code")
    v50 = _c("varchar(50)", "varchar", 54, domain="code")
    assert typediff.compare(v10, v50, ruled=False)[0] is None
    # a narrower typmod is refused even under a rule: strategies that keep the input's length need it
    assert "code (domain over varchar(50)) on the source" in typediff.compare(v50, v10, ruled=True)[0]


def test_binary_copy_only_for_identical_types():
    from confiture_fast import plan
    from confiture_fast.catalog import Column, Table

    def table(col):
        return Table(schema="public", name="t", kind="r", columns=(col,), leaves=(), foreign_keys=(), sequences=(),
                     indexes=(), can_read=True, can_load=True, owned=True, user_triggers=())

    def col(type_, typmod, resolved):
        return Column(name="c", type=type_, base_type="numeric", category="N", max_length=None, is_array=False,
                      not_null=False, has_default=False, generated=False, identity=False, unique=False,
                      binary_safe=True, resolved_type=resolved, typmod=typmod)

    a = col("numeric(12,2)", _num(12, 2), "numeric(12,2)")
    assert plan._binary(table(a), table(a), ("c",), ())
    assert not plan._binary(table(a), table(col("numeric(14,2)", _num(14, 2), "numeric(14,2)")), ("c",), ())
    assert not plan._binary(table(a), table(col("numeric(12,2)", _num(12, 2), "numeric(14,2)")), ("c",), ())
