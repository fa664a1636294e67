"""Faults during a sync, each caused for real (signals, killed backends, rejected rows), each followed by
--resume to a verified-identical target with every index and constraint back."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import psutil
import pytest

from conftest import run_cli

# Rows of `big`, ~4 kB each, 64 MB in all: more than the socket and COPY buffers hold, so the source is
# still sending while the target's CHECK makes each of the first SLOW_ROWS rows take ~1 ms.
BIG = 16000
SLOW_ROWS = 5000

SCHEMA = """
CREATE TABLE small (id int PRIMARY KEY, v text);
CREATE TABLE big (id int PRIMARY KEY, ref int REFERENCES small, v text);
CREATE INDEX big_v ON big (v);
"""

SLOW = f"""
CREATE FUNCTION slow(int) RETURNS boolean LANGUAGE sql IMMUTABLE AS $$ SELECT pg_sleep(0.001) IS NOT NULL $$;
ALTER TABLE big ADD CONSTRAINT big_slow CHECK (id > {SLOW_ROWS} OR slow(id));
"""


@pytest.fixture
def faulty(pair):
    pair.both(SCHEMA)
    pair.target(SLOW)
    pair.source(f"INSERT INTO small SELECT i, 's' || i FROM generate_series(1, 100) i;"
                f"INSERT INTO big SELECT i, 1 + i % 100, repeat(md5(i::text), 125) FROM generate_series(1, {BIG}) i;"
                "ANALYZE")
    pair.target("INSERT INTO small VALUES (1, 'old'); INSERT INTO big VALUES (1, 1, 'old')")
    pair.cp = pair.tmp / "sync.json"
    return pair


def start(pair, *args):
    env = {**os.environ, "COLUMNS": "200"}
    return subprocess.Popen([sys.executable, "-m", "confiture_fast", "sync", "--from", pair.src, "--to", pair.dst,
                             "--no-progress", "--checkpoint", str(pair.cp), *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def wait_for(pred, timeout=120.0, what="condition"):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def copying_big(pair, uri) -> list[int]:
    return [r[0] for r in pair.q(uri, "SELECT pid FROM pg_stat_activity WHERE query LIKE 'COPY %big%' "
                                      "AND state = 'active' AND pid <> pg_backend_pid()")]


def checkpoint_tables(pair) -> dict:
    if not pair.cp.exists():
        return {}
    return json.loads(pair.cp.read_text())["completed_tables"]


def constraints(pair) -> list[tuple]:
    return pair.qt("SELECT conrelid::regclass::text, conname, contype, convalidated FROM pg_constraint "
                   "WHERE conrelid IN ('small'::regclass, 'big'::regclass) ORDER BY 1, 2")


def indexes(pair) -> list[tuple]:
    return pair.qt("SELECT indexrelid::regclass::text FROM pg_index "
                   "WHERE indrelid IN ('small'::regclass, 'big'::regclass) ORDER BY 1")


def all_slow(pair):
    """Every row of big slow on the target: the source is then surely still sending when we look, however
    loaded the machine is."""
    pair.target("ALTER TABLE big DROP CONSTRAINT big_slow, ADD CONSTRAINT big_slow CHECK (slow(id))")


def start_mid_big(pair, *args):
    """Starts a sync and returns once `big` is being copied and `small` is checkpointed."""
    before = (constraints(pair), indexes(pair))
    proc = start(pair, "--parallel", "2", *args)
    wait_for(lambda: copying_big(pair, pair.dst) and "small" in checkpoint_tables(pair), what="big mid-COPY")
    return proc, before


def assert_resumes(pair, before, expect_skipped=("small",)):
    """Nothing is complete that was not; --resume finishes with exact rows and the same constraints."""
    assert "big" not in checkpoint_tables(pair)
    res = run_cli("sync", "--from", pair.src, "--to", pair.dst, "--no-progress", "--resume",
                  "--checkpoint", str(pair.cp), "--format", "json")
    assert res.returncode == 0, res.stderr
    status = {t["table"]: t["status"] for t in json.loads(res.stdout)["tables"]}
    for name in expect_skipped:
        assert status[name] == "skipped"
    assert status["big"] == "synced"
    for t in ("small", "big"):
        assert pair.qt(f"SELECT * FROM {t} ORDER BY id") == pair.qs(f"SELECT * FROM {t} ORDER BY id")
    assert (constraints(pair), indexes(pair)) == before
    assert pair.qt("SELECT count(*) FROM _confiture_fast.pending_ddl") == [(0,)]


def assert_rolled_back(pair):
    """The in-flight table's transaction was rolled back: the target still has its old rows."""
    wait_for(lambda: not copying_big(pair, pair.dst), what="the target COPY to end")
    assert pair.qt("SELECT id, v FROM big") == [(1, "old")]


def test_sigkill_coordinator_mid_table(faulty):
    proc, before = start_mid_big(faulty)
    proc.kill()
    proc.wait(10)
    assert_rolled_back(faulty)
    # killed between the drop and the rebuild: the indexes are gone but recorded on the target
    assert faulty.qt("SELECT count(*) FROM _confiture_fast.pending_ddl")[0][0] >= 3
    assert indexes(faulty) != before[1]
    assert_resumes(faulty, before)


def test_sigkill_one_worker(faulty):
    proc, before = start_mid_big(faulty)
    workers = [p for p in psutil.Process(proc.pid).children(recursive=True)
               if "resource_tracker" not in " ".join(p.cmdline())]
    assert workers
    for w in workers:
        w.kill()
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 1, err
    assert "big" in err and "worker process died" in err
    assert_rolled_back(faulty)
    assert_resumes(faulty, before)


@pytest.mark.parametrize("side", ["source", "target"])
def test_backend_terminated_mid_copy(faulty, side):
    all_slow(faulty)
    proc, before = start_mid_big(faulty, "--retries", "0")
    uri = faulty.src if side == "source" else faulty.dst
    wait_for(lambda: copying_big(faulty, uri), what=f"{side} COPY")
    faulty.q(uri, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query LIKE 'COPY %big%' "
                  "AND pid <> pg_backend_pid()")
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 1, err
    assert "big" in err and "terminat" in err and "Traceback" not in err
    assert_rolled_back(faulty)
    assert_resumes(faulty, before)


def test_transient_failure_is_retried(faulty):
    all_slow(faulty)
    proc, before = start_mid_big(faulty)
    wait_for(lambda: copying_big(faulty, faulty.src), what="source COPY")
    faulty.q(faulty.src, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query LIKE 'COPY %big%' "
                         "AND pid <> pg_backend_pid()")
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert "retried big" in err
    assert faulty.qt("SELECT count(*) FROM big") == [(BIG,)]
    assert (constraints(faulty), indexes(faulty)) == before


def test_row_rejected_by_target(faulty):
    faulty.target("ALTER TABLE big ADD CONSTRAINT no_42 CHECK (id <> 42)")
    before = (constraints(faulty), indexes(faulty))
    res = run_cli("sync", "--from", faulty.src, "--to", faulty.dst, "--no-progress", "--checkpoint", str(faulty.cp))
    assert res.returncode == 1
    assert "big" in res.stderr and "no_42" in res.stderr and "Traceback" not in res.stderr
    assert faulty.qt("SELECT id, v FROM big") == [(1, "old")]
    assert (constraints(faulty), indexes(faulty)) == before  # rebuilt after the failure
    faulty.target("ALTER TABLE big DROP CONSTRAINT no_42")
    before = (constraints(faulty), indexes(faulty))
    assert_resumes(faulty, before)


@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_graceful_stop(faulty, sig, code):
    proc, before = start_mid_big(faulty)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == code, err
    assert f"--resume --checkpoint {faulty.cp}" in err
    assert "big" in err and "Traceback" not in err
    assert_rolled_back(faulty)
    assert (constraints(faulty), indexes(faulty)) == before  # graceful: rebuilt before exiting
    assert_resumes(faulty, before)


def test_resume_refusals(faulty, tmp_path):
    res = run_cli("sync", "--from", faulty.src, "--to", faulty.dst, "--resume")
    assert res.returncode == 2 and "--resume needs --checkpoint" in res.stderr
    res = run_cli("sync", "--from", faulty.src, "--to", faulty.dst, "--resume", "--checkpoint", str(tmp_path / "no.json"))
    assert res.returncode == 2 and "does not exist" in res.stderr
    assert run_cli("sync", "--from", faulty.src, "--to", faulty.dst, "--tables", "small", "--cascade",
                   "--checkpoint", str(faulty.cp)).returncode == 0
    cp = json.loads(faulty.cp.read_text())
    assert set(cp) >= {"version", "timestamp", "source_database", "target_database", "completed_tables"}
    assert "postgres@" not in faulty.cp.read_text() and cp["completed_tables"]["small"]["rows_synced"] == 100
    res = run_cli("sync", "--from", faulty.src, "--to", faulty.dst, "--resume", "--checkpoint", str(faulty.cp))
    assert res.returncode == 2 and "another table selection" in res.stderr
    other = faulty.src.rsplit("/", 1)[0] + "/postgres"
    res = run_cli("sync", "--from", faulty.src, "--to", other, "--tables", "small", "--cascade", "--resume",
                  "--checkpoint", str(faulty.cp))
    assert res.returncode == 2 and "another target" in res.stderr
    faulty.cp.write_text(faulty.cp.read_text().replace('"1.0"', '"0.1"'))
    res = run_cli("sync", "--from", faulty.src, "--to", faulty.dst, "--tables", "small", "--cascade", "--resume",
                  "--checkpoint", str(faulty.cp))
    assert res.returncode == 2 and "incompatible version" in res.stderr


def test_sigkill_mid_split_table_records_slices_and_resumes(faulty):
    before = (constraints(faulty), indexes(faulty))
    proc = start(faulty, "--parallel", "2", "--slice-size", "1")
    wait_for(lambda: "small" in checkpoint_tables(faulty)
             and "big" in json.loads(faulty.cp.read_text()).get("partial_tables", {}), what="a committed slice")
    proc.kill()
    proc.wait(10)
    partial = json.loads(faulty.cp.read_text())["partial_tables"]["big"]
    assert partial["slices_total"] > 1 and 0 < len(partial["slices_committed"]) < partial["slices_total"]
    wait_for(lambda: not copying_big(faulty, faulty.dst), what="the target COPY to end")
    assert_resumes(faulty, before)
    assert json.loads(faulty.cp.read_text())["partial_tables"] == {}
