"""plan.select_tables on synthetic catalogs: --tables (exact names), --include (patterns or names),
--exclude (either), what a bare name means, ambiguity and partitions."""

from __future__ import annotations

import pytest

from confiture_fast.plan import Selection, select_tables

from .catalog_builder import catalog, table

SHOP = catalog(table("users"), table("orders"), table("order_items"), table("crm.users"), table("crm.leads"),
               table("audit.log"), table("measures", kind="p"),
               partitions={"measures_2024": "measures", "measures_2024_q1": "measures"})


def chosen(sel: Selection, cat=SHOP) -> tuple[set[tuple[str, str]], list[str]]:
    problems: list[str] = []
    return {t.key for t in select_tables(cat, sel, problems)}, problems


def test_no_option_selects_every_table():
    keys, problems = chosen(Selection())
    assert keys == set(SHOP.tables) and problems == []


def test_tables_selects_exactly_the_names_given():
    keys, problems = chosen(Selection(tables=("orders", "audit.log")))
    assert keys == {("public", "orders"), ("audit", "log")} and problems == []


def test_a_bare_name_is_the_public_table_when_there_is_one():
    keys, problems = chosen(Selection(tables=("users",)))
    assert keys == {("public", "users")} and problems == []


def test_a_bare_name_finds_the_only_table_of_that_name_in_another_schema():
    keys, problems = chosen(Selection(tables=("leads",)))
    assert keys == {("crm", "leads")} and problems == []


def test_a_bare_name_in_two_other_schemas_is_ambiguous_and_shows_both_spellings():
    cat = catalog(table("a.t"), table("b.t"))
    keys, problems = chosen(Selection(tables=("t",)), cat)
    assert keys == set() and len(problems) == 1
    assert "ambiguous" in problems[0] and "a.t" in problems[0] and "b.t" in problems[0]


def test_an_unknown_table_is_a_problem_naming_it():
    keys, problems = chosen(Selection(tables=("orders", "nope")))
    assert keys == {("public", "orders")}
    assert problems == ["--tables: unknown table 'nope' on the source"]


@pytest.mark.parametrize("option", ["tables", "include", "exclude"])
def test_naming_a_partition_points_to_its_partitioned_table(option):
    keys, problems = chosen(Selection(**{option: ("measures_2024_q1",)}))
    assert len(problems) == 1 and problems[0].startswith(f"--{option}: ")
    assert "is a partition of measures: select measures" in problems[0]


def test_include_patterns_match_the_display_name_and_the_schema_qualified_name():
    assert chosen(Selection(include=("order*",)))[0] == {("public", "orders"), ("public", "order_items")}
    assert chosen(Selection(include=("crm.*",)))[0] == {("crm", "users"), ("crm", "leads")}
    assert chosen(Selection(include=("public.user?",)))[0] == {("public", "users")}


def test_include_patterns_are_case_sensitive():
    keys, problems = chosen(Selection(include=("ORDER*",)))
    assert keys == set() and problems == ["--include: 'ORDER*' matches no table on the source"]


def test_include_bracket_patterns():
    assert chosen(Selection(include=("order[s]",)))[0] == {("public", "orders")}


def test_tables_and_include_add_up():
    keys, problems = chosen(Selection(tables=("audit.log",), include=("crm.*",)))
    assert keys == {("audit", "log"), ("crm", "users"), ("crm", "leads")} and problems == []


def test_include_of_an_exact_ambiguous_name_is_refused_and_selects_nothing():
    cat = catalog(table("a.t"), table("b.t"), table("c"))
    keys, problems = chosen(Selection(include=("t",)), cat)
    assert keys == set() and len(problems) == 1 and "ambiguous" in problems[0]


def test_exclude_removes_from_every_table_by_default():
    keys, problems = chosen(Selection(exclude=("crm.*", "audit.log")))
    assert keys == set(SHOP.tables) - {("crm", "users"), ("crm", "leads"), ("audit", "log")} and problems == []


def test_exclude_wins_over_tables():
    keys, _ = chosen(Selection(tables=("orders", "users"), exclude=("users",)))
    assert keys == {("public", "orders")}


def test_exclude_of_an_unknown_exact_name_is_a_problem_but_a_pattern_matching_nothing_is_not():
    assert chosen(Selection(exclude=("nope",)))[1] == ["--exclude: unknown table 'nope' on the source"]
    assert chosen(Selection(exclude=("nope*",)))[1] == []


def test_exclude_of_an_ambiguous_name_is_refused():
    cat = catalog(table("a.t"), table("b.t"))
    _, problems = chosen(Selection(exclude=("t",)), cat)
    assert len(problems) == 1 and problems[0].startswith("--exclude: 't' is ambiguous")


def test_every_problem_is_reported_together():
    _, problems = chosen(Selection(tables=("x", "y"), include=("z*",), exclude=("w",)))
    assert len(problems) == 4
