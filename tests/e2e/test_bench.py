"""`confiture-fast bench` on small row counts: the structure and sanity of what it reports, that it
leaves other people's tables alone, and what it refuses. Never timings: the machine is shared."""

import json
import xml.etree.ElementTree as ET

import psycopg

from conftest import run_cli

SCHEMA = "confiture_fast_bench"


def _schemas(uri: str) -> set[str]:
    with psycopg.connect(uri, autocommit=True) as c:
        return {r[0] for r in c.execute("SELECT nspname FROM pg_namespace")}


def _check_report(report: dict, rows: int) -> None:
    assert report["baseline"] == "libpq pipe"
    assert report["machine"]["cores"] >= 1
    assert report["source"]["server_version"] and report["target"]["server_version"]
    assert report["dataset"]["rows"] == rows and report["dataset"]["bytes"] > 0
    runs = {r["name"]: r for r in report["runs"]}
    base = runs["libpq pipe"]
    assert base["kind"] == "baseline" and base["ratio"] == 1.0
    for r in report["runs"]:
        assert r["rows_per_s"] > 0 and r["ratio"] > 0 and r["mb_per_s"] > 0
        assert r["cpu_s"] >= 0 and 0 <= r["spread"]
        assert len(r["samples"]) == (3 if r["kind"] == "rewriter" else report["repeat"])
        if r["kind"] != "rewriter":
            assert r["rows"] == rows
            assert all(s["rows"] == rows for s in r["samples"])
            assert r["peak_rss_mib"] > 0
    syncs = [r for r in report["runs"] if r["kind"] == "sync"]
    assert syncs and all(r["cpu_s"] > 0 for r in syncs)
    return runs


def test_embedded_json(tmp_path):
    res = run_cli("bench", "--rows", "2000", "--repeat", "1", "--format", "json", "--plot", str(tmp_path / "c.svg"))
    assert res.returncode == 0, res.stderr
    report = json.loads(res.stdout)
    runs = _check_report(report, 2000)
    kinds = {r["kind"] for r in report["runs"]}
    assert {"baseline", "sync", "rewriter"} <= kinds
    assert any(r["anonymized"] for r in runs.values() if r["kind"] == "sync")
    assert any(not r["anonymized"] for r in runs.values() if r["kind"] == "sync")
    assert report["recommended"]["parallel"] >= 1 and report["recommended"]["batch_size"] >= 1
    if "psql pipe" in runs:
        assert runs["psql pipe"]["wall_vs_psql"] == 1.0
    svg = ET.parse(tmp_path / "c.svg").getroot()
    assert svg.tag.endswith("svg")
    text = " ".join(t.text or "" for t in svg.iter() if t.tag.endswith("text"))
    assert "libpq pipe" in text and "sync anonymized" in text


def test_text_table_and_plot_for_a_shape_without_rules(tmp_path):
    chart = tmp_path / "perf" / "chart.svg"
    res = run_cli("bench", "--rows", "500", "--repeat", "1", "--shape", "plain", "--plot", str(chart))
    assert res.returncode == 0, res.stderr
    assert "libpq pipe (floor)" in res.stdout and "recommended: --parallel" in res.stdout
    assert "sync verbatim" in res.stdout and "sync anonymized" not in res.stdout
    assert "no table of this shape has anonymization rules" in res.stdout
    ET.parse(chart)


def test_markdown_for_the_docs():
    res = run_cli("bench", "--rows", "300", "--repeat", "1", "--shape", "plain", "--format", "markdown")
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert lines[0] == "`confiture-fast bench --rows 300 --repeat 1 --shape plain --format markdown`"
    table = [line for line in lines if line.startswith("| ")]
    assert table[0].startswith("| run | rows/s |") and table[1].startswith("| libpq pipe (floor) |")


def test_their_servers_scratch_schema_only(pair):
    pair.both("CREATE TABLE keep (id int PRIMARY KEY, v text)")
    pair.source("INSERT INTO keep SELECT g, 'source ' || g FROM generate_series(1, 50) g")
    pair.target("INSERT INTO keep SELECT g, 'target ' || g FROM generate_series(1, 7) g")
    before = (pair.qs("SELECT * FROM keep ORDER BY id"), pair.qt("SELECT * FROM keep ORDER BY id"))
    res = run_cli("bench", "--from", pair.src, "--to", pair.dst, "--rows", "1000", "--repeat", "1",
                  "--format", "json")
    assert res.returncode == 0, res.stderr
    _check_report(json.loads(res.stdout), 1000)
    assert (pair.qs("SELECT * FROM keep ORDER BY id"), pair.qt("SELECT * FROM keep ORDER BY id")) == before
    for uri in (pair.src, pair.dst):
        assert SCHEMA not in _schemas(uri)
    assert "_confiture_fast" not in _schemas(pair.dst)


def test_refuses_a_protected_target(pair, tmp_path):
    (tmp_path / "staging.yaml").write_text(f"name: staging\ndatabase_url: {pair.dst}\nprotected: true\n")
    res = run_cli("bench", "--from", pair.src, "--to", "staging", "--env-dir", str(tmp_path), "--rows", "100")
    assert res.returncode == 2
    assert "protected" in res.stderr
    assert SCHEMA not in _schemas(pair.dst) and SCHEMA not in _schemas(pair.src)


def test_refuses_the_source_as_target(pair):
    other_name = pair.src.replace("127.0.0.1", "localhost")
    res = run_cli("bench", "--from", pair.src, "--to", other_name, "--rows", "100")
    assert res.returncode == 2
    assert "same database" in res.stderr
    assert SCHEMA not in _schemas(pair.src)


def test_leaves_a_schema_of_that_name_it_did_not_create(pair):
    pair.target(f"CREATE SCHEMA {SCHEMA}; CREATE TABLE {SCHEMA}.mine (id int); INSERT INTO {SCHEMA}.mine VALUES (1)")
    res = run_cli("bench", "--from", pair.src, "--to", pair.dst, "--rows", "100", "--repeat", "1")
    assert res.returncode == 2
    assert "did not create" in res.stderr
    assert pair.qt(f"SELECT id FROM {SCHEMA}.mine") == [(1,)]
    assert SCHEMA not in _schemas(pair.src)


def test_bad_options_are_usage_errors():
    assert run_cli("bench", "--shape", "nope").returncode == 2
    assert run_cli("bench", "--from", "postgresql://x@127.0.0.1:1/x").returncode == 2




def test_incremental_case_reports_the_three_runs_and_every_table_incremental():
    res = run_cli("bench", "--incremental", "--rows", "600", "--format", "json")
    assert res.returncode == 0, res.stderr
    report = json.loads(res.stdout)
    assert report["rows"] == {"users": 600, "orders": 1200, "events": 3000}
    assert report["modes"] == {"users": "incremental", "orders": "incremental", "events": "incremental"}
    for t, (inserted, updated, deleted) in report["counts"].items():
        assert inserted + updated + deleted == report["changed"][t] and deleted > 0, t
    assert report["full_s"] > 0 and report["incremental_s"] > 0 and report["unchanged_s"] > 0
    assert len(report["ratios"]) == 2
