"""Issue 12, points 9-11: no silent data change, rules fit their columns. Domains are seen through
(to their base type, typmod, array-ness and CHECKs), type differences between source and target are
refused unless they are a lossless widening, and non-unique strategies are refused on every unique
index that reads the column. End-to-end cases against real servers; the pure comparison logic is in
tests/unit/test_typediff.py."""

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
    text = " ".join(res.stderr.split())  # long problem lines are wrapped to the terminal's width
    for n in needles:
        assert n in text, (n, res.stderr)
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
        cols = {c.name: c for c in read_catalog(conn).tables[("public", "t")].columns}
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
    # NOT NULL of a domain is NOT NULL of the column
    pair.both("CREATE DOMAIN required AS text NOT NULL; CREATE TABLE r (id int PRIMARY KEY, x required)")
    res = pair.sync(*excl, rules="r:\n  - column: x\n    strategy: 'null'\n")
    assert_refused(pair, res, "r.x: null cannot go into x, which is NOT NULL")


# -- 9. type drift: narrowing refused, lossless widening accepted and said ------------------------------

def test_narrowing_and_generated_to_plain_refused_before_the_load(pair):
    excl = sentinel(pair)
    pair.source("""CREATE TABLE d (id int PRIMARY KEY, a numeric(12,4), b timestamp, c numeric(12,2), e numeric(12,2),
                       g text GENERATED ALWAYS AS ('x' || id) STORED, h bigint, f float8, v text, i interval,
                       t time(3), z varchar(30)[]);
                   INSERT INTO d (id, a, b, c, e) VALUES (1, 1.2345, '2020-01-01 10:00:00.7', 123456.78, 1.25)""")
    pair.target("""CREATE TABLE d (id int PRIMARY KEY, a numeric(12,2), b timestamp(0), c numeric(6,2), e numeric(12,4),
                       g text, h int, f real, v varchar(50), i interval day, t time(0), z varchar(20)[])""")
    res = pair.sync(*excl)
    assert_refused(pair, res, "d.a: type numeric(12,4) on the source, numeric(12,2) on the target",
                   "d.b: type timestamp without time zone on the source, timestamp(0) without time zone",
                   "d.c: type numeric(12,2) on the source, numeric(6,2)",
                   "d.e: type numeric(12,2) on the source, numeric(12,4)",
                   "d.g: generated on the source, a plain column on the target", "GENERATED ALWAYS AS",
                   "d.h: type bigint", "d.f: type double precision", "d.v: type text", "d.i: type interval",
                   "d.t: type time(3)", "d.z: type character varying(30)[]")
    assert "11 problem(s)" in res.stderr


def test_lossless_widening_accepted_values_kept_and_said_in_dry_run(pair):
    pair.source("""CREATE TABLE w (id int PRIMARY KEY, i2 smallint, i4 int, i8 bigint, n numeric(12,2), ts timestamp(0),
                       tz timestamptz(2), v varchar(10), t text, f real, vs varchar(5)[], iv interval(2),
                       b bit(4), c char(3), same numeric(12,2));
                   INSERT INTO w SELECT i, -32768 + i, 2147483647 - i, -9223372036854775807 + i, 9999999999.99 - i,
                          '2020-01-01 10:00:01', '2020-01-01 10:00:01.25+00', 'é' || i, 'long ' || repeat('x', i),
                          (ARRAY[0.1, 1e-40, 3.4028235e38, 'NaN', '-Infinity', 16777217, 1/3.0])[1 + i % 7]::real,
                          ARRAY['a' || i, NULL], interval '1 day 1.25 seconds', B'1010', 'ab', 1.5
                   FROM generate_series(1, 50) i""")
    pair.target("""CREATE TABLE w (id int PRIMARY KEY, i2 int, i4 bigint, i8 numeric(19,0), n numeric(14,4), ts timestamp,
                       tz timestamptz(6), v varchar(20), t varchar, f float8, vs text[], iv interval,
                       b varbit(8), c char(5), same numeric(12,2))""")
    plan = pair.sync("--dry-run")
    assert plan.returncode == 0, plan.stderr
    for line in ("w.i2: smallint -> integer, lossless widening", "w.i4: integer -> bigint, lossless widening",
                 "w.i8: bigint -> numeric(19,0), lossless widening",
                 "w.n: numeric(12,2) -> numeric(14,4), lossless widening (printed with 4 decimals)",
                 "w.ts: timestamp(0) without time zone -> timestamp without time zone, lossless widening",
                 "w.v: character varying(10) -> character varying(20), lossless widening",
                 "w.f: real -> double precision, lossless widening (the same decimal value)",
                 "w.vs: character varying(5)[] -> text[], lossless widening",
                 "w.c: character(3) -> character(5), lossless widening (padded with spaces to 5)",
                 "type differences accepted (lossless, values kept): 13"):
        assert line in plan.stderr, (line, plan.stderr)
    assert "w.same" not in plan.stderr
    res = pair.sync("--format", "json")
    assert res.returncode == 0, res.stderr
    units = json.loads(pair.sync("--dry-run", "--format", "json").stdout)["tables"][0]["units"]
    assert [u["binary"] for u in units] == [False]  # any type difference: text COPY
    cols = "i2, i4, i8, n, ts, tz, v, t, vs, iv, b, same"
    assert pair.qt(f"SELECT {cols} FROM w ORDER BY id") == pair.qs(f"SELECT {cols} FROM w ORDER BY id")
    from decimal import Decimal

    for (a,), (b,) in zip(pair.qs("SELECT f::text FROM w ORDER BY id"), pair.qt("SELECT f::text FROM w ORDER BY id")):
        assert a == b or Decimal(a) == Decimal(b), (a, b)  # the printed value is kept
    assert pair.qt("SELECT DISTINCT c::text, octet_length(c) FROM w") == [("ab", 5)]


def test_domains_compared_by_what_they_allow(pair):
    """The same domain name is not the same type: what counts is the base type, its typmod and the
    CHECKs; a domain and its base type compare as that base type."""
    excl = sentinel(pair)
    pair.source("""CREATE DOMAIN code AS varchar(50); CREATE DOMAIN mail AS text;
                   CREATE TABLE k (id int PRIMARY KEY, c code, m mail, p varchar(8), q code);
                   INSERT INTO k VALUES (1, 'a-rather-long-code-that-fits-in-fifty', 'x@y', 'abc', 'q')""")
    pair.target("""CREATE DOMAIN code AS varchar(10); CREATE DOMAIN mail AS text CHECK (VALUE LIKE '%@corp.com');
                   CREATE DOMAIN wide AS varchar(60);
                   CREATE TABLE k (id int PRIMARY KEY, c code, m mail, p varchar(8), q wide)""")
    res = pair.sync(*excl)
    # (our sessions run with an empty search_path, so format_type() qualifies the domains)
    assert_refused(pair, res, "k.c: type public.code (domain over character varying(50)) on the source, "
                              "public.code (domain over character varying(10)) on the target",
                   "k.m: type public.mail (domain over text) on the source",
                   "the target's domain public.mail adds mail_check")
    assert "k.p" not in res.stderr and "k.q" not in res.stderr
    pair.target("DROP TABLE k; CREATE TABLE k (id int PRIMARY KEY, c varchar(50), m text, p varchar(8), q wide)")
    res = pair.sync("--tables", "k")
    assert res.returncode == 0, res.stderr
    assert pair.qt("SELECT * FROM k") == [(1, "a-rather-long-code-that-fits-in-fifty", "x@y", "abc", "q")]


# -- 10. domains' limits and CHECKs, checked before the load ------------------------------------------

def test_a_rule_propagated_through_a_foreign_key_is_fit_checked_too(pair):
    excl = sentinel(pair)
    pair.both("""CREATE DOMAIN short_email AS varchar(20);
                 CREATE TABLE users (email text PRIMARY KEY);
                 CREATE TABLE orders (id int PRIMARY KEY, who short_email REFERENCES users)""")
    pair.source("INSERT INTO users VALUES ('a@corp.com'); INSERT INTO orders VALUES (1, 'a@corp.com')")
    res = pair.sync(*excl, rules="users:\n  - column: email\n    strategy: email\n")
    assert_refused(pair, res, "orders.who (rule propagated from users.email): email writes up to 33 characters",
                   "short_email (domain over character varying(20))")


def test_check_constraints_a_rule_may_violate_are_warned_before_the_load(pair):
    pair.both("""CREATE DOMAIN corp_email AS varchar(60) CHECK (VALUE LIKE '%@corp.com');
                 CREATE TABLE u (id int PRIMARY KEY, e corp_email, nick text, n text, keep text,
                                 CONSTRAINT nick_short CHECK (length(nick) < 12))""")
    pair.source("INSERT INTO u VALUES (1, 'a@corp.com', 'al', 'x', 'k')")
    rules = ("u:\n  - column: e\n    strategy: email\n  - column: nick\n    strategy: email\n"
             "  - column: n\n    strategy: 'null'\n  - column: keep\n    strategy: keep\n")
    plan = pair.sync("--dry-run", rules=rules)
    assert plan.returncode == 0, plan.stderr
    warnings = [line for line in plan.stderr.splitlines() if line.startswith("warning: u.")]
    assert len(warnings) == 2, plan.stderr
    assert "u.e: the email output may not satisfy the target's domain public.corp_email: CHECK" in warnings[0]
    assert "u.nick: the email output may not satisfy the target's nick_short: CHECK ((length(nick) < 12))" in warnings[1]
    res = pair.sync(rules=rules)
    assert res.returncode == 1
    before_load = res.stderr.split("error:")[0]
    assert "warning: u.e: the email output may not satisfy" in before_load


# -- 11. uniqueness: every unique index that reads the column -----------------------------------------

def test_non_unique_strategies_refused_on_every_unique_index_reading_the_column(pair):
    excl = sentinel(pair)
    pair.both("""CREATE TABLE m (id int PRIMARY KEY, org int, login text, mail text, deleted timestamptz, note text,
                                 extra text, src_only text, status text, code text, UNIQUE (org, login));
                 CREATE UNIQUE INDEX m_mail_lower ON m (lower(mail));
                 CREATE UNIQUE INDEX m_live_note ON m (note) WHERE deleted IS NULL;
                 CREATE UNIQUE INDEX m_id_incl ON m (id) INCLUDE (extra);
                 CREATE UNIQUE INDEX m_active ON m (org) WHERE status <> 'gone';
                 CREATE UNIQUE INDEX m_code_prefix ON m (left(code, 8))""")
    pair.source("CREATE UNIQUE INDEX m_src_only ON m (src_only)")
    pair.source("INSERT INTO m VALUES (1, 1, 'al', 'A@x', NULL, 'n', 'e', 's', 'ok', 'c1')")
    rules = "".join(f"  - column: {c}\n    strategy: {s}\n" for c, s in (
        ("login", "phone"), ("mail", "redact"), ("deleted", "'null'"), ("note", "name"), ("extra", "redact"),
        ("src_only", "redact"), ("status", "hash"), ("code", "hash")))
    res = pair.sync(*excl, rules="m:\n" + rules)
    assert_refused(pair, res, "m.login: 'phone' can map different values to the same output, but the column is in "
                              "a UNIQUE index or constraint (m_org_login_key (target))",
                   "m.mail: 'redact'", "(m_mail_lower (target), inside its key lower(mail))",
                   "m.deleted: 'null' changes which rows the partial UNIQUE index m_live_note (target) covers",
                   "m.note: 'name'", "m.src_only: 'redact'", "m_src_only (source)", "allow_duplicates: true",
                   "m.status: 'hash' changes which rows the partial UNIQUE index m_active (target) covers",
                   "m.code: 'hash' keeps different values different, but the UNIQUE index m_code_prefix (target) "
                   "keys on \"left\"(code, 8)")
    assert "m.extra" not in res.stderr  # an INCLUDE column does not take part in uniqueness
    assert "7 problem(s)" in res.stderr
    # unique-preserving strategies under lower(); a strategy that keeps NULLs NULL under `IS NULL`
    fine = ("m:\n  - column: mail\n    strategy: email\n  - column: deleted\n    strategy: date_shift\n"
            "    days: 30\n  - column: extra\n    strategy: redact\n")
    res = pair.sync(*excl, rules=fine)
    assert res.returncode == 0, res.stderr
    escaped = rules.replace("\n    strategy", "\n    allow_duplicates: true\n    strategy")
    res = pair.sync(*excl, rules="m:\n" + escaped)
    assert res.returncode == 0, res.stderr


def test_exclusion_constraints_count_as_unique_indexes(pair):
    excl = sentinel(pair)
    pair.both("""CREATE EXTENSION btree_gist;
                 CREATE TABLE bk (id int PRIMARY KEY, room text, seat int, during tsrange,
                                  EXCLUDE USING gist (room WITH =, during WITH &&), EXCLUDE USING gist (seat WITH <>))""")
    pair.source("INSERT INTO bk VALUES (1, 'r1', 1, '[2020-01-01, 2020-01-02)')")
    res = pair.sync(*excl, rules="bk:\n  - column: room\n    strategy: redact\n"
                                 "  - column: seat\n    strategy: noise\n    absolute: 3\n")
    assert_refused(pair, res, "bk.room: 'redact' can map different values to the same output, but the column is in a "
                              "UNIQUE index or constraint (bk_room_during_excl (target))",
                   "bk.seat: 'noise' changes values that the exclusion constraint bk_seat_excl (target) compares "
                   "(seat WITH <>)")
    res = pair.sync(*excl, rules="bk:\n  - column: room\n    strategy: hash\n")
    assert res.returncode == 0, res.stderr


def test_unique_uses_read_from_the_catalog(pair):
    import psycopg

    from confiture_fast.catalog import UniqueUse, read_catalog

    pair.source("""CREATE TABLE x (id int, "Mail" varchar(20), e text, d timestamptz, s text, i text);
                   CREATE UNIQUE INDEX a ON x (lower("Mail"), upper(e)) INCLUDE (i) WHERE d IS NULL AND s <> 'x';
                   CREATE UNIQUE INDEX b ON x (id, (e || s));
                   CREATE UNIQUE INDEX c ON x ((x.*))""")
    with psycopg.connect(pair.src) as conn:
        cols = {c.name: c for c in read_catalog(conn).tables[("public", "x")].columns}
    uses = {n: {(u.index, u.role, u.expression, u.case_only) for u in c.unique_indexes} for n, c in cols.items()}
    whole = ("c", "expression", "(x.*)", False)
    assert uses["Mail"] == {("a", "expression", 'lower("Mail"::text)', True), whole}
    assert uses["e"] == {("a", "expression", "upper(e)", True), ("b", "expression", "(e || s)", False), whole}
    assert uses["d"] == {("a", "null_test", "", False), whole}
    assert uses["s"] == {("a", "predicate", "", False), ("b", "expression", "(e || s)", False), whole}
    assert uses["id"] == {("b", "key", "", False), whole}
    assert uses["i"] == {whole}
    assert UniqueUse("b", "key") in cols["id"].unique_indexes
