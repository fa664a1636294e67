"""The sync's phases on a real run: `-v` prints the nine numbered steps in order, each timed, and
finishing is one step that runs whatever happened to the load (SIGTERM mid-load, a unit failing after
others finished, the --resume of a killed run), ending with every deferred index and constraint
rebuilt, or recorded on the target for the next run."""

from __future__ import annotations

import re
import signal

from conftest import run_cli
from test_faults import assert_resumes, assert_rolled_back, constraints, faulty, indexes, start_mid_big  # noqa: F401

ORDER = ["resolve", "connect", "plan", "strict", "schema", "prepare", "load", "finish", "report"]


def steps(stderr: str) -> list[tuple[int, str, str]]:
    """(number, phase, what) of every step line, in the order printed."""
    return [(int(n), name, what) for n, name, what in re.findall(r"^\d\d:\d\d:\d\d \[(\d)/9\] (\w+): (.*)$",
                                                               stderr, re.M)]


def assert_steps(stderr: str, skipped: dict[str, str] | None = None) -> None:
    """Every phase in order, numbered 1 to 9: started then done (with its time), or skipped with why."""
    skipped = {"strict": "--strict is off", "schema": "no --create-schema"} if skipped is None else skipped
    seen = steps(stderr)
    expected = []
    for i, name in enumerate(ORDER, 1):
        if name in skipped:
            expected.append((i, name, f"skipped ({skipped[name]})"))
        else:
            expected += [(i, name, None), (i, name, "done")]
    assert [(n, name) for n, name, _ in seen] == [(n, name) for n, name, _ in expected], stderr
    for (_, _, got), (_, _, want) in zip(seen, expected):
        if want == "done":
            assert re.fullmatch(r"done in \d+\.\d\ds", got), got
        elif want is not None:
            assert got == want


def test_verbose_prints_the_numbered_steps_in_order(pair):
    pair.both("CREATE TABLE a (id int PRIMARY KEY, v text); CREATE INDEX a_v ON a (v);"
              "CREATE TABLE b (id int PRIMARY KEY, a_id int REFERENCES a)")
    pair.source("INSERT INTO a SELECT g, 'v' || g FROM generate_series(1, 50) g;"
                "INSERT INTO b SELECT g, g FROM generate_series(1, 50) g")
    res = pair.sync("-v")
    assert res.returncode == 0, res.stderr
    assert_steps(res.stderr)
    assert "[3/9] plan: read both catalogs and plan" in res.stderr
    assert pair.qt("SELECT count(*) FROM _confiture_fast.pending_ddl") == [(0,)]
    assert pair.qt("SELECT count(*) FROM b") == [(50,)]


def test_a_verbose_dry_run_skips_the_steps_that_write(pair):
    pair.both("CREATE TABLE a (id int PRIMARY KEY, v text); CREATE INDEX a_v ON a (v)")
    pair.source("INSERT INTO a VALUES (1, 'x')")
    res = pair.sync("-v", "--dry-run")
    assert res.returncode == 0, res.stderr
    assert_steps(res.stderr, {"strict": "--strict is off", "schema": "--dry-run", "prepare": "--dry-run",
                              "load": "--dry-run", "finish": "--dry-run"})
    assert pair.qt("SELECT count(*) FROM a") == [(0,)]
    assert pair.qt("SELECT to_regclass('a_v')::text") == [("a_v",)]


def test_strict_is_a_step_of_its_own_when_on(pair):
    pair.both("CREATE TABLE a (id int PRIMARY KEY, n int)")
    pair.source("INSERT INTO a VALUES (1, 2)")
    res = pair.sync("-v", "--strict")
    assert res.returncode == 0, res.stderr
    assert_steps(res.stderr, skipped={"schema": "no --create-schema"})


def test_sigterm_mid_load_still_runs_the_finish_step(faulty):  # noqa: F811
    proc, before = start_mid_big(faulty, "-v")
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    assert_steps(err)
    assert_rolled_back(faulty)
    assert (constraints(faulty), indexes(faulty)) == before
    assert faulty.qt("SELECT count(*) FROM _confiture_fast.pending_ddl") == [(0,)]
    assert_resumes(faulty, before)


def test_a_unit_failing_after_others_finished_runs_the_same_finish_step(faulty):  # noqa: F811
    faulty.target("ALTER TABLE big ADD CONSTRAINT no_42 CHECK (id <> 42)")
    before = (constraints(faulty), indexes(faulty))
    res = run_cli("sync", "--from", faulty.src, "--to", faulty.dst, "--no-progress", "-v", "--parallel", "2")
    assert res.returncode == 1, res.stderr
    assert_steps(res.stderr)
    assert faulty.qt("SELECT count(*) FROM small") == [(100,)]  # the other table finished
    assert (constraints(faulty), indexes(faulty)) == before
    assert faulty.qt("SELECT count(*) FROM _confiture_fast.pending_ddl") == [(0,)]


def test_the_resume_of_a_killed_run_rebuilds_what_it_left_recorded(faulty):  # noqa: F811
    proc, before = start_mid_big(faulty)
    proc.kill()
    proc.wait(10)
    assert_rolled_back(faulty)
    assert faulty.qt("SELECT count(*) FROM _confiture_fast.pending_ddl")[0][0] >= 3
    res = run_cli("sync", "--from", faulty.src, "--to", faulty.dst, "--no-progress", "-v", "--resume",
                  "--checkpoint", str(faulty.cp))
    assert res.returncode == 0, res.stderr
    assert_steps(res.stderr)
    assert (constraints(faulty), indexes(faulty)) == before
    assert faulty.qt("SELECT count(*) FROM _confiture_fast.pending_ddl") == [(0,)]


def test_the_bench_cleanup_forgets_what_a_failed_run_left_recorded_for_its_dropped_tables(pair):
    """The bench drops its scratch tables after each run: a deferred index left recorded for one of
    them (it could not be rebuilt) would be reported by every later sync into that target, forever."""
    from confiture_fast import bench

    s = bench.SCHEMA
    pair.both(f"CREATE SCHEMA {s}; COMMENT ON SCHEMA {s} IS '{bench._MARK}'; CREATE TABLE {s}.users (id int, email text)")
    pair.target(f"CREATE UNIQUE INDEX users_email ON {s}.users (email)")
    pair.source(f"INSERT INTO {s}.users VALUES (1, 'same'), (2, 'same')")
    res = pair.sync("--include", f"{s}.*")
    assert res.returncode == 1 and "users_email" in res.stderr, res.stderr
    assert pair.qt("SELECT table_name FROM _confiture_fast.pending_ddl") == [(f"{s}.users",)]
    notes: list[str] = []
    bench._cleanup(*(bench.Side(uri, uri, uri, uri, None) for uri in (pair.src, pair.dst)), False, notes.append)
    assert notes == []
    assert not {s, "_confiture_fast"} & {n for n, in pair.qt("SELECT nspname FROM pg_namespace")}
    assert s not in {n for n, in pair.qs("SELECT nspname FROM pg_namespace")}
