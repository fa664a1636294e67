"""`confiture-fast bench` on small row counts: the settings its servers run with, read back from them,
and the physical floor next to each run. Never timings: the machine is shared."""

import json
import os
import signal
import subprocess
import time

from confiture_fast import bench
from conftest import run_cli


def test_the_report_names_the_settings_the_servers_show_and_the_floor():
    res = run_cli("bench", "--rows", "2000", "--repeat", "1", "--floor", "-v", "--format", "markdown",
                  "--server-setting", "work_mem=8192kB")
    assert res.returncode == 0, res.stderr
    settings = next(line for line in res.stdout.splitlines() if line.startswith("server settings"))
    # work_mem as the server shows it (8MB), not as it was asked (8192kB): read back, not echoed
    for shown in ("shared_buffers=1GB", "max_wal_size=8GB", "checkpoint_timeout=30min", "synchronous_commit=off",
                  "fsync=off", "work_mem=8MB"):
        assert shown in settings, settings
    assert "both servers" in settings and "8192kB" not in settings
    assert "physical floor: " in res.stdout and "COPY FROM without indexes" in res.stdout
    header = next(line for line in res.stdout.splitlines() if line.startswith("| run |"))
    assert "| time vs phys. floor |" in header
    assert any(line.startswith("| physical floor | ") for line in res.stdout.splitlines())


def test_the_servers_own_defaults_on_request_with_the_floor_in_json():
    res = run_cli("bench", "--rows", "1000", "--repeat", "1", "--floor", "--server-settings", "default",
                  "--format", "json")
    assert res.returncode == 0, res.stderr
    report = json.loads(res.stdout)
    for side in ("source", "target"):
        assert report[side]["settings"]["shared_buffers"] == "128MB"
        assert report[side]["settings"]["max_wal_size"] == "1GB"
    runs = {r["name"]: r for r in report["runs"]}
    physical = runs["physical floor"]
    assert physical["kind"] == "physical" and physical["rows"] == 1000
    assert set(physical["parts"]) == {"copy_to", "copy_from", "index_builds"}
    assert all(v > 0 for v in physical["parts"].values())
    assert physical["wall_vs_physical"] == 1.0
    assert all(r["wall_vs_physical"] > 0 for r in report["runs"] if r["kind"] == "sync")


def test_a_setting_the_server_refuses_is_a_usage_error_naming_it():
    res = run_cli("bench", "--rows", "100", "--server-setting", "shared_buffers=banana")
    assert res.returncode == 2
    assert 'invalid value for parameter "shared_buffers"' in res.stderr
    assert "Traceback" not in res.stderr and "--server-settings default" in res.stderr


def test_their_servers_settings_are_reported_as_they_are(pair):
    res = run_cli("bench", "--from", pair.src, "--to", pair.dst, "--rows", "300", "--shape", "plain",
                  "--repeat", "1", "--floor", "--format", "json")
    assert res.returncode == 0, res.stderr
    report = json.loads(res.stdout)
    for side, q in (("source", pair.qs), ("target", pair.qt)):
        shown = report[side]["settings"]
        assert shown["shared_buffers"] == q("SHOW shared_buffers")[0][0]
        assert shown["maintenance_work_mem"] == q("SHOW maintenance_work_mem")[0][0]
    assert any(r["kind"] == "physical" for r in report["runs"])
    refused = run_cli("bench", "--from", pair.src, "--to", pair.dst, "--server-setting", "work_mem=8MB")
    assert refused.returncode == 2 and "for the throwaway servers" in refused.stderr


def test_the_memory_sampler_sees_a_process_tree_at_once():
    proc = subprocess.Popen(["sh", "-c", "sleep 5 & sleep 5 & wait"])
    try:
        deadline = time.monotonic() + 5
        while len(bench._family(proc.pid)) < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
        family = bench._family(proc.pid)
        assert family[0] == proc.pid and len(family) == 3
        assert all(bench._rss(p) > 0 for p in family) and bench._tree_rss([proc.pid]) > 0
    finally:
        for pid in reversed(bench._family(proc.pid)):
            os.kill(pid, signal.SIGKILL)
        proc.wait()
    assert bench._rss(proc.pid) == 0 and bench._family(proc.pid) == [proc.pid]
