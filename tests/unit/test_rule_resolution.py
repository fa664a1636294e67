"""Rules resolved on synthetic catalogs: plan.spread_rules (a rule follows foreign keys and inheritance to a
fixed point, conflicts are problems) and how build_plan validates and attaches the rules of a selection."""

from __future__ import annotations

import pytest

from confiture_fast import strategies
from confiture_fast.catalog import UniqueUse
from confiture_fast.errors import ValidationError
from confiture_fast.plan import Selection, Spread, build_plan, spread_rules

from .catalog_builder import SECRET, catalog, col, fk, rules, table


def same(a, b):
    return a == b


def spread(cat, ruled):
    problems: list[str] = []
    notes = spread_rules(cat, ruled, same, problems)
    return notes, problems


# -- spread_rules ---------------------------------------------------------------------------------------------

def chain():
    """users <- orders.user_id; orders <- items.order_user (a composite key on (order_id, order_user))."""
    return catalog(
        table("users", col("id", "int4"), col("email")),
        table("orders", col("id", "int4"), col("user_id", "int4"),
              foreign_keys=(fk("orders_user", "orders", ("user_id",), "users", ("id",)),)),
        table("items", col("order_id", "int4"), col("order_user", "int4"),
              foreign_keys=(fk("items_order", "items", ("order_id", "order_user"), "orders", ("id", "user_id")),)))


def test_a_rule_on_a_referenced_column_covers_the_referencing_column():
    ruled = {("public", "users"): {"id": "hash-1"}}
    notes, problems = spread(chain(), ruled)
    assert problems == [] and ruled[("public", "orders")] == {"user_id": "hash-1"}
    assert notes[("public", "orders")] == [Spread("user_id", "users.id", "orders_user")]


def test_propagation_follows_chains_of_foreign_keys_to_a_fixed_point():
    ruled = {("public", "users"): {"id": "hash-1"}}
    notes, _ = spread(chain(), ruled)
    assert ruled[("public", "items")] == {"order_user": "hash-1"}
    assert notes[("public", "items")] == [Spread("order_user", "orders.user_id", "items_order")]


def test_a_composite_key_pairs_each_column_with_its_own_referenced_column():
    ruled = {("public", "orders"): {"id": "hash-order"}}
    spread(chain(), ruled)
    assert ruled[("public", "items")] == {"order_id": "hash-order"}
    assert ("public", "users") not in ruled or ruled[("public", "users")] == {}


def test_a_rule_never_flows_against_a_foreign_key():
    ruled = {("public", "orders"): {"user_id": "hash-1"}}
    notes, problems = spread(chain(), ruled)
    assert ruled.get(("public", "users"), {}) == {} and problems == []
    assert ("public", "users") not in notes


def test_the_same_rule_written_on_both_ends_is_no_problem_and_no_note():
    ruled = {("public", "users"): {"id": "hash-1"}, ("public", "orders"): {"user_id": "hash-1"}}
    notes, problems = spread(chain(), ruled)
    assert problems == [] and ("public", "orders") not in notes


def test_a_different_rule_on_the_referencing_column_is_a_problem_naming_the_key():
    ruled = {("public", "users"): {"id": "hash-1"}, ("public", "orders"): {"user_id": "redact"}}
    _, problems = spread(chain(), ruled)
    assert problems == ["orders.user_id: its rule differs from the rule on users.id, which it references "
                        "(orders_user): use the same strategy and seed, or remove it"]


def test_a_self_referencing_table_reaches_a_fixed_point():
    cat = catalog(table("people", col("id", "int4"), col("manager", "int4"), col("mentor", "int4"),
                        foreign_keys=(fk("m", "people", ("manager",), "people", ("id",)),
                                      fk("t", "people", ("mentor",), "people", ("manager",)))))
    ruled = {("public", "people"): {"id": "h"}}
    notes, problems = spread(cat, ruled)
    assert ruled[("public", "people")] == {"id": "h", "manager": "h", "mentor": "h"} and problems == []
    assert [n.column for n in notes[("public", "people")]] == ["manager", "mentor"]


def inheritance():
    """contacts <- employees <- managers; vendors and contacts <- contractors (two parents)."""
    return catalog(
        table("contacts", col("email"), col("phone")),
        table("employees", col("email"), col("phone"), col("salary", "numeric"), parents=("contacts",)),
        table("managers", col("email"), col("phone"), col("salary", "numeric"), parents=("employees",)),
        table("vendors", col("phone")),
        table("contractors", col("email"), col("phone"), parents=("contacts", "vendors")))


def test_a_rule_on_a_parent_covers_every_descendant_at_any_depth():
    ruled = {("public", "contacts"): {"email": "email-s"}}
    notes, problems = spread(inheritance(), ruled)
    assert problems == []
    for child in ("employees", "managers", "contractors"):
        assert ruled[("public", child)] == {"email": "email-s"}, child
    assert notes[("public", "managers")] == [Spread("email", "employees.email", None)]


def test_a_child_keeps_its_own_rule_for_a_column_the_parent_leaves_alone():
    ruled = {("public", "contacts"): {"email": "email-s"}, ("public", "employees"): {"salary": "noise"}}
    spread(inheritance(), ruled)
    assert ruled[("public", "managers")] == {"email": "email-s", "salary": "noise"}
    assert "salary" not in ruled[("public", "contractors")]


def test_two_parents_with_different_rules_for_one_column_are_a_conflict():
    ruled = {("public", "contacts"): {"phone": "phone"}, ("public", "vendors"): {"phone": "redact"}}
    _, problems = spread(inheritance(), ruled)
    assert problems and set(problems) <= {
        f"contractors.phone: its rule differs from the rule on {parent}.phone, which it inherits: use the same "
        "strategy and seed, or remove it" for parent in ("contacts", "vendors")}
    assert ruled[("public", "employees")] == {"phone": "phone"}  # the conflict is contractors' alone


def test_two_parents_with_the_same_rule_agree():
    ruled = {("public", "contacts"): {"phone": "phone"}, ("public", "vendors"): {"phone": "phone"}}
    _, problems = spread(inheritance(), ruled)
    assert problems == [] and ruled[("public", "contractors")]["phone"] == "phone"


def test_a_rule_reaches_a_child_through_inheritance_and_then_a_foreign_key():
    cat = catalog(table("contacts", col("id", "int4")),
                  table("staff", col("id", "int4"), parents=("contacts",)),
                  table("badges", col("staff_id", "int4"),
                        foreign_keys=(fk("b_s", "badges", ("staff_id",), "staff", ("id",)),)))
    ruled = {("public", "contacts"): {"id": "hash"}}
    notes, _ = spread(cat, ruled)
    assert ruled[("public", "badges")] == {"staff_id": "hash"}
    assert notes[("public", "badges")] == [Spread("staff_id", "staff.id", "b_s")]


def test_schemas_are_named_in_the_origin():
    cat = catalog(table("crm.users", col("id", "int4")),
                  table("orders", col("uid", "int4"), foreign_keys=(fk("f", "orders", ("uid",), "crm.users", ("id",)),)))
    notes, _ = spread(cat, {("crm", "users"): {"id": "h"}})
    assert notes[("public", "orders")][0].origin == "crm.users.id"


# -- build_plan: validating and attaching the rules ---------------------------------------------------------------

def shop(**users_kw):
    return catalog(
        table("users", col("id", "int4"), col("email", unique=True), col("phone"), col("total", "numeric", generated=True),
              **users_kw),
        table("orders", col("id", "int4"), col("user_email"),
              foreign_keys=(fk("orders_email", "orders", ("user_email",), "users", ("email",)),)))


def plan_of(spec, cat=None, secret=SECRET, sel=Selection()):
    cat = cat or shop()
    return build_plan(cat, cat, sel, rules(spec), secret)


def problems_of(spec, **kw) -> list[str]:
    with pytest.raises(ValidationError) as info:
        plan_of(spec, **kw)
    return info.value.problems


def test_a_propagated_rule_is_attached_to_the_referencing_table_and_said():
    plan = plan_of({"users": {"email": "email"}})
    orders = plan.table("orders")
    assert [(r.column, r.strategy) for r in orders.rules] == [("user_email", "email")]
    assert orders.propagated == ("user_email <- users.email",) and orders.inherited == ()


def test_a_propagated_rule_derives_the_same_key_so_joins_still_match():
    plan = plan_of({"users": {"email": {"strategy": "email", "seed": "s1"}}})
    (u,), (o,) = plan.table("users").rules, plan.table("orders").rules
    assert u.key == o.key == strategies.derive_key(SECRET, "s1")
    other = plan_of({"users": {"email": {"strategy": "email", "seed": "s2"}}}).table("users").rules[0]
    assert other.key != u.key


def test_field_rules_point_at_the_column_position_in_the_copy():
    plan = plan_of({"users": {"phone": "redact"}})
    (r,) = plan.table("users").rules
    assert plan.table("users").columns == ("id", "email", "phone") and r.index == 2


def test_a_rule_on_a_missing_column_is_a_problem_with_file_and_line():
    assert problems_of({"users": {"nope": "redact"}}) == ["anonymization.yaml:1: users.nope: no such column on the source"]


def test_a_rule_on_a_generated_column_is_refused():
    (p,) = problems_of({"users": {"total": "noise"}})
    assert "generated column, computed on the target" in p


def test_an_unknown_strategy_lists_the_known_ones():
    (p,) = problems_of({"users": {"phone": "scramble"}})
    assert "unknown strategy 'scramble'" in p and "redact" in p and "email" in p


def test_a_rules_key_for_an_unknown_table_is_a_problem():
    assert problems_of({"nobody": {"x": "redact"}}) == ["anonymization.yaml:1: nobody: no such table on the source"]


def test_two_keys_naming_one_table_are_a_problem():
    (p,) = problems_of({"users": {"phone": "redact"}, "public.users": {"email": "email"}})
    assert "names the same table as users: put its rules under one key" in p


def test_keyed_strategies_without_a_secret_are_one_problem():
    problems = problems_of({"users": {"email": "email", "phone": "phone"}}, secret=None)
    assert len(problems) == 1 and "no secret was given" in problems[0]


def test_unkeyed_strategies_need_no_secret():
    plan = plan_of({"users": {"phone": "redact"}}, secret=None)
    assert plan.table("users").anonymized_columns == ["phone"]


def test_a_non_unique_strategy_on_a_unique_column_is_refused_unless_duplicates_are_allowed():
    (p,) = problems_of({"users": {"email": "redact"}})
    assert "UNIQUE" in p and "allow_duplicates" in p
    plan = plan_of({"users": {"email": {"strategy": "redact", "allow_duplicates": True}}})
    assert plan.table("users").anonymized_columns == ["email"]


def test_a_unique_strategy_under_an_expression_index_other_than_lower_is_refused():
    use = UniqueUse("users_left_email", "expression", "left(email, 8)")
    cat = catalog(table("users", col("email", unique_indexes=(use,))))
    (p,) = problems_of({"users": {"email": "email"}}, cat=cat)
    assert "keys on left(email, 8)" in p
    lower = UniqueUse("users_lower_email", "expression", "lower(email)", case_only=True)
    cat = catalog(table("users", col("email", unique_indexes=(lower,))))
    assert plan_of({"users": {"email": "email"}}, cat=cat).table("users").anonymized_columns == ["email"]


def test_a_rule_on_the_predicate_of_a_partial_unique_index_is_refused():
    use = UniqueUse("users_active_email", "predicate")
    cat = catalog(table("users", col("email"), col("active", unique_indexes=(use,))))
    (p,) = problems_of({"users": {"active": "redact"}}, cat=cat)
    assert "partial UNIQUE index users_active_email" in p


def test_a_per_row_key_must_be_a_copied_column():
    cat = catalog(table("people", col("born", "date"), col("id", "int4")))
    (p,) = problems_of({"people": {"born": {"strategy": "date_shift", "params": {"days": 30, "per_row_key": "nope"}}}},
                       cat=cat)
    assert "per_row_key 'nope' is not a copied column of people" in p


def test_a_propagated_rule_that_cannot_fit_the_referencing_column_is_a_problem_saying_where_it_came_from():
    cat = catalog(table("users", col("email")),
                  table("orders", col("user_email", not_null=True),
                        foreign_keys=(fk("o_e", "orders", ("user_email",), "users", ("email",)),)))
    assert problems_of({"users": {"email": "null"}}, cat=cat) == [
        "anonymization.yaml:1: orders.user_email (rule propagated from users.email): null cannot go into "
        "user_email, which is NOT NULL"]


def test_conflicting_written_and_propagated_rules_fail_the_plan():
    (p,) = problems_of({"users": {"email": "email"}, "orders": {"user_email": "hash"}})
    assert p.startswith("orders.user_email: its rule differs from the rule on users.email")


def test_rules_on_unselected_tables_still_propagate_into_selected_ones():
    plan = plan_of({"users": {"email": "email"}}, sel=Selection(tables=("orders", "users")))
    assert plan.table("orders").propagated == ("user_email <- users.email",)
