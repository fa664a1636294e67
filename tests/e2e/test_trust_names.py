"""Issue 12, points 7, 6, 18 and 21 (--tables naming a partition): tables are known by (schema, name),
never by a display string that two tables can share; inherited rules; tables without copyable columns.
The pure cases of point 7 are in tests/unit/test_names.py."""

from __future__ import annotations

import json

import pytest

from confiture_fast.plan import Selection

from conftest import run_cli

SECRET = "test-secret-0123456789abcdef"


def assert_clean_error(res, *needles, code=2):
    assert res.returncode == code, (res.returncode, res.stdout, res.stderr)
    assert "Traceback" not in res.stderr
    for n in needles:
        assert n in res.stderr, (n, res.stderr)


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


# --------------------------------------------------------------------------- 21. --tables naming a partition


def test_a_partition_named_in_tables_suggests_its_table(pair):
    pair.both("""CREATE TABLE ev (id int, at date) PARTITION BY RANGE (at);
                 CREATE TABLE ev_2024 PARTITION OF ev FOR VALUES FROM ('2024-01-01') TO ('2025-01-01')
                     PARTITION BY RANGE (id);
                 CREATE TABLE ev_2024_low PARTITION OF ev_2024 FOR VALUES FROM (0) TO (1000);""")
    for name in ("ev_2024", "ev_2024_low", "public.ev_2024_low"):
        res = pair.sync("--tables", name)
        assert_clean_error(res, f"--tables: '{name}' is a partition of ev: select ev")
    assert_clean_error(pair.sync("--exclude", "ev_2024"), "'ev_2024' is a partition of ev")


# --------------------------------------------------------------------------- 6. inheritance

PEOPLE = """
CREATE TABLE people (id int PRIMARY KEY, email text, nick text);
CREATE TABLE staff (badge int) INHERITS (people);
CREATE TABLE interns (school text) INHERITS (staff);
CREATE TABLE vendors (vid int, phone text);
CREATE TABLE contractors () INHERITS (people, vendors);
"""

PEOPLE_ROWS = """
INSERT INTO people VALUES (1, 'ann@real.example', 'ann');
INSERT INTO staff VALUES (2, 'bob@real.example', 'bob', 7), (3, 'ann@real.example', 'ann2', 8);
INSERT INTO interns VALUES (4, 'cy@real.example', 'cy', 9, 'MIT');
INSERT INTO vendors VALUES (1, '+1 555 0100');
INSERT INTO contractors VALUES (5, 'dee@real.example', 'dee', 2, '+1 555 0199');
"""

PEOPLE_RULES = "people:\n  - column: email\n    strategy: email\nvendors:\n  - column: phone\n    strategy: redact\n"


def test_parent_rules_mask_every_descendant(pair):
    pair.both(PEOPLE)
    pair.source(PEOPLE_ROWS)
    res = pair.sync("--dry-run", rules=PEOPLE_RULES)
    assert res.returncode == 0, res.stderr
    assert "email: email (inherited from people.email)" in res.stderr
    assert "email: email (inherited from staff.email)" in res.stderr  # interns, through staff
    assert "phone: redact (inherited from vendors.phone)" in res.stderr  # contractors' second parent
    res = pair.sync(rules=PEOPLE_RULES)
    assert res.returncode == 0, res.stderr
    for table in ("people", "staff", "interns", "contractors"):
        rows = pair.qt(f"SELECT email FROM ONLY {table}")
        assert rows and not any("real.example" in e for (e,) in rows), (table, rows)
    assert pair.qt("SELECT phone FROM contractors") == [("[REDACTED]",)]
    # One key for the whole hierarchy: the same email gives the same pseudonym in parent and child.
    ann = pair.qt("SELECT email FROM ONLY people WHERE id = 1")[0][0]
    assert pair.qt("SELECT email FROM ONLY staff WHERE id = 3") == [(ann,)]
    assert pair.qt("SELECT nick FROM ONLY staff WHERE id = 3") == [("ann2",)]  # columns without rules untouched
    # verify resolves the rules the same way: the children's emails are checked as anonymized.
    res = run_cli("verify", "--from", pair.src, "--to", pair.dst, "--anonymize-config",
                  str(pair.tmp / "anonymization.yaml"), "--format", "json")
    assert res.returncode == 0, res.stdout + res.stderr
    report = json.loads(res.stdout)["tables"]
    modes = {(t["table"], c["column"]): c["mode"] for t in report for c in t["columns"]}
    # Each table is checked on its own rows, as the sync copied them (not its children's too).
    assert {t["table"]: t["rows_source"] for t in report} == {"people": 1, "staff": 2, "interns": 1,
                                                              "contractors": 1, "vendors": 1}
    for table in ("people", "staff", "interns", "contractors"):
        assert modes[(table, "email")] == "anonymized", (table, modes)


def test_a_child_selected_alone_gets_its_parents_rules(pair):
    pair.both(PEOPLE)
    pair.source(PEOPLE_ROWS)
    res = pair.sync("--tables", "interns", rules=PEOPLE_RULES)
    assert res.returncode == 0, res.stderr
    rows = pair.qt("SELECT email FROM ONLY interns")
    assert len(rows) == 1 and "real.example" not in rows[0][0]


def test_strict_sees_inherited_rules(pair):
    pair.both(PEOPLE)
    pair.source(PEOPLE_ROWS)
    rules = PEOPLE_RULES.replace("strategy: email\n", "strategy: email\n  - column: nick\n    strategy: keep\n", 1)
    res = pair.sync("--strict", rules=rules)
    assert res.returncode == 0, res.stderr
    assert not any("real.example" in e for (e,) in pair.qt("SELECT email FROM people"))


def test_a_conflicting_rule_on_a_child_is_refused(pair):
    pair.both(PEOPLE)
    pair.source(PEOPLE_ROWS)
    res = pair.sync(rules=PEOPLE_RULES + "interns:\n  - column: email\n    strategy: redact\n")
    assert_clean_error(res, "interns.email: its rule differs from the rule on staff.email, which it inherits")
    assert pair.qt("SELECT count(*) FROM people") == [(0,)]
    # The same rule written on the child too is fine.
    res = pair.sync(rules=PEOPLE_RULES + "staff:\n  - column: email\n    strategy: email\n")
    assert res.returncode == 0, res.stderr


def test_two_parents_with_different_rules_on_one_column_are_refused(pair):
    pair.both("CREATE TABLE a1 (email text); CREATE TABLE a2 (email text); CREATE TABLE c () INHERITS (a1, a2)")
    res = pair.sync(rules="a1:\n  - column: email\n    strategy: email\na2:\n  - column: email\n    strategy: redact\n")
    assert_clean_error(res, "c.email: its rule differs from the rule on", "which it inherits")


def test_inherited_rules_are_fit_checked_on_the_child(pair):
    pair.both("CREATE TABLE p (email text); CREATE TABLE ch (UNIQUE (email)) INHERITS (p)")
    res = pair.sync(rules="p:\n  - column: email\n    strategy: redact\n")
    assert_clean_error(res, "ch.email (rule inherited from p.email)", "UNIQUE")


# --------------------------------------------------------------------------- 18. tables with no copyable columns

NO_COLUMNS = """
CREATE TABLE nothing ();
CREATE TABLE only_generated (g int GENERATED ALWAYS AS (1) STORED);
"""


def _fill_no_columns(p, rows: int = 3):
    p.both(NO_COLUMNS)
    p.source(f"INSERT INTO nothing SELECT FROM generate_series(1, {rows}); "
             f"INSERT INTO only_generated SELECT FROM generate_series(1, {rows + 1})")


def test_tables_without_copyable_columns_keep_their_row_count(pair):
    _fill_no_columns(pair)
    res = pair.sync()
    assert res.returncode == 0, res.stderr
    assert pair.qt("SELECT count(*) FROM nothing") == [(3,)]
    assert pair.qt("SELECT count(*), sum(g) FROM only_generated") == [(4, 4)]


def test_no_columns_on_the_source_but_some_on_the_target_is_refused(pair):
    pair.source("CREATE TABLE t ()")
    pair.target("CREATE TABLE t (note text DEFAULT 'x')")
    assert_clean_error(pair.sync(), "t: no column to copy on the source", "note")


@pytest.mark.parametrize("version", ["18", "15"])
@pytest.mark.parametrize("binary", [True, False])
@pytest.mark.parametrize("sliced", [False, True])
def test_zero_column_copy_statements_on_real_servers(request, tmp_path, version, binary, sliced):
    """Both COPY formats, whole and in ctid slices, on PostgreSQL 18 and 15 (source and target)."""
    import psycopg
    import msgspec

    from conftest import Pair
    from confiture_fast.catalog import read_catalog
    from confiture_fast.plan import _units, build_plan
    from confiture_fast.request import LoadOptions
    from confiture_fast.worker import Worker, WorkerConfig

    if version == "18":
        p = Pair(request.getfixturevalue("source_server"), request.getfixturevalue("target_server"), tmp_path)
    else:
        server = request.getfixturevalue("pg15_server")
        p = Pair(server, server, tmp_path)
    _fill_no_columns(p, 20000)
    p.source("ANALYZE nothing")
    p.source("ANALYZE only_generated")
    with psycopg.connect(p.src, autocommit=True) as s, psycopg.connect(p.dst, autocommit=True) as d:
        src_cat, dst_cat = read_catalog(s), read_catalog(d)
        plan = build_plan(src_cat, dst_cat, Selection(), None, None)
        s.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        snapshot = s.execute("SELECT pg_export_snapshot()").fetchone()[0]
        worker = Worker(WorkerConfig(p.src, p.dst, snapshot, "replica", LoadOptions(batch_size=10000)))
        try:
            for name, want in (("nothing", 20000), ("only_generated", 20001)):
                key = ("public", name)
                units = _units(src_cat.tables[key], dst_cat.tables[key], (), 8192 if sliced else 1 << 40, binary)
                assert (len(units) > 1) == sliced and all(u.binary == binary for u in units)
                tp = msgspec.structs.replace(plan.table(name), units=units)
                d.execute(f"TRUNCATE {name}")
                rows = sum(worker.load(tp, u).rows for u in units)
                assert rows == want and d.execute(f"SELECT count(*) FROM {name}").fetchone()[0] == want
        finally:
            worker.close()
