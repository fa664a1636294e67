"""Issue 12, points 9-11: no silent data change, rules fit their columns. Domains are seen through
(to their base type, typmod, array-ness and CHECKs), type differences between source and target are
refused unless they are a lossless widening, and non-unique strategies are refused on every unique
index that reads the column. End-to-end cases against real servers, then unit tests of the pure
comparison logic on synthetic columns."""

from __future__ import annotations

import json
import re

import pytest

from conftest import run_cli  # noqa: F401  (the fixtures come from conftest)

EMAIL = re.compile(r"user_[0-9a-f]{16}@example\.com")


def assert_refused(pair, res, *needles):
    """Exit 2, one clean message per problem, and nothing written to the target."""
    assert res.returncode == 2, (res.returncode, res.stdout, res.stderr)
    assert "Traceback" not in res.stderr
    for n in needles:
        assert n in res.stderr, (n, res.stderr)
    assert pair.qt("SELECT count(*) FROM _sentinel") == [(1,)]


def sentinel(pair):
    pair.both("CREATE TABLE _sentinel (n int)")
    pair.target("INSERT INTO _sentinel VALUES (1)")
    return ("--exclude", "_sentinel")


# -- a domain is its base type everywhere -------------------------------------------------------------

def test_rule_on_a_domain_over_a_domain_over_text_array_rewrites_each_element(pair):
    pair.both("""CREATE DOMAIN email_list AS text[];
                 CREATE DOMAIN contact_list AS email_list;
                 CREATE DOMAIN short_text AS varchar(40);
                 CREATE TABLE c (id int PRIMARY KEY, emails contact_list, alias short_text[], who short_text)""")
    pair.source("""INSERT INTO c SELECT i, ARRAY['a' || i || '@corp.example', NULL, 'b' || i || '@corp.example'],
                          ARRAY['x' || i || '@corp.example'], 'w' || i || '@corp.example'
                   FROM generate_series(1, 20) i""")
    rules = ("c:\n  - column: emails\n    strategy: email\n  - column: alias\n    strategy: email\n"
             "  - column: who\n    strategy: email\n")
    res = pair.sync(rules=rules)
    assert res.returncode == 0, res.stderr
    rows = pair.qt("SELECT emails::text[], alias::text[], who FROM c ORDER BY id")
    assert len(rows) == 20
    for emails, alias, who in rows:
        assert len(emails) == 3 and emails[1] is None
        assert all(EMAIL.fullmatch(e) for e in (emails[0], emails[2], alias[0], who))
    # the same inputs give the same pseudonyms, array element or not
    assert pair.qt("SELECT count(DISTINCT e) FROM c, unnest(emails::text[]) e") == [(40,)]


def test_catalog_resolves_domains(pair):
    """base_type, category, is_array, max_length, typmod through domains at any depth; the domain's
    name and the CHECKs of every domain on the way are kept."""
    import psycopg

    from confiture_fast.catalog import read_catalog

    pair.source("""CREATE DOMAIN corp_email AS varchar(20) CHECK (VALUE LIKE '%@corp.com');
                   CREATE DOMAIN strict_email AS corp_email NOT NULL CHECK (length(VALUE) > 8);
                   CREATE DOMAIN tags AS varchar(10)[];
                   CREATE DOMAIN money2 AS numeric(12,2);
                   CREATE TABLE t (a corp_email, b strict_email, c tags, d corp_email[], e money2, f int)""")
    with psycopg.connect(pair.src) as conn:
        cols = {c.name: c for c in read_catalog(conn).tables["t"].columns}
    a, b, c, d, e, f = (cols[x] for x in "abcdef")
    assert (a.base_type, a.category, a.max_length, a.is_array, a.domain) == ("varchar", "S", 20, False, "corp_email")
    assert a.resolved_type == "character varying(20)" and not a.not_null
    assert [x.name for x in a.domain_checks] == ["corp_email_check"]
    assert (b.base_type, b.max_length, b.not_null, b.domain) == ("varchar", 20, True, "strict_email")
    assert [x.on for x in b.domain_checks] == ["strict_email", "corp_email"]
    assert (c.base_type, c.max_length, c.is_array, c.resolved_type) == ("varchar", 10, True, "character varying(10)[]")
    assert (d.base_type, d.max_length, d.is_array, d.domain) == ("varchar", 20, True, "corp_email")
    assert (e.base_type, e.category, e.resolved_type) == ("numeric", "N", "numeric(12,2)")
    assert (f.base_type, f.domain, f.domain_checks) == ("int4", None, ())


def test_email_rule_on_a_domain_over_varchar20_refused_before_the_load(pair):
    excl = sentinel(pair)
    pair.both("""CREATE DOMAIN short_email AS varchar(20);
                 CREATE DOMAIN contact AS short_email;
                 CREATE TABLE u (id int PRIMARY KEY, e contact, tags short_email[])""")
    pair.source("INSERT INTO u VALUES (1, 'a@corp.com', '{b@corp.com}')")
    res = pair.sync(*excl, rules="u:\n  - column: e\n    strategy: email\n  - column: tags\n    strategy: email\n")
    assert_refused(pair, res, "u.e: email writes up to 33 characters", "contact (domain over character varying(20))",
                   "u.tags: email writes up to 33 characters")
    # a domain over a type the strategy cannot write is refused as the type itself would be
    pair.both("CREATE DOMAIN amount AS int; CREATE TABLE m (id int PRIMARY KEY, a amount)")
    res = pair.sync(*excl, rules="m:\n  - column: a\n    strategy: redact\n")
    assert_refused(pair, res, "m.a: redact writes text", "amount (domain over integer)")
