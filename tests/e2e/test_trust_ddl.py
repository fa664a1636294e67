"""Issue 12, points 12-14 and 17: what the sync drops and recreates on the target, and sequences.
Every assertion is on the servers' catalogs after a real sync through the command line."""

from __future__ import annotations

import itertools
import os

import psycopg

_roles = itertools.count()


def _role(pair, server_uri: str, grants: str) -> str:
    """A fresh login role on the server of `server_uri` (roles are per server), and a URI for it."""
    name = f"r{next(_roles)}_{os.getpid()}_{pair.tmp.name[-8:].replace('-', '_')}".lower()
    with psycopg.connect(server_uri, autocommit=True) as c:
        c.execute(f'CREATE ROLE "{name}" LOGIN')
        c.execute(grants.replace("ROLE", f'"{name}"'))
    return server_uri.replace("postgresql://postgres@", f"postgresql://{name}@")


def assert_ok(res):
    assert res.returncode == 0, (res.stdout, res.stderr)
    assert "Traceback" not in res.stderr


# 12. Sequences ---------------------------------------------------------------------------------------

def test_sequence_named_by_a_default_and_not_owned_is_reset(pair):
    ddl = """CREATE SEQUENCE ids START 100;
             CREATE TABLE t (id int PRIMARY KEY DEFAULT nextval('ids'), v text);
             CREATE SEQUENCE part_ids;
             CREATE TABLE ev (id int DEFAULT 0, r text) PARTITION BY LIST (r);
             CREATE TABLE ev_a PARTITION OF ev (id DEFAULT nextval('part_ids')) FOR VALUES IN ('a');"""
    pair.both(ddl)
    pair.source("INSERT INTO t (v) SELECT 'v' || i FROM generate_series(1, 30) i; "
                "INSERT INTO ev_a (r) SELECT 'a' FROM generate_series(1, 7)")
    assert_ok(pair.sync())
    pair.target("INSERT INTO t (v) VALUES ('new')")  # would collide with id 100 if `ids` were not reset
    assert pair.qt("SELECT id FROM t WHERE v = 'new'") == [(130,)]
    pair.target("INSERT INTO ev_a (r) VALUES ('a')")  # a sequence used by a partition's own default
    assert pair.qt("SELECT max(id) FROM ev") == [(8,)]


def test_target_sequence_without_source_counterpart_follows_the_loaded_rows(pair):
    pair.source("CREATE TABLE t (id int PRIMARY KEY, v text); INSERT INTO t SELECT i, 'x' FROM generate_series(1, 40) i")
    pair.target("CREATE TABLE t (id serial PRIMARY KEY, v text)")
    assert_ok(pair.sync())
    pair.target("INSERT INTO t (v) VALUES ('new')")
    assert pair.qt("SELECT id FROM t WHERE v = 'new'") == [(41,)]


def test_sequences_of_loaded_tables_are_reset_when_another_table_fails(pair):
    pair.both("CREATE TABLE good (id serial PRIMARY KEY, v text); CREATE TABLE bad (id serial PRIMARY KEY, v text)")
    pair.target("ALTER TABLE bad ADD CONSTRAINT no_x CHECK (v <> 'x')")
    pair.source("INSERT INTO good (v) SELECT repeat('g', 200) FROM generate_series(1, 3000); "
                "INSERT INTO bad (v) VALUES ('a'), ('x'); ANALYZE")
    res = pair.sync("--parallel", "1")  # largest first: good is loaded, then bad fails
    assert res.returncode == 1, (res.stdout, res.stderr)
    pair.target("INSERT INTO good (v) VALUES ('new')")
    assert pair.qt("SELECT id FROM good WHERE v = 'new'") == [(3001,)]
    assert "bad_id_seq (bad was not loaded)" in res.stderr, res.stderr


def test_sequence_privileges_are_checked_while_planning(pair):
    pair.both("CREATE TABLE t (id serial PRIMARY KEY, v text)")
    pair.source("INSERT INTO t (v) SELECT 'v' FROM generate_series(1, 25)")
    pair.target("INSERT INTO t (v) VALUES ('kept')")
    src = _role(pair, pair.src, "GRANT SELECT ON t TO ROLE")
    res = pair_sync_from(pair, src)
    assert res.returncode == 2, (res.stdout, res.stderr)
    assert "GRANT SELECT ON SEQUENCE public.t_id_seq TO" in res.stderr, res.stderr
    assert "Traceback" not in res.stderr
    assert pair.qt("SELECT v FROM t") == [("kept",)]  # nothing was written
    # USAGE is enough to read the value (pg_sequence_last_value)
    pair.source(f"GRANT USAGE ON SEQUENCE t_id_seq TO \"{src.split('//')[1].split('@')[0]}\"")
    assert_ok(pair_sync_from(pair, src))
    pair.target("INSERT INTO t (v) VALUES ('new')")
    assert pair.qt("SELECT id FROM t WHERE v = 'new'") == [(26,)]

    dst = _role(pair, pair.dst, "GRANT SELECT, INSERT, TRUNCATE ON t TO ROLE")
    res = pair_sync_to(pair, dst)
    assert res.returncode == 2, (res.stdout, res.stderr)
    assert "GRANT UPDATE ON SEQUENCE public.t_id_seq TO" in res.stderr, res.stderr
    assert pair.qt("SELECT count(*) FROM t") == [(26,)]


def pair_sync_from(pair, src: str):
    from conftest import run_cli

    return run_cli("sync", "--from", src, "--to", pair.dst, "--no-progress")


def pair_sync_to(pair, dst: str):
    from conftest import run_cli

    return run_cli("sync", "--from", pair.src, "--to", dst, "--no-progress")


# 13. A foreign key once recreated NOT VALID is validated again when the data allows -----------------

def test_not_valid_foreign_key_is_validated_once_the_data_is_fixed(pair):
    pair.both("""CREATE TABLE users (id int PRIMARY KEY);
                 CREATE TABLE orders (id int PRIMARY KEY, user_id int,
                                      CONSTRAINT orders_user_fk FOREIGN KEY (user_id) REFERENCES users);""")
    pair.source("ALTER TABLE orders DROP CONSTRAINT orders_user_fk; INSERT INTO users VALUES (1); "
                "INSERT INTO orders VALUES (1, 1), (2, 2)")
    res = pair.sync()
    assert_ok(res)
    assert "recreated NOT VALID" in res.stderr
    assert pair.qt("SELECT convalidated FROM pg_constraint WHERE conname = 'orders_user_fk'") == [(False,)]
    pair.source("INSERT INTO users VALUES (2)")
    res = pair.sync()
    assert_ok(res)
    assert "NOT VALID" not in res.stderr
    assert pair.qt("SELECT convalidated FROM pg_constraint WHERE conname = 'orders_user_fk'") == [(True,)]


# 14. Drop and recreate keeps what it touches --------------------------------------------------------

ATTRS_DDL = """
CREATE TABLE t (id int, code text NOT NULL, a int, b int,
                CONSTRAINT t_pkey PRIMARY KEY (id) WITH (fillfactor = 70));
CREATE UNIQUE INDEX t_code ON t (code);
CREATE INDEX t_ab ON t (a, (b + 1)) WITH (fillfactor = 60);
CREATE TABLE c (id int PRIMARY KEY, t_id int CONSTRAINT c_t_fk REFERENCES t);
"""

ATTRS_TARGET = """
ALTER TABLE t REPLICA IDENTITY USING INDEX t_code;
ALTER TABLE t CLUSTER ON t_ab;
ALTER INDEX t_ab ALTER COLUMN 2 SET STATISTICS 321;
COMMENT ON INDEX t_ab IS 'it''s a \\ "quoted"; DROP TABLE t; --';
COMMENT ON CONSTRAINT t_pkey ON t IS 'the key';
COMMENT ON CONSTRAINT c_t_fk ON c IS 'to t';
"""


def _attrs(pair):
    return {
        "replident": pair.qt("SELECT relreplident FROM pg_class WHERE oid = 't'::regclass"),
        "replident_index": pair.qt("SELECT indexrelid::regclass::text FROM pg_index WHERE indisreplident"),
        "clustered": pair.qt("SELECT indexrelid::regclass::text FROM pg_index WHERE indisclustered"),
        "statistics": pair.qt("SELECT attnum, attstattarget FROM pg_attribute WHERE attrelid = 't_ab'::regclass "
                              "AND attstattarget > 0"),
        "index_comment": pair.qt("SELECT obj_description('t_ab'::regclass, 'pg_class')"),
        "comments": pair.qt("SELECT conname, obj_description(oid, 'pg_constraint') FROM pg_constraint "
                            "WHERE conname IN ('t_pkey', 'c_t_fk') ORDER BY conname"),
        "options": pair.qt("SELECT relname, reloptions FROM pg_class WHERE relname IN ('t_pkey', 't_ab') ORDER BY 1"),
        "tablespace": pair.qt("SELECT c.relname, coalesce(ts.spcname, '') FROM pg_class c "
                              "LEFT JOIN pg_tablespace ts ON ts.oid = c.reltablespace "
                              "WHERE c.relname IN ('t_pkey', 't_code', 't_ab') ORDER BY 1"),
    }


def test_rebuilt_indexes_and_constraints_keep_their_attributes(pair):
    pair.both(ATTRS_DDL)
    space = f"ts_{pair.dst.rsplit('/', 1)[1]}"
    with psycopg.connect(pair.dst, autocommit=True) as c:  # a tablespace inside the data directory
        c.execute("SET allow_in_place_tablespaces = on")
        c.execute(f"CREATE TABLESPACE {space} LOCATION ''")
    pair.target(ATTRS_TARGET + f"ALTER INDEX t_code SET TABLESPACE {space}; ALTER INDEX t_pkey SET TABLESPACE {space}")
    pair.source("INSERT INTO t SELECT i, 'c' || i, i, i FROM generate_series(1, 100) i; "
                "INSERT INTO c SELECT i, i FROM generate_series(1, 100) i")
    before = _attrs(pair)
    oids = pair.qt("SELECT relname, oid FROM pg_class WHERE relname IN ('t_pkey', 't_code', 't_ab') ORDER BY 1")
    res = pair.sync()
    assert_ok(res)
    # they were dropped and rebuilt (new objects), and nothing they carried was lost
    after_oids = pair.qt("SELECT relname, oid FROM pg_class WHERE relname IN ('t_pkey', 't_code', 't_ab') ORDER BY 1")
    assert [o for _, o in after_oids] != [o for _, o in oids] and len(after_oids) == 3
    assert _attrs(pair) == before
    assert before["replident"] == [("i",)] and before["replident_index"] == [("t_code",)]
    assert before["clustered"] == [("t_ab",)] and before["statistics"] == [(2, 321)]
    assert before["index_comment"] == [("it's a \\ \"quoted\"; DROP TABLE t; --",)]
    assert before["comments"] == [("c_t_fk", "to t"), ("t_pkey", "the key")]
    assert before["options"] == [("t_ab", ["fillfactor=60"]), ("t_pkey", ["fillfactor=70"])]
    assert before["tablespace"] == [("t_ab", ""), ("t_code", space), ("t_pkey", space)]
    assert pair.qt("SELECT count(*) FROM t") == [(100,)]


def test_partitioned_index_is_rebuilt_on_every_partition(pair):
    pair.both("""CREATE TABLE ev (id int, r text, v text) PARTITION BY LIST (r);
                 CREATE TABLE ev_a PARTITION OF ev FOR VALUES IN ('a');
                 CREATE TABLE ev_b PARTITION OF ev FOR VALUES IN ('b');
                 CREATE INDEX ev_v ON ev (v);""")
    pair.source("INSERT INTO ev SELECT i, CASE WHEN i % 2 = 0 THEN 'a' ELSE 'b' END, 'v' || i "
                "FROM generate_series(1, 50) i")
    assert_ok(pair.sync())
    assert pair.qt("SELECT indisvalid FROM pg_index WHERE indexrelid = 'ev_v'::regclass") == [(True,)]
    leaves = pair.qt("SELECT c.relname FROM pg_inherits i JOIN pg_class ix ON ix.oid = i.inhrelid "
                     "JOIN pg_index x ON x.indexrelid = ix.oid JOIN pg_class c ON c.oid = x.indrelid "
                     "WHERE i.inhparent = 'ev_v'::regclass ORDER BY 1")
    assert leaves == [("ev_a",), ("ev_b",)]


# 17. Constraints that cannot be dropped -------------------------------------------------------------

def test_primary_key_a_view_depends_on_is_kept_in_place_and_said_so(pair):
    pair.both("""CREATE TABLE users (id int PRIMARY KEY, name text);
                 CREATE VIEW names AS SELECT id, name FROM users GROUP BY id;""")
    pair.source("INSERT INTO users SELECT i, 'n' || i FROM generate_series(1, 20) i")
    res = pair.sync()
    assert_ok(res)
    assert "kept in place during the load" in res.stderr and "view public.names" in res.stderr
    assert pair.qt("SELECT count(*) FROM names") == [(20,)]
    assert pair.qt("SELECT conname FROM pg_constraint WHERE conrelid = 'users'::regclass AND contype = 'p'") \
        == [("users_pkey",)]
    dry = pair.sync("--dry-run")
    assert_ok(dry)
    assert "kept in place" in dry.stderr and "users: users_pkey (rule _RETURN on view public.names depends on it)" in dry.stderr


def test_foreign_key_declared_on_a_partition_is_deferred_and_rebuilt(pair):
    pair.both("""CREATE TABLE users (id int PRIMARY KEY);
                 CREATE TABLE ev (id int, r text, user_id int) PARTITION BY LIST (r);
                 CREATE TABLE ev_a PARTITION OF ev FOR VALUES IN ('a');
                 CREATE TABLE ev_b PARTITION OF ev FOR VALUES IN ('b');
                 ALTER TABLE ev_a ADD CONSTRAINT ev_a_user_fk FOREIGN KEY (user_id) REFERENCES users;""")
    pair.source("INSERT INTO users SELECT generate_series(1, 10); "
                "INSERT INTO ev SELECT i, CASE WHEN i % 2 = 0 THEN 'a' ELSE 'b' END, i FROM generate_series(1, 10) i")
    assert_ok(pair.sync())
    assert pair.qt("SELECT conrelid::regclass::text, convalidated FROM pg_constraint WHERE conname = 'ev_a_user_fk'") \
        == [("ev_a", True)]
    assert pair.qt("SELECT count(*) FROM ev") == [(10,)]
    dry = pair.sync("--dry-run")
    assert_ok(dry)
    assert "ev: ev_a_user_fk" in dry.stderr
    # unselected users would be emptied under the partition's key: refused as for any foreign key
    res = pair.sync("--tables", "users")
    assert res.returncode == 2 and "ev_a_user_fk" in res.stderr, res.stderr
