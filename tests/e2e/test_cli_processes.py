"""The command line as processes see it (issue 13, point 2): every module imports in a fresh
interpreter, the entry point loads no command line, running `sync` loads no other command, and a
real SIGTERM or SIGINT ends scan and verify with 143 or 130 like every command. No PostgreSQL server:
a socket that never answers stands for one."""

from __future__ import annotations

import ast
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

import confiture_fast

PACKAGE = Path(confiture_fast.__file__).parent
MODULES = sorted(".".join(("confiture_fast", *p.relative_to(PACKAGE).with_suffix("").parts)).removesuffix(".__init__")
                 for p in PACKAGE.rglob("*.py"))
COMMANDS = ("sync", "scan", "verify", "bench", "demo")
UNWANTED_BY_SYNC = {"confiture_fast.bench", "confiture_fast.verify", "confiture_fast.sample", "confiture_fast.demo"}


def _loaded(code: str) -> tuple[list[str], set[str]]:
    """What `code` printed before the last line, and the confiture_fast and UI modules loaded by then."""
    code += ("\nimport sys\nprint(sorted(m for m in sys.modules if m.split('.')[0] in "
             "('confiture_fast', 'typer', 'rich', 'click')))\n")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    *lines, last = res.stdout.strip().splitlines() or [""]
    assert res.returncode == 0 and last.startswith("["), res.stderr
    return lines, set(ast.literal_eval(last))


def test_every_module_imports_in_a_fresh_interpreter():
    code = ("import importlib, sys\n"
            f"for m in {sorted(MODULES)!r}:\n"
            "    importlib.import_module(m)\n")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr


def test_the_entry_point_loads_no_command_line():
    """Spawned workers re-import the main module when they start."""
    _, loaded = _loaded("import confiture_fast.__main__")
    assert not {m for m in loaded if m.split(".")[0] in ("typer", "rich", "click") or m.startswith("confiture_fast.cli")}


def test_running_sync_loads_no_other_command():
    lines, loaded = _loaded("from confiture_fast.cli.app import app\n"
                            "try:\n"
                            "    app(['sync', '--from', 'nosuch-env', '--to', 'other-env', '--env-dir', '/nonexistent'])\n"
                            "except SystemExit as exc:\n"
                            "    print(exc.code)\n")
    assert lines == ["2"]  # the unknown environment: a configuration error
    assert "confiture_fast.cli.sync" in loaded and "confiture_fast.config" in loaded
    assert not loaded & UNWANTED_BY_SYNC
    assert not loaded & {f"confiture_fast.cli.{c}" for c in COMMANDS if c != "sync"}


@pytest.fixture
def silent_server():
    """A TCP port that accepts connections and never answers: a client waits there until stopped."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        sock.settimeout(60)
        yield sock


@pytest.mark.parametrize("sig, expected", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
@pytest.mark.parametrize("command", ["scan", "verify"])
def test_a_real_signal_while_connecting_exits_143_or_130(silent_server, command, sig, expected):
    port = silent_server.getsockname()[1]
    uri = f"postgresql://nobody@127.0.0.1:{port}/db"
    argv = [command, "--from", uri] + (["--to", uri] if command == "verify" else [])
    proc = subprocess.Popen([sys.executable, "-m", "confiture_fast", *argv], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "PGCONNECT_TIMEOUT": "60"})
    try:
        conn, _ = silent_server.accept()  # the command is now waiting for the server's answer
        with conn:
            proc.send_signal(sig)
            out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == expected, err
    assert "Traceback" not in err and out == ""
