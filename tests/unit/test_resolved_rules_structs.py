"""Rules resolved once (issue 13, point 5): rules.resolve returns each column's rule as a typed struct that
says where it comes from (written at FILE:LINE, propagated through a foreign key, inherited from a parent);
each conflict is reported once; the plan, its --dry-run text and JSON read the structs, never strings
parsed back; and every command that needs rules (sync's plan, --strict, scan, verify) calls resolve."""

from __future__ import annotations

import ast
import io
import json
from pathlib import Path

import pytest
from rich.console import Console

import confiture_fast
from confiture_fast import strategies
from confiture_fast.config import RuleSpec
from confiture_fast.errors import ValidationError
from confiture_fast.plan import Selection, build_plan
from confiture_fast.rules import Declared, Inherited, Propagated, Rule, resolve
from confiture_fast.summary import plan_json, render_plan

from .catalog_builder import SECRET, catalog, col, fk, rules, table

PACKAGE = Path(confiture_fast.__file__).parent


def by_place(res) -> dict[tuple[str, str], Rule]:
    return {(r.table[1], r.column): r for r in res.rules}


def problems_of(cat, spec) -> list[str]:
    with pytest.raises(ValidationError) as info:
        build_plan(cat, cat, Selection(), rules(spec), SECRET)
    return info.value.problems


def test_a_written_rule_says_its_file_and_line_and_carries_its_parsed_params():
    cat = catalog(table("users", col("id", "int4"), col("email"), col("bio")))
    res = resolve(cat, rules({"users": {"email": {"strategy": "email", "seed": "s1"},
                                        "bio": {"strategy": "hash", "params": {"length": 20}}}}))
    assert res.problems == () and res.refused == ()
    email, bio = by_place(res)[("users", "email")], by_place(res)[("users", "bio")]
    assert email.table == ("public", "users") and email.origin == Declared("anonymization.yaml", 1)
    assert email.spec == RuleSpec(table="users", column="email", strategy="email", seed="s1", line=1)
    assert bio.origin == Declared("anonymization.yaml", 2) and bio.params.length == 20
    assert bio.params == strategies.parse_params("hash", {"length": 20, "allow_duplicates": False})[0]


def hops():
    """users.email <- accounts.owner_email <- logins.account_email: two foreign keys."""
    return catalog(
        table("users", col("email")),
        table("accounts", col("owner_email"),
              foreign_keys=(fk("acc_user", "accounts", ("owner_email",), "users", ("email",)),)),
        table("logins", col("account_email"),
              foreign_keys=(fk("login_acc", "logins", ("account_email",), "accounts", ("owner_email",)),)))


def test_a_rule_propagated_through_two_foreign_keys_names_its_last_hop_and_keeps_the_written_spec():
    res = resolve(hops(), rules({"users": {"email": {"strategy": "email", "seed": "k"}}}))
    got = by_place(res)
    assert res.problems == ()
    assert got[("accounts", "owner_email")].origin == Propagated("acc_user", "users", "email")
    assert got[("logins", "account_email")].origin == Propagated("login_acc", "accounts", "owner_email")
    written = got[("users", "email")]
    for place in (("accounts", "owner_email"), ("logins", "account_email")):
        assert got[place].spec is written.spec and got[place].params == written.params  # same seed: joins match
    assert got[("logins", "account_email")].origin.describe() == "propagated from accounts.owner_email"


def levels():
    """people <- staff <- interns: two levels of inheritance."""
    return catalog(table("people", col("email"), col("phone")),
                   table("staff", col("email"), col("phone"), parents=("people",)),
                   table("interns", col("email"), col("phone"), parents=("staff",)))


def test_a_rule_inherited_through_two_levels_names_the_parent_it_comes_from():
    res = resolve(levels(), rules({"people": {"email": "email"}}))
    got = by_place(res)
    assert res.problems == ()
    assert got[("staff", "email")].origin == Inherited("people", "email")
    assert got[("interns", "email")].origin == Inherited("staff", "email")
    assert got[("interns", "email")].origin.describe() == "inherited from staff.email"
    assert ("interns", "phone") not in got


def test_a_two_parent_conflict_is_reported_once():
    cat = catalog(table("contacts", col("email"), col("phone")), table("vendors", col("phone")),
                  table("contractors", col("email"), col("phone"), parents=("contacts", "vendors")))
    assert problems_of(cat, {"contacts": {"phone": "phone"}, "vendors": {"phone": "redact"}}) == [
        "contractors.phone: its rule differs from the rule on vendors.phone, which it inherits: use the same "
        "strategy and seed, or remove it"]


def test_a_conflict_between_a_foreign_key_and_inheritance_is_reported_once():
    cat = catalog(table("users", col("email")), table("people", col("email")),
                  table("staff", col("email"), parents=("people",),
                        foreign_keys=(fk("staff_user", "staff", ("email",), "users", ("email",)),)))
    assert problems_of(cat, {"users": {"email": "email"}, "people": {"email": "hash"}}) == [
        "staff.email: its rule differs from the rule on users.email, which it references (staff_user): use the "
        "same strategy and seed, or remove it"]


def test_a_conflicting_rule_leaves_the_rule_that_was_there_and_spreads_it_on():
    cat = catalog(table("contacts", col("phone")), table("vendors", col("phone")),
                  table("contractors", col("phone"), parents=("contacts", "vendors")),
                  table("temps", col("phone"), parents=("contractors",)))
    res = resolve(cat, rules({"contacts": {"phone": "phone"}, "vendors": {"phone": "redact"}}))
    got = by_place(res)
    assert len(res.problems) == 1
    assert got[("contractors", "phone")].strategy == got[("temps", "phone")].strategy == "phone"


def test_a_refused_written_rule_is_listed_spreads_nowhere_and_still_marks_its_column_reviewed():
    res = resolve(hops(), rules({"users": {"email": "scramble"}}))
    (problem,) = res.problems
    assert problem.startswith("anonymization.yaml:1: users.email: unknown strategy 'scramble'")
    assert res.rules == () and [r.column for r in res.refused] == ["email"]
    assert set(res.covering()) == {(("public", "users"), "email")}


def test_without_rules_nothing_is_resolved():
    res = resolve(hops(), None)
    assert res.rules == res.refused == res.problems == ()


def test_a_rule_that_cannot_fit_the_target_column_is_a_problem_only_when_the_target_is_given():
    src = catalog(table("users", col("email")))
    dst = catalog(table("users", col("email", not_null=True)))
    spec = rules({"users": {"email": "null"}})
    assert resolve(src, spec).problems == ()
    assert resolve(src, spec, dst).problems == (
        "anonymization.yaml:1: users.email: null cannot go into email, which is NOT NULL",)


# -- the plan and its output read the structs -------------------------------------------------------------------

def dry_run_text(plan) -> str:
    out = io.StringIO()
    render_plan(plan, "replica", Console(file=out, width=400, no_color=True))
    return out.getvalue()


def test_the_dry_run_says_where_each_rule_comes_from_as_before():
    cat = catalog(table("users", col("email")),
                  table("orders", col("user_email"),
                        foreign_keys=(fk("o_u", "orders", ("user_email",), "users", ("email",)),)),
                  table("admins", col("email"), parents=("users",)))
    plan = build_plan(cat, cat, Selection(), rules({"users": {"email": "email"}}), SECRET)
    text = dry_run_text(plan)
    assert "user_email: email (propagated from users.email)" in text
    assert "email: email (inherited from users.email)" in text
    assert plan.table("users").origins == (Declared("anonymization.yaml", 1),)


def test_the_dry_run_names_the_origin_of_a_column_whose_name_holds_an_arrow():
    cat = catalog(table("users", col("email")),
                  table("orders", col("a <- b"), foreign_keys=(fk("o_u", "orders", ("a <- b",), "users", ("email",)),)))
    plan = build_plan(cat, cat, Selection(), rules({"users": {"email": "email"}}), SECRET)
    assert "a <- b: email (propagated from users.email)" in dry_run_text(plan)


def test_the_json_plan_gives_each_rule_its_origin_as_an_object():
    cat = hops()
    plan = build_plan(cat, cat, Selection(), rules({"users": {"email": "email"}}), SECRET)
    tables = {t["name"]: t for t in json.loads(plan_json(plan))["tables"]}
    assert tables["users"]["origins"] == [{"origin": "declared", "path": "anonymization.yaml", "line": 1}]
    assert tables["logins"]["origins"] == [{"origin": "propagated", "foreign_key": "login_acc", "table": "accounts",
                                            "column": "owner_email"}]
    assert "propagated" not in tables["logins"] and "inherited" not in tables["logins"]


# -- structure: one resolution, no strings parsed back -------------------------------------------------------------

def _sources():
    return sorted(p for p in PACKAGE.rglob("*.py"))


def test_nothing_under_src_writes_or_splits_col_arrow_table_strings():
    found = [f"{p.relative_to(PACKAGE)}:{n.lineno}" for p in _sources()
             for n in ast.walk(ast.parse(p.read_text(encoding="utf-8")))
             if isinstance(n, ast.Constant) and isinstance(n.value, str) and " <- " in n.value]
    assert found == []


def _function(module: str, name: str) -> ast.FunctionDef:
    tree = ast.parse((PACKAGE / module).read_text(encoding="utf-8"))
    return next(n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) and n.name == name)


def _calls(fn: ast.FunctionDef) -> set[str]:
    return {n.func.id if isinstance(n.func, ast.Name) else n.func.attr for n in ast.walk(fn)
            if isinstance(n, ast.Call) and isinstance(n.func, (ast.Name, ast.Attribute))}


@pytest.mark.parametrize("module, function", [("plan.py", "build_plan"), ("scan.py", "strict_problems"),
                                              ("scan.py", "run_scan"), ("verify.py", "run_verify")])
def test_every_command_that_needs_rules_calls_the_one_resolution(module, function):
    assert "resolve" in _calls(_function(module, function))


def test_only_the_resolution_spreads_rules_or_parses_their_params():
    """Following foreign keys and parents with rules, and parsing a rule's params, happen in rules.py
    alone (pii.py parses the params of the strategies it suggests, not of written rules)."""
    for path in _sources():
        if path.name in ("rules.py", "pii.py") or "strategies" in path.parts:
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        assert "parse_params" not in {n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute)} | \
            {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}, path.name
        names = {n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute)}
        assert not {"parents", "ref_columns"} <= names, path.name
