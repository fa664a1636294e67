"""The command line as people and scripts meet it: dry run, JSON, audit log, verbosity, errors, the
live display in a real terminal."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time

import pytest

from conftest import run_cli
from test_sync import RULES, USERS_DDL, assert_clean_error, fill_users


@pytest.fixture
def shop(pair):
    pair.both(USERS_DDL + "CREATE TABLE orders (id int PRIMARY KEY, user_id bigint REFERENCES users, "
                          "total numeric, doubled numeric GENERATED ALWAYS AS (total * 2) STORED);")
    pair.target("ALTER TABLE orders ADD COLUMN note text DEFAULT 'x'")
    fill_users(pair, 300)
    pair.source("INSERT INTO orders SELECT i, 1 + i % 300, i FROM generate_series(1, 600) i; ANALYZE")
    pair.target("INSERT INTO users (email) VALUES ('sentinel@target')")
    return pair


def test_dry_run_prints_the_plan_and_writes_nothing(shop):
    res = shop.sync("--dry-run", "--format", "json", rules=RULES)
    assert res.returncode == 0, res.stderr
    err = res.stderr
    for needle in ("the plan (nothing was written)", "users", "orders", "email: email", "ssn: redact",
                   "generated, computed on the target: doubled", "only on the target (default/NULL): note",
                   "will empty (TRUNCATE ONLY, never CASCADE): ", "session_replication_role",
                   "users_email_key", "orders_user_id_fkey"):
        assert needle in err, (needle, err)
    assert shop.qt("SELECT email FROM users") == [("sentinel@target",)]
    plan = json.loads(res.stdout)  # the machine-readable plan, without the keys derived from the secret
    rules = [r for t in plan["tables"] for r in t["rules"]]
    assert {r["strategy"] for r in rules} >= {"email", "hash"} and all("key" not in r for r in rules)


def test_dry_run_shows_propagated_rules(pair):
    pair.both("CREATE TABLE acct (email text PRIMARY KEY); CREATE TABLE msg (id int, sender text REFERENCES acct)")
    res = pair.sync("--dry-run", rules="acct:\n  - column: email\n    strategy: email\n")
    assert res.returncode == 0, res.stderr
    assert "sender: email (propagated from acct.email)" in res.stderr


def test_json_stdout_only_and_audit_log(shop, tmp_path):
    log = tmp_path / "audit.jsonl"
    res = shop.sync("--format", "json", "--log-file", str(log), rules=RULES)
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)  # nothing but the JSON on stdout
    assert {t["table"]: t["status"] for t in out["tables"]} == {"users": "synced", "orders": "synced"}
    assert all({"rows", "bytes", "seconds", "anonymized_columns", "status"} <= set(t) for t in out["tables"])
    bad = shop.sync("--log-file", str(log), rules="users:\n  - column: nope\n    strategy: email\n")
    assert bad.returncode == 2
    records = [json.loads(line) for line in log.read_text().splitlines()]
    assert [r["event"] for r in records] == ["start", "end", "start", "end"]
    start, end = records[0], records[1]
    assert start["user"] and start["host"] and start["anonymize"] is True and len(start["rules_fingerprint"]) == 16
    assert end["outcome"] == "ok" and end["total_rows"] == 900 and end["source"].startswith("127.0.0.1:")
    assert records[3]["outcome"] == "error" and "nope" in records[3]["error"]
    text = log.read_text()
    assert "postgres@" not in text and "test-secret" not in text


def test_quiet_and_verbose(shop):
    q = shop.sync("-q", rules=RULES)
    assert q.returncode == 0 and q.stderr.strip() == "", q.stderr
    v = shop.sync("-v", rules=RULES)
    assert v.returncode == 0
    for phase in ("read both catalogs and plan", "prepare the target", "load:", "rebuild indexes and constraints",
                  "reset sequences and ANALYZE"):
        assert phase in v.stderr, (phase, v.stderr)


def test_version_help_and_no_color(pair):
    res = run_cli("--version")
    assert res.returncode == 0 and res.stdout.startswith("confiture-fast ")
    res = run_cli("sync", "--help")
    for flag in ("--from", "--to", "--anonymize", "--tables", "--exclude", "--include", "--checkpoint", "--resume",
                 "--show-progress", "--parallel", "--batch-size", "--dry-run", "--format", "--log-file"):
        assert flag in res.stdout
    assert "confiture-fast sync --from prod --to local --tables users,posts" in res.stdout
    pair.both("CREATE TABLE t (id int)")
    res = pair.sync("--show-progress", env={"NO_COLOR": "1", "TERM": "xterm"})
    assert res.returncode == 0 and "\x1b[3" not in res.stderr


def test_connection_errors_name_the_fix(pair, target_server):
    db = pair.dst.rsplit("/", 1)[1]
    with_db = target_server.uri("no_such_db")
    res = run_cli("sync", "--from", with_db, "--to", pair.dst)
    assert_clean_error(res, "cannot connect to the source", "no_such_db", "createdb")
    pair.target("CREATE ROLE pw_user LOGIN PASSWORD 'right-password'")
    # trust authentication lets any password in; a role that cannot log in shows the server's refusal
    pair.target("CREATE ROLE nologin_user NOLOGIN")
    res = run_cli("sync", "--from", pair.src, "--to", target_server.uri(db, user="nologin_user"))
    assert_clean_error(res, "cannot connect to the target", "not permitted to log in")
    res = run_cli("sync", "--from", pair.src, "--to", "postgresql://x@127.0.0.1:1/db")
    assert_clean_error(res, "Connection refused", "server is running")


def test_permission_denied_on_a_table(pair, source_server):
    db = pair.src.rsplit("/", 1)[1]
    pair.both("CREATE TABLE open_t (id int); CREATE TABLE secret_t (id int)")
    pair.source("DO $$BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'reader') THEN "
                "CREATE ROLE reader LOGIN; END IF; END$$; GRANT SELECT ON open_t TO reader")
    res = run_cli("sync", "--from", source_server.uri(db, user="reader"), "--to", pair.dst)
    assert_clean_error(res, "secret_t: permission denied on the source", "GRANT SELECT")


@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")
def test_live_display_in_a_real_terminal(pair, tmp_path):
    """The bars are drawn in a real terminal (tmux), while the sync runs."""
    pair.both("CREATE TABLE a (id int, v text); CREATE TABLE b (id int, v text);"
              "CREATE FUNCTION slow(int) RETURNS boolean LANGUAGE sql IMMUTABLE AS "
              "$$ SELECT pg_sleep(0.002) IS NOT NULL $$;")
    pair.target("ALTER TABLE a ADD CHECK (slow(id)); ALTER TABLE b ADD CHECK (slow(id))")
    pair.source("INSERT INTO a SELECT i, md5(i::text) FROM generate_series(1, 3000) i;"
                "INSERT INTO b SELECT i, md5(i::text) FROM generate_series(1, 2000) i; ANALYZE")
    session = f"cf{os.getpid()}"
    screen = tmp_path / "screen.txt"
    cmd = (f"cd {os.getcwd()} && ANONYMIZATION_SECRET=x {sys.executable} -m confiture_fast sync --from '{pair.src}' "
           f"--to '{pair.dst}' --parallel 2; sleep 30")
    started = subprocess.run(["tmux", "new-session", "-d", "-s", session, "-x", "160", "-y", "40", cmd],
                             capture_output=True, text=True)
    assert started.returncode == 0, started.stderr
    try:
        seen, frames = "", []
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            cap = subprocess.run(["tmux", "capture-pane", "-p", "-t", session], capture_output=True, text=True)
            seen = cap.stdout or cap.stderr
            frames.append(seen)
            if "Syncing a" in seen and "/s" in seen and "Overall" in seen and "━" in seen:
                break
            time.sleep(0.2)
        screen.write_text(seen)
        assert "Syncing a" in seen and "Overall" in seen and "━" in seen and " rows" in seen, frames[-30:]
        while time.monotonic() < deadline and "total" not in seen:
            seen = subprocess.run(["tmux", "capture-pane", "-p", "-t", session], capture_output=True,
                                  text=True).stdout
            time.sleep(0.3)
        assert "✓ a" in seen and "synced" in seen, seen
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], capture_output=True)


def test_strict_refuses_unruled_pii(pair, tmp_path):
    pair.both("CREATE TABLE people (id int PRIMARY KEY, email text, notes text, qty int)")
    pair.source("INSERT INTO people SELECT i, 'p' || i || '@corp.example', 'call me at jo' || i || '@mail.example', i "
                "FROM generate_series(1, 200) i; ANALYZE")
    pair.target("INSERT INTO people VALUES (0, 'sentinel', NULL, 0)")
    rules = "people:\n  - column: email\n    strategy: email\n"
    res = pair.sync("--strict", rules=rules)
    assert_clean_error(res, "people.notes")
    assert "people.email" not in res.stderr.split("fix:")[0]
    assert pair.qt("SELECT email FROM people") == [("sentinel",)]
    res = pair.sync("--strict", rules=rules + "  - column: notes\n    strategy: keep\n")
    assert res.returncode == 0, res.stderr
    # strict: true in the source environment makes it the default
    envs = tmp_path / "envs"
    envs.mkdir()
    db = pair.src.rsplit("/", 1)[1]
    port = pair.src.split(":")[2].split("/")[0]
    (envs / "prod.yaml").write_text(f"name: prod\nstrict: true\ndatabase:\n  host: 127.0.0.1\n  port: {port}\n"
                                    f"  database: {db}\n  user: postgres\n")
    res = run_cli("sync", "--from", "prod", "--to", pair.dst, "--env-dir", str(envs),
                  "--anonymize-config", str(pair.rules(rules)))
    assert_clean_error(res, "people.notes")
