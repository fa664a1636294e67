"""Issue 12, point 7 on synthetic catalogs: tables are known by (schema, name), never by a display string
that two tables can share; look-alike names are ambiguous until quoted."""

from __future__ import annotations

import pytest

from confiture_fast.catalog import Catalog, Column, Leaf, Table, display_name
from confiture_fast.config import split_table_name
from confiture_fast.plan import Selection, select_tables


def _table(schema: str, name: str, *cols: str) -> Table:
    columns = tuple(Column(c, "text", "text", "S", None, False, False, False, False, False, False) for c in cols)
    return Table(schema, name, "r", columns, (Leaf(schema, name, 0, 0, 0),), (), (), (), True, True, True, ())


def _catalog(*tables: Table) -> Catalog:
    return Catalog({t.key: t for t in tables})


def test_display_names_are_unambiguous_and_keep_the_ordinary_spelling():
    assert display_name("public", "users") == "users"
    assert display_name("crm", "Customer List") == "crm.Customer List"
    assert display_name("a", "b") == "a.b"
    assert display_name("public", "a.b") == '"a.b"'
    assert display_name("x.y", "z") == '"x.y".z'
    assert display_name("public", 'q"t') == '"q""t"'
    names = [("public", "a.b"), ("a", "b"), ("public", "a"), ("a.b", "c"), ("a", "b.c"), ("public", "a.b.c"),
             ("public", '"a.b"'), ("public", '"a"."b"'), ("a", '"b"'), ('"a"', "b")]
    shown = [display_name(*n) for n in names]
    assert len(set(shown)) == len(shown)
    # Each reads back as exactly the table it shows, in a catalog holding them all.
    cat = _catalog(*(_table(s, n) for s, n in names))
    for key, text in zip(names, shown):
        hits = cat.find(text)
        assert [t.key for t in hits] == [key] or (len(hits) > 1 and '"' not in text), (text, hits)
        assert [t.key for t in cat.find(cat.spelling(cat.tables[key]))] == [key]


def test_quoted_table_names_parse_exactly():
    assert split_table_name('"a.b"') == ((None, "a.b"),)
    assert split_table_name('"a"."b"') == (("a", "b"),)
    assert split_table_name('a."b.c"') == (("a", "b.c"),)
    assert split_table_name('"a.b".c') == (("a.b", "c"),)
    assert split_table_name('"q""t"') == ((None, 'q"t'),)
    assert split_table_name('crm."Customer List"') == (("crm", "Customer List"),)
    for bad in ('"a', 'a"b', '"a"b', '"a".', '"a"."b"."c"', '""', '"a"..b', "a.", ".a", ""):
        with pytest.raises(ValueError):
            split_table_name(bad)


def test_look_alike_names_are_ambiguous_until_quoted():
    cat = _catalog(_table("a", "b"), _table("public", "a.b"), _table("public", "users"), _table("crm", "users"))
    assert {t.key for t in cat.find("a.b")} == {("a", "b"), ("public", "a.b")}
    assert [t.key for t in cat.find('"a.b"')] == [("public", "a.b")]
    assert [t.key for t in cat.find('"a"."b"')] == [("a", "b")]
    assert [t.key for t in cat.find('a."b"')] == [("a", "b")]
    assert [t.key for t in cat.find("users")] == [("public", "users")]  # as documented: public first
    assert [t.key for t in cat.find("crm.users")] == [("crm", "users")]
    problems: list[str] = []
    assert select_tables(cat, Selection(tables=("a.b",)), problems) == []
    assert len(problems) == 1 and '"a"."b"' in problems[0] and '"a.b"' in problems[0], problems
    for sel in (Selection(include=("a.b",)), Selection(exclude=("a.b",))):
        problems = []
        select_tables(cat, sel, problems)
        assert len(problems) == 1 and "ambiguous" in problems[0], problems
    problems = []
    chosen = select_tables(cat, Selection(tables=('"a.b"', '"a"."b"')), problems)
    assert not problems and sorted(t.key for t in chosen) == [("a", "b"), ("public", "a.b")]
    chosen = select_tables(cat, Selection(exclude=('"a.b"',)), problems)
    assert not problems and ("public", "a.b") not in {t.key for t in chosen} and ("a", "b") in {t.key for t in chosen}
