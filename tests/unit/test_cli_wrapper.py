"""The one error wrapper every command runs through (issue 13, points 2 and 8): the same exit codes,
the same one-line messages, the same redaction and --debug, Ctrl-C and SIGTERM -> 130 / 143, for
sync, scan, verify, bench and demo alike, each run in this process with its use case replaced by
one that raises. tests/e2e/test_cli_processes.py sends real signals."""

from __future__ import annotations

import importlib

import pytest

from confiture_fast.errors import ConfigError, SyncError, Terminated

SECRET = "s3cr3t-pw-in-a-message"

# command line, module of confiture_fast.cli, the use case it calls, what it says when interrupted
COMMANDS = {
    "sync": (["sync", "--from", "a", "--to", "b"], "run_sync",
             "interrupted before the load started: the target was not changed"),
    "scan": (["scan", "--from", "a"], "run_scan", None),
    "verify": (["verify", "--from", "a", "--to", "b"], "run_verify", None),
    "bench": (["bench"], "run_bench", "interrupted: the scratch schema was dropped"),
    "demo": (["demo"], "run_demo", None),
}


def _redact(secret: str) -> None:
    from confiture_fast.redact import Redactor

    Redactor.add(secret)


def _run(monkeypatch, capsys, command: str, exc: BaseException, *extra: str) -> tuple[int, str, str]:
    from confiture_fast.cli.app import app

    argv, use_case, _ = COMMANDS[command]

    def fail(*args, **kwargs):
        raise exc

    monkeypatch.setattr(importlib.import_module(f"confiture_fast.cli.{command}"), use_case, fail)
    code = app([*argv, *extra], standalone_mode=False, prog_name="confiture-fast")
    out, err = capsys.readouterr()
    return code, out, err


def test_the_table_and_this_test_name_the_same_commands():
    from confiture_fast.cli.app import COMMANDS as table

    assert sorted(name for name, _ in table) == sorted(COMMANDS)


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_a_configuration_error_is_one_redacted_line_and_exit_2(monkeypatch, capsys, command):
    _redact(SECRET)
    code, out, err = _run(monkeypatch, capsys, command, ConfigError(f"bad password {SECRET}", "give another one"))
    assert code == 2 and out == ""
    assert err == "error: bad password ***\n  fix: give another one\n"


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_a_failure_exits_1(monkeypatch, capsys, command):
    code, _, err = _run(monkeypatch, capsys, command, SyncError("the load failed"))
    assert code == 1 and err == "error: the load failed\n"


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_an_internal_error_names_its_type_and_asks_for_debug(monkeypatch, capsys, command):
    _redact(SECRET)
    code, _, err = _run(monkeypatch, capsys, command, RuntimeError(f"boom {SECRET}"))
    assert code == 1
    assert err == ("error: internal error: RuntimeError: boom ***\n"
                   "  fix: rerun with --debug and report the traceback\n")


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_debug_shows_the_traceback_redacted(monkeypatch, capsys, command):
    _redact(SECRET)
    code, _, err = _run(monkeypatch, capsys, command, RuntimeError(f"boom {SECRET}"), "--debug")
    assert code == 1
    assert "Traceback (most recent call last)" in err and "RuntimeError: boom ***" in err
    assert SECRET not in err


@pytest.mark.parametrize("command", sorted(COMMANDS))
@pytest.mark.parametrize("exc, expected", [(KeyboardInterrupt(), 130), (Terminated(), 143)])
def test_interrupted_exits_130_or_143(monkeypatch, capsys, command, exc, expected):
    code, out, err = _run(monkeypatch, capsys, command, exc)
    assert code == expected and out == ""
    said = COMMANDS[command][2]
    assert err == (f"{said}\n" if said else "")
