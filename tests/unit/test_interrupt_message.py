"""Ctrl-C before the load says "the target was not changed" only while that is true: once a phase that
writes has begun, the message says what the next run does instead."""

from __future__ import annotations

import importlib
import io
from types import SimpleNamespace

from rich.console import Console

from confiture_fast import sync


def _interrupt(r):
    raise KeyboardInterrupt


def _phases_interrupted_in(phase: str) -> tuple[sync.Phase, ...]:
    names = [("plan", False), ("prepare", True), ("finish", True)]
    return tuple(sync.Phase(n, n, _interrupt if n == phase else (lambda r: None), writes=w) for n, w in names)


def _interrupted(phases) -> KeyboardInterrupt:
    console = Console(file=io.StringIO())
    try:
        sync.run_phases(phases, SimpleNamespace(audit=None), console, verbose=False, dry_run=False)
    except KeyboardInterrupt as exc:
        return exc
    raise AssertionError("the interrupt did not reach the caller")


def test_an_interrupt_before_any_writing_phase_keeps_the_commands_own_message():
    assert getattr(_interrupted(_phases_interrupted_in("plan")), "message", None) is None


def test_an_interrupt_once_the_target_is_being_prepared_says_so_and_what_the_next_run_does():
    message = _interrupted(_phases_interrupted_in("prepare")).message
    assert "prepare phase began changing the target" in message and "the next sync" in message
    assert "not changed" not in message


def test_the_sync_command_prints_the_phase_message_instead_of_not_changed(monkeypatch, capsys):
    from confiture_fast.cli.app import app

    def run_sync(*args, **kwargs):
        exc = KeyboardInterrupt()
        exc.message = "interrupted after the prepare phase began changing the target: run the sync again"
        raise exc

    monkeypatch.setattr(importlib.import_module("confiture_fast.cli.sync"), "run_sync", run_sync)
    code = app(["sync", "--from", "a", "--to", "b"], standalone_mode=False, prog_name="confiture-fast")
    err = capsys.readouterr().err
    assert code == 130
    assert "prepare phase began changing the target" in err and "not changed" not in err
