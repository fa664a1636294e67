"""Issue 12, points 15 and 21: bad output paths are refused before the target is touched, and messages
say what is wrong and what to do: the file, the real cause (not "rerun" for what would fail again), the
column but never a value, and no Python warning. The cases that need no server are in
tests/unit/test_error_messages.py."""

from __future__ import annotations

import json
import os
from pathlib import Path

import psycopg
import pytest

from conftest import run_cli

SCHEMA = """
CREATE TABLE users (id int PRIMARY KEY, email text NOT NULL, note text);
CREATE INDEX users_email ON users (email);
"""


@pytest.fixture
def loaded(pair):
    """A target with rows and indexes that a refused run must leave exactly as they are."""
    pair.both(SCHEMA)
    pair.source("INSERT INTO users SELECT g, 'new' || g || '@example.com', 'n' FROM generate_series(1, 50) g")
    pair.target("INSERT INTO users VALUES (1, 'old@example.com', 'old'), (2, 'old2@example.com', 'old')")
    return pair


def target_state(pair):
    return (pair.qt("SELECT * FROM users ORDER BY id"),
            pair.qt("SELECT indexname FROM pg_indexes WHERE tablename = 'users' ORDER BY 1"),
            pair.qt("SELECT conname FROM pg_constraint WHERE conrelid = 'users'::regclass ORDER BY 1"))


def assert_refused(res, needle):
    assert res.returncode == 2, res.stderr
    assert needle in res.stderr and "fix:" in res.stderr, res.stderr
    assert "Traceback" not in res.stderr and "internal error" not in res.stderr, res.stderr


# -- 15: every output path is checked before anything is written to the target -------------------------

@pytest.mark.parametrize("where", ["missing folder", "a folder", "uncreatable", "unwritable file", "not a regular file"])
def test_bad_checkpoint_path_leaves_target_untouched(loaded, tmp_path, where):
    path = {"missing folder": tmp_path / "nope" / "sync.json", "a folder": tmp_path,
            "uncreatable": Path("/sys/sync.json"),  # sysfs: no file can be created there, even as root
            "unwritable file": Path("/proc/version"), "not a regular file": tmp_path / "fifo"}[where]
    if where == "not a regular file":
        # a FIFO of our own, not /dev/null: a regression (a rename over the path) must not break the machine
        os.mkfifo(path)
    before = target_state(loaded)
    res = loaded.sync("--checkpoint", str(path))
    assert_refused(res, "--checkpoint")
    assert target_state(loaded) == before
    if where == "not a regular file":
        assert path.is_fifo()


@pytest.mark.parametrize("where", ["missing folder", "a folder", "uncreatable"])
def test_bad_log_file_is_a_config_error(loaded, tmp_path, where):
    path = {"missing folder": tmp_path / "nope" / "audit.jsonl", "a folder": tmp_path,
            "uncreatable": Path("/sys/audit.jsonl")}[where]
    before = target_state(loaded)
    res = loaded.sync("--log-file", str(path))
    assert_refused(res, "--log-file")
    assert target_state(loaded) == before


def test_good_paths_still_work(loaded, tmp_path):
    cp, log = tmp_path / "sync.json", tmp_path / "audit.jsonl"
    res = loaded.sync("--checkpoint", str(cp), "--log-file", str(log))
    assert res.returncode == 0, res.stderr
    assert json.loads(cp.read_text())["completed_tables"]["users"]["rows_synced"] == 50
    assert [json.loads(line)["event"] for line in log.read_text().splitlines()] == ["start", "end"]
    assert list(tmp_path.glob(".sync.json.*")) == []  # the probe left nothing behind


def test_checkpoint_lost_mid_run_stops_cleanly_and_rebuilds(pair, tmp_path):
    """The checkpoint's folder disappears while a table loads: the run stops like on a failed table, and
    every index and constraint deferred for the load is back."""
    import shutil

    from test_faults import BIG, SCHEMA as FAULTS_SCHEMA, SLOW, constraints, indexes, start_mid_big

    pair.both(FAULTS_SCHEMA)
    pair.target(SLOW)
    pair.source(f"INSERT INTO small SELECT i, 's' || i FROM generate_series(1, 100) i;"
                f"INSERT INTO big SELECT i, 1 + i % 100, repeat(md5(i::text), 125) FROM generate_series(1, {BIG}) i")
    (tmp_path / "cp").mkdir()
    pair.cp = tmp_path / "cp" / "sync.json"
    proc, before = start_mid_big(pair)
    shutil.rmtree(tmp_path / "cp")
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 1, err
    assert "checkpoint" in err and "could not be written" in err and "Traceback" not in err, err
    assert "internal error" not in err
    assert (constraints(pair), indexes(pair)) == before


# -- 21: messages ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("strategy", ["email", "redact"])
def test_missing_secret_file_is_named(loaded, tmp_path, strategy):
    missing = tmp_path / "keys" / "anon.secret"
    before = target_state(loaded)
    res = loaded.sync("--secret-file", str(missing), rules=f"users:\n  - column: email\n    strategy: {strategy}\n")
    assert_refused(res, str(missing))
    assert "does not exist" in res.stderr and "openssl rand -hex 32 >" in res.stderr
    assert target_state(loaded) == before


def test_strategy_null_on_the_command_line(loaded):
    res = loaded.sync(rules="users:\n  - column: email\n    strategy: null\n")
    assert_refused(res, 'strategy: "null"')


def _error_and_fix(stderr: str) -> tuple[str, str]:
    lines = stderr.splitlines()
    i = next(i for i, line in enumerate(lines) if line.startswith("error:"))
    assert lines[i + 1].startswith("  fix: "), stderr  # the error is one line
    return lines[i], lines[i + 1]


def test_unconvertible_text_names_column_and_encoding_not_value_nor_rerun(source_server, target_server, tmp_path):
    from conftest import Pair

    pair = Pair(source_server, target_server, tmp_path)
    latin1 = pair.dst + "_latin1"
    with psycopg.connect(target_server.uri(), autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {latin1.rsplit('/', 1)[1]} ENCODING 'LATIN1' TEMPLATE template0 LOCALE 'C'")
    pair.dst = latin1
    pair.both("CREATE TABLE staff (id int PRIMARY KEY, email text)")
    pair.source("INSERT INTO staff VALUES (1, 'a@corp.com'), (2, 'zoé@corp.com'), (3, 'jane.private€@gmail.com')")
    res = pair.sync()
    assert res.returncode == 1, res.stderr
    error, fix = _error_and_fix(res.stderr)
    assert "staff" in error and "LATIN1" in error and "line 3, column email" in error, error
    assert "jane.private" not in res.stderr and "CONTEXT" not in res.stderr
    assert "rerun the same command" not in res.stderr and "createdb -E" in fix and "encoding" in fix


def test_table_check_failure_never_shows_the_row(pair, tmp_path):
    pair.both("CREATE TABLE staff (id int PRIMARY KEY, email text)")
    pair.target("ALTER TABLE staff ADD CONSTRAINT corp_only CHECK (email LIKE '%@corp.com')")
    pair.source("INSERT INTO staff VALUES (1, 'a@corp.com'), (2, 'jane.private@gmail.com')")
    res = pair.sync("--checkpoint", str(tmp_path / "cp.json"))
    assert res.returncode == 1, res.stderr
    error, fix = _error_and_fix(res.stderr)
    assert "corp_only" in error and "line 2" in error, error
    assert "jane.private" not in res.stderr and "Failing row" not in res.stderr
    assert not fix.startswith(("  fix: rerun", "  fix: resume")) and "CHECK" in fix
    assert "--resume --checkpoint" in fix  # once the cause is gone, the run can still resume


def test_invalid_encoding_names_the_encoding_fix(source_server, target_server, tmp_path):
    from conftest import Pair

    pair = Pair(source_server, target_server, tmp_path)
    ascii_db = pair.src + "_ascii"
    with psycopg.connect(source_server.uri(), autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {ascii_db.rsplit('/', 1)[1]} ENCODING 'SQL_ASCII' TEMPLATE template0 "
                     "LOCALE 'C'")
    pair.src = ascii_db
    pair.both("CREATE TABLE notes (id int PRIMARY KEY, body text)")
    pair.source("INSERT INTO notes VALUES (1, 'fine'), (2, E'caf\\xe9 secret-value')")
    res = pair.sync()
    assert res.returncode == 1, res.stderr
    error, fix = _error_and_fix(res.stderr)
    assert "notes" in error and "UTF8" in error, error
    assert "secret-value" not in res.stderr
    assert "rerun the same command" not in res.stderr and "encoding" in fix and "SQL_ASCII" in fix


@pytest.fixture
def two_tables(pair):
    pair.both("CREATE TABLE a (id int PRIMARY KEY); CREATE TABLE b (id int PRIMARY KEY)")
    pair.source("INSERT INTO a SELECT generate_series(1, 10); INSERT INTO b SELECT generate_series(1, 20)")
    pair.cp = pair.tmp / "sync.json"
    res = run_cli("sync", "--from", pair.src, "--to", pair.dst, "--no-progress", "--tables", "a,b",
                  "--checkpoint", str(pair.cp))
    assert res.returncode == 0, res.stderr
    return pair


def _resume(pair, *args, to=None):
    return run_cli("sync", "--from", pair.src, "--to", to or pair.dst, "--no-progress", "--format", "json",
                   "--resume", "--checkpoint", str(pair.cp), *args, env={"PGDATABASE": None})


def _statuses(res) -> dict:
    assert res.returncode == 0, res.stderr
    return {t["table"]: t["status"] for t in json.loads(res.stdout)["tables"]}


def test_resume_accepts_the_same_selection_in_another_order(two_tables):
    assert _statuses(_resume(two_tables, "--tables", "b,a")) == {"a": "skipped", "b": "skipped"}
    assert _statuses(_resume(two_tables, "--tables", "b", "--tables", "a")) == {"a": "skipped", "b": "skipped"}
    assert _statuses(_resume(two_tables, "--include", "b,a")) == {"a": "skipped", "b": "skipped"}
    res = _resume(two_tables, "--tables", "a")
    assert_refused(res, "another table selection")


def test_resume_accepts_another_spelling_of_the_same_server(two_tables, tmp_path):
    localhost = two_tables.dst.replace("127.0.0.1", "localhost")
    assert _statuses(_resume(two_tables, "--tables", "a,b", to=localhost)) == {"a": "skipped", "b": "skipped"}
    port, db = two_tables.dst.rsplit(":", 1)[1].split("/")
    env_dir = tmp_path / "envs"
    env_dir.mkdir()
    (env_dir / "staging.yaml").write_text(f"name: staging\ndatabase:\n  host: localhost\n  port: {port}\n"
                                          f"  database: {db}\n  user: postgres\n")
    res = _resume(two_tables, "--tables", "a,b", "--env-dir", str(env_dir), to="staging")
    assert _statuses(res) == {"a": "skipped", "b": "skipped"}
    other = two_tables.dst.rsplit("/", 1)[0] + "/postgres"
    assert_refused(_resume(two_tables, "--tables", "a,b", to=other), "another target database")


def test_demo_shows_no_python_warning():
    res = run_cli("demo", "--users", "10", env={"XDG_RUNTIME_DIR": None, "PYTHONWARNINGS": None})
    assert res.returncode == 0, res.stderr
    assert "Warning" not in res.stderr, res.stderr
