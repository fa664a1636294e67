"""`sync --incremental` (issue 16): after changes on the source, an incremental run into a target
leaves it equal, row for row, to a fresh full sync into a second target at the same moment."""

from __future__ import annotations

import itertools
import json
import os

import psycopg
import pytest

from conftest import run_cli

_names = itertools.count()
RULES = """
users:
  - {column: email, strategy: email}
  - {column: name, strategy: name}
"""

SCHEMA = """
CREATE TABLE users (id int PRIMARY KEY, email text UNIQUE, name text, score int);
CREATE TABLE orders (id bigserial PRIMARY KEY, user_id int REFERENCES users(id), amount numeric(10,2), note text);
CREATE INDEX orders_user ON orders (user_id);
"""


def fill(pair, n=300):
    pair.both(SCHEMA)
    pair.source(f"""INSERT INTO users SELECT g, 'u' || g || '@example.com', 'User ' || g, g FROM generate_series(1, {n}) g;
        INSERT INTO orders (user_id, amount, note) SELECT 1 + g % {n}, g * 1.5, 'n' || g FROM generate_series(1, {2 * n}) g""")


@pytest.fixture
def fresh(pair, target_server):
    """A second target database, synced in full from the same source: the reference."""
    uri = target_server.create_database(f"ref{next(_names)}_{os.getpid()}")

    def sync(*args, rules=RULES):
        p = pair.rules(rules)
        return run_cli("sync", "--from", pair.src, "--to", uri, "--no-progress", "--create-schema", "--anonymize-config", str(p), *args)
    return uri, sync


def rows(uri: str, table: str) -> list[tuple]:
    with psycopg.connect(uri) as c:
        return c.execute(f"SELECT * FROM {table} ORDER BY 1").fetchall()


def incremental(pair, *args, rules=RULES):
    res = pair.sync("--incremental", "--format", "json", *args, rules=rules)
    assert res.returncode == 0, res.stderr
    return {t["table"]: t for t in json.loads(res.stdout)["tables"]}


def assert_same(pair, fresh, *tables, rules=RULES):
    uri, sync = fresh
    res = sync(rules=rules)
    assert res.returncode == 0, res.stderr
    for t in tables:
        assert rows(pair.dst, t) == rows(uri, t), t


def test_updates_inserts_deletes_are_copied_alone_and_equal_a_full_sync(pair, fresh):
    fill(pair)

    assert pair.sync(rules=RULES).returncode == 0
    pair.source("""UPDATE users SET name = 'Changed', email = 'new7@example.com' WHERE id = 7;
        UPDATE users SET score = score + 1 WHERE id = 9; UPDATE users SET score = score + 1 WHERE id = 9;
        DELETE FROM orders WHERE user_id IN (11, 12); DELETE FROM users WHERE id IN (11, 12);
        INSERT INTO users VALUES (1000, 'x@example.com', 'New', 1), (11, 'back@example.com', 'Back', 2);
        INSERT INTO orders (user_id, amount, note) VALUES (1000, 1, 'new')""")
    got = incremental(pair)
    assert got["users"]["mode"] == "incremental", got
    assert (got["users"]["inserted"], got["users"]["updated"], got["users"]["deleted"]) == (1, 3, 1)
    assert got["orders"]["mode"] == "incremental"
    assert (got["orders"]["inserted"], got["orders"]["deleted"]) == (1, 4)
    assert_same(pair, fresh, "users", "orders")
    # indexes stayed in place: no drop and rebuild for a small change
    assert pair.qt("SELECT count(*) FROM pg_indexes WHERE tablename IN ('users', 'orders')") == [(4,)]
    again = incremental(pair)
    assert {(t["mode"], t["inserted"], t["updated"], t["deleted"]) for t in again.values()} == {("incremental", 0, 0, 0)}


def modes(got: dict) -> dict[str, tuple]:
    return {n: (t["mode"], t["reason"]) for n, t in got.items()}


def test_a_table_without_a_key_a_changed_rule_and_a_changed_secret_are_reloaded_in_full(pair, fresh):
    fill(pair)
    pair.both("CREATE TABLE logs (at int, msg text)")
    pair.source("INSERT INTO logs SELECT g, 'm' || g FROM generate_series(1, 50) g")
    assert pair.sync(rules=RULES).returncode == 0
    pair.source("UPDATE logs SET msg = 'x' WHERE at < 5; UPDATE users SET name = 'N' WHERE id < 3")
    got = incremental(pair)
    assert got["logs"]["mode"] == "full" and "no primary key" in got["logs"]["reason"]
    assert got["users"]["mode"] == "incremental" and got["orders"]["mode"] == "incremental"
    other = RULES.replace("strategy: name}", "strategy: hash}")
    got = incremental(pair, rules=other)
    assert got["users"]["mode"] == "full" and "rules changed" in got["users"]["reason"], got["users"]
    assert got["orders"]["mode"] == "incremental"
    assert_same(pair, fresh, "users", "orders", "logs", rules=other)
    got = incremental(pair, rules=other)  # recorded again by the full reload
    assert got["users"]["mode"] == "incremental"
    res = pair.sync("--incremental", "--format", "json", rules=other,
                    env={"ANONYMIZATION_SECRET": "another-secret-0123456789abcdef"})
    assert res.returncode == 0, res.stderr
    got = {t["table"]: t for t in json.loads(res.stdout)["tables"]}
    assert got["users"]["mode"] == "full" and "secret changed" in got["users"]["reason"]
    assert "--incremental:" in pair.sync("--incremental", rules=other).stderr


def test_rows_frozen_after_the_first_sync_are_not_copied_again(pair, fresh):
    fill(pair)
    assert pair.sync(rules=RULES).returncode == 0
    pair.source("VACUUM FREEZE users")
    pair.source("VACUUM FREEZE orders")
    assert pair.qs("SELECT count(*) FROM users WHERE xmin::text::bigint > 2 AND age(xmin) < 2147483647") == [(300,)]
    pair.source("UPDATE users SET score = -1 WHERE id = 5")
    got = incremental(pair)
    assert (got["users"]["inserted"], got["users"]["updated"], got["users"]["deleted"]) == (0, 1, 0)
    assert (got["orders"]["inserted"], got["orders"]["updated"], got["orders"]["deleted"]) == (0, 0, 0)
    assert_same(pair, fresh, "users", "orders")


def test_a_partitioned_table_with_rows_moving_between_partitions(pair, fresh):
    ddl = """CREATE TABLE ev (id int, region text, email text, PRIMARY KEY (id, region)) PARTITION BY LIST (region);
             CREATE TABLE ev_eu PARTITION OF ev FOR VALUES IN ('eu');
             CREATE TABLE ev_us PARTITION OF ev FOR VALUES IN ('us');
             CREATE TABLE ev_asia PARTITION OF ev FOR VALUES IN ('asia');"""
    pair.both(ddl)
    pair.source("INSERT INTO ev SELECT i, CASE WHEN i % 2 = 0 THEN 'eu' ELSE 'us' END, 'p' || i || '@x.org' "
                "FROM generate_series(1, 400) i")  # 12 rows in the window: 3%, under LARGE_SHARE
    rules = "ev:\n  - column: email\n    strategy: email\n"
    assert pair.sync(rules=rules).returncode == 0
    pair.source("UPDATE ev SET region = 'asia' WHERE id <= 10; UPDATE ev SET email = 'z@x.org' WHERE id = 50;"
                "DELETE FROM ev WHERE id BETWEEN 100 AND 104; INSERT INTO ev VALUES (500, 'us', 'n@x.org')")
    got = incremental(pair, rules=rules)
    assert got["ev"]["mode"] == "incremental", got
    assert (got["ev"]["inserted"], got["ev"]["updated"], got["ev"]["deleted"]) == (11, 1, 15)
    assert_same(pair, fresh, "ev", rules=rules)
    assert pair.qt("SELECT count(*) FROM ONLY ev_asia") == [(10,)]


PROPAGATED = "acct:\n  - column: email\n    strategy: email\n"


def test_a_pseudonymized_key_and_the_foreign_keys_it_propagates_to(pair, fresh):
    """The key itself is anonymized (and propagated to the referencing column): its keys are
    compared and deleted as the target has them, pseudonyms included."""
    pair.both("""CREATE TABLE acct (email text PRIMARY KEY, plan text);
                 CREATE TABLE msg (id int PRIMARY KEY, box text REFERENCES acct, body text)""")
    pair.source("""INSERT INTO acct SELECT 'a' || i || '@x.org', 'free' FROM generate_series(1, 40) i;
                   INSERT INTO msg SELECT i, 'a' || (1 + i % 40) || '@x.org', 'b' || i FROM generate_series(1, 120) i""")
    assert pair.sync(rules=PROPAGATED).returncode == 0
    pair.source("""DELETE FROM msg WHERE box = 'a3@x.org'; DELETE FROM acct WHERE email = 'a3@x.org';
                   UPDATE acct SET plan = 'pro' WHERE email = 'a4@x.org';
                   INSERT INTO acct VALUES ('new@x.org', 'free'); INSERT INTO msg VALUES (1000, 'new@x.org', 'hi');
                   UPDATE msg SET box = 'a5@x.org' WHERE id = 7""")
    got = incremental(pair, rules=PROPAGATED)
    assert modes(got) == {"acct": ("incremental", None), "msg": ("incremental", None)}
    assert (got["acct"]["inserted"], got["acct"]["updated"], got["acct"]["deleted"]) == (1, 1, 1)
    assert (got["msg"]["inserted"], got["msg"]["updated"], got["msg"]["deleted"]) == (1, 1, 3)
    assert_same(pair, fresh, "acct", "msg", rules=PROPAGATED)
    assert pair.qt("SELECT count(*) FROM msg LEFT JOIN acct ON box = email WHERE acct.email IS NULL") == [(0,)]
    assert pair.qt("SELECT convalidated FROM pg_constraint WHERE conname = 'msg_box_fkey'") == [(True,)]


def test_dry_run_estimates_and_writes_nothing(pair):
    fill(pair)
    assert pair.sync(rules=RULES).returncode == 0
    pair.source("UPDATE users SET score = 0 WHERE id <= 4; DELETE FROM orders WHERE id <= 3")
    before = pair.qt("SELECT * FROM users ORDER BY id")
    res = pair.sync("--incremental", "--dry-run", "--format", "json", rules=RULES)
    assert res.returncode == 0, res.stderr
    est = {c["table"]: c for c in json.loads(res.stdout)["incremental"]}
    assert est["users"]["mode"] == "incremental" and est["users"]["changed_rows"] == 4
    assert est["orders"]["target_rows"] - est["orders"]["source_rows"] == 3
    assert "users: incremental: 4 rows to copy" in res.stderr
    assert pair.qt("SELECT * FROM users ORDER BY id") == before


def test_concurrent_writes_during_the_run_are_left_to_the_next_one(pair, fresh):
    """A transaction committed on the source while the incremental run reads is not in its snapshot:
    the next run copies it (its xmin is past the horizon recorded)."""
    fill(pair, 2000)
    assert pair.sync(rules=RULES).returncode == 0
    pair.source("UPDATE users SET score = 1 WHERE id <= 100")
    lock = psycopg.connect(pair.dst, autocommit=True)
    lock.execute("BEGIN; LOCK TABLE orders IN SHARE MODE")  # holds the run on orders, after its snapshot
    import subprocess
    import sys
    import time
    env = {**os.environ, "ANONYMIZATION_SECRET": "test-secret-0123456789abcdef"}
    proc = subprocess.Popen([sys.executable, "-m", "confiture_fast", "sync", "--from", pair.src, "--to", pair.dst,
                             "--no-progress", "--incremental", "--format", "json",
                             "--anonymize-config", str(pair.rules(RULES))], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    for _ in range(600):
        if pair.qt("SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation "
                   "WHERE c.relname = 'orders' AND NOT l.granted")[0][0]:
            break
        time.sleep(0.1)
    pair.source("UPDATE users SET name = 'during' WHERE id <= 50; INSERT INTO orders (user_id, amount) VALUES (1, 9)")
    lock.execute("COMMIT")
    lock.close()
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    assert pair.qt("SELECT count(*) FROM users WHERE name = 'during'") == [(0,)]  # not in its snapshot
    got = incremental(pair)
    assert got["users"]["updated"] >= 50 and got["orders"]["inserted"] == 1
    assert_same(pair, fresh, "users", "orders")


def test_a_forged_state_record_is_not_used(pair, fresh):
    fill(pair)
    assert pair.sync(rules=RULES).returncode == 0
    pair.source("UPDATE users SET score = 2 WHERE id = 1")
    pair.target("UPDATE _confiture_fast.sync_state SET record = convert_to(replace(convert_from(record, 'UTF8'), "
                "'\"horizon\":', '\"horizon\":9'), 'UTF8') WHERE table_name = 'users'")
    got = incremental(pair)
    assert got["users"]["mode"] == "full" and "does not verify" in got["users"]["reason"]
    assert_same(pair, fresh, "users", "orders")


def test_a_trigger_planted_on_the_state_table_is_refused(pair):
    fill(pair)
    assert pair.sync(rules=RULES).returncode == 0
    pair.target("CREATE FUNCTION public.f() RETURNS trigger LANGUAGE plpgsql AS 'BEGIN RETURN NEW; END';"
                "CREATE TRIGGER t BEFORE INSERT ON _confiture_fast.sync_state FOR EACH ROW EXECUTE FUNCTION public.f()")
    res = pair.sync("--incremental", rules=RULES)
    assert res.returncode == 2 and "trigger t on _confiture_fast.sync_state" in res.stderr, res.stderr


def test_checkpoints_and_resume(pair, fresh):
    """A table's state is recorded as soon as it is loaded, so tables an interrupted run completed and
    --resume skipped refresh incrementally later; an incremental run's refreshed tables are in its
    checkpoint, and --resume skips them."""
    fill(pair)
    pair.both("CREATE TABLE logs (at int, msg text)")
    pair.source("INSERT INTO logs SELECT g, 'm' || g FROM generate_series(1, 50) g")
    pair.target("ALTER TABLE logs ADD CONSTRAINT small CHECK (at < 40)")
    ck = str(pair.tmp / "ck.json")
    res = pair.sync("--parallel", "1", "--checkpoint", ck, rules=RULES)
    assert res.returncode == 1 and "logs" in res.stderr, res.stderr
    assert set(json.load(open(ck))["completed_tables"]) == {"users", "orders"}
    pair.target("ALTER TABLE logs DROP CONSTRAINT small")
    res = pair.sync("--resume", "--checkpoint", ck, rules=RULES)
    assert res.returncode == 0, res.stderr
    pair.source("UPDATE users SET score = 5 WHERE id = 3")
    got = incremental(pair)
    assert modes(got)["users"] == ("incremental", None) and modes(got)["orders"] == ("incremental", None)
    assert got["logs"]["mode"] == "full"

    pair.target("ALTER TABLE logs ADD CONSTRAINT small CHECK (at < 40) NOT VALID")
    pair.source("UPDATE users SET score = 6 WHERE id = 4")
    ck2 = str(pair.tmp / "ck2.json")
    res = pair.sync("--incremental", "--checkpoint", ck2, "--format", "json", rules=RULES)
    assert res.returncode == 1, res.stderr
    got = {t["table"]: t for t in json.loads(res.stdout)["tables"]}
    assert got["users"]["status"] == "synced" and got["logs"]["status"] == "failed"
    assert {"users", "orders"} <= set(json.load(open(ck2))["completed_tables"])
    pair.target("ALTER TABLE logs DROP CONSTRAINT small")
    res = pair.sync("--incremental", "--resume", "--checkpoint", ck2, "--format", "json", rules=RULES)
    assert res.returncode == 0, res.stderr
    got = {t["table"]: t for t in json.loads(res.stdout)["tables"]}
    assert got["users"]["status"] == "skipped" and got["logs"]["status"] == "synced"
    assert_same(pair, fresh, "users", "orders", "logs")


def test_a_subset_is_reloaded_and_the_tables_it_copies_whole_refresh(pair, fresh):
    fill(pair)
    pair.both("CREATE TABLE kinds (id int PRIMARY KEY, label text)")
    pair.source("INSERT INTO kinds SELECT g, 'k' || g FROM generate_series(1, 20) g")
    where = ("--where", "users: id <= 100")
    assert pair.sync(*where, rules=RULES).returncode == 0
    pair.source("UPDATE kinds SET label = 'x' WHERE id = 1; UPDATE users SET score = 0 WHERE id = 2")
    got = incremental(pair, *where)
    assert got["users"]["mode"] == "full" and "subset" in got["users"]["reason"]
    assert got["orders"]["mode"] == "full" and "subset" in got["orders"]["reason"]
    assert (got["kinds"]["mode"], got["kinds"]["updated"]) == ("incremental", 1)
    uri, sync = fresh
    assert sync(*where).returncode == 0
    for t in ("users", "orders", "kinds"):
        assert rows(pair.dst, t) == rows(uri, t), t
