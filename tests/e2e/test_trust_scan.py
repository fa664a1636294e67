"""Issue 12, point 8 (scan, --strict and verify see through types) and point 21 (scan -o --force,
verify -q), against real servers."""

from __future__ import annotations

import json
import os

import psycopg
import pytest

from confiture_fast import config
from confiture_fast.catalog import read_catalog
from confiture_fast.scan import strict_problems
from conftest import run_cli

# PII inside containers: hstore values, composite fields, arrays of both, a text search vector kept
# by a trigger from the name and email, next to containers that hold nothing personal.
CONTAINERS = """
CREATE EXTENSION hstore;
CREATE TYPE address AS (street text, city text, contact text);
CREATE TYPE dims AS (width int, label text);
CREATE TABLE people (
    id int PRIMARY KEY,
    email text,
    full_name text,
    attrs hstore,
    home address,
    history hstore[],
    search tsvector
);
CREATE FUNCTION people_search() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN NEW.search := to_tsvector('simple', coalesce(NEW.full_name, '') || ' ' || coalesce(NEW.email, '')); RETURN NEW; END $$;
CREATE TRIGGER people_search BEFORE INSERT OR UPDATE ON people FOR EACH ROW EXECUTE FUNCTION people_search();
CREATE TABLE items (id int PRIMARY KEY, attrs hstore, size dims, body text,
                    search tsvector GENERATED ALWAYS AS (to_tsvector('simple', body)) STORED);
"""
FILL = """
INSERT INTO people (id, email, full_name, attrs, home, history)
SELECT i, 'p' || i || '@corp.example', 'Ann Smith' || i,
       hstore(ARRAY['plan', 'recovery'], ARRAY['pro', 'rescue' || i || '@mail.example']),
       ROW(i || ' Main St', 'Springfield', 'c' || i || '@home.example')::address,
       ARRAY[hstore('old_mail', 'old' || i || '@mail.example')]
FROM generate_series(1, 100) i;
INSERT INTO items (id, attrs, size, body)
SELECT i, hstore('color', 'red'), ROW(i, 'box')::dims, 'a plain box' FROM generate_series(1, 50) i;
ANALYZE;
"""


def findings(res) -> dict[str, dict]:
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    return {f"{t['table']}.{f['column']}": f for t in out["tables"] for f in t["findings"]}


def scan_json(uri, *args, cwd=None):
    return run_cli("scan", "--from", uri, "--format", "json", *args, cwd=cwd)


def _strict(uri, rules_path=None) -> dict[str, str]:
    rules = config.load_rules(rules_path) if rules_path is not None else None
    with psycopg.connect(uri, autocommit=True) as conn:
        catalog = read_catalog(conn)
        conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        problems = strict_problems(conn, catalog, list(catalog.tables.values()), rules)
        conn.execute("COMMIT")
    return {p.split(":", 1)[0]: p for p in problems}


def test_scan_reads_inside_hstore_composites_and_their_arrays(pair):
    pair.source(CONTAINERS + FILL)
    f = findings(scan_json(pair.src, cwd=pair.tmp))
    attrs, home, history = f["people.attrs"], f["people.home"], f["people.history"]
    assert attrs["kind"] == "email" and "contain an email (in recovery)" in attrs["reasons"][0]
    assert home["kind"] == "email" and "(in contact)" in home["reasons"][0]
    assert history["kind"] == "email"
    assert any("inner name 'old_mail' suggests an email" in r for r in history["reasons"])
    # No strategy rewrites inside these types: the whole value goes.
    assert attrs["strategy"] == home["strategy"] == history["strategy"] == "null"
    # Containers holding nothing personal raise nothing; a generated vector is computed again on the target.
    for clean in ("items.attrs", "items.size", "items.search", "items.body"):
        assert clean not in f, clean


def test_a_text_search_vector_next_to_pii_needs_review_and_its_lexemes_are_read(pair):
    pair.source(CONTAINERS + FILL)
    search = findings(scan_json(pair.src, cwd=pair.tmp))["people.search"]
    assert search["review"].startswith("needs review: may be derived from PII")
    assert "email" in search["review"] and "full_name" in search["review"]
    assert search["kind"] == "email"  # the lexemes keep whole emails
    assert any("contain an email" in r for r in search["reasons"])
    # Kept by a trigger, in a table where nothing else looks like PII: still flagged.
    pair.source("""CREATE TABLE notes (id int PRIMARY KEY, body text, tsv tsvector);
                   CREATE FUNCTION notes_tsv() RETURNS trigger LANGUAGE plpgsql AS $$
                   BEGIN NEW.tsv := to_tsvector('simple', NEW.body); RETURN NEW; END $$;
                   CREATE TRIGGER notes_tsv BEFORE INSERT ON notes FOR EACH ROW EXECUTE FUNCTION notes_tsv();
                   INSERT INTO notes (id, body) VALUES (1, 'met Marie Curie at the lab')""")
    tsv = findings(scan_json(pair.src, "--tables", "notes", cwd=pair.tmp))["notes.tsv"]
    assert "kept by trigger(s) notes_tsv" in tsv["review"]


def test_types_scan_cannot_read_inside_need_review(pair):
    pair.source("""CREATE EXTENSION ltree;
                   CREATE TABLE org (id int PRIMARY KEY, path ltree, photo bytea, ref uuid, email text);
                   INSERT INTO org VALUES (1, 'Top.Ann_Smith', '\\x00', gen_random_uuid(), 'a@corp.example')""")
    res = scan_json(pair.src, cwd=pair.tmp)
    f = findings(res)
    assert f["org.path"]["review"] == "needs review: scan cannot read inside type public.ltree"
    assert "org.photo" not in f and "org.ref" not in f
    assert "1 need a review: org.path" in res.stderr and f["org.email"]["strategy"] == "email"
    # In the rules file: the choice is left to a person (a commented rule), so --strict keeps asking.
    text = run_cli("scan", "--from", pair.src, cwd=pair.tmp).stdout
    assert "# path: needs review: scan cannot read inside type public.ltree" in text
    assert "  #  - column: path\n  #    strategy: \"null\"" in text
    out = pair.tmp / "suggested.yaml"
    out.write_text(text)
    assert "org.path" in _strict(pair.src, out)


def test_strict_blocks_containers_until_ruled_or_kept(pair):
    pair.both(CONTAINERS)
    pair.source(FILL)
    by_col = _strict(pair.src)
    for col in ("people.attrs", "people.home", "people.history", "people.search"):
        assert col in by_col, col
    assert "needs review: may be derived from PII" in by_col["people.search"]
    assert "suggested rule: strategy: null" in by_col["people.attrs"]
    rules = """people:
  - column: email
    strategy: email
  - column: full_name
    strategy: name
  - column: attrs
    strategy: "null"
  - column: home
    strategy: "null"
  - column: history
    strategy: keep
"""
    by_col = _strict(pair.src, pair.rules(rules))
    assert set(by_col) == {"people.search"}  # derived from ruled columns: still needs a look
    res = pair.sync("--strict", rules=rules)
    assert res.returncode == 2 and "people.search" in res.stderr and "Traceback" not in res.stderr
    assert pair.qt("SELECT count(*) FROM people") == [(0,)]
    res = pair.sync("--strict", rules=rules + "  - column: search\n    strategy: \"null\"\n")
    assert res.returncode == 0, res.stderr
    assert pair.qt("SELECT count(*) FROM people WHERE attrs IS NULL AND search IS NULL") == [(100,)]


def verify(pair, *args, rules=None):
    extra = ["--anonymize-config", str(pair.rules(rules))] if rules is not None else []
    return run_cli("verify", "--from", pair.src, "--to", pair.dst, "--format", "json", *extra, *args, cwd=pair.tmp)


def verify_problems(res) -> dict[str, list[str]]:
    out = json.loads(res.stdout)
    return {f"{t['table']}.{c['column']}": c["problems"] for t in out["tables"] for c in t["columns"] if c["problems"]}


def test_verify_finds_pii_inside_containers_and_agrees_with_scan(pair):
    pair.both(CONTAINERS + "CREATE EXTENSION ltree; ALTER TABLE items ADD COLUMN path ltree;")
    pair.source(FILL)
    rules = "people:\n  - column: email\n    strategy: email\n  - column: full_name\n    strategy: name\n"
    assert pair.sync(rules=rules).returncode == 0
    res = verify(pair, rules=rules)
    assert res.returncode == 1, res.stderr
    problems = verify_problems(res)
    for col in ("people.attrs", "people.home", "people.history", "people.search"):
        assert any("an email" in p for p in problems[col]), (col, problems)
    assert any("needs review: may be derived from PII" in p for p in problems["people.search"])
    assert any("needs review: scan cannot read inside type public.ltree" in p for p in problems["items.path"])
    assert "items.attrs" not in problems and "items.size" not in problems
    keep = "".join(f"  - column: {c}\n    strategy: keep\n" for c in ("attrs", "home", "history", "search"))
    rules += keep + "items:\n  - column: path\n    strategy: keep\n"
    res = verify(pair, rules=rules)
    assert res.returncode == 0, res.stdout


@pytest.fixture
def pg15_db(pg15_server):
    return pg15_server.create_database(f"xml{os.getpid()}_{id(pg15_server)}")


def test_scan_reads_xml(pg15_db, tmp_path):
    """The embedded PostgreSQL 18 is built without libxml: Debian's PostgreSQL 15 is."""
    with psycopg.connect(pg15_db, autocommit=True) as c:
        c.execute("DROP TABLE IF EXISTS docs; CREATE TABLE docs (id int PRIMARY KEY, meta xml, other xml[])")
        c.execute("""INSERT INTO docs SELECT i, xmlparse(content '<?xml version="1.0"?><contact kind="home"><mail>'
                     || 'u' || i || '@corp.example</mail><phone>n/a</phone></contact>'),
                     ARRAY[xmlparse(content '<note by="x' || i || '@mail.example">hi &amp; bye</note>')]
                     FROM generate_series(1, 30) i""")
    f = findings(scan_json(pg15_db, cwd=tmp_path))
    assert f["docs.meta"]["kind"] == "email" and "(in mail)" in f["docs.meta"]["reasons"][0]
    assert any("inner name 'mail' suggests an email" in r for r in f["docs.meta"]["reasons"])
    assert f["docs.other"]["kind"] == "email" and "(in by)" in f["docs.other"]["reasons"][0]
    assert f["docs.meta"]["strategy"] == "null"


def test_domains_are_read_as_their_base_types(pair):
    """A domain over text[], over hstore and over a composite: read like the type under it, in scan,
    --strict and verify."""
    pair.both("""CREATE EXTENSION hstore;
                 CREATE DOMAIN mails AS text[]; CREATE DOMAIN attrs AS hstore; CREATE DOMAIN note AS text;
                 CREATE TYPE pair_t AS (a text, b text); CREATE DOMAIN pair_d AS pair_t;
                 CREATE TABLE accounts (id int PRIMARY KEY, aliases mails, extra attrs, memo note, p pair_d)""")
    pair.source("""INSERT INTO accounts SELECT i, ARRAY['a' || i || '@corp.example'], hstore('k', 'k' || i || '@x.example'),
                   'write to m' || i || '@corp.example', ROW('x', 'b' || i || '@corp.example')::pair_t
                   FROM generate_series(1, 40) i""")
    f = findings(scan_json(pair.src, cwd=pair.tmp))
    assert f["accounts.aliases"]["kind"] == "email" and f["accounts.aliases"]["strategy"] == "email"
    assert f["accounts.extra"]["kind"] == "email" and f["accounts.extra"]["strategy"] == "null"
    assert f["accounts.memo"]["kind"] == "text" and f["accounts.p"]["kind"] == "email"
    assert set(_strict(pair.src)) == {"accounts.aliases", "accounts.extra", "accounts.memo", "accounts.p"}
    assert pair.sync().returncode == 0
    problems = verify_problems(verify(pair))
    assert {"accounts.aliases", "accounts.extra", "accounts.memo", "accounts.p"} <= set(problems)


# --------------------------------------------------------------------------- point 21: scan -o, verify -q


def test_scan_output_never_overwrites_a_file_without_force(pair):
    pair.source("CREATE TABLE users (id int PRIMARY KEY, email text); INSERT INTO users VALUES (1, 'a@corp.example')")
    out = pair.tmp / "rules.yaml"
    out.write_text("# my reviewed rules\n")
    res = run_cli("scan", "--from", pair.src, "-o", str(out), cwd=pair.tmp)
    assert res.returncode == 2 and "already exists" in res.stderr and "--force" in res.stderr
    assert "Traceback" not in res.stderr and res.stdout == ""
    assert out.read_text() == "# my reviewed rules\n"
    res = run_cli("scan", "--from", pair.src, "-o", str(out), "--force", cwd=pair.tmp)
    assert res.returncode == 0, res.stderr
    assert "email" in out.read_text()
    res = run_cli("scan", "--from", pair.src, "-o", str(pair.tmp), cwd=pair.tmp)
    assert res.returncode == 2 and "is a directory" in res.stderr
    res = run_cli("scan", "--from", pair.src, "-o", str(pair.tmp / "missing" / "r.yaml"), cwd=pair.tmp)
    assert res.returncode == 2 and "does not exist" in res.stderr and not (pair.tmp / "missing").exists()


def test_verify_quiet_prints_only_problems_and_keeps_the_exit_code(pair):
    pair.both("CREATE TABLE users (id int PRIMARY KEY, email text, qty int)")
    pair.source("INSERT INTO users SELECT i, 'u' || i || '@corp.example', i FROM generate_series(1, 20) i")
    rules = "users:\n  - column: email\n    strategy: email\n"
    assert pair.sync(rules=rules).returncode == 0
    path = str(pair.rules(rules))
    loud = run_cli("verify", "--from", pair.src, "--to", pair.dst, "--anonymize-config", path, cwd=pair.tmp)
    assert loud.returncode == 0 and "verify: 1/1 table(s) ok" in loud.stderr
    for flag in ("-q", "--quiet"):
        res = run_cli("verify", "--from", pair.src, "--to", pair.dst, "--anonymize-config", path, flag, cwd=pair.tmp)
        assert res.returncode == 0 and res.stderr.strip() == "" and res.stdout == "", res.stderr
    res = run_cli("verify", "--from", pair.src, "--to", pair.dst, "-q", cwd=pair.tmp)  # no rules: emails differ
    assert res.returncode == 1
    lines = res.stderr.strip().splitlines()
    assert lines[-1] == "verify: FAILED: users"
    assert all(line.startswith("users") or line.startswith("verify: FAILED") for line in lines), lines
    assert "no anonymization rules" not in res.stderr and "rows (source / target)" not in res.stderr
