"""End-to-end syncs between real PostgreSQL servers, through the real command line."""

from __future__ import annotations

import json
import re

import pytest

from conftest import run_cli

USERS_DDL = """
CREATE TABLE users (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    email text NOT NULL UNIQUE,
    phone text,
    full_name text,
    ssn text,
    password_hash text,
    bio text
);
"""

RULES = """
users:
  - column: email
    strategy: email
    seed: 12345
  - column: phone
    strategy: phone
    seed: 12345
  - column: full_name
    strategy: name
    seed: 12345
  - column: ssn
    strategy: redact
  - column: password_hash
    strategy: hash
"""


def fill_users(pair, n=200):
    pair.source(f"""INSERT INTO users (email, phone, full_name, ssn, password_hash, bio)
        SELECT 'person' || i || '@corp.example', '+33 6 ' || i, 'Person ' || i, '123-45-' || i, md5(i::text),
               CASE i % 5 WHEN 0 THEN NULL WHEN 1 THEN '' WHEN 2 THEN E'tab\\there\\nnewline \\\\ back'
                          WHEN 3 THEN E'\\\\N' ELSE 'héllo 日本 🎉' END
        FROM generate_series(1, {n}) i""")


def assert_clean_error(res, *needles, code=2):
    assert res.returncode == code, (res.returncode, res.stdout, res.stderr)
    assert "Traceback" not in res.stderr
    for n in needles:
        assert n in res.stderr, (n, res.stderr)


def test_plain_sync_matches_by_column_name(pair):
    pair.source("CREATE TABLE t (a int PRIMARY KEY, b text, c numeric); "
                "INSERT INTO t SELECT i, 'v' || i, i / 3.0 FROM generate_series(1, 1000) i")
    pair.target("CREATE TABLE t (c numeric, b text, a int PRIMARY KEY)")
    res = pair.sync()
    assert res.returncode == 0, res.stderr
    assert "WITHOUT anonymization" in res.stderr
    src = pair.qs("SELECT a, b, c FROM t ORDER BY a")
    assert pair.qt("SELECT a, b, c FROM t ORDER BY a") == src
    assert len(src) == 1000


@pytest.mark.parametrize("parallel", ["1", "4"])
def test_anonymized_sync_formats_and_awkward_values(pair, parallel):
    pair.both(USERS_DDL)
    fill_users(pair)
    res = pair.sync("--parallel", parallel, rules=RULES)
    assert res.returncode == 0, res.stderr
    rows = pair.qt("SELECT id, email, phone, full_name, ssn, password_hash, bio FROM users ORDER BY id")
    src = pair.qs("SELECT id, email, phone, full_name, ssn, password_hash, bio FROM users ORDER BY id")
    assert len(rows) == 200
    for (i, email, phone, name, ssn, h, bio), s in zip(rows, src):
        assert re.fullmatch(r"user_[0-9a-f]{16}@example\.com", email)
        assert re.fullmatch(r"\+1-555-\d{4}", phone)
        assert re.fullmatch(r"User [0-9A-F]{4}", name)
        assert ssn == "[REDACTED]"
        assert re.fullmatch(r"[0-9a-f]{16}", h)
        assert bio == s[6]  # untouched column copied byte for byte, awkward values included
    assert len({r[1] for r in rows}) == 200


def test_null_empty_and_literal_backslash_n(pair):
    pair.both("CREATE TABLE t (id int PRIMARY KEY, v text)")
    pair.source(r"INSERT INTO t VALUES (1, NULL), (2, ''), (3, E'\\N'), (4, E'a\tb\nc\\d'), (5, 'ü')")
    res = pair.sync(rules="t:\n  - column: v\n    strategy: hash\n")
    assert res.returncode == 0, res.stderr
    got = dict(pair.qt("SELECT id, v FROM t"))
    assert got[1] is None and got[2] == ""
    assert re.fullmatch(r"[0-9a-f]{16}", got[3]) and re.fullmatch(r"[0-9a-f]{16}", got[4])
    assert len({got[3], got[4], got[5]}) == 3


def test_same_secret_same_pseudonyms_other_secret_others(pair, source_server, target_server, tmp_path):
    pair.both(USERS_DDL)
    fill_users(pair, 50)
    assert pair.sync(rules=RULES).returncode == 0
    first = pair.qt("SELECT email FROM users ORDER BY id")
    assert pair.sync(rules=RULES).returncode == 0
    assert pair.qt("SELECT email FROM users ORDER BY id") == first
    res = pair.sync(rules=RULES, env={"ANONYMIZATION_SECRET": "another-secret-0123456789"})
    assert res.returncode == 0, res.stderr
    other = pair.qt("SELECT email FROM users ORDER BY id")
    assert not set(other) & set(first)


def test_generated_identity_columns_and_sequences(pair):
    ddl = """CREATE TABLE g (id int GENERATED ALWAYS AS IDENTITY PRIMARY KEY, s serial, a int,
             doubled int GENERATED ALWAYS AS (a * 2) STORED)"""
    pair.both(ddl)
    pair.source("INSERT INTO g (a) SELECT i FROM generate_series(1, 50) i")
    res = pair.sync()
    assert res.returncode == 0, res.stderr
    assert pair.qt("SELECT id, s, a, doubled FROM g ORDER BY id") == pair.qs("SELECT id, s, a, doubled FROM g ORDER BY id")
    pair.target("INSERT INTO g (a) VALUES (1000)")  # the first insert on the target works: sequences were reset
    assert pair.qt("SELECT id, s FROM g WHERE a = 1000") == [(51, 51)]


def test_partitioned_table_through_its_leaves(pair):
    ddl = """CREATE TABLE ev (id int, region text, email text) PARTITION BY LIST (region);
             CREATE TABLE ev_eu PARTITION OF ev FOR VALUES IN ('eu');
             CREATE TABLE ev_us PARTITION OF ev FOR VALUES IN ('us');"""
    pair.both(ddl)
    pair.source("INSERT INTO ev SELECT i, CASE WHEN i % 2 = 0 THEN 'eu' ELSE 'us' END, 'p' || i || '@x.org' "
                "FROM generate_series(1, 100) i")
    res = pair.sync("--format", "json", rules="ev:\n  - column: email\n    strategy: email\n")
    assert res.returncode == 0, res.stderr
    assert pair.qt("SELECT count(*) FROM ev_eu") == [(50,)] and pair.qt("SELECT count(*) FROM ev_us") == [(50,)]
    assert pair.qt("SELECT count(*) FROM ev WHERE email LIKE 'user\\_%@example.com'") == [(100,)]
    out = json.loads(res.stdout)
    assert out["tables"][0]["table"] == "ev" and out["tables"][0]["rows"] == 100


def test_non_public_schema_quoted_mixed_case_names(pair):
    ddl = """CREATE SCHEMA "CRM"; CREATE TABLE "CRM"."Users list" ("Id" int PRIMARY KEY, "E-mail Address" text UNIQUE,
             "note" text)"""
    pair.both(ddl)
    pair.source("""INSERT INTO "CRM"."Users list" SELECT i, 'a' || i || '@b.c', 'n' FROM generate_series(1, 10) i""")
    res = pair.sync("--tables", "CRM.Users list",
                    rules='CRM.Users list:\n  - column: E-mail Address\n    strategy: email\n')
    assert res.returncode == 0, res.stderr
    emails = pair.qt('SELECT "E-mail Address" FROM "CRM"."Users list"')
    assert len(emails) == 10 and all(e[0].startswith("user_") for e in emails)


def test_enum_array_jsonb_bytea_and_a_large_value(pair):
    ddl = """CREATE TYPE mood AS ENUM ('ok', 'sad'); CREATE TABLE x (id int PRIMARY KEY, m mood, a text[],
             j jsonb, b bytea, big text)"""
    pair.both(ddl)
    pair.source("""INSERT INTO x VALUES (1, 'sad', ARRAY['a b', 'c"d', NULL, E'e\\\\f'], '{"k": [1, "\\t"]}',
                   '\\x00ff10', repeat('x', 1048576)), (2, NULL, '{}', 'null', '', '')""")
    res = pair.sync()
    assert res.returncode == 0, res.stderr
    sql = "SELECT id, m::text, a, j, b, md5(big), length(big) FROM x ORDER BY id"
    assert pair.qt(sql) == pair.qs(sql)


def test_fk_cycle_between_selected_tables_and_trigger_not_fired(pair):
    ddl = """CREATE TABLE a (id int PRIMARY KEY, b_id int);
             CREATE TABLE b (id int PRIMARY KEY, a_id int REFERENCES a);
             ALTER TABLE a ADD CONSTRAINT a_b FOREIGN KEY (b_id) REFERENCES b;"""
    pair.both(ddl)
    pair.source("""BEGIN; SET CONSTRAINTS ALL DEFERRED;
                   INSERT INTO a SELECT i, NULL FROM generate_series(1, 20) i;
                   INSERT INTO b SELECT i, i FROM generate_series(1, 20) i;
                   UPDATE a SET b_id = id; COMMIT;""")
    pair.target("""CREATE TABLE fired (n int); CREATE FUNCTION f() RETURNS trigger LANGUAGE plpgsql AS
                   $$BEGIN INSERT INTO fired VALUES (1); RETURN NEW; END$$;
                   CREATE TRIGGER tr BEFORE INSERT ON a FOR EACH ROW EXECUTE FUNCTION f();""")
    res = pair.sync("--tables", "a,b")
    assert res.returncode == 0, res.stderr
    assert pair.qt("SELECT count(*) FROM a WHERE b_id IS NOT NULL") == [(20,)]
    assert pair.qt("SELECT count(*) FROM fired") == [(0,)]
    fks = pair.qt("SELECT conname, convalidated FROM pg_constraint WHERE contype = 'f' ORDER BY conname")
    assert fks == [("a_b", True), ("b_a_id_fkey", True)]
    assert pair.qt("SELECT tgenabled FROM pg_trigger WHERE tgname = 'tr'") == [("O",)]


def test_unselected_child_is_not_emptied(pair):
    ddl = """CREATE TABLE parent (id int PRIMARY KEY); CREATE TABLE child (id int PRIMARY KEY, p int REFERENCES parent)"""
    pair.both(ddl)
    pair.source("INSERT INTO parent SELECT generate_series(1, 5)")
    pair.target("INSERT INTO parent VALUES (1); INSERT INTO child VALUES (1, 1)")
    res = pair.sync("--tables", "parent")
    assert_clean_error(res, "child", "--cascade")
    assert pair.qt("SELECT count(*) FROM child") == [(1,)] and pair.qt("SELECT count(*) FROM parent") == [(1,)]
    res = pair.sync("--tables", "parent", "--cascade")
    assert res.returncode == 0, res.stderr
    assert "also emptying child" in res.stderr
    assert pair.qt("SELECT count(*) FROM child") == [(0,)] and pair.qt("SELECT count(*) FROM parent") == [(5,)]


def test_cascade_also_empties_the_grandchild_that_references_a_cascaded_child(pair):
    """TRUNCATE refuses a table that another one references: --cascade empties every table that reaches a
    selected one through foreign keys, and their keys come back valid."""
    pair.both("""CREATE TABLE parent (id int PRIMARY KEY); CREATE TABLE child (id int PRIMARY KEY, p int REFERENCES parent);
                 CREATE TABLE grandchild (id int PRIMARY KEY, c int REFERENCES child)""")
    pair.source("INSERT INTO parent SELECT generate_series(1, 5)")
    pair.target("INSERT INTO parent VALUES (1); INSERT INTO child VALUES (1, 1); INSERT INTO grandchild VALUES (1, 1)")
    res = pair.sync("--tables", "parent", "--cascade")
    assert res.returncode == 0, res.stderr
    assert "grandchild" in res.stderr
    assert pair.qt("SELECT (SELECT count(*) FROM child), (SELECT count(*) FROM grandchild), "
                   "(SELECT count(*) FROM parent)") == [(0, 0, 5)]
    fks = pair.qt("SELECT conname, convalidated FROM pg_constraint WHERE contype = 'f' ORDER BY conname")
    assert fks == [("child_p_fkey", True), ("grandchild_c_fkey", True)]


def test_table_selection_include_exclude_patterns(pair):
    pair.both("""CREATE TABLE user_a (id int); CREATE TABLE user_b (id int); CREATE TABLE logs (id int);
                 CREATE TABLE user_archive (id int); CREATE SCHEMA crm; CREATE TABLE crm.leads (id int)""")
    for t in ("user_a", "user_b", "logs", "user_archive", "crm.leads"):
        pair.source(f"INSERT INTO {t} VALUES (1)")
    res = pair.sync("--include", "user_*,crm.*", "--exclude", "*_archive", "--format", "json")
    assert res.returncode == 0, res.stderr
    assert sorted(t["table"] for t in json.loads(res.stdout)["tables"]) == ["crm.leads", "user_a", "user_b"]
    assert pair.qt("SELECT count(*) FROM logs") == [(0,)] and pair.qt("SELECT count(*) FROM user_archive") == [(0,)]
    res = pair.sync("--exclude", "logs,user_archive", "--tables", "user_a", "--format", "json")
    assert [t["table"] for t in json.loads(res.stdout)["tables"]] == ["user_a"]


def test_json_output_shape(pair):
    pair.both(USERS_DDL)
    fill_users(pair, 10)
    res = pair.sync("--format", "json", rules=RULES)
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    assert out["ok"] is True and out["total_rows"] == 10 and out["seconds"] > 0
    t = out["tables"][0]
    assert t["table"] == "users" and t["rows"] == 10
    assert t["anonymized_columns"] == ["email", "phone", "full_name", "ssn", "password_hash"]


def test_source_pg15_to_target_pg18(pg15_server, target_server, tmp_path):
    from conftest import Pair

    p = Pair(pg15_server, target_server, tmp_path)
    p.both(USERS_DDL + "CREATE TABLE ev (id bigint PRIMARY KEY, j jsonb, ts timestamptz, n numeric, a int[]);")
    fill_users(p, 100)
    p.source("""INSERT INTO ev SELECT i, jsonb_build_object('i', i, 's', '日本'), now() - i * interval '1 hour',
                i / 3.0, ARRAY[i, NULL] FROM generate_series(1, 100) i""")
    res = p.sync(rules=RULES)
    assert res.returncode == 0, res.stderr
    assert p.qt("SELECT count(*) FROM users WHERE ssn = '[REDACTED]'") == [(100,)]
    assert p.qt("SELECT bio FROM users ORDER BY id") == p.qs("SELECT bio FROM users ORDER BY id")
    assert p.qt("SELECT ev::text FROM ev ORDER BY id") == p.qs("SELECT ev::text FROM ev ORDER BY id")  # binary COPY


def test_non_superuser_target_role(pair, target_server):
    dbname = pair.dst.rsplit("/", 1)[1]
    pair.both("CREATE TABLE p (id int PRIMARY KEY); CREATE TABLE c (id int PRIMARY KEY, p int REFERENCES p)")
    pair.source("INSERT INTO p SELECT generate_series(1, 10); INSERT INTO c SELECT i, i FROM generate_series(1, 10) i")
    pair.target(f"""DO $$BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'loader') THEN
                    CREATE ROLE loader LOGIN; END IF; END$$;
                    GRANT CREATE ON DATABASE "{dbname}" TO loader;
                    ALTER TABLE p OWNER TO loader; ALTER TABLE c OWNER TO loader;
                    CREATE TABLE fired (n int); GRANT ALL ON fired TO loader;
                    CREATE FUNCTION f() RETURNS trigger LANGUAGE plpgsql AS
                    $f$BEGIN INSERT INTO fired VALUES (1); RETURN NEW; END$f$;
                    CREATE TRIGGER tr BEFORE INSERT ON c FOR EACH ROW EXECUTE FUNCTION f();""")
    target = target_server.uri(dbname, user="loader")
    res = run_cli("sync", "--from", pair.src, "--to", target, "--tables", "p,c", "--no-progress")
    assert res.returncode == 0, res.stderr
    assert pair.qt("SELECT count(*) FROM c") == [(10,)]
    assert pair.qt("SELECT count(*) FROM fired") == [(0,)]
    assert pair.qt("SELECT tgenabled FROM pg_trigger WHERE tgname = 'tr'") == [("O",)]


# -- refusals: a clear error, exit 2, and the target untouched --------------------------------------

@pytest.fixture
def guarded(pair):
    """users on both sides; the target holds a sentinel row that any write would remove."""
    pair.both(USERS_DDL + "CREATE TABLE small (id int PRIMARY KEY, n int, code varchar(20));")
    fill_users(pair, 20)
    pair.target("INSERT INTO users (email) VALUES ('sentinel@target')")
    yield pair
    assert pair.qt("SELECT email FROM users") == [("sentinel@target",)]


@pytest.mark.parametrize("rules, needles", [
    ("users:\n  - column: email\n    strategy: emial\n", ["unknown strategy 'emial'"]),
    ("userz:\n  - column: email\n    strategy: email\n", ["userz", "no such table"]),
    ("users:\n  - column: emali\n    strategy: email\n", ["users.emali", "no such column"]),
    ("small:\n  - column: n\n    strategy: redact\n", ["small.n"]),
    ("small:\n  - column: code\n    strategy: email\n", ["small.code", "character varying(20)"]),
    ("users:\n  - column: email\n    strategy: phone\n", ["users.email", "UNIQUE"]),
    ("users:\n  - column: email\n   strategy: email\n", ["anonymization.yaml:3"]),
])
def test_bad_rules_refused_before_touching_target(guarded, rules, needles):
    assert_clean_error(guarded.sync(rules=rules), *needles)


def test_all_rule_problems_reported_at_once(guarded):
    rules = ("users:\n  - column: emali\n    strategy: email\n  - column: phone\n    strategy: nope\n"
             "small:\n  - column: n\n    strategy: redact\n")
    res = guarded.sync(rules=rules)
    assert_clean_error(res, "emali", "nope", "small.n")


def test_missing_secret(guarded):
    res = guarded.sync(rules=RULES, env={"ANONYMIZATION_SECRET": None})
    assert_clean_error(res, "ANONYMIZATION_SECRET", "openssl rand")


def test_unknown_table_and_schema_drift(guarded):
    assert_clean_error(guarded.sync("--tables", "users,nope"), "unknown table 'nope'")
    guarded.target("ALTER TABLE small DROP COLUMN code; ALTER TABLE small ALTER COLUMN n TYPE text; "
                   "ALTER TABLE small ADD COLUMN must int NOT NULL")
    res = guarded.sync()
    assert_clean_error(res, "small.code: missing on the target", "small.n: type integer", "small.must")


def test_unreachable_server_and_unknown_environment(guarded, tmp_path):
    res = run_cli("sync", "--from", "postgresql://u:hunter2secret@127.0.0.1:1/db", "--to", guarded.dst)
    assert_clean_error(res, "cannot connect to the source")
    assert "hunter2secret" not in res.stderr + res.stdout
    (tmp_path / "envs").mkdir()
    (tmp_path / "envs" / "staging.yaml").write_text("name: staging\ndatabase:\n  database: x\n")
    res = run_cli("sync", "--from", "prodution", "--to", guarded.dst, "--env-dir", str(tmp_path / "envs"))
    assert_clean_error(res, "prodution", "staging")


def test_source_equal_target_refused(pair, source_server):
    pair.source("CREATE TABLE t (id int); INSERT INTO t VALUES (1)")
    same = pair.src.replace("127.0.0.1", "localhost")
    res = run_cli("sync", "--from", pair.src, "--to", same)
    assert_clean_error(res, "same database")
    assert pair.qs("SELECT count(*) FROM t") == [(1,)]


def test_environment_files_variables_and_source_port(pair, source_server, tmp_path):
    pair.both("CREATE TABLE t (id int)")
    pair.source("INSERT INTO t VALUES (7)")
    envs = tmp_path / "db" / "environments"
    envs.mkdir(parents=True)
    src_db = pair.src.rsplit("/", 1)[1]
    dst_db = pair.dst.rsplit("/", 1)[1]
    (envs / "production.yaml").write_text(
        f"name: production\ndatabase:\n  host: 127.0.0.1\n  port: 1\n  database: {src_db}\n"
        "  user: postgres\n  password: ${PROD_DB_PASSWORD}\n")
    port = pair.dst.split(":")[2].split("/")[0]
    (envs / "local.yaml").write_text(
        f"name: local\ndatabase:\n  host: localhost\n  port: {port}\n  database: {dst_db}\n  user: postgres\n")
    res = run_cli("sync", "--from", "production", "--to", "local", "--source-port", str(source_server.port),
                  cwd=tmp_path)
    assert_clean_error(res, "PROD_DB_PASSWORD")
    res = run_cli("sync", "--from", "production", "--to", "local", "--source-port", str(source_server.port),
                  cwd=tmp_path, env={"PROD_DB_PASSWORD": "pw-not-checked"})
    assert res.returncode == 0, res.stderr
    assert pair.qt("SELECT id FROM t") == [(7,)]
    res = run_cli("sync", "--from", "local", "--to", "production", cwd=tmp_path,
                  env={"PROD_DB_PASSWORD": "pw-not-checked"})
    assert_clean_error(res, "protected", "production.yaml")


def test_default_rules_file_with_anonymize(pair, tmp_path):
    pair.both(USERS_DDL)
    fill_users(pair, 5)
    (tmp_path / "db" / "sync").mkdir(parents=True)
    (tmp_path / "db" / "sync" / "anonymization.yaml").write_text(RULES)
    res = run_cli("sync", "--from", pair.src, "--to", pair.dst, "--anonymize", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert pair.qt("SELECT count(*) FROM users WHERE ssn = '[REDACTED]'") == [(5,)]


@pytest.mark.parametrize("parallel", ["1", "4"])
def test_split_table_loaded_in_slices(pair, parallel):
    """A table above --slice-size is copied as ctid page ranges in parallel; every row arrives once."""
    pair.both(USERS_DDL)
    fill_users(pair, 20000)
    pair.source("ANALYZE users")
    pair.target("INSERT INTO users (email) VALUES ('old@target')")
    res = pair.sync("--slice-size", "1", "--parallel", parallel, "--format", "json", "--dry-run", rules=RULES)
    assert "split into" in res.stderr and "slices" in res.stderr, res.stderr
    res = pair.sync("--slice-size", "1", "--parallel", parallel, "--format", "json", rules=RULES)
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["tables"][0]["rows"] == 20000
    assert pair.qt("SELECT count(*), count(DISTINCT id), count(DISTINCT email) FROM users") == [(20000, 20000, 20000)]
    assert pair.qt("SELECT bio FROM users ORDER BY id") == pair.qs("SELECT bio FROM users ORDER BY id")
    assert pair.qt("SELECT count(*) FROM pg_indexes WHERE tablename = 'users'") == [(2,)]


def test_split_table_without_key_uses_ctid_ranges(pair):
    pair.both("CREATE TABLE nokey (n int, v text)")
    pair.source("INSERT INTO nokey SELECT i, repeat(md5(i::text), 4) FROM generate_series(1, 30000) i; ANALYZE nokey")
    res = pair.sync("--slice-size", "1", "--parallel", "3", "--dry-run")
    assert "slices" in res.stderr, res.stderr
    res = pair.sync("--slice-size", "1", "--parallel", "3")
    assert res.returncode == 0, res.stderr
    assert pair.qt("SELECT count(*), count(DISTINCT n), sum(n) FROM nokey") == [(30000, 30000, 30000 * 30001 // 2)]


def test_foreign_key_to_an_unsynced_table_is_validated_and_reported(pair):
    pair.both("CREATE TABLE users (id int PRIMARY KEY); CREATE TABLE orders (id int PRIMARY KEY, "
              "user_id int CONSTRAINT orders_user_fk REFERENCES users)")
    pair.source("INSERT INTO users SELECT generate_series(1, 10); "
                "INSERT INTO orders SELECT i, 1 + i % 10 FROM generate_series(1, 50) i")
    pair.target("INSERT INTO users VALUES (1)")  # the target's users lack 2..10
    res = pair.sync("--tables", "orders", "--format", "json")
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    assert [(c["name"], c["valid"]) for c in out["constraints"] if not c["valid"]] == [("orders_user_fk", False)]
    assert "orders_user_fk is violated" in res.stderr
    assert pair.qt("SELECT convalidated FROM pg_constraint WHERE conname = 'orders_user_fk'") == [(False,)]
    assert pair.qt("SELECT count(*) FROM orders") == [(50,)]


def test_more_strategies_end_to_end(pair):
    """Typed columns through the real pipeline: date_shift keyed per entity, uuid, ip, noise, arrays, json."""
    pair.both("""CREATE TABLE p (id int PRIMARY KEY, patient text, born date, seen timestamptz, u uuid, ip inet,
                 amount numeric(10,2), emails text[], doc jsonb)""")
    pair.source("""INSERT INTO p SELECT i, 'pat' || (i % 7), date '1980-01-01' + i, timestamptz '2024-01-01' + i * interval '1 h',
                   md5(i::text)::uuid, ('10.1.2.' || (i % 250))::inet, i * 1.5,
                   ARRAY['a' || i || '@x.org', NULL], jsonb_build_object('email', 'j' || i || '@y.org', 'n', i)
                   FROM generate_series(1, 100) i""")
    rules = """p:
  - column: born
    strategy: date_shift
    days: 30
    per_row_key: patient
  - column: u
    strategy: uuid
  - column: ip
    strategy: ip
  - column: amount
    strategy: noise
    relative: 0.1
  - column: emails
    strategy: email
  - column: doc
    strategy: json
    paths:
      "$.email": email
"""
    res = pair.sync(rules=rules)
    assert res.returncode == 0, res.stderr
    src = {r[0]: r for r in pair.qs("SELECT * FROM p")}
    shifts: dict[str, int] = {}
    for r in pair.qt("SELECT * FROM p"):
        s = src[r[0]]
        shift = (r[2] - s[2]).days
        assert 0 < abs(shift) <= 30
        assert shifts.setdefault(r[1], shift) == shift  # one shift per patient
        assert r[4] != s[4] and str(r[5]).startswith("10.1.2.")
        assert abs(r[6] - s[6]) <= s[6] / 10 + 1
        assert r[7][0].startswith("user_") and r[7][1] is None
        assert r[8]["email"].startswith("user_") and r[8]["n"] == s[8]["n"]


def test_rules_propagate_through_composite_keys_and_chains(pair):
    pair.both("""CREATE TABLE acct (email text PRIMARY KEY);
                 CREATE TABLE inbox (owner text PRIMARY KEY REFERENCES acct);
                 CREATE TABLE msg (id int PRIMARY KEY, box text REFERENCES inbox);
                 CREATE TABLE org (code text, email text, PRIMARY KEY (code, email));
                 CREATE TABLE member (id int PRIMARY KEY, code text, email text,
                                      FOREIGN KEY (code, email) REFERENCES org)""")
    pair.source("""INSERT INTO acct SELECT 'a' || i || '@x.org' FROM generate_series(1, 20) i;
                   INSERT INTO inbox SELECT email FROM acct;
                   INSERT INTO msg SELECT i, 'a' || (1 + i % 20) || '@x.org' FROM generate_series(1, 60) i;
                   INSERT INTO org SELECT 'c' || (i % 3), 'o' || i || '@y.org' FROM generate_series(1, 15) i;
                   INSERT INTO member SELECT row_number() OVER (), code, email FROM org, generate_series(1, 2)""")
    rules = "acct:\n  - column: email\n    strategy: email\norg:\n  - column: email\n    strategy: hash\n"
    res = pair.sync("--dry-run", rules=rules)
    assert "box: email (propagated from inbox.owner)" in res.stderr, res.stderr
    res = pair.sync(rules=rules)
    assert res.returncode == 0, res.stderr
    assert pair.qt("SELECT count(*) FROM msg JOIN inbox ON box = owner JOIN acct ON owner = acct.email") == [(60,)]
    assert pair.qt("SELECT count(*) FROM msg WHERE box LIKE 'user\\_%'") == [(60,)]
    assert pair.qt("SELECT count(*) FROM member JOIN org USING (code, email)") == [(30,)]
    assert pair.qt("SELECT count(*) FROM member WHERE email LIKE '%@y.org'") == [(0,)]
    bad = rules + "msg:\n  - column: box\n    strategy: hash\n"
    assert_clean_error(pair.sync(rules=bad), "msg.box", "differs from the rule")


def test_binary_copy_for_tables_without_rules(pair):
    """A table with no rules and the same built-in types on both sides travels in COPY's binary
    format, values exact; so does a table ruled on text only; a type of its own (enum) or a type change stays in text."""
    pair.both("""CREATE TYPE mood AS ENUM ('ok', 'sad');
        CREATE TABLE b (id bigint PRIMARY KEY, n numeric, f float8, r real, ts timestamptz, d date, iv interval,
                        j jsonb, js json, a int[], t text[], by bytea, u uuid, ip inet, ok bool, ch char(3), v varchar(5));
        CREATE TABLE e (id int PRIMARY KEY, m mood);""")
    pair.source("CREATE TABLE w (id int PRIMARY KEY, n varchar(10))")
    pair.target("CREATE TABLE w (id int PRIMARY KEY, n text)")
    pair.both(USERS_DDL)
    fill_users(pair, 50)
    pair.source("""INSERT INTO b SELECT i, CASE i % 4 WHEN 0 THEN 'NaN' WHEN 1 THEN NULL ELSE i / 7.0 END,
            CASE i % 3 WHEN 0 THEN 'Infinity' WHEN 1 THEN 0.1 + i ELSE -0.0 END, i / 3.0,
            CASE i % 5 WHEN 0 THEN 'infinity'::timestamptz ELSE now() - i * interval '1 day 1 microsecond' END,
            '2000-01-01'::date + i, make_interval(months => i, secs => i / 7.0),
            jsonb_build_object('k', i, 's', E'tab\\there "q" 日本'), '{"dup": 1, "dup": 2}',
            ARRAY[i, NULL, -i], ARRAY['a b', NULL, E'back\\\\slash'], decode(md5(i::text), 'hex'),
            md5(i::text)::uuid, '10.0.0.1/8', i % 2 = 0, 'ab', 'é日本'
        FROM generate_series(1, 300) i;
        INSERT INTO e VALUES (1, 'sad'), (2, NULL); INSERT INTO w SELECT i, 'é' || i FROM generate_series(1, 10) i""")
    plan = pair.sync("--dry-run", "--format", "json", rules=RULES)
    assert "binary COPY" in plan.stderr
    binary = {t["name"]: [u["binary"] for u in t["units"]] for t in json.loads(plan.stdout)["tables"]}
    assert binary == {"b": [True], "e": [False], "w": [False], "users": [True]}  # users: rules on text only
    res = pair.sync("--format", "json", rules=RULES)
    assert res.returncode == 0, res.stderr
    assert {t["table"]: t["rows"] for t in json.loads(res.stdout)["tables"]}["b"] == 300
    for sql in ("SELECT b::text FROM b ORDER BY id", "SELECT id, m::text FROM e ORDER BY id", "SELECT * FROM w ORDER BY id",
                "SELECT bio FROM users ORDER BY id"):
        assert pair.qt(sql) == pair.qs(sql), sql


@pytest.mark.parametrize("parallel", ["1", "2"])
def test_each_table_indexed_and_analyzed_as_soon_as_loaded(pair, parallel):
    """Indexes are rebuilt and statistics gathered per table while other tables load: at the end every
    table, split or not, has its indexes and keys back, statistics, and nothing is left pending."""
    pair.both(USERS_DDL + """CREATE TABLE big (id int PRIMARY KEY, u bigint REFERENCES users, v text);
        CREATE INDEX big_v ON big (v); CREATE TABLE small (id int PRIMARY KEY, v text);""")
    fill_users(pair, 300)
    pair.source("""INSERT INTO big SELECT i, 1 + i % 300, md5(i::text) FROM generate_series(1, 20000) i;
        INSERT INTO small SELECT i, md5(i::text) FROM generate_series(1, 50) i; ANALYZE""")
    indexes = "SELECT indexrelid::regclass::text FROM pg_index WHERE indrelid = ANY('{big,small,users}'::regclass[]) ORDER BY 1"
    before = pair.qt(indexes)
    res = pair.sync("--slice-size", "1", "--parallel", parallel, rules=RULES)
    assert res.returncode == 0, res.stderr
    assert pair.qt(indexes) == before and len(before) == 5
    assert pair.qt("SELECT count(*) FROM _confiture_fast.pending_ddl") == [(0,)]
    assert pair.qt("SELECT convalidated FROM pg_constraint WHERE conname = 'big_u_fkey'") == [(True,)]
    analyzed = pair.qt("SELECT tablename, count(*) > 0 FROM pg_stats WHERE schemaname = 'public' GROUP BY 1 ORDER BY 1")
    assert analyzed == [("big", True), ("small", True), ("users", True)]


def test_index_that_cannot_be_rebuilt_is_reported_kept_and_rebuilt_later(pair):
    """A UNIQUE index the anonymized rows break (allow_duplicates on a unique column): the sync fails
    clearly, rebuilds everything else (the foreign key into the same table included), keeps the
    index's definition recorded, and a run with a unique strategy brings it back."""
    pair.both("""CREATE TABLE users (id int PRIMARY KEY, email text CONSTRAINT users_email_key UNIQUE);
        CREATE TABLE orders (id int PRIMARY KEY, user_id int CONSTRAINT orders_user_fk REFERENCES users)""")
    pair.source("""INSERT INTO users SELECT i, 'u' || i || '@corp.example' FROM generate_series(1, 100) i;
        INSERT INTO orders SELECT i, 1 + i % 100 FROM generate_series(1, 300) i""")
    res = pair.sync("--format", "json",
                    rules="users:\n  - column: email\n    strategy: redact\n    allow_duplicates: true\n")
    assert res.returncode == 1 and "Traceback" not in res.stderr, res.stderr
    assert "could not be rebuilt: users: users_email_key" in res.stderr and "use a unique strategy" in res.stderr
    assert "corp.example" not in res.stderr + res.stdout and "REDACTED" not in res.stderr
    out = json.loads(res.stdout)
    assert [(c["name"], c["rebuilt"]) for c in out["constraints"] if not c["rebuilt"]] == [("users_email_key", False)]
    assert pair.qt("SELECT name FROM _confiture_fast.pending_ddl") == [("users_email_key",)]
    assert pair.qt("SELECT conname, convalidated FROM pg_constraint WHERE contype IN ('f', 'p', 'u') "
                   "AND connamespace = 'public'::regnamespace ORDER BY 1") == \
        [("orders_pkey", True), ("orders_user_fk", True), ("users_pkey", True)]
    res = pair.sync(rules="users:\n  - column: email\n    strategy: email\n")
    assert res.returncode == 0, res.stderr
    assert pair.qt("SELECT count(*) FROM _confiture_fast.pending_ddl") == [(0,)]
    assert pair.qt("SELECT count(DISTINCT email) FROM users") == [(100,)]
    assert pair.qt("SELECT conname FROM pg_constraint WHERE contype = 'u' AND connamespace = 'public'::regnamespace") == [("users_email_key",)]
