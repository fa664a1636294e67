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


def test_what_a_target_type_of_the_sources_definition_calls_is_checked_too(pair):
    """The domain is the source's and ours, but its CHECK calls a function another role owns there:
    the load would run that function as the sync's role."""
    types = ("CREATE FUNCTION public.ok(numeric) RETURNS boolean LANGUAGE sql IMMUTABLE AS 'SELECT $1 > 0';"
             "CREATE DOMAIN public.amount AS numeric CHECK (public.ok(VALUE))")
    pair.source(f"{types}; CREATE TABLE public.t (id int PRIMARY KEY, a public.amount)")
    dev = _role(pair, "dev")
    pair.target(f"{types}; ALTER FUNCTION public.ok(numeric) OWNER TO {dev}")
    r = pair.sync("--create-schema")
    assert r.returncode == 2, r.stderr
    assert f"it needs function ok(numeric), which on the target is owned by {dev}" in r.stderr, r.stderr
    _nothing_created(pair)


# public.twice's PL/pgSQL body calls util.helper: pg_depend does not record that call.
TWICE_CALLS_HELPER = ("CREATE SCHEMA util; CREATE FUNCTION util.helper(int) RETURNS int LANGUAGE sql IMMUTABLE "
                      "AS 'SELECT $1 * 2'; CREATE FUNCTION public.twice(int) RETURNS int LANGUAGE plpgsql IMMUTABLE "
                      "AS $$BEGIN RETURN util.helper($1); END$$;")


def _plant_helper(pair, owner: str) -> None:
    """Another role's util.helper on the target, computing other values than the source's."""
    pair.target(f"CREATE SCHEMA util AUTHORIZATION {owner}; SET ROLE {owner}; CREATE FUNCTION util.helper(int) "
                "RETURNS int LANGUAGE sql IMMUTABLE AS 'SELECT $1 * 3'; RESET ROLE")


def test_a_function_the_load_runs_whose_body_calls_are_not_tracked_is_refused_beside_other_roles_functions(pair):
    """public.twice's PL/pgSQL body calls util.helper, which pg_depend does not record: another role
    planted util.helper on the target, and the load computed the generated column with it."""
    pair.source(TWICE_CALLS_HELPER +
                "CREATE TABLE public.t (id int PRIMARY KEY, d int GENERATED ALWAYS AS (public.twice(id)) STORED);"
                "INSERT INTO t VALUES (1)")
    dev = _role(pair, "dev")
    _plant_helper(pair, dev)
    r = pair.sync("--create-schema")
    assert r.returncode == 2, r.stderr
    assert f"function twice(integer); the target's: util.helper(integer) owned by {dev}" in r.stderr, r.stderr
    _nothing_created(pair)
    pair.target("DROP SCHEMA util CASCADE")
    r = pair.sync("--create-schema")
    assert r.returncode != 0 and "util.helper" in r.stderr  # the source's body needs it: a loud error, not a value



def test_a_materialized_view_filled_by_a_function_whose_body_calls_are_not_tracked_is_refused_too(pair):
    """The finish fills a created materialized view (WITH DATA), running the functions its query calls:
    the same planted util.helper would compute its rows."""
    pair.source(TWICE_CALLS_HELPER +
                "CREATE TABLE public.t (id int PRIMARY KEY); INSERT INTO t VALUES (1);"
                "CREATE MATERIALIZED VIEW public.doubled AS SELECT id, public.twice(id) AS d FROM public.t")
    dev = _role(pair, "mv")
    _plant_helper(pair, dev)
    r = pair.sync("--create-schema")
    assert r.returncode == 2, r.stderr
    assert f"function twice(integer); the target's: util.helper(integer) owned by {dev}" in r.stderr, r.stderr
    _nothing_created(pair)

_CATALOG = ("SELECT 'class', c.oid::regclass::text, c.relkind::text FROM pg_class c UNION ALL "
            "SELECT 'ns', nspname, nspowner::text FROM pg_namespace UNION ALL "
            "SELECT 'type', typname, typnamespace::text FROM pg_type UNION ALL "
            "SELECT 'proc', proname, pronamespace::text FROM pg_proc UNION ALL "
            "SELECT 'lock', locktype, objid::text FROM pg_locks WHERE locktype = 'advisory' ORDER BY 1, 2, 3")


def test_dry_run_create_schema_writes_nothing_at_all(pair):
    """Not even the state schema, the lock or a transaction id: the catalogs are as they were, and no row of
    the target database's catalogs carries a transaction id assigned after the run began (any write, DDL or
    a record in our state schema, leaves one). Per database: other databases' autovacuum may take ids."""
    pair.source("CREATE TYPE public.mood AS ENUM ('a'); CREATE SCHEMA s; "
                "CREATE TABLE s.t (id serial PRIMARY KEY, m public.mood); CREATE INDEX ON s.t (m)")
    before = pair.qt(_CATALOG)
    (xmax,), = pair.qt("SELECT txid_snapshot_xmax(txid_current_snapshot()) % 4294967296")
    r = pair.sync("--create-schema", "--dry-run")
    assert r.returncode == 0, r.stderr
    assert "would be created" in r.stderr
    assert pair.qt(_CATALOG) == before
    newer = pair.qt(" UNION ALL ".join(
        f"SELECT '{c}', count(*) FROM pg_catalog.{c} WHERE xmin::text::bigint >= {xmax}"
        for c in ("pg_class", "pg_namespace", "pg_type", "pg_proc", "pg_attribute", "pg_depend", "pg_constraint",
                  "pg_index", "pg_description", "pg_attrdef", "pg_sequence", "pg_trigger", "pg_extension")))
    assert all(n == 0 for _, n in newer), f"the dry run wrote to the target: {newer}"


L63 = "l" * 63
NAMES = f'''
CREATE SCHEMA a; CREATE SCHEMA "user"; CREATE SCHEMA other;
CREATE TABLE a.b (id int PRIMARY KEY, v text CONSTRAINT v_ok CHECK (v <> ''));
CREATE TABLE public."a.b" (id int PRIMARY KEY, v text CONSTRAINT v_ok CHECK (v <> 'x'));
CREATE INDEX ab_v ON a.b (v); CREATE INDEX ab_v2 ON public."a.b" (v);
CREATE TABLE "user"."select" ("from" int PRIMARY KEY, "Order" text, "{L63}" int);
CREATE INDEX "{L63}" ON "user"."select" ("{L63}");
CREATE TABLE public.m (id int, k int, PRIMARY KEY (id, k)) PARTITION BY LIST (k);
CREATE TABLE public.m_1 PARTITION OF public.m FOR VALUES IN (1);
CREATE TABLE other.m_1 PARTITION OF public.m FOR VALUES IN (2);
ALTER TABLE public.m_1 ADD CONSTRAINT positive CHECK (id > 0);
ALTER TABLE other.m_1 ADD CONSTRAINT positive CHECK (id > 1);
CREATE INDEX ix ON public.m_1 (id); CREATE INDEX ix ON other.m_1 (id);
INSERT INTO a.b VALUES (1, 'a'); INSERT INTO public."a.b" VALUES (2, 'b'); INSERT INTO "user"."select" VALUES (3, 'c', 4);
INSERT INTO public.m VALUES (5, 1), (6, 2);
'''
_NAMED = "n.nspname IN ('public', 'a', 'user', 'other')"


def test_look_alike_quoted_reserved_and_63_byte_names_and_same_named_objects_of_one_partition_tree(pair):
    from tests.e2e.test_create_schema import shape

    pair.source(NAMES)
    r = pair.sync("--create-schema")
    assert r.returncode == 0, r.stderr
    a, b = shape(pair.src, _NAMED), shape(pair.dst, _NAMED)
    for kind in ("columns", "constraints", "indexes", "relations"):
        assert a[kind] == b[kind], kind
    assert pair.qt("SELECT count(*) FROM _confiture_fast.pending_ddl") == [(0,)]
    for t in ("a.b", 'public."a.b"', '"user"."select"', "public.m", "other.m_1"):
        assert pair.qt(f"SELECT * FROM {t} ORDER BY 1") == pair.qs(f"SELECT * FROM {t} ORDER BY 1"), t


KILLED = """
CREATE TABLE public.small (id int PRIMARY KEY, v text UNIQUE);
CREATE TABLE public.big (id int PRIMARY KEY, small_id int REFERENCES public.small (id), w text NOT NULL,
  CONSTRAINT w_long CHECK (length(w) > 10));
CREATE INDEX big_w ON public.big (w); CREATE INDEX big_w_rev ON public.big (reverse(w));
CREATE INDEX big_w_upper ON public.big (upper(w)); CREATE INDEX big_small ON public.big (small_id, w);
INSERT INTO small SELECT i, 's' || i FROM generate_series(1, 100) i;
INSERT INTO big SELECT i, 1 + i % 100, repeat(md5(i::text), 8) FROM generate_series(1, 300000) i;
"""
_KILL_OURS = "n.nspname = 'public'"


def _active(pair, like: str) -> bool:
    return bool(pair.qt(f"SELECT 1 FROM pg_stat_activity WHERE query LIKE '{like}' AND state = 'active' "
                        "AND datname = current_database() AND pid <> pg_backend_pid()"))


@pytest.mark.parametrize("moment", ["COPY %big%", "CREATE INDEX%"])
def test_a_run_killed_during_the_load_or_the_rebuild_is_finished_by_a_rerun(pair, moment):
    """SIGKILL of the whole command (its workers die with it); the rerun creates nothing twice, loses
    nothing, and still refuses a record nobody signed."""
    import signal
    import subprocess
    import sys
    import time

    from tests.e2e.test_create_schema import shape

    pair.source(KILLED)
    env = {**os.environ, "COLUMNS": "200", "ANONYMIZATION_SECRET": "test-secret-0123456789abcdef"}
    proc = subprocess.Popen([sys.executable, "-m", "confiture_fast", "sync", "--from", pair.src, "--to", pair.dst,
                             "--no-progress", "--create-schema", "--parallel", "2"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env=env, start_new_session=True)
    end = time.monotonic() + 120
    while not _active(pair, moment):
        assert proc.poll() is None, "the sync ended before it could be killed"
        assert time.monotonic() < end
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert pair.qt("SELECT count(*) FROM _confiture_fast.pending_ddl")[0][0] > 0

    pair.target("INSERT INTO _confiture_fast.pending_ddl (table_name, name, phase, create_sql, mac) "
                "VALUES ('big', 'evil', 1, 'DROP TABLE public.small', '\\x00')")
    refused = pair.sync("--create-schema")
    assert refused.returncode == 2 and "cannot be verified" in refused.stderr, refused.stderr
    pair.target("DELETE FROM _confiture_fast.pending_ddl WHERE name = 'evil'")

    again = pair.sync("--create-schema")
    assert again.returncode == 0, again.stderr
    assert shape(pair.src, _KILL_OURS) == shape(pair.dst, _KILL_OURS)
    for t in ("small", "big"):
        assert pair.qt(f"SELECT * FROM {t} ORDER BY id") == pair.qs(f"SELECT * FROM {t} ORDER BY id"), t
    assert pair.qt("SELECT count(*) FROM _confiture_fast.pending_ddl") == [(0,)]
