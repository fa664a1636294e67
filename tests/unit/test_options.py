"""One flag, one name (issue 13, point 9 and D7): the load flags travel in one LoadOptions struct from
the command line to the pump, each field named like its flag and checked once at the edge; sync, scan and
verify read their source and tables from one shared Scope. Each command runs in this process with its use
case replaced by one that records what it was given (as in test_cli_wrapper.py);
tests/e2e/test_options.py shows the target server receiving the batches the flag asked for."""

from __future__ import annotations

import importlib
import inspect
import os
import re
from pathlib import Path

import msgspec
import pytest
import typer

import confiture_fast
from confiture_fast.request import LoadOptions, Scope, Selection

PACKAGE = Path(confiture_fast.__file__).parent
LOAD_FLAGS = {"--parallel": 3, "--batch-size": 7, "--slice-size": 9, "--retries": 4}
BASE = {"sync": ["sync", "--from", "a", "--to", "b"], "scan": ["scan", "--from", "a"],
        "verify": ["verify", "--from", "a", "--to", "b"], "bench": ["bench"]}
USE_CASE = {"sync": "run_sync", "scan": "run_scan", "verify": "run_verify", "bench": "run_bench"}


def _given(monkeypatch, capsys, command: str, *extra: str):
    """Runs `command` with `extra` flags; returns (exit code, stderr, what the use case received or None)."""
    from confiture_fast.cli.app import app

    got = []

    def record(request, *args, **kwargs):
        got.append(request)
        raise typer.Exit(0)  # past the use case: nothing to render

    monkeypatch.setattr(importlib.import_module(f"confiture_fast.cli.{command}"), USE_CASE[command], record)
    code = app([*BASE[command], *extra], standalone_mode=False, prog_name="confiture-fast")
    return code, capsys.readouterr().err, got[0] if got else None


def _field(flag: str) -> str:
    return flag.removeprefix("--").replace("-", "_")


@pytest.mark.parametrize("flag", sorted(LOAD_FLAGS))
def test_each_load_flag_lands_in_the_field_of_its_own_name(monkeypatch, capsys, flag):
    code, err, req = _given(monkeypatch, capsys, "sync", flag, str(LOAD_FLAGS[flag]))
    assert code == 0, err
    assert getattr(req.load, _field(flag)) == LOAD_FLAGS[flag]
    others = {f: getattr(req.load, f) for f in LoadOptions.__struct_fields__ if f != _field(flag)}
    defaults = msgspec.structs.asdict(LoadOptions(parallel=os.cpu_count() or 1))
    assert others == {f: v for f, v in defaults.items() if f != _field(flag)}


def test_the_load_flags_together_make_one_struct_and_parallel_defaults_to_the_cores(monkeypatch, capsys):
    args = [str(x) for kv in LOAD_FLAGS.items() for x in kv]
    _, _, req = _given(monkeypatch, capsys, "sync", *args)
    assert req.load == LoadOptions(parallel=3, batch_size=7, slice_size=9, retries=4)
    _, _, req = _given(monkeypatch, capsys, "sync")
    assert req.load == LoadOptions(parallel=os.cpu_count() or 1)


def test_the_struct_rebuilds_its_own_command_line(monkeypatch, capsys):
    """bench runs each contender as `sync ... *load.flags()`: the child parses the very same struct."""
    load = LoadOptions(parallel=2, batch_size=11, slice_size=3, retries=0)
    _, _, req = _given(monkeypatch, capsys, "sync", *load.flags())
    assert req.load == load


def test_bench_builds_the_same_struct_for_its_contenders(monkeypatch, capsys):
    from confiture_fast.bench import Options, _contenders

    _, err, opts = _given(monkeypatch, capsys, "bench", "--parallel", "2", "--batch-size", "7")
    assert opts.load == LoadOptions(parallel=2, batch_size=7), err
    syncs = [c for c in _contenders(opts, None, anonymize=True) if c.kind == "sync"]
    assert [c.load for c in syncs] == [opts.load, opts.load]
    swept = [c.load for c in _contenders(Options(sweep=True), None, anonymize=False) if c.kind == "sync"]
    assert {(c.parallel, c.batch_size) for c in swept} >= {(1, 1000), (4, 20000)}
    assert all(msgspec.structs.replace(c, parallel=1, batch_size=5000) == LoadOptions() for c in swept)


BAD = [("sync", "--parallel", "0", "1 to 64"), ("sync", "--parallel", "65", "1 to 64"),
       ("sync", "--batch-size", "0", "1 or more"), ("sync", "--slice-size", "0", "1 or more (MiB)"),
       ("sync", "--retries", "-1", "0 to 10"), ("sync", "--retries", "11", "0 to 10"),
       ("bench", "--parallel", "0", "1 to 64"), ("bench", "--batch-size", "-5", "1 or more")]


@pytest.mark.parametrize("command, flag, value, allowed", BAD, ids=[f"{c}{f}={v}" for c, f, v, _ in BAD])
def test_a_value_out_of_range_is_refused_at_the_edge_in_one_line_with_exit_2(monkeypatch, capsys, command, flag,
                                                                              value, allowed):
    code, err, req = _given(monkeypatch, capsys, command, flag, value)
    assert code == 2 and req is None  # the use case never ran
    message, fix = err.splitlines()
    assert message == f"error: {flag} {value} is out of range: it takes {allowed}"
    assert fix.startswith(f"  fix: pass {flag} ") and "leave it out (default: " in fix


NOT_NUMBERS = [("sync", "--parallel", "many", "1 to 64"), ("sync", "--batch-size", "abc", "1 or more"),
               ("sync", "--slice-size", "1.5", "1 or more (MiB)"), ("sync", "--retries", "", "0 to 10"),
               ("bench", "--batch-size", "5k", "1 or more")]


@pytest.mark.parametrize("command, flag, value, allowed", NOT_NUMBERS, ids=[f"{c}{f}={v}" for c, f, v, _ in NOT_NUMBERS])
def test_a_value_that_is_not_a_whole_number_is_our_one_line_error_not_a_usage_box(monkeypatch, capsys, command, flag,
                                                                                 value, allowed):
    code, err, req = _given(monkeypatch, capsys, command, flag, value)
    assert code == 2 and req is None
    message, fix = err.splitlines()
    assert message == f"error: {flag} {value!r} is not a whole number: it takes {allowed}"
    assert fix.startswith(f"  fix: pass {flag} ")


SCOPE_ARGS = ["--env-dir", "envs", "--source-port", "6000", "--tables", "a,b", "--tables", "c", "--include", "crm.*",
              "--exclude", "logs", "--anonymize-config", "rules.yaml"]
EXPECTED_SCOPE = Scope(source="a", env_dir=Path("envs"), source_port=6000,
                       selection=Selection(("a", "b", "c"), ("crm.*",), ("logs",)), rules_path=Path("rules.yaml"))


@pytest.mark.parametrize("command", ["sync", "scan", "verify"])
def test_sync_scan_and_verify_read_the_same_scope_from_the_same_flags(monkeypatch, capsys, command):
    code, err, req = _given(monkeypatch, capsys, command, *SCOPE_ARGS)
    assert code == 0, err
    assert req.scope == EXPECTED_SCOPE


@pytest.mark.parametrize("request_type", ["sync.SyncRequest", "scan.ScanRequest", "verify.VerifyRequest"])
def test_the_requests_hold_the_scope_and_do_not_repeat_its_fields(request_type):
    module, name = request_type.split(".")
    cls = getattr(importlib.import_module(f"confiture_fast.{module}"), name)
    hints = msgspec.structs.fields(cls)
    assert [f.type for f in hints if f.name == "scope"] == [Scope]
    repeated = {"source", "env_dir", "source_port", "tables", "include", "exclude", "rules_path", "selection"}
    assert repeated.isdisjoint(f.name for f in hints)


def test_every_sync_flag_reaches_the_request_by_its_own_name():
    """Adding a sync flag is a parameter of cli.sync.command plus a SyncRequest field of the same name; only
    the flags parsed into a struct or renamed on the way are translated, each in cli.sync._request."""
    from confiture_fast.cli import sync as cli_sync
    from confiture_fast.sync import SyncRequest

    params = set(inspect.signature(cli_sync.command).parameters)
    fields = set(SyncRequest.__struct_fields__)
    translated = {"source", "env_dir", "source_port", "tables", "include", "exclude", "anonymize", "anonymize_config",
                  "where", "sample", "subset_config", "parallel", "batch_size", "slice_size", "retries", "fmt",
                  "no_wait"}
    assert params - fields - translated == {"debug"}
    assert fields - params == {"scope", "load", "json", "wait"}


OLD_NAMES = ("flush_rows", "flush_bytes", "slice_bytes", "slice_mb")


def test_no_module_uses_the_old_names_of_the_load_options():
    sources = [p for p in PACKAGE.rglob("*") if p.suffix in {".py", ".pyx", ".pxd", ".h"}]
    assert len(sources) > 20
    found = [f"{p.relative_to(PACKAGE)}: {name}" for p in sources for name in OLD_NAMES
             if re.search(rf"\b{name}\b", p.read_text(encoding="utf-8"))]
    assert found == []


def test_one_struct_is_read_from_the_cli_to_the_pump():
    """The coordinator's and the worker's settings hold the LoadOptions itself, not copies of its fields."""
    from confiture_fast.coordinator import RunOptions
    from confiture_fast.worker import WorkerConfig

    for cls in (RunOptions, WorkerConfig):
        fields = {f.name: f.type for f in msgspec.structs.fields(cls)}
        assert fields["load"] is LoadOptions
        assert set(fields).isdisjoint(LoadOptions.__struct_fields__)
