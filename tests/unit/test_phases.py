"""The sync as an ordered table of phases (issue 13, points 3 and 7): the table is complete and in
order, its loop numbers, times, skips and stops as documented, and the coordinator only schedules and
reports: the SQL that changes the target lives in prepare.py and finish.py. Read from the source
with ast where it is structural; the loop runs on fake phases, without a server."""

from __future__ import annotations

import ast
import io
import re
from pathlib import Path
from types import SimpleNamespace

import pytest
from rich.console import Console

import confiture_fast
from confiture_fast import sync
from confiture_fast.errors import ConfigError

PACKAGE = Path(confiture_fast.__file__).parent
ORDER = ("resolve", "connect", "plan", "strict", "schema", "prepare", "load", "finish", "report")
# a statement that changes a database: its first word (of a string, or after a ';'), or a setval anywhere
WRITES = r"(?:^|;)\s*(?:CREATE|DROP|ALTER|TRUNCATE|ANALYZE|INSERT|UPDATE|DELETE|COPY|VACUUM|REINDEX|GRANT|SET)\b|setval"


def _strings(module: str, within: set[str] | None = None) -> list[str]:
    """The string constants of a module (f-strings' literal parts too), or of some of its top-level
    functions and classes."""
    tree = ast.parse((PACKAGE / module).read_text(encoding="utf-8"))
    nodes = [n for n in tree.body if within is None or getattr(n, "name", None) in within]
    return [c.value for n in nodes for c in ast.walk(n) if isinstance(c, ast.Constant) and isinstance(c.value, str)]


def _docstrings(module: str) -> set[str]:
    tree = ast.parse((PACKAGE / module).read_text(encoding="utf-8"))
    return {ast.get_docstring(n, clean=False) for n in ast.walk(tree)
            if isinstance(n, (ast.Module, ast.FunctionDef, ast.ClassDef, ast.AsyncFunctionDef))} - {None}


def _sql_in(module: str, within: set[str] | None = None) -> list[str]:
    docs = _docstrings(module)
    return [s for s in _strings(module, within) if s not in docs and re.search(WRITES, s)]


def test_the_phase_table_is_complete_and_in_order():
    assert tuple(p.name for p in sync.PHASES) == ORDER
    assert all(p.title and callable(p.run) for p in sync.PHASES)


def test_only_schema_prepare_load_and_finish_write_so_a_dry_run_skips_exactly_them():
    assert {p.name for p in sync.PHASES if p.writes} == {"schema", "prepare", "load", "finish"}


def _run(phases, *, verbose=True, dry_run=False, audit=None):
    out = io.StringIO()
    console = Console(file=out, width=200, highlight=False)
    sync.run_phases(phases, SimpleNamespace(audit=audit), console, verbose=verbose, dry_run=dry_run)
    return out.getvalue()


def _steps(text: str) -> list[str]:
    return [m.group(1) for m in re.finditer(r"\d\d:\d\d:\d\d (\[\d/\d\] \w+: .*)", text)]


def test_an_added_phase_runs_in_its_place_numbered_and_timed():
    ran = []
    phases = (sync.Phase("first", "do one", lambda r: ran.append("first")),
              sync.Phase("added", "pre-data", lambda r: ran.append("added"), writes=True),
              sync.Phase("last", "do two", lambda r: ran.append("last")))
    text = _run(phases)
    assert ran == ["first", "added", "last"]
    steps = _steps(text)
    assert steps[0::2] == ["[1/3] first: do one", "[2/3] added: pre-data", "[3/3] last: do two"]
    assert all(re.fullmatch(r"\[\d/3\] \w+: done in \d+\.\d\ds", s) for s in steps[1::2]), steps


def test_a_dry_run_skips_the_phases_that_write_and_says_so():
    ran = []
    phases = (sync.Phase("look", "read", lambda r: ran.append("look")),
              sync.Phase("write", "change", lambda r: ran.append("write"), writes=True),
              sync.Phase("tell", "report", lambda r: ran.append("tell")))
    text = _run(phases, dry_run=True)
    assert ran == ["look", "tell"]
    assert "[2/3] write: skipped (--dry-run)" in _steps(text)


def test_a_phase_skips_itself_with_a_reason():
    phases = (sync.Phase("strict", "scan", lambda r: pytest.fail("ran"), skip=lambda r: "--strict is off"),)
    assert _steps(_run(phases)) == ["[1/1] strict: skipped (--strict is off)"]


def test_without_verbose_the_loop_prints_nothing():
    assert _run((sync.Phase("a", "b", lambda r: None),), verbose=False) == ""


def test_an_error_stops_the_later_phases_and_is_recorded_once_the_audit_has_started():
    written = []
    audit = SimpleNamespace(write=lambda event, **f: written.append((event, f)))
    ran = []

    def fail(r):
        raise ConfigError("the rules name no such column", "fix the rules")

    phases = (sync.Phase("a", "one", fail), sync.Phase("b", "two", lambda r: ran.append("b")))
    with pytest.raises(ConfigError):
        _run(phases, audit=audit)
    assert ran == [] and written == [("end", {"outcome": "error", "error": "the rules name no such column"})]
    with pytest.raises(ConfigError):
        _run(phases, audit=None)  # before the start record: nothing to end


@pytest.mark.parametrize("module", ["coordinator.py", "sync.py"])
def test_the_coordinator_and_the_use_case_hold_no_sql_that_changes_the_target(module):
    assert _sql_in(module) == []


def test_the_coordinator_holds_no_sql_text_and_executes_nothing():
    """Sessions, identities and the snapshot are pg.py's; what changes the target, prepare's and finish's."""
    sql = r"(?:^|;)\s*(?:SELECT|WITH|BEGIN|SHOW|SET|CREATE|DROP|ALTER|TRUNCATE|ANALYZE|INSERT|UPDATE|DELETE|COPY)\b"
    docs = _docstrings("coordinator.py")
    assert [s for s in _strings("coordinator.py") if s not in docs and re.search(sql, s)] == []
    tree = ast.parse((PACKAGE / "coordinator.py").read_text(encoding="utf-8"))
    assert not [c.lineno for c in ast.walk(tree) if isinstance(c, ast.Call) and isinstance(c.func, ast.Attribute)
                and c.func.attr in ("execute", "executemany", "cursor")]


def test_the_load_and_the_report_execute_nothing():
    """Scheduling and reporting only: no statement is executed on either side by the load's code."""
    tree = ast.parse((PACKAGE / "coordinator.py").read_text(encoding="utf-8"))
    scheduling = {"Load", "Workers", "load", "_load", "_poll", "report"}
    nodes = [n for n in tree.body if getattr(n, "name", None) in scheduling]
    assert {n.name for n in nodes} == scheduling
    calls = {c.func.attr for n in nodes for c in ast.walk(n)
             if isinstance(c, ast.Call) and isinstance(c.func, ast.Attribute)}
    assert not calls & {"execute", "executemany", "copy", "cursor", "transaction"}, calls


def test_the_coordinator_neither_prepares_nor_finishes_the_target_itself():
    """It hands loaded tables to finish.Finisher (scheduling) and reports finish's results; the
    statements are prepare's, finish's and target's."""
    tree = ast.parse((PACKAGE / "coordinator.py").read_text(encoding="utf-8"))
    imported = {n.module or a.name for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) for a in n.names}
    assert "finish" in imported and not imported & {"target", "prepare"}, imported


def test_the_target_is_prepared_by_prepare_py_and_finished_by_finish_py():
    prepare, finish = " ".join(_sql_in("prepare.py")), " ".join(_sql_in("finish.py"))
    assert "TRUNCATE" in prepare and "ANALYZE" not in prepare
    assert "ANALYZE" in finish and "TRUNCATE" not in finish
    assert not re.search(r"\b(TRUNCATE|ANALYZE)\b", " ".join(_sql_in("target.py")))
