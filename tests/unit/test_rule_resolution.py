"""Rules resolved on synthetic catalogs: rules.resolve (a rule follows foreign keys and inheritance to a
fixed point, conflicts are problems) and how build_plan validates and attaches the rules of a selection."""

from __future__ import annotations

import pytest

from confiture_fast import strategies
from confiture_fast.catalog import UniqueUse
from confiture_fast.errors import ValidationError
from confiture_fast.plan import Selection, build_plan
from confiture_fast.rules import Declared, Inherited, Propagated, resolve

from .catalog_builder import SECRET, catalog, col, fk, rules, table


def spread(cat, spec):
    """(table name -> column -> 'strategy/seed' of every resolved rule, the spread rules by table name,
    the problems) of the rules `spec` ({'users': {'id': 'hash/1'}}: strategy hash, seed 1)."""
    written = {t: {c: dict(zip(("strategy", "seed"), r.split("/"))) for c, r in cols.items()}
               for t, cols in spec.items()}
    res = resolve(cat, rules(written))
    ruled: dict[str, dict[str, str]] = {}
    notes: dict[str, list] = {}
    for r in res.rules:
        ruled.setdefault(r.table[1], {})[r.column] = f"{r.strategy}/{r.spec.seed}"
        if not isinstance(r.origin, Declared):
            notes.setdefault(r.table[1], []).append((r.column, r.origin))
    return ruled, notes, list(res.problems)


# -- resolve: spreading ---------------------------------------------------------------------------------------

def chain():
    """users <- orders.user_id; orders <- items.order_user (a composite key on (order_id, order_user))."""
    return catalog(
        table("users", col("id"), col("email")),
        table("orders", col("id"), col("user_id"),
              foreign_keys=(fk("orders_user", "orders", ("user_id",), "users", ("id",)),)),
        table("items", col("order_id"), col("order_user"),
              foreign_keys=(fk("items_order", "items", ("order_id", "order_user"), "orders", ("id", "user_id")),)))


def test_a_rule_on_a_referenced_column_covers_the_referencing_column():
    ruled, notes, problems = spread(chain(), {"users": {"id": "hash/1"}})
    assert problems == [] and ruled["orders"] == {"user_id": "hash/1"}
    assert notes["orders"] == [("user_id", Propagated("orders_user", "users", "id"))]


def test_propagation_follows_chains_of_foreign_keys_to_a_fixed_point():
    ruled, notes, _ = spread(chain(), {"users": {"id": "hash/1"}})
    assert ruled["items"] == {"order_user": "hash/1"}
    assert notes["items"] == [("order_user", Propagated("items_order", "orders", "user_id"))]


def test_a_composite_key_pairs_each_column_with_its_own_referenced_column():
    ruled, _, _ = spread(chain(), {"orders": {"id": "hash/order"}})
    assert ruled["items"] == {"order_id": "hash/order"}
    assert "users" not in ruled


def test_a_rule_never_flows_against_a_foreign_key():
    ruled, notes, problems = spread(chain(), {"orders": {"user_id": "hash/1"}})
    assert "users" not in ruled and problems == []
    assert "users" not in notes


def test_the_same_rule_written_on_both_ends_is_no_problem_and_no_note():
    _, notes, problems = spread(chain(), {"users": {"id": "hash/1"}, "orders": {"user_id": "hash/1"}})
    assert problems == [] and "orders" not in notes


def test_a_different_rule_on_the_referencing_column_is_a_problem_naming_the_key():
    _, _, problems = spread(chain(), {"users": {"id": "hash/1"}, "orders": {"user_id": "redact/"}})
    assert problems == ["orders.user_id: its rule differs from the rule on users.id, which it references "
                        "(orders_user): use the same strategy and seed, or remove it"]


def test_a_self_referencing_table_reaches_a_fixed_point():
    cat = catalog(table("people", col("id"), col("manager"), col("mentor"),
                        foreign_keys=(fk("m", "people", ("manager",), "people", ("id",)),
                                      fk("t", "people", ("mentor",), "people", ("manager",)))))
    ruled, notes, problems = spread(cat, {"people": {"id": "hash/h"}})
    assert ruled["people"] == {"id": "hash/h", "manager": "hash/h", "mentor": "hash/h"} and problems == []
    assert [c for c, _ in notes["people"]] == ["manager", "mentor"]


def inheritance():
    """contacts <- employees <- managers; vendors and contacts <- contractors (two parents)."""
    return catalog(
        table("contacts", col("email"), col("phone")),
        table("employees", col("email"), col("phone"), col("salary", "numeric"), parents=("contacts",)),
        table("managers", col("email"), col("phone"), col("salary", "numeric"), parents=("employees",)),
        table("vendors", col("phone")),
        table("contractors", col("email"), col("phone"), parents=("contacts", "vendors")))


def test_a_rule_on_a_parent_covers_every_descendant_at_any_depth():
    ruled, notes, problems = spread(inheritance(), {"contacts": {"email": "email/s"}})
    assert problems == []
    for child in ("employees", "managers", "contractors"):
        assert ruled[child] == {"email": "email/s"}, child
    assert notes["managers"] == [("email", Inherited("employees", "email"))]


def test_a_child_keeps_its_own_rule_for_a_column_the_parent_leaves_alone():
    ruled, _, _ = spread(inheritance(), {"contacts": {"email": "email/s"}, "employees": {"salary": "null/"}})
    assert ruled["managers"] == {"email": "email/s", "salary": "null/"}
    assert "salary" not in ruled["contractors"]


def test_two_parents_with_different_rules_for_one_column_are_a_conflict():
    ruled, _, problems = spread(inheritance(), {"contacts": {"phone": "phone/"}, "vendors": {"phone": "redact/"}})
    assert problems == ["contractors.phone: its rule differs from the rule on vendors.phone, which it inherits: "
                        "use the same strategy and seed, or remove it"]
    assert ruled["employees"] == {"phone": "phone/"}  # the conflict is contractors' alone


def test_two_parents_with_the_same_rule_agree():
    ruled, _, problems = spread(inheritance(), {"contacts": {"phone": "phone/"}, "vendors": {"phone": "phone/"}})
    assert problems == [] and ruled["contractors"]["phone"] == "phone/"


def test_a_rule_reaches_a_child_through_inheritance_and_then_a_foreign_key():
    cat = catalog(table("contacts", col("id")),
                  table("staff", col("id"), parents=("contacts",)),
                  table("badges", col("staff_id"),
                        foreign_keys=(fk("b_s", "badges", ("staff_id",), "staff", ("id",)),)))
    ruled, notes, _ = spread(cat, {"contacts": {"id": "hash/"}})
    assert ruled["badges"] == {"staff_id": "hash/"}
    assert notes["badges"] == [("staff_id", Propagated("b_s", "staff", "id"))]


def test_schemas_are_named_in_the_origin():
    cat = catalog(table("crm.users", col("id")),
                  table("orders", col("uid"), foreign_keys=(fk("f", "orders", ("uid",), "crm.users", ("id",)),)))
    _, notes, _ = spread(cat, {"crm.users": {"id": "hash/h"}})
    assert notes["orders"][0][1].describe() == "propagated from crm.users.id"


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
    assert orders.origins == (Propagated("orders_email", "users", "email"),)


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
    assert plan.table("orders").origins == (Propagated("orders_email", "users", "email"),)
