"""bench.py's server settings and physical floor without a server: how settings are chosen and
refused, the floor's arithmetic, how runs are compared with it, and where a sync's seconds go."""

from __future__ import annotations

import pytest

from confiture_fast import bench
from confiture_fast.cli.bench import _bench
from confiture_fast.embedded import ThrowawayServer
from confiture_fast.errors import ConfigError


def test_the_throwaway_servers_run_production_like_settings_unless_told_otherwise():
    assert bench.parse_server_settings(None, []) == {"shared_buffers": "1GB", "max_wal_size": "8GB",
                                                     "checkpoint_timeout": "30min", "synchronous_commit": "off"}
    assert bench.Options().server_settings == bench.parse_server_settings("production", [])
    assert bench.parse_server_settings("default", []) == {}


def test_a_setting_is_added_on_top_of_the_profile_and_the_last_one_wins():
    got = bench.parse_server_settings(None, ["fsync=on", "shared_buffers=256MB", "shared_buffers = 512MB"])
    assert got["fsync"] == "on" and got["shared_buffers"] == "512MB" and got["max_wal_size"] == "8GB"
    assert bench.parse_server_settings("default", ["auto_explain.log_min_duration=250ms"]) == {
        "auto_explain.log_min_duration": "250ms"}


@pytest.mark.parametrize("given, says", [
    ("shared_buffers", "not NAME=VALUE"),
    ("=1GB", "not NAME=VALUE"),
    ("work_mem=", "not NAME=VALUE"),
    ("work mem=1MB", "not a setting name"),
    ("1st=on", "not a setting name"),
    ("work_mem=1MB; touch /tmp/x", "may hold only"),
    ("work_mem=$(id)", "may hold only"),
    ("search_path='x'", "may hold only"),
    ("port=5999", "chosen by the throwaway server"),
    ("unix_socket_directories=/tmp", "chosen by the throwaway server"),
])
def test_a_bad_setting_is_refused_with_its_problem_and_a_fix(given, says):
    with pytest.raises(ConfigError) as err:
        bench.parse_server_settings(None, [given])
    assert says in str(err.value) and repr(given) in str(err.value) and err.value.fix


def test_an_unknown_profile_is_refused():
    with pytest.raises(ConfigError, match="not a profile") as err:
        bench.parse_server_settings("fast", [])
    assert "production" in err.value.fix and "default" in err.value.fix


def test_a_throwaway_server_refuses_a_value_its_shell_would_read():
    with pytest.raises(ValueError, match="may hold only"):
        ThrowawayServer("/nonexistent", settings={"work_mem": "1MB -c port=1"})


def test_server_settings_do_not_go_with_their_servers(tmp_path):
    for args in (("production", []), (None, ["work_mem=8MB"])):
        with pytest.raises(ConfigError, match="for the throwaway servers"):
            _bench("src", "dst", tmp_path, 1000, "users", 1, False, None, 5000, None, False, None,
                   bench.BenchFormat.text, *args, False, False)


def test_the_physical_floor_is_the_servers_work_spread_over_the_cores():
    parts = {"copy_to": 0.6, "copy_from": 1.4, "index_builds": 1.0}
    assert bench.physical_floor(parts, cores=2) == pytest.approx(1.5)
    assert bench.physical_floor(parts, cores=1) == pytest.approx(3.0)
    assert bench.physical_floor({}, cores=4) == 0.0


def _run(name, kind, walls, parts=None):
    return bench.Run(name=name, kind=kind, rows=100, bytes=1000,
                     samples=[bench.Sample(w, 0.1, None, 100, (parts or [{}] * len(walls))[i])
                              for i, w in enumerate(walls)])


def test_each_run_is_compared_with_the_physical_floor_of_its_own_round():
    parts = [{"copy_to": 1.0, "copy_from": 2.0, "index_builds": 1.0},
             {"copy_to": 3.0, "copy_from": 4.0, "index_builds": 1.0},
             {"copy_to": 1.5, "copy_from": 2.5, "index_builds": 2.0}]
    floor = _run("libpq pipe", "baseline", [4.0, 8.0, 6.0])
    physical = _run(bench.PHYSICAL, "physical", [2.0, 4.0, 3.0], parts)
    mine = _run("sync", "sync", [3.0, 6.0, 4.5])
    for r in (floor, physical, mine):
        bench._summarize(r, floor, None, 2, physical)
    assert mine.wall_vs_physical == 1.5 and physical.wall_vs_physical == 1.0 and floor.wall_vs_physical == 2.0
    assert physical.ratio == 2.0
    assert physical.parts == {"copy_to": 1.5, "copy_from": 2.5, "index_builds": 1.0}
    assert mine.parts == {}
    alone = _run("sync", "sync", [3.0, 6.0, 4.5])
    bench._summarize(alone, floor, None, 2, None)
    assert alone.wall_vs_physical is None


def _report(runs, source_settings, target_settings):
    return bench.Report(command="confiture-fast bench", date="d", version="v",
                        machine={"cores": 2, "cpu": "x", "load_avg_at_start": [0, 0, 0]},
                        source={"where": "embedded", "server_version": "18", "settings": source_settings},
                        target={"where": "embedded", "server_version": "18", "settings": target_settings},
                        dataset={"rows": 100, "bytes": 1000, "tables": {"users": {"rows": 100, "bytes": 1000}}},
                        repeat=3, baseline="libpq pipe", runs=runs, recommended=None, notes=[])


def test_the_report_names_the_settings_and_the_floor_and_adds_its_column_only_when_measured():
    floor = _run("libpq pipe", "baseline", [4.0])
    physical = _run(bench.PHYSICAL, "physical", [2.0], [{"copy_to": 1.0, "copy_from": 2.0, "index_builds": 1.0}])
    for r in (floor, physical):
        bench._summarize(r, floor, None, 2, physical)
    md = bench.markdown(_report([floor, physical], {"shared_buffers": "1GB"}, {"shared_buffers": "1GB"}))
    assert "server settings, as both servers show them: shared_buffers=1GB" in md
    assert ("physical floor: 2.00 s = (COPY TO 1.00 s + COPY FROM without indexes 2.00 s + index builds 1.00 s)"
            " / 2 cores") in md
    assert "| time vs phys. floor |" in md and "| 2.00x |" in md
    plain = bench.markdown(_report([floor], {"shared_buffers": "128MB"}, {"shared_buffers": "1GB"}))
    assert "time vs phys. floor" not in plain and "physical floor:" not in plain
    assert "source shared_buffers=128MB; target shared_buffers=1GB" in plain


def test_where_a_syncs_seconds_go_from_polls_of_the_target():
    ticks = [(0.0, False, False), (0.5, False, False), (1.0, True, False), (1.5, True, True),
             (2.0, True, False), (2.5, False, True), (3.0, False, True), (3.5, False, False)]
    assert bench.breakdown(ticks, wall=4.0) == {"startup": 1.0, "load": 1.0, "finish": 2.0, "index_builds": 1.5}
    # a slow poll counts for as long as it took, the last one until the end
    late = [(0.0, True, False), (0.2, True, True), (1.0, False, True)]
    assert bench.breakdown(late, wall=1.5) == {"startup": 0.0, "load": 0.2, "finish": 1.3, "index_builds": 1.3}
    assert bench.breakdown([(0.0, False, False), (0.5, False, True)], wall=1.0) == {}


def test_with_verbose_the_report_says_where_each_syncs_seconds_went():
    floor = _run("libpq pipe", "baseline", [4.0])
    mine = _run("sync anonymized -p2 -b5000", "sync", [5.0],
                [{"startup": 0.5, "load": 3.0, "finish": 1.5, "index_builds": 1.2}])
    for r in (floor, mine):
        bench._summarize(r, floor, None, 2)
    md = bench.markdown(_report([floor, mine], {}, {}))
    assert ("where the time went, sync anonymized -p2 -b5000: start-up until the first row 0.50 s, load 3.00 s, "
            "finish after the last row 1.50 s") in md
    assert "index builds ran 1.20 s in all" in md

