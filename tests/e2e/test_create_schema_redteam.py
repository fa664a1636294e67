"""--create-schema against a target that is not trusted: a type or function that already exists there
under the source's name is used only when it is the source's (compared) and owned by us or a
superuser; otherwise the run stops before anything is created. --dry-run writes nothing at all."""

from __future__ import annotations

import os

import pytest

from tests.e2e.test_create_schema import _db, sync

# (source's definition, the target's look-alike, what the error names)
LOOK_ALIKES = {
    "numeric rounding": ("CREATE DOMAIN public.amount AS numeric",
                         "CREATE DOMAIN public.amount AS numeric(5,2)", "differs in its base type (numeric(5,2) there, numeric here)"),
    "a looser CHECK": ("CREATE DOMAIN public.amount AS numeric CHECK (VALUE > 0)",
                       "CREATE DOMAIN public.amount AS numeric", "differs in its CHECKs (none there"),
    "other enum labels": ("CREATE TYPE public.amount AS ENUM ('low', 'high')",
                          "CREATE TYPE public.amount AS ENUM ('high', 'low')", "differs in its labels ((high, low) there, (low, high) here)"),
    "other composite fields": ("CREATE TYPE public.amount AS (v numeric, cur text)",
                               "CREATE TYPE public.amount AS (v int, cur text)", "differs in its attributes"),
    "another kind": ("CREATE DOMAIN public.amount AS numeric",
                     "CREATE TABLE public.amount (v numeric)", "is another kind of type"),
}


def _nothing_created(pair) -> None:
    assert pair.qt("SELECT count(*) FROM pg_class WHERE relname = 't'") == [(0,)]
    assert pair.qt("SELECT count(*) FROM pg_namespace WHERE nspname = '_confiture_fast'") == [(0,)]


@pytest.mark.parametrize("case", sorted(LOOK_ALIKES))
def test_a_target_type_of_the_same_name_but_another_definition_is_refused_before_anything(pair, case):
    ours, theirs, named = LOOK_ALIKES[case]
    pair.source(f"{ours}; CREATE TABLE public.t (id int PRIMARY KEY, a public.amount)")
    pair.target(theirs)
    r = pair.sync("--create-schema")
    assert r.returncode == 2, r.stderr
    assert "t: it needs type amount, which on the target" in r.stderr and named in r.stderr, r.stderr
    assert "drop or rename the target's" in r.stderr and "Traceback" not in r.stderr
    _nothing_created(pair)


def test_the_same_type_already_on_the_target_is_used(pair):
    types = ("CREATE DOMAIN public.amount AS numeric(12,2) DEFAULT 0 NOT NULL CHECK (VALUE >= 0);"
             "CREATE TYPE public.mood AS ENUM ('sad', 'ok')")
    pair.source(f"{types}; CREATE TABLE public.t (id int PRIMARY KEY, a public.amount, m public.mood);"
                "INSERT INTO t VALUES (1, 12.5, 'ok')")
    pair.target(types)
    r = pair.sync("--create-schema")
    assert r.returncode == 0, r.stderr
    assert pair.qt("SELECT a::text, m::text FROM t") == [("12.50", "ok")]


def test_the_same_type_on_a_postgresql_15_target_compares_equal(source_server, pg15_server):
    import psycopg

    types = ("CREATE DOMAIN public.amount AS numeric(12,2) DEFAULT 0 NOT NULL CHECK (VALUE >= 0 AND VALUE < 1e9);"
             "CREATE TYPE public.pair AS (a integer, b text COLLATE \"C\")")
    src, dst = _db(source_server, "src"), _db(pg15_server, "dst")
    with psycopg.connect(src, autocommit=True) as c:
        c.execute(f"{types}; CREATE TABLE public.t (id int PRIMARY KEY, a public.amount, p public.pair)")
    with psycopg.connect(dst, autocommit=True) as c:
        c.execute(types)
    r = sync(src, dst, "--create-schema")
    assert r.returncode == 0, r.stderr


GEN = ("CREATE FUNCTION public.twice(int) RETURNS int LANGUAGE sql IMMUTABLE AS 'SELECT $1 * 2';"
       "CREATE TABLE public.t (id int PRIMARY KEY, d int GENERATED ALWAYS AS (public.twice(id)) STORED);"
       "INSERT INTO t VALUES (1)")


def test_a_target_function_of_the_same_signature_with_another_body_is_refused(pair):
    """A generated column calls it during the load, as the sync's role: a planted body would run there."""
    pair.source(GEN)
    pair.target("CREATE FUNCTION public.twice(int) RETURNS int LANGUAGE sql IMMUTABLE AS 'SELECT $1 * 3'")
    r = pair.sync("--create-schema")
    assert r.returncode == 2, r.stderr
    assert "function twice(integer), which on the target has another definition" in r.stderr, r.stderr
    _nothing_created(pair)


def _role(pair, tag: str) -> str:
    name = f"{tag}_{os.getpid()}_{abs(hash(pair.dst)) % 10**6}"
    pair.target(f"CREATE ROLE {name}")
    return name


def test_the_sources_function_owned_on_the_target_by_another_role_is_refused(pair):
    """Its owner could CREATE OR REPLACE it while the load calls it as a superuser."""
    pair.source(GEN)
    dev = _role(pair, "dev")
    pair.target("CREATE FUNCTION public.twice(int) RETURNS int LANGUAGE sql IMMUTABLE AS 'SELECT $1 * 2';"
                f"ALTER FUNCTION public.twice(int) OWNER TO {dev}")
    r = pair.sync("--create-schema")
    assert r.returncode == 2, r.stderr
    assert f"which on the target is owned by {dev}, who could change it" in r.stderr, r.stderr
    assert 'ALTER ROUTINE "public"."twice"(integer) OWNER TO "postgres"' in r.stderr
    _nothing_created(pair)
    pair.target("ALTER FUNCTION public.twice(int) OWNER TO postgres")
    assert pair.sync("--create-schema").returncode == 0
    assert pair.qt("SELECT d FROM t") == [(2,)]


def test_a_domain_owned_on_the_target_by_another_role_is_refused(pair):
    """Its owner could add a CHECK calling a function of theirs, which the load would run as us."""
    pair.source("CREATE DOMAIN public.amount AS numeric; CREATE TABLE public.t (id int PRIMARY KEY, a public.amount)")
    dev = _role(pair, "dev")
    pair.target(f"CREATE DOMAIN public.amount AS numeric; ALTER DOMAIN public.amount OWNER TO {dev}")
    r = pair.sync("--create-schema")
    assert r.returncode == 2, r.stderr
    assert f'owned by {dev}' in r.stderr and 'ALTER DOMAIN "public"."amount" OWNER TO' in r.stderr, r.stderr
    _nothing_created(pair)


_CATALOG = ("SELECT 'class', c.oid::regclass::text, c.relkind::text FROM pg_class c UNION ALL "
            "SELECT 'ns', nspname, nspowner::text FROM pg_namespace UNION ALL "
            "SELECT 'type', typname, typnamespace::text FROM pg_type UNION ALL "
            "SELECT 'proc', proname, pronamespace::text FROM pg_proc UNION ALL "
            "SELECT 'lock', locktype, objid::text FROM pg_locks WHERE locktype = 'advisory' ORDER BY 1, 2, 3")


def test_dry_run_create_schema_writes_nothing_at_all(pair):
    """Not even the state schema, the lock or a transaction id: the catalogs and the database's
    transaction counter of writes are as they were."""
    pair.source("CREATE TYPE public.mood AS ENUM ('a'); CREATE SCHEMA s; "
                "CREATE TABLE s.t (id serial PRIMARY KEY, m public.mood); CREATE INDEX ON s.t (m)")
    before = pair.qt(_CATALOG)
    xid = pair.qt("SELECT txid_current_if_assigned() IS NULL, txid_snapshot_xmax(txid_current_snapshot())")
    r = pair.sync("--create-schema", "--dry-run")
    assert r.returncode == 0, r.stderr
    assert "would be created" in r.stderr
    assert pair.qt(_CATALOG) == before
    # no transaction id was assigned on the target server in between (all writes take one)
    after = pair.qt("SELECT txid_snapshot_xmax(txid_current_snapshot())")
    assert after[0][0] == xid[0][1], "the dry run took a transaction id on the target"
