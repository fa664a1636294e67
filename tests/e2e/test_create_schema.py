"""sync --create-schema into an empty database: the created schema is the source's, object by object,
and the data arrives as with any sync; PostgreSQL 18 to 15 and back; a second run is a no-op for the
schema; --dry-run lists; a failing statement leaves nothing behind; a rerun finishes what was recorded."""

from __future__ import annotations

import json
import os
import uuid

import psycopg
import pytest

from confiture_fast import pg, sample, schema
from confiture_fast.target import StateKeys

# Everything issue 14 lists, in one source database.
RICH = r'''
CREATE TYPE public.mood AS ENUM ('sad', 'ok', 'happy');
CREATE DOMAIN public.posint AS integer DEFAULT 1 NOT NULL CONSTRAINT posint_check CHECK (VALUE > 0);
CREATE TYPE public.floatrange AS RANGE (subtype = float8, subtype_diff = float8mi);
CREATE TYPE public.pair AS (a integer, b text);
CREATE SCHEMA "Mixed Case";
COMMENT ON SCHEMA "Mixed Case" IS 'odd names';
CREATE TABLE "Mixed Case"."Weird ""Table""" (
  id int GENERATED ALWAYS AS IDENTITY (START WITH 10 INCREMENT BY 5) PRIMARY KEY,
  "Name" text COLLATE "C" NOT NULL, m public.mood DEFAULT 'ok', qty public.posint,
  twice int GENERATED ALWAYS AS (id * 2) STORED, p public.pair, big text, moods public.mood[]);
ALTER TABLE "Mixed Case"."Weird ""Table""" ALTER COLUMN big SET STORAGE EXTERNAL;
ALTER TABLE "Mixed Case"."Weird ""Table""" ALTER COLUMN qty SET STATISTICS 500;
ALTER TABLE "Mixed Case"."Weird ""Table""" REPLICA IDENTITY FULL;
COMMENT ON TABLE "Mixed Case"."Weird ""Table""" IS 'a ''weird'' table';
COMMENT ON COLUMN "Mixed Case"."Weird ""Table"""."Name" IS 'the name';
CREATE SEQUENCE public.shared_seq START 100 INCREMENT 3;
CREATE TABLE public.events (id bigint DEFAULT nextval('public.shared_seq'), at date NOT NULL,
  kind text NOT NULL DEFAULT 'a', PRIMARY KEY (id, at, kind)) PARTITION BY RANGE (at);
CREATE SCHEMA archive;
CREATE TABLE public.events_2024 PARTITION OF public.events FOR VALUES FROM ('2024-01-01') TO ('2025-01-01')
  PARTITION BY LIST (kind);
CREATE TABLE public.events_2024_a PARTITION OF public.events_2024 FOR VALUES IN ('a');
CREATE TABLE archive.events_2024_rest PARTITION OF public.events_2024 DEFAULT;
CREATE TABLE public.events_default PARTITION OF public.events DEFAULT;
CREATE INDEX events_kind ON public.events (kind);
CREATE TABLE public.parent (id serial PRIMARY KEY, note text DEFAULT 'p');
CREATE TABLE public.child (extra int NOT NULL DEFAULT 3) INHERITS (public.parent);
ALTER TABLE public.child ALTER COLUMN note SET DEFAULT 'c';
ALTER TABLE public.child ADD PRIMARY KEY (id);
CREATE TABLE public.a (id int PRIMARY KEY, b_id int);
CREATE TABLE public.b (id int PRIMARY KEY, a_id int REFERENCES public.a(id) DEFERRABLE INITIALLY DEFERRED);
ALTER TABLE public.a ADD CONSTRAINT a_b_fk FOREIGN KEY (b_id) REFERENCES public.b(id) DEFERRABLE INITIALLY DEFERRED;
CREATE TABLE public.tree (id int PRIMARY KEY, parent_id int REFERENCES public.tree(id),
  label text CONSTRAINT label_not_empty CHECK (label <> ''), email text UNIQUE);
COMMENT ON CONSTRAINT label_not_empty ON public.tree IS 'no empty labels';
CREATE TABLE public.booking (id int PRIMARY KEY, room int NOT NULL, during public.floatrange,
  EXCLUDE USING gist (during WITH &&));
CREATE INDEX booking_room_partial ON public.booking (room) WHERE room > 10;
CREATE INDEX tree_lower_label ON public.tree (lower(label));
COMMENT ON INDEX public.tree_lower_label IS 'lower';
CREATE FUNCTION public.touch() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN NEW.label := NEW.label || '!'; RETURN NEW; END $$;
CREATE TRIGGER tree_touch BEFORE INSERT OR UPDATE ON public.tree FOR EACH ROW EXECUTE FUNCTION public.touch();
COMMENT ON TRIGGER tree_touch ON public.tree IS 'adds a bang';
CREATE FUNCTION public.double_it(x int) RETURNS int LANGUAGE sql IMMUTABLE AS 'SELECT x * 2';
CREATE VIEW public.tree_roots AS SELECT id, label FROM public.tree WHERE parent_id IS NULL;
CREATE VIEW public.tree_roots2 AS SELECT id, public.double_it(id) AS twice FROM public.tree_roots;
COMMENT ON VIEW public.tree_roots IS 'roots';
CREATE MATERIALIZED VIEW public.tree_count AS SELECT count(*) AS n FROM public.tree;
CREATE TABLE public.unsynced (id int);
CREATE VIEW public.of_unsynced AS SELECT id FROM public.unsynced;
INSERT INTO "Mixed Case"."Weird ""Table""" ("Name", m, qty, p, big, moods)
  VALUES ('x', 'happy', 5, ROW(1, 'y'), 'big', '{sad,ok}'), ('y', 'sad', 2, NULL, NULL, NULL);
INSERT INTO public.events (at, kind) VALUES ('2024-03-01', 'a'), ('2024-04-01', 'b'), ('2030-01-01', 'z');
INSERT INTO public.parent (note) VALUES ('p1');
INSERT INTO public.child (note, extra) VALUES ('c1', 4);
INSERT INTO public.a VALUES (1, NULL), (2, NULL);
INSERT INTO public.b VALUES (1, 1), (2, 2);
UPDATE public.a SET b_id = id;
INSERT INTO public.tree (id, parent_id, label, email) VALUES (1, NULL, 'root', 'r@x.org'), (2, 1, 'kid', 'k@x.org');
INSERT INTO public.booking VALUES (1, 11, '[1,2)'), (2, 3, '[2,3)');
REFRESH MATERIALIZED VIEW public.tree_count;
'''
TABLES = '"Mixed Case"."Weird ""Table""",events,parent,child,a,b,tree,booking'

# The schema as the catalog says it, object by object (the search_path is empty: names are qualified).
_SHAPE = {
    "columns": """SELECT n.nspname, c.relname, a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull,
                         pg_get_expr(d.adbin, d.adrelid), a.attgenerated, a.attidentity, co.collname, a.attstorage,
                         coalesce(a.attstattarget, -1), col_description(c.oid, a.attnum), a.attinhcount
                  FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
                  LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
                  LEFT JOIN pg_collation co ON co.oid = a.attcollation
                  WHERE c.relkind IN ('r', 'p', 'v', 'm') AND a.attnum > 0 AND NOT a.attisdropped AND {rels}""",
    "constraints": """SELECT n.nspname, c.relname, con.conname, con.contype, pg_get_constraintdef(con.oid),
                             obj_description(con.oid, 'pg_constraint')
                      FROM pg_constraint con JOIN pg_class c ON c.oid = con.conrelid
                      JOIN pg_namespace n ON n.oid = c.relnamespace WHERE con.contype <> 'n' AND {rels}""",
    "indexes": """SELECT n.nspname, c.relname, i.relname, pg_get_indexdef(i.oid), obj_description(i.oid, 'pg_class')
                  FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid JOIN pg_class c ON c.oid = x.indrelid
                  JOIN pg_namespace n ON n.oid = c.relnamespace WHERE {rels}""",
    "relations": """SELECT n.nspname, c.relname, c.relkind, c.relreplident, pg_get_expr(c.relpartbound, c.oid),
                           CASE WHEN c.relkind = 'p' THEN pg_get_partkeydef(c.oid) END, obj_description(c.oid, 'pg_class'),
                           ARRAY(SELECT inhparent::regclass::text FROM pg_inherits WHERE inhrelid = c.oid ORDER BY inhseqno),
                           CASE WHEN c.relkind IN ('v', 'm') AND {viewdefs} THEN pg_get_viewdef(c.oid) END
                    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                    WHERE c.relkind IN ('r', 'p', 'v', 'm') AND {rels}""",
    "triggers": """SELECT c.relname, t.tgname, pg_get_triggerdef(t.oid), t.tgenabled, obj_description(t.oid, 'pg_trigger')
                   FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace
                   WHERE NOT t.tgisinternal AND {rels}""",
    "sequences": """SELECT n.nspname, c.relname, format_type(s.seqtypid, NULL), s.seqstart, s.seqincrement, s.seqmin,
                           s.seqmax, s.seqcache, s.seqcycle, pg_get_serial_sequence(d.refobjid::regclass::text,
                           a.attname)
                    FROM pg_sequence s JOIN pg_class c ON c.oid = s.seqrelid JOIN pg_namespace n ON n.oid = c.relnamespace
                    LEFT JOIN pg_depend d ON d.objid = c.oid AND d.classid = 'pg_class'::regclass
                         AND d.refclassid = 'pg_class'::regclass AND d.deptype IN ('a', 'i')
                    LEFT JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
                    WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', '_confiture_fast')""",
    "types": """SELECT n.nspname, t.typname, t.typtype, format_type(t.typbasetype, t.typtypmod), t.typnotnull,
                       pg_get_expr(t.typdefaultbin, 0),
                       ARRAY(SELECT enumlabel::text FROM pg_enum WHERE enumtypid = t.oid ORDER BY enumsortorder),
                       ARRAY(SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE contypid = t.oid AND contype = 'c'),
                       ARRAY(SELECT attname || ' ' || format_type(atttypid, atttypmod) FROM pg_attribute
                             WHERE attrelid = t.typrelid AND t.typtype = 'c' AND attnum > 0 ORDER BY attnum),
                       (SELECT format_type(rngsubtype, NULL) || ' ' || rngsubdiff::regproc::text FROM pg_range
                        WHERE rngtypid = t.oid)
                FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
                WHERE t.typtype IN ('e', 'd', 'r') OR (t.typtype = 'c' AND (SELECT relkind FROM pg_class
                                                                        WHERE oid = t.typrelid) = 'c')
                  AND n.nspname NOT IN ('pg_catalog', 'information_schema')""",
    "functions": """SELECT n.nspname, p.proname, pg_get_functiondef(p.oid) FROM pg_proc p
                    JOIN pg_namespace n ON n.oid = p.pronamespace
                    WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND p.prokind = 'f'
                      AND NOT EXISTS (SELECT FROM pg_depend d WHERE d.objid = p.oid AND d.deptype = 'i')""",
}
_OURS = "n.nspname IN ('public', 'archive', 'Mixed Case') AND c.relname NOT IN ('unsynced', 'of_unsynced')"


def shape(uri: str, rels: str = _OURS, viewdefs: bool = True) -> dict[str, list]:
    """The schema, object by object. Each version spells a view's query its own way (PostgreSQL 16 on
    leaves out the table before a column), so between versions views are compared by their columns
    and rows, not by their text."""
    with psycopg.connect(uri, autocommit=True) as c:
        c.execute("SELECT pg_catalog.set_config('search_path', '', false)")
        return {k: sorted(map(repr, c.execute(q.replace("{rels}", rels).replace("{viewdefs}", str(viewdefs))).fetchall()))
                for k, q in _SHAPE.items()}


def data(uri: str) -> dict[str, list]:
    with psycopg.connect(uri, autocommit=True) as c:
        return {t: sorted(map(repr, c.execute(f"SELECT * FROM {t}").fetchall())) for t in (
            '"Mixed Case"."Weird ""Table"""', "public.events", "archive.events_2024_rest", "ONLY public.parent",
            "public.child", "public.a", "public.b", "public.tree", "public.booking", "public.tree_roots2",
            "public.tree_count")}


def sync(src: str, dst: str, *args: str):
    from tests.conftest import run_cli

    return run_cli("sync", "--from", src, "--to", dst, "--no-progress", *args)


def _db(server, tag: str) -> str:
    """A database of its own per call: a random name, not id(object()), whose address Python reuses (two
    calls got the same name once, 'database ... already exists'), nor a module counter (the red-team module
    imports this one under a second name, with a counter of its own)."""
    return server.create_database(f"{tag}{os.getpid()}_{uuid.uuid4().hex[:12]}")


def _same_schema_and_data(src: str, dst: str) -> None:
    a, b = shape(src), shape(dst)
    for kind in _SHAPE:
        assert a[kind] == b[kind], kind
    assert data(src) == data(dst)


def test_an_empty_target_gets_the_sources_schema_and_rows_and_a_second_run_only_syncs(pair):
    pair.source(RICH)
    r = pair.sync("--tables", TABLES, "--create-schema", "--format", "json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert "table Mixed Case.\"Weird \"\"Table\"\"\"" in out["created"]
    assert any(c.startswith("view tree_roots2") for c in out["created"])
    assert any(c.startswith("trigger tree_touch") for c in out["created"])
    assert any("of_unsynced" in n and "unsynced, which is not synced" in n for n in out["not_created"])
    _same_schema_and_data(pair.src, pair.dst)
    assert pair.qt("SELECT count(*) FROM _confiture_fast.pending_ddl") == [(0,)]
    # the trigger did not fire during the load (it would have added a second bang), and fires after it
    assert pair.qt("SELECT label FROM public.tree ORDER BY id") == [("root!",), ("kid!",)]
    assert pair.qt("UPDATE public.tree SET label = 'x' WHERE id = 2 RETURNING label") == [("x!",)]
    # sequences and identities continue after the source's values
    assert pair.qt("SELECT nextval('public.shared_seq')") == pair.qs("SELECT nextval('public.shared_seq')")
    assert pair.qt("INSERT INTO \"Mixed Case\".\"Weird \"\"Table\"\"\" (\"Name\") VALUES ('z') RETURNING id") == \
        pair.qs("INSERT INTO \"Mixed Case\".\"Weird \"\"Table\"\"\" (\"Name\") VALUES ('z') RETURNING id")
    # objects are owned by the target user
    assert pair.qt("SELECT DISTINCT relowner::regrole::text FROM pg_class c JOIN pg_namespace n ON n.oid = relnamespace "
                   "WHERE nspname IN ('public', 'archive', 'Mixed Case')") == [("postgres",)]

    before = shape(pair.dst)
    again = pair.sync("--tables", TABLES, "--create-schema", "--format", "json")
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["created"] == []
    assert shape(pair.dst) == before


def test_the_summary_says_how_many_objects_were_created(pair):
    pair.source("CREATE TABLE public.t (id int PRIMARY KEY, v text); INSERT INTO t VALUES (1, 'a');")
    r = pair.sync("--create-schema")
    assert r.returncode == 0, r.stderr
    assert "--create-schema: created 2 object(s) on the target" in r.stderr
    assert "grants and roles are not copied" in r.stderr


@pytest.mark.parametrize("direction", ["18 to 15", "15 to 18"])
def test_create_schema_between_postgresql_15_and_18(direction, source_server, pg15_server):
    src_server, dst_server = (source_server, pg15_server) if direction == "18 to 15" else (pg15_server, source_server)
    src, dst = _db(src_server, "src"), _db(dst_server, "dst")
    with psycopg.connect(src, autocommit=True) as c:
        c.execute(RICH)
    r = sync(src, dst, "--tables", TABLES, "--create-schema")
    assert r.returncode == 0, r.stderr
    a, b = shape(src, viewdefs=False), shape(dst, viewdefs=False)
    for kind in ("columns", "constraints", "indexes", "relations", "triggers", "sequences", "types"):
        assert a[kind] == b[kind], kind
    assert data(src) == data(dst)


def test_the_demo_shop_into_an_empty_database(pair):
    sample.create_shop(pair.src, users=300)
    rules = pair.rules(sample.SHOP_RULES_YAML)
    r = pair.sync("--create-schema", "--anonymize-config", str(rules))
    assert r.returncode == 0, r.stderr
    everything = "n.nspname = 'public'"
    assert shape(pair.src, everything) == shape(pair.dst, everything)
    for t in ("users", "profiles", "orders"):
        assert pair.qt(f"SELECT count(*) FROM {t}") == pair.qs(f"SELECT count(*) FROM {t}")
    emails = "SELECT id, email FROM users WHERE email IS NOT NULL ORDER BY id"
    masked = dict(pair.qt(emails))
    assert masked and not set(masked.items()) & set(pair.qs(emails))


def test_dry_run_lists_what_would_be_created_and_creates_nothing(pair):
    pair.source(RICH)
    r = pair.sync("--tables", TABLES, "--create-schema", "--dry-run", "--format", "json")
    assert r.returncode == 0, r.stderr
    assert "--create-schema: " in r.stderr and "would be created" in r.stderr
    assert "  table events_2024_a" in r.stderr and "  foreign key a_b_fk on a (after the load)" in r.stderr
    assert "not created: view of_unsynced" in r.stderr
    plan = json.loads(r.stdout)["create_schema"]
    assert plan["count"] == len(plan["create"]) and "schema \"archive\"" in plan["create"]
    assert pair.qt("SELECT count(*) FROM pg_namespace WHERE nspname IN ('archive', 'Mixed Case', '_confiture_fast')") \
        == [(0,)]
    assert pair.qt("SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = relnamespace "
                   "WHERE nspname = 'public'") == [(0,)]


def test_a_failing_statement_names_the_object_and_leaves_nothing_created(pair):
    pair.source(RICH)
    pair.target("CREATE DOMAIN public.booking AS int")  # a type in the way of the table's row type
    r = pair.sync("--tables", TABLES, "--create-schema")
    assert r.returncode != 0
    assert "creating table booking failed" in r.stderr and 'CREATE TABLE "public"."booking"' in r.stderr
    assert "nothing was created" in r.stderr and "Traceback" not in r.stderr
    assert pair.qt("SELECT count(*) FROM pg_namespace WHERE nspname IN ('archive', 'Mixed Case', '_confiture_fast')") \
        == [(0,)]
    assert pair.qt("SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = relnamespace "
                   "WHERE nspname = 'public'") == [(0,)]
    pair.target("DROP DOMAIN public.booking")
    assert pair.sync("--tables", TABLES, "--create-schema").returncode == 0
    _same_schema_and_data(pair.src, pair.dst)


def test_a_rule_that_cannot_fit_the_source_column_stops_before_anything_is_created(pair):
    pair.source("CREATE TABLE public.people (id int PRIMARY KEY, email varchar(8)); INSERT INTO people VALUES (1, 'a@b.c')")
    r = pair.sync("--create-schema", rules="people:\n  - column: email\n    strategy: email\n")
    assert r.returncode == 2, r.stderr
    assert "people.email" in r.stderr
    assert pair.qt("SELECT count(*) FROM pg_class WHERE relname = 'people'") == [(0,)]


def test_a_run_interrupted_after_the_schema_was_created_is_finished_by_the_next(pair, tmp_path):
    """The pre-data transaction commits the tables and the signed records of what follows the load
    together: a run that stops right after it leaves a state the next run completes."""
    pair.source(RICH)
    with psycopg.connect(pair.src, autocommit=True, options="-c search_path=") as s, \
            pg.target(pair.dst, "test") as d:
        facts = schema.read_source(s, [("Mixed Case", 'Weird "Table"'), ("public", "events"), ("public", "parent"),
                                       ("public", "child"), ("public", "a"), ("public", "b"), ("public", "tree"),
                                       ("public", "booking")])
        keys = StateKeys(b"test-secret-0123456789abcdef", path=tmp_path / "other-machine.key")
        schema.apply(d, schema.plan_schema(facts, schema.read_existing(d, keys)), keys)
    assert pair.qt("SELECT count(*) FROM _confiture_fast.pending_ddl")[0][0] > 10  # keys, indexes, triggers, views
    assert pair.qt("SELECT count(*) FROM pg_index WHERE indrelid = 'public.tree'::regclass") == [(0,)]
    r = pair.sync("--tables", TABLES, "--create-schema", "--format", "json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["created"] == []
    _same_schema_and_data(pair.src, pair.dst)
    assert pair.qt("SELECT count(*) FROM _confiture_fast.pending_ddl") == [(0,)]


def test_an_extension_type_brings_its_extension(pair):
    pair.source("CREATE EXTENSION citext; CREATE TABLE public.u (id int PRIMARY KEY, e public.citext);"
                "INSERT INTO u VALUES (1, 'A@B.C')")
    r = pair.sync("--create-schema")
    assert r.returncode == 0, r.stderr
    assert pair.qt("SELECT format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = 'public.u'::regclass "
                   "AND attname = 'e'") == [("citext",)]
    assert pair.qt("SELECT e FROM u WHERE e = 'a@b.c'") == [("A@B.C",)]


def _login_role(pair) -> str:
    """A target login role of our own, not a superuser, that may create schemas in the target database."""
    name = f"builder_{os.getpid()}_{abs(hash(pair.dst)) % 10**6}"
    pair.target(f"CREATE ROLE {name} LOGIN")
    pair.target(f"GRANT CREATE ON DATABASE {pair.dst.rsplit('/', 1)[1]} TO {name}; "
                f"GRANT CREATE, USAGE ON SCHEMA public TO {name}")
    return name


def test_a_target_user_that_is_not_a_superuser_owns_what_it_creates(pair):
    pair.source("CREATE EXTENSION citext; CREATE TABLE public.u (id serial PRIMARY KEY, e public.citext UNIQUE);"
                "INSERT INTO u (e) VALUES ('A@B.C')")
    role = _login_role(pair)
    r = sync(pair.src, pair.dst.replace("postgresql://postgres@", f"postgresql://{role}@", 1), "--create-schema")
    assert r.returncode == 0, r.stderr
    assert pair.qt("SELECT relowner::regrole::text FROM pg_class WHERE relname IN ('u', 'u_id_seq', 'u_pkey', "
                   "'u_e_key') GROUP BY 1") == [(role,)]
    assert pair.qt("SELECT e FROM u WHERE e = 'a@b.c'") == [("A@B.C",)]


def test_an_extension_the_target_user_may_not_create_is_a_clear_error_and_nothing_is_created(pair):
    pair.source("CREATE EXTENSION vector; CREATE TABLE public.emb (id int PRIMARY KEY, v public.vector(3))")
    role = _login_role(pair)
    r = sync(pair.src, pair.dst.replace("postgresql://postgres@", f"postgresql://{role}@", 1), "--create-schema")
    assert r.returncode == 2, r.stderr
    assert "creating extension vector failed: permission denied to create extension" in r.stderr
    assert 'have an administrator run CREATE EXTENSION IF NOT EXISTS "vector"' in r.stderr
    assert pair.qt("SELECT count(*) FROM pg_class WHERE relname = 'emb'") == [(0,)]
    assert pair.qt("SELECT count(*) FROM pg_namespace WHERE nspname = '_confiture_fast'") == [(0,)]


def test_a_forged_pending_record_stops_the_run_before_anything_is_created(pair):
    from confiture_fast.target import ensure_state

    pair.source("CREATE TABLE public.t (id int PRIMARY KEY)")
    with pg.target(pair.dst, "test") as d:
        ensure_state(d)
        d.execute("INSERT INTO _confiture_fast.pending_ddl (table_name, name, phase, create_sql, mac) "
                  "VALUES ('t', 'evil', 1, 'DROP TABLE x', '\\x00')")
    r = pair.sync("--create-schema")
    assert r.returncode == 2, r.stderr
    assert "cannot be verified" in r.stderr
    assert pair.qt("SELECT count(*) FROM pg_class WHERE relname = 't'") == [(0,)]
