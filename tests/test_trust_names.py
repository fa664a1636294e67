"""Issue 12, points 7, 6, 18 and 21 (--tables naming a partition): tables are known by (schema, name),
never by a display string that two tables can share; inherited rules; tables without copyable columns."""

from __future__ import annotations

import json

import pytest

from confiture_fast.catalog import Catalog, Column, Leaf, Table, display_name
from confiture_fast.config import split_table_name
from confiture_fast.plan import Selection, select_tables

from conftest import run_cli

SECRET = "test-secret-0123456789abcdef"


def _table(schema: str, name: str, *cols: str) -> Table:
    columns = tuple(Column(c, "text", "text", "S", None, False, False, False, False, False, False) for c in cols)
    return Table(schema, name, "r", columns, (Leaf(schema, name, 0, 0, 0),), (), (), (), True, True, True, ())


def _catalog(*tables: Table) -> Catalog:
    return Catalog({t.key: t for t in tables})


def assert_clean_error(res, *needles, code=2):
    assert res.returncode == code, (res.returncode, res.stdout, res.stderr)
    assert "Traceback" not in res.stderr
    for n in needles:
        assert n in res.stderr, (n, res.stderr)


# --------------------------------------------------------------------------- 7. look-alike names (units)


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


# --------------------------------------------------------------------------- 7. look-alike names (servers)

LOOK_ALIKES = """
CREATE SCHEMA a;
CREATE TABLE a.b (id int PRIMARY KEY, email text);
CREATE TABLE public."a.b" (id int PRIMARY KEY, email text);
"""


def _fill_look_alikes(pair):
    pair.both(LOOK_ALIKES)
    pair.source("INSERT INTO a.b SELECT g, 'schema' || g || '@real.example' FROM generate_series(1, 3) g; "
                "INSERT INTO public.\"a.b\" SELECT g, 'public' || g || '@real.example' FROM generate_series(1, 5) g")


def test_look_alike_tables_are_both_copied_whole(pair):
    _fill_look_alikes(pair)
    res = pair.sync()
    assert res.returncode == 0, res.stderr
    assert pair.qt("SELECT count(*), min(email) FROM a.b") == [(3, "schema1@real.example")]
    assert pair.qt('SELECT count(*), min(email) FROM public."a.b"') == [(5, "public1@real.example")]


def test_look_alike_tables_are_synced_and_masked_separately(pair):
    _fill_look_alikes(pair)
    rules = ("'\"a\".\"b\"':\n  - column: email\n    strategy: email\n"
             "'\"a.b\"':\n  - column: email\n    strategy: email\n")
    res = pair.sync(rules=rules)
    assert res.returncode == 0, res.stderr
    assert pair.qt("SELECT count(*) FROM a.b") == [(3,)]
    assert pair.qt('SELECT count(*) FROM public."a.b"') == [(5,)]
    leaked = pair.qt("SELECT email FROM a.b WHERE email LIKE '%real.example' "
                     'UNION ALL SELECT email FROM public."a.b" WHERE email LIKE \'%real.example\'')
    assert leaked == []
    # verify sees two tables, each with its own rule.
    res = run_cli("verify", "--from", pair.src, "--to", pair.dst, "--anonymize-config", str(pair.tmp / "anonymization.yaml"),
                  "--format", "json")
    assert res.returncode == 0, res.stdout + res.stderr
    tables = {t["table"]: t for t in json.loads(res.stdout)["tables"]}
    assert set(tables) == {"a.b", '"a.b"'}
    assert tables["a.b"]["rows_source"] == 3 and tables['"a.b"']["rows_source"] == 5


def test_an_ambiguous_rule_key_or_table_name_is_refused(pair):
    _fill_look_alikes(pair)
    res = pair.sync(rules="a.b:\n  - column: email\n    strategy: email\n")
    assert_clean_error(res, "a.b: ambiguous", '"a"."b"', '"a.b"')
    res = pair.sync("--tables", "a.b")
    assert_clean_error(res, "--tables: 'a.b' is ambiguous", '"a"."b"', '"a.b"')
    assert pair.qt("SELECT count(*) FROM a.b") == [(0,)]
    res = pair.sync("--tables", '"a.b"')
    assert res.returncode == 0, res.stderr
    assert pair.qt('SELECT count(*) FROM public."a.b"') == [(5,)] and pair.qt("SELECT count(*) FROM a.b") == [(0,)]


def test_scan_sees_both_look_alike_tables(pair):
    _fill_look_alikes(pair)
    res = run_cli("scan", "--from", pair.src, "--format", "json", cwd=pair.tmp)
    assert res.returncode == 0, res.stderr
    tables = {t["table"] for t in json.loads(res.stdout)["tables"] if t["findings"]}
    assert tables == {"a.b", '"a.b"'}
    # The suggested rules file names each table so that it loads and designates that table alone.
    out = pair.tmp / "suggested.yaml"
    res = run_cli("scan", "--from", pair.src, "-o", str(out), cwd=pair.tmp)
    assert res.returncode == 0, res.stderr
    res = pair.sync("--dry-run", "--anonymize-config", str(out))
    assert res.returncode == 0, res.stderr
