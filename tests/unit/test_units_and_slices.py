"""build_plan's units on synthetic catalogs: one COPY per table or leaf, split into key or ctid ranges above
the slice size, FREEZE only where a unit owns its relation, binary COPY only for identical built-in types and
rules on text-like columns."""

from __future__ import annotations

import re

import pytest

from confiture_fast import plan
from confiture_fast.errors import ValidationError
from confiture_fast.plan import Selection, build_plan, streams
from confiture_fast.strategies import FieldRule, parse_params

from .catalog_builder import SECRET, catalog, col, leaf, rules, table

MB = 1 << 20


def plan_of(*tables, target=None, slice_size=64, rule_spec=None, **kw):
    src = catalog(*tables)
    dst = catalog(*(target or tables))
    return build_plan(src, dst, Selection(), rules(rule_spec) if rule_spec else None, SECRET,
                      slice_size=slice_size, **kw)


def big(name="events", *, key="id", key_range=(1, 1000), size=400 * MB, pages=51200, **kw):
    return table(name, col("id", "int8"), col("v", "text"), size=size, pages=pages, key=key, key_range=key_range,
                 rows=1000, **kw)


def test_a_small_table_is_one_unit_that_owns_its_relation_and_loads_with_freeze():
    (tp,) = plan_of(table("users", col("id", "int4"), col("email"))).tables
    (u,) = tp.units
    assert u.owns_relation and u.relation == '"public"."users"'
    assert u.copy_out == 'COPY "public"."users" ("id", "email") TO STDOUT (FORMAT binary)'
    assert u.copy_in == 'COPY "public"."users" ("id", "email") FROM STDIN WITH (FORMAT binary, FREEZE)'
    assert tp.shared_relations == []


def test_a_large_table_with_an_integer_key_is_split_into_key_ranges_without_freeze():
    (tp,) = plan_of(big()).tables
    assert len(tp.units) == 7  # ceil(400 MiB / 64 MiB)
    assert all(not u.owns_relation and "FREEZE" not in u.copy_in for u in tp.units)
    assert tp.shared_relations == ['"public"."events"']
    wheres = [re.search(r"WHERE (.*)\) TO", u.copy_out).group(1) for u in tp.units]
    assert wheres[0] == '"id" < 144' and wheres[-1] == '"id" >= 859'
    assert all(" AND " in w for w in wheres[1:-1])


def test_key_ranges_cover_every_key_exactly_once_and_stay_open_at_both_ends():
    (tp,) = plan_of(big(key_range=(-50, 12345))).tables
    conds = [re.search(r"WHERE (.*)\) TO", u.copy_out).group(1) for u in tp.units]

    def holds(where, k):
        tests = {">=": lambda b: k >= b, "<": lambda b: k < b}
        return all(tests[op](int(b)) for op, b in re.findall(r'"id" (>=|<) (-?\d+)', where))

    def covered(k):
        return sum(holds(w, k) for w in conds)

    for k in (-10 ** 9, -50, -49, 0, 1000, 1812, 1813, 12345, 10 ** 12):
        assert covered(k) == 1, k


def test_a_key_range_smaller_than_the_slice_count_gives_no_empty_slices():
    (tp,) = plan_of(big(key_range=(1, 3))).tables
    conds = [re.search(r"WHERE (.*)\) TO", u.copy_out).group(1) for u in tp.units]
    assert conds == ['"id" < 2', '"id" >= 2 AND "id" < 3', '"id" >= 3']


def test_a_large_table_without_an_integer_key_is_split_into_ctid_page_ranges():
    (tp,) = plan_of(big(key=None, key_range=None, pages=700)).tables
    conds = [re.search(r"WHERE (.*)\) TO", u.copy_out).group(1) for u in tp.units]
    assert len(conds) == 7
    assert conds[0] == "ctid >= '(0,0)'::tid AND ctid < '(100,0)'::tid"
    assert conds[-1] == "ctid >= '(600,0)'::tid"  # open: pages added since the estimate are read too
    assert all('FROM ONLY "public"."events"' in u.copy_out for u in tp.units)


def test_never_more_slices_than_pages():
    (tp,) = plan_of(big(key=None, key_range=None, pages=3)).tables
    assert len(tp.units) == 3


def test_slices_share_the_estimates():
    (tp,) = plan_of(big()).tables
    assert {u.est_rows for u in tp.units} == {1000 // 7} and tp.est_rows == 1000


def test_a_table_with_user_triggers_on_the_target_is_never_split():
    dst = big(user_triggers=("audit_trigger",))
    (tp,) = plan_of(big(), target=[dst]).tables
    assert len(tp.units) == 1 and tp.units[0].owns_relation and tp.has_user_triggers


def partitioned(name="measures", leaves=("m1", "m2")):
    return table(name, col("id", "int4"), col("v", "numeric"), kind="p",
                 leaves=tuple(leaf("public", n, rows=10 * (i + 1), size=8192 * (i + 1)) for i, n in enumerate(leaves)))


def test_a_partitioned_table_is_one_unit_per_leaf_each_owning_its_leaf():
    (tp,) = plan_of(partitioned()).tables
    assert [(u.relation, u.owns_relation) for u in tp.units] == [('"public"."m1"', True), ('"public"."m2"', True)]
    assert tp.units[1].copy_out == 'COPY "public"."m2" ("id", "v") TO STDOUT (FORMAT binary)'
    assert tp.est_rows == 30


def test_a_partitioned_table_whose_target_leaves_differ_is_read_through_its_parent():
    (tp,) = plan_of(partitioned(), target=[partitioned(leaves=("m1", "other"))]).tables
    (u,) = tp.units
    # A partitioned target has no rows of its own (no TRUNCATE ONLY, no FREEZE): emptied whole, up front.
    assert u.relation == '"public"."measures"' and not u.owns_relation and "FREEZE" not in u.copy_in
    assert tp.shared_relations == ['"public"."measures"']
    assert u.copy_out == 'COPY (SELECT "id", "v" FROM "public"."measures") TO STDOUT (FORMAT binary)'


def test_a_partitioned_source_into_an_ordinary_target_table_is_read_through_its_parent():
    (tp,) = plan_of(partitioned(), target=[table("measures", col("id", "int4"), col("v", "numeric"))]).tables
    assert [u.relation for u in tp.units] == ['"public"."measures"']


def test_binary_copy_for_identical_built_in_types_without_rules():
    (tp,) = plan_of(table("t", col("id", "int4"), col("at", "timestamptz"))).tables
    assert tp.units[0].binary and "FORMAT binary" in tp.units[0].copy_in


def test_binary_copy_when_every_ruled_column_is_text_like():
    t = table("t", col("id", "int4"), col("email"), col("code", "bpchar"), col("nick", "varchar"),
              col("tags", "text", is_array=True), col("doc", "jsonb"), col("j", "json"), col("at", "timestamptz"))
    spec = {"t": {"email": "email", "code": "redact", "nick": "hash", "tags": "hash", "j": "null"}}
    spec["t"]["doc"] = {"strategy": "json", "params": {"paths": {"$.email": "email"}}}
    (tp,) = plan_of(t, rule_spec=spec).tables
    u = tp.units[0]
    assert u.binary and u.copy_in.endswith("FROM STDIN WITH (FORMAT binary, FREEZE)") and "FORMAT binary" in u.copy_out
    assert tp.jsonb_columns == (5,)  # what the binary rewriter needs to know: where a version byte comes first


@pytest.mark.parametrize("ruled, rule", [
    (col("born", "date"), {"strategy": "date_shift"}),  # its binary form is a day count, not text
    (col("n", "numeric"), {"strategy": "noise", "params": {"relative": 0.1}}),
    (col("ip", "inet"), {"strategy": "ip"}),
], ids=["date", "numeric", "inet"])
def test_text_copy_when_a_ruled_column_needs_its_text(ruled, rule):
    (tp,) = plan_of(table("t", col("id", "int4"), ruled), rule_spec={"t": {ruled.name: rule}}).tables
    u = tp.units[0]
    assert not u.binary and u.copy_in == f'COPY "public"."t" ("id", "{ruled.name}") FROM STDIN WITH (FREEZE)'


@pytest.mark.parametrize("key, binary", [(col("k"), True), (col("k", "varchar"), True), (col("k", "int8"), False),
                                         (col("k", "text", is_array=True), False)])
def test_a_per_row_key_goes_binary_only_when_its_value_is_its_text(key, binary):
    """The PRF reads the key column's text: an int8's binary form would key other pseudonyms. (Only
    date_shift has a per-row key today, on date columns, which stay text anyway: the rule is made here.)"""
    t = table("t", col("id", "int4"), col("email"), key)
    rule = FieldRule(index=1, column="email", strategy="hash", key=b"k" * 16, params=parse_params("hash", {})[0],
                     key_index=2)
    assert plan._binary(t, t, ("id", "email", "k"), (rule,)) is binary


def test_text_copy_when_a_ruled_column_has_no_portable_binary_form():
    t = table("t", col("id", "int4"), col("email"), col("x", "hstore", binary_safe=False))
    (tp,) = plan_of(t, rule_spec={"t": {"email": "redact"}}).tables
    assert not tp.units[0].binary


def test_text_copy_when_a_type_has_no_portable_binary_form():
    (tp,) = plan_of(table("t", col("id", "int4"), col("x", "hstore", binary_safe=False))).tables
    assert not tp.units[0].binary and "binary" not in tp.units[0].copy_out


def test_text_copy_when_the_target_type_is_a_lossless_widening():
    src = table("t", col("id", "int4"))
    (tp,) = plan_of(src, target=[table("t", col("id", "int8"))]).tables
    assert not tp.units[0].binary
    assert tp.type_changes and "lossless widening" in tp.type_changes[0]


def test_identifiers_are_quoted_in_every_statement():
    (tp,) = plan_of(table('crm.Customer List', col("Id", "int4"), col("e-mail"))).tables
    u = tp.units[0]
    assert u.copy_out == 'COPY "crm"."Customer List" ("Id", "e-mail") TO STDOUT (FORMAT binary)'
    assert tp.name == "crm.Customer List" and tp.relation == '"crm"."Customer List"'


def test_generated_columns_are_skipped_and_said():
    (tp,) = plan_of(table("t", col("id", "int4"), col("total", "numeric", generated=True))).tables
    assert tp.columns == ("id",) and tp.skipped_generated == ("total",)


def test_a_table_of_only_generated_columns_copies_rows_without_a_column_list():
    t = table("t", col("g", "int4", generated=True))
    (tp,) = plan_of(t).tables
    assert tp.units[0].copy_out == 'COPY "public"."t" TO STDOUT (FORMAT binary)'
    assert tp.units[0].copy_in.startswith('COPY "public"."t" FROM STDIN')


def test_target_only_columns_are_listed_and_refused_when_not_null_without_default():
    src = table("t", col("id", "int4"))
    ok = table("t", col("id", "int4"), col("note"), col("added", "date", not_null=True, has_default=True))
    (tp,) = plan_of(src, target=[ok]).tables
    assert tp.extra_target_columns == ("note", "added")
    with pytest.raises(ValidationError) as info:
        plan_of(src, target=[table("t", col("id", "int4"), col("must", not_null=True))])
    assert info.value.problems == ["t.must: only on the target, NOT NULL and without a default"]


def test_tables_are_planned_largest_first():
    plan = plan_of(table("small", size=8192), table("large", size=50 * MB), table("mid", size=MB))
    assert [t.name for t in plan.tables] == ["large", "mid", "small"]


def test_a_smaller_slice_size_gives_more_slices():
    assert len(plan_of(big(), slice_size=32).tables[0].units) == 13
    assert len(plan_of(big(), slice_size=1 << 20).tables[0].units) == 1


# -- a table that dominates the plan: one slice per COPY stream the machine runs with profit ----------
def test_streams_are_one_per_worker_and_per_two_cores():
    assert [streams(2, 2), streams(8, 2), streams(2, 16), streams(8, 16), streams(1, 64)] == [1, 1, 2, 8, 1]


def test_on_two_cores_a_dominating_table_stays_one_unit_with_freeze():
    (tp,) = plan_of(big(size=200 * MB), slice_size=512, streams=streams(2, 2)).tables
    (u,) = tp.units
    assert u.owns_relation and "FREEZE" in u.copy_in


def test_with_cores_free_a_dominating_table_gets_one_slice_per_stream():
    plan = plan_of(big(size=200 * MB), table("small", size=MB), slice_size=512, streams=streams(4, 8))
    events, small = plan.tables
    assert len(events.units) == 4 and not any(u.owns_relation for u in events.units)
    assert events.shared_relations == ['"public"."events"']
    assert len(small.units) == 1 and small.units[0].owns_relation


def test_a_table_within_an_even_share_of_the_streams_is_not_split():
    plan = plan_of(big(size=200 * MB), big("orders", size=200 * MB), big("audit", size=200 * MB),
                   big("logs", size=200 * MB), slice_size=512, streams=4)
    assert all(len(t.units) == 1 for t in plan.tables)
    plan = plan_of(big(size=300 * MB), big("orders", size=100 * MB), slice_size=512, streams=2)
    assert [len(t.units) for t in plan.tables] == [2, 1]


def test_a_dominating_table_is_never_cut_below_the_minimum_slice():
    (tp,) = plan_of(big(size=70 * MB), slice_size=512, streams=8).tables
    assert len(tp.units) == 2  # 70 MiB // 32 MiB
    (tp,) = plan_of(table("tiny", col("id", "int4"), size=2 * MB, rows=2000), streams=8).tables
    assert len(tp.units) == 1


def test_a_dominating_table_with_user_triggers_or_partitions_is_not_spread():
    dst = big(user_triggers=("audit_trg",))
    (tp,) = plan_of(big(), target=[dst], slice_size=512, streams=4).tables
    assert len(tp.units) == 1
    parts = table("measures", col("id", "int4"), col("v", "numeric"), kind="p",
                  leaves=(leaf("public", "m1", size=300 * MB, pages=38400), leaf("public", "m2", size=10 * MB)))
    (tp,) = plan_of(parts, slice_size=512, streams=4).tables
    assert [u.relation for u in tp.units] == ['"public"."m1"', '"public"."m2"']  # its leaves are its units
