"""Tests that prove what they claim, against real servers (issue 13, point 11): a pinned pseudonym through
a real sync, the --resume refusals, an anonymized SIGKILL-and-resume across a foreign key, passwords
nowhere, NO_COLOR on a real terminal, the same-database guard both ways and without superuser, and binary
COPY and FREEZE seen by the target server. The rewriter through the pump's real batching is in
tests/differential/test_rewriter_through_sync.py."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import psutil
import psycopg
import pytest

from conftest import run_cli
from anon_ref import apply
from confiture_fast.strategies import FieldRule, derive_key, parse_params

SECRET = b"test-secret-0123456789abcdef"  # what conftest.run_cli gives every run
SLOW_FN = ("CREATE FUNCTION slow(int) RETURNS boolean LANGUAGE sql IMMUTABLE AS "
           "$$ SELECT pg_sleep(0.001) IS NOT NULL $$;")


def wait_for(pred, timeout=120.0, what="condition"):
    """Polls until `pred()` holds; the timeout only bounds a hang, no result depends on it."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def copying(pair, uri, table) -> bool:
    return bool(pair.q(uri, "SELECT pid FROM pg_stat_activity WHERE query LIKE %s AND state = 'active' "
                            "AND pid <> pg_backend_pid()", (f"COPY %{table}%",)))


def start(pair, *args, env=None):
    full = {**os.environ, "ANONYMIZATION_SECRET": SECRET.decode(), "COLUMNS": "200", **(env or {})}
    return subprocess.Popen([sys.executable, "-m", "confiture_fast", "sync", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=full)


def one_line_refusal(res, what: str) -> None:
    assert res.returncode == 2, res.stderr
    assert what in res.stderr and "Traceback" not in res.stderr, res.stderr
    assert res.stderr.strip().splitlines()[0].startswith("error:"), res.stderr


def rule(index, column, strategy, raw=None, seed="") -> FieldRule:
    params, problems = parse_params(strategy, raw)
    assert not problems
    return FieldRule(index=index, column=column, strategy=strategy, key=derive_key(SECRET, seed), params=params)


# -- a pinned vector end to end ---------------------------------------------------------------------
def test_a_pinned_pseudonym_comes_out_of_a_real_sync(pair):
    """Same vector as tests/test_pseudonym_vectors.py, through the CLI, the workers and COPY."""
    pair.both("CREATE TABLE people (id int PRIMARY KEY, email text)")
    pair.source("INSERT INTO people VALUES (1, 'alice@example.com')")
    res = pair.sync(rules="people:\n  - column: email\n    strategy: email\n    seed: v1\n")
    assert res.returncode == 0, res.stderr
    assert pair.qt("SELECT email FROM people") == [("user_ab0eee6c8c723b5b@example.com",)]


# -- --resume refusals ------------------------------------------------------------------------------
RULES = "a:\n  - column: email\n    strategy: email\n"


def test_resume_refuses_another_source_other_rules_and_another_secret(pair, source_server):
    pair.both("CREATE TABLE a (id int PRIMARY KEY, email text)")
    pair.source("INSERT INTO a SELECT i, 'p' || i || '@corp.example' FROM generate_series(1, 20) i")
    cp = pair.tmp / "sync.json"
    res = pair.sync("--tables", "a", "--checkpoint", str(cp), rules=RULES)
    assert res.returncode == 0, res.stderr
    twin = source_server.create_database(pair.src.rsplit("/", 1)[1] + "_twin")
    with psycopg.connect(twin, autocommit=True) as c:  # the same table and rows, another database
        c.execute("CREATE TABLE a (id int PRIMARY KEY, email text);"
                  "INSERT INTO a SELECT i, 'p' || i || '@corp.example' FROM generate_series(1, 20) i")
    state = "SELECT xmin::text, * FROM a ORDER BY id"  # a reload would give the rows new xmins
    before = pair.qt(state)
    rules = pair.rules(RULES)
    other_rules = pair.tmp / "other.yaml"
    other_rules.write_text("a:\n  - column: email\n    strategy: hash\n")

    def resume(src, rules_file, env=None):
        return run_cli("sync", "--from", src, "--to", pair.dst, "--no-progress", "--tables", "a",
                       "--anonymize-config", str(rules_file), "--resume", "--checkpoint", str(cp), env=env)

    one_line_refusal(resume(twin, rules), "was made for another source database")
    one_line_refusal(resume(pair.src, other_rules), "was made for another anonymization rules")
    one_line_refusal(resume(pair.src, rules, env={"ANONYMIZATION_SECRET": "another-secret-0123456789abcdef"}),
                     "was made for another anonymization secret")
    assert pair.qt(state) == before
    res = resume(pair.src, rules)  # the same run still resumes
    assert res.returncode == 0, res.stderr
    assert pair.qt(state) == before  # nothing left to load


# -- SIGKILL and resume of an anonymized sync across a foreign key ------------------------------------
FK_RULES = "small:\n  - column: email\n    strategy: email\n"


def test_sigkill_then_resume_keeps_pseudonyms_joinable_into_the_completed_table(pair):
    """`small` completes, `big` (whose FK column gets small.email's rule) is killed mid-COPY; the resumed
    run must write the same pseudonyms as the completed table holds, so the key validates."""
    schema = ("CREATE TABLE small (email text PRIMARY KEY, v text);"
              "CREATE TABLE big (id int PRIMARY KEY, owner text REFERENCES small, v text);")
    pair.both(schema)
    pair.target(SLOW_FN + "ALTER TABLE big ADD CONSTRAINT big_slow CHECK (slow(id))")
    pair.source("INSERT INTO small SELECT 'u' || i || '@corp.example', 's' FROM generate_series(1, 100) i;"
                "INSERT INTO big SELECT i, 'u' || (1 + i % 100) || '@corp.example', repeat(md5(i::text), 100) "
                "FROM generate_series(1, 4000) i; ANALYZE")
    cp = pair.tmp / "sync.json"
    rules = pair.rules(FK_RULES)
    args = ("--from", pair.src, "--to", pair.dst, "--no-progress", "--checkpoint", str(cp),
            "--anonymize-config", str(rules))
    proc = start(pair, *args, "--parallel", "2")

    def small_done():
        return cp.exists() and "small" in json.loads(cp.read_text()).get("completed_tables", {})

    wait_for(lambda: small_done() and copying(pair, pair.dst, "big"), what="small done, big mid-COPY")
    proc.kill()
    proc.wait(10)
    wait_for(lambda: not copying(pair, pair.dst, "big"), what="the target COPY to end")
    assert "big" not in json.loads(cp.read_text())["completed_tables"]
    completed = pair.qt("SELECT xmin::text, email FROM small ORDER BY email")

    res = run_cli("sync", *args, "--resume", "--format", "json")
    assert res.returncode == 0, res.stderr
    status = {t["table"]: t["status"] for t in json.loads(res.stdout)["tables"]}
    assert status["small"] == "skipped" and status["big"] == "synced"
    assert pair.qt("SELECT xmin::text, email FROM small ORDER BY email") == completed  # not reloaded
    r = rule(0, "email", "email")
    expected = sorted(apply(r, e.encode()).decode() for (e,) in pair.qs("SELECT owner FROM big"))
    assert sorted(o for (o,) in pair.qt("SELECT owner FROM big")) == expected
    assert pair.qt("SELECT count(*) FROM big LEFT JOIN small ON owner = email WHERE email IS NULL") == [(0,)]
    assert pair.qt("SELECT count(*) FROM big") == [(4000,)]
    assert pair.qt("SELECT convalidated FROM pg_constraint WHERE conrelid = 'big'::regclass AND contype = 'f'") \
        == [(True,)]
    assert pair.qt("SELECT count(*) FROM _confiture_fast.pending_ddl") == [(0,)]


# -- never a password ---------------------------------------------------------------------------------
PASSWORD = "Pw-s3cr3t-Kx9q"


def with_password(uri: str) -> str:
    return uri.replace("postgres@", f"postgres:{PASSWORD}@", 1)


def test_a_password_in_the_uri_or_an_env_file_appears_nowhere(pair, tmp_path):
    pair.both("CREATE TABLE t (id int PRIMARY KEY, email text)")
    pair.target(SLOW_FN + "ALTER TABLE t ADD CHECK (slow(id))")
    pair.source("INSERT INTO t SELECT i, 'p' || i || '@corp.example' FROM generate_series(1, 3000) i; ANALYZE")
    port, db = pair.dst.rsplit(":", 1)[1].split("/")
    envs = tmp_path / "envs"
    envs.mkdir()
    (envs / "staging.yaml").write_text(f"name: staging\ndatabase:\n  host: 127.0.0.1\n  port: {port}\n"
                                       f"  database: {db}\n  user: postgres\n  password: {PASSWORD}\n")
    log, cp = tmp_path / "audit.log", tmp_path / "sync.json"
    common = ("--from", with_password(pair.src), "--to", "staging", "--env-dir", str(envs),
              "--anonymize-config", str(pair.rules("t:\n  - column: email\n    strategy: email\n")))
    proc = start(pair, *common, "--no-progress", "-v", "--parallel", "2", "--log-file", str(log),
                 "--checkpoint", str(cp), "--format", "json")
    wait_for(lambda: copying(pair, pair.dst, "t"), what="the COPY into t")
    me = psutil.Process(proc.pid)
    children = me.children(recursive=True)
    assert children, "no worker process to look at"
    cmdlines = ["\0".join(p.cmdline()) for p in children]
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert json.loads(out)["ok"] is True
    outputs = {"stdout (--format json)": out, "stderr (-v)": err, "--log-file": log.read_text(),
               "checkpoint": cp.read_text(), **{f"worker cmdline {i}": c for i, c in enumerate(cmdlines)}}

    res = run_cli("sync", *common, "--dry-run")
    assert res.returncode == 0, res.stderr
    outputs.update({"--dry-run stdout": res.stdout, "--dry-run stderr": res.stderr})
    (envs / "down.yaml").write_text(f"name: down\ndatabase:\n  host: 127.0.0.1\n  port: 1\n"
                                    f"  database: {db}\n  user: postgres\n  password: {PASSWORD}\n")
    refused = [run_cli("sync", "--from", f"postgresql://postgres:{PASSWORD}@127.0.0.1:1/{db}", "--to", pair.dst),
               run_cli("sync", "--from", pair.src, "--to", "down", "--env-dir", str(envs)),
               run_cli("sync", "--from", with_password(pair.src), "--to",
                       f"postgresql://postgres:{PASSWORD}@127.0.0.1:1/{db}", "--format", "json")]
    for i, r in enumerate(refused):
        assert r.returncode != 0 and "Traceback" not in r.stderr, r.stderr
        outputs.update({f"refused {i} stdout": r.stdout, f"refused {i} stderr": r.stderr})
    assert "127.0.0.1:1" in refused[0].stderr  # the error names the server it could not reach
    leaks = [name for name, text in outputs.items() if PASSWORD in text]
    assert not leaks, leaks


# -- NO_COLOR on a real terminal ----------------------------------------------------------------------
_SGR = re.compile(r"\x1b\[([0-9;:]*)m")


def colour_codes(text: str) -> list[str]:
    """SGR sequences that set a foreground or background colour (bold and the defaults 39/49 are no colour)."""
    found = []
    for params in _SGR.findall(text):
        codes = [int(p) for p in re.split("[;:]", params) if p]
        if any(30 <= c <= 38 or 40 <= c <= 48 or 90 <= c <= 97 or 100 <= c <= 107 for c in codes):
            found.append(params)
    return found


def run_in_tmux(pair, tmp_path, extra_env: str) -> tuple[str, str]:
    """A sync in a real terminal: (the pane as tmux shows it, with its escapes; every byte the program wrote).
    The program waits for a key press until tmux's pipe is attached, so nothing is missed."""
    session = f"cfnc{os.getpid()}{len(extra_env)}"
    raw = tmp_path / f"raw{len(extra_env)}.bin"
    cmd = (f"read go; cd {os.getcwd()} && {extra_env} ANONYMIZATION_SECRET=x {sys.executable} -m confiture_fast "
           f"sync --from '{pair.src}' --to '{pair.dst}'; echo CF-END; sleep 600")
    env = {k: v for k, v in os.environ.items() if k != "NO_COLOR"}
    started = subprocess.run(["tmux", "new-session", "-d", "-s", session, "-x", "160", "-y", "40", "sh", "-c", cmd],
                             capture_output=True, text=True, env=env)
    assert started.returncode == 0, started.stderr
    try:
        subprocess.run(["tmux", "pipe-pane", "-o", "-t", session, f"cat > {raw}"], check=True)
        subprocess.run(["tmux", "send-keys", "-t", session, "Enter"], check=True)
        pane = ""

        def ended():
            nonlocal pane
            pane = subprocess.run(["tmux", "capture-pane", "-p", "-e", "-t", session], capture_output=True,
                                  text=True).stdout
            return "CF-END" in pane

        wait_for(ended, what="the sync in tmux to end")
        wait_for(lambda: raw.exists() and b"CF-END" in raw.read_bytes(), what="tmux's pipe")
        return pane, raw.read_bytes().decode(errors="replace")
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], capture_output=True)


@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")
def test_no_color_leaves_no_colour_escapes_on_a_real_terminal(pair, tmp_path):
    pair.both("CREATE TABLE a (id int PRIMARY KEY, v text)")
    pair.source("INSERT INTO a SELECT i, md5(i::text) FROM generate_series(1, 50) i")
    pane, raw = run_in_tmux(pair, tmp_path, "")
    assert colour_codes(raw), "the control run shows no colour: the check below would prove nothing"
    assert "synced" in pane
    pane, raw = run_in_tmux(pair, tmp_path, "NO_COLOR=1")
    assert "synced" in pane and "a" in pane
    assert colour_codes(pane) == [] and colour_codes(raw) == []


# -- the same-database guard ------------------------------------------------------------------------
def _plain_role(server, name="cf_plain"):
    with psycopg.connect(server.uri(), autocommit=True) as c:
        c.execute(f"DO $$BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{name}') THEN "
                  f"CREATE ROLE {name} LOGIN NOSUPERUSER; END IF; END$$")
    return name


def _database_owned_by(server, db, role):
    """A database of `role`; a plain role may not read pg_control_system there, as on managed services."""
    with psycopg.connect(server.uri(), autocommit=True) as c:
        c.execute(f'CREATE DATABASE "{db}" OWNER {role}')
    if role != "postgres":
        with psycopg.connect(server.uri(db), autocommit=True) as c:
            c.execute("REVOKE EXECUTE ON FUNCTION pg_control_system() FROM PUBLIC")
    uri = server.uri(db, user=role)
    with psycopg.connect(uri, autocommit=True) as c:
        c.execute("CREATE TABLE t (id int PRIMARY KEY, v text)")
    return uri


@pytest.mark.parametrize("superuser", [True, False], ids=["superuser", "plain-role"])
def test_same_database_name_on_two_servers_is_allowed(source_server, target_server, superuser):
    role = "postgres" if superuser else _plain_role(source_server) and _plain_role(target_server)
    db = f"samename_{os.getpid()}_{role}"
    src = _database_owned_by(source_server, db, role)
    dst = _database_owned_by(target_server, db, role)
    with psycopg.connect(src, autocommit=True) as c:
        c.execute("INSERT INTO t SELECT i, 'v' || i FROM generate_series(1, 10) i")
    res = run_cli("sync", "--from", src, "--to", dst, "--no-progress")
    assert res.returncode == 0, res.stderr
    with psycopg.connect(dst) as c:
        assert c.execute("SELECT count(*) FROM t").fetchone() == (10,)


def test_same_database_is_refused_for_a_role_that_cannot_read_pg_control_system(source_server):
    role = _plain_role(source_server)
    src = _database_owned_by(source_server, f"guarded_{os.getpid()}", role)
    with psycopg.connect(src, autocommit=True) as c:
        c.execute("INSERT INTO t VALUES (1, 'keep me')")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            c.execute("SELECT system_identifier FROM pg_control_system()")
    same = src.replace("127.0.0.1", "localhost")
    res = run_cli("sync", "--from", src, "--to", same, "--no-progress")
    one_line_refusal(res, "same database")
    with psycopg.connect(src) as c:
        assert c.execute("SELECT * FROM t").fetchall() == [(1, "keep me")]


# -- binary COPY and FREEZE, as the target server saw them ----------------------------------------------
def test_binary_copy_and_freeze_seen_by_the_target_server(pair, target_server):
    """The statements the target server ran (log_statement) and the frozen state of the tuples it wrote."""
    pair.both("CREATE TABLE plainload (id int PRIMARY KEY, n numeric, d date, v text);"
              "CREATE TABLE ruledload (id int PRIMARY KEY, email text);"
              "CREATE TABLE shiftload (id int PRIMARY KEY, born date)")
    pair.source("INSERT INTO plainload SELECT i, i / 7.0, date '2020-01-01' + i, md5(i::text) "
                "FROM generate_series(1, 3000) i;"
                "INSERT INTO ruledload SELECT i, 'p' || i || '@corp.example' FROM generate_series(1, 3000) i;"
                "INSERT INTO shiftload SELECT i, date '2020-01-01' + i FROM generate_series(1, 3000) i")
    db = pair.dst.rsplit("/", 1)[1]
    pair.target(f'ALTER DATABASE "{db}" SET log_statement = \'all\'; CREATE EXTENSION pageinspect')
    log = Path(target_server.root) / "server.log"
    offset = log.stat().st_size
    res = pair.sync("--tables", "plainload,ruledload,shiftload",
                    rules="ruledload:\n  - column: email\n    strategy: email\n"
                          "shiftload:\n  - column: born\n    strategy: date_shift\n")
    assert res.returncode == 0, res.stderr
    pair.target(f'ALTER DATABASE "{db}" RESET log_statement')
    with log.open("rb") as f:
        f.seek(offset)
        statements = [line for line in f.read().decode(errors="replace").splitlines()
                      if "statement: COPY" in line and "FROM STDIN" in line]
    plain = [s for s in statements if "plainload" in s]
    ruled = [s for s in statements if "ruledload" in s]
    shifted = [s for s in statements if "shiftload" in s]
    assert len(plain) == 1 and len(ruled) == 1 and len(shifted) == 1, statements
    assert "FORMAT binary" in plain[0] and "FREEZE" in plain[0], plain
    assert "FORMAT binary" in ruled[0] and "FREEZE" in ruled[0], ruled  # a rule on text: the binary rewriter
    assert "binary" not in shifted[0] and "FREEZE" in shifted[0], shifted  # a rule on a date reads its text
    pair.target("CREATE TABLE control AS SELECT generate_series(1, 3000) id")  # a plain write: not frozen
    for table, want in (("plainload", 3000), ("ruledload", 3000), ("shiftload", 3000), ("control", 0)):  # every tuple written frozen (HEAP_XMIN_FROZEN, 0x0300)
        frozen, tuples = pair.qt(
            f"SELECT count(*) FILTER (WHERE t_infomask & 768 = 768), count(*) "
            f"FROM generate_series(0, pg_relation_size('{table}') / current_setting('block_size')::int - 1) b, "
            f"heap_page_items(get_raw_page('{table}', b::int)) WHERE lp_flags = 1")[0]
        assert tuples == 3000 and frozen == want, (table, tuples, frozen)
