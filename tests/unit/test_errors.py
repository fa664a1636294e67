"""Issue 13, point 8: one error hierarchy; transient failures told by SQLSTATE and side from one table;
no `except ValueError` around more than the one call that raises it."""

from __future__ import annotations

import ast
import pickle
from pathlib import Path

import pytest

import confiture_fast
from confiture_fast import errors
from confiture_fast.errors import (TRANSIENT, BenchError, ConfigError, ConfiturError, RewriteError, SyncError,
                                   UnitFailed, ValidationError, transient)

PACKAGE = Path(confiture_fast.__file__).parent


# --------------------------------------------------------------------------- the hierarchy


def test_every_error_a_user_sees_is_a_confitur_error_with_its_exit_code():
    assert issubclass(ValidationError, ConfigError) and ConfigError.exit_code == 2
    for cls in (UnitFailed, BenchError, RewriteError):
        assert issubclass(cls, SyncError) and issubclass(cls, ConfiturError) and cls.exit_code == 1


def test_the_rewriters_error_is_no_value_error():
    """A ValueError handler near the rewriter can no longer swallow it, nor it pass for one."""
    assert not issubclass(RewriteError, ValueError)


def test_the_strategy_registry_hands_the_compiled_rewriter_the_one_rewrite_error():
    from confiture_fast import strategies

    assert strategies.RewriteError is RewriteError and strategies.COMPILED.error is RewriteError


def test_the_bench_raises_the_hierarchys_bench_error():
    from confiture_fast import bench

    assert bench.BenchError is BenchError


def test_a_unit_failure_crosses_the_process_pool_whole():
    failed = UnitFailed("users", "target: value too long", "target", "22001", "email")
    back = pickle.loads(pickle.dumps(failed))
    assert (back.table, back.detail, back.side, back.sqlstate, back.column) == ("users", "target: value too long",
                                                                              "target", "22001", "email")
    assert str(back) == "users: target: value too long"
    assert back.fix_for(None) == failed.fix_for(None)


def test_a_rewrite_error_names_table_row_and_column_and_pickles():
    err = pickle.loads(pickle.dumps(RewriteError("users", 3, "email", "invalid UTF-8")))
    assert str(err) == "table 'users', row 3, column 'email': invalid UTF-8"
    assert (err.table, err.row, err.column, err.problem) == ("users", 3, "email", "invalid UTF-8")


# --------------------------------------------------------------------------- the transient table


@pytest.mark.parametrize("state, side", [
    ("08006", "source"), ("08006", "target"), ("08001", "target"), ("08003", "source"),  # connection lost / none
    ("57P01", "source"), ("57P01", "target"), ("57P02", "target"), ("57P03", "source"),  # shutdown, restart
    ("40001", "target"), ("40P01", "target"), ("40P01", "source"),  # serialization, deadlock
    ("53300", "source"), ("53300", "target"),  # too many connections: on either side
    ("53200", "target"), ("53000", "target"),  # memory: on the target
])
def test_failures_that_may_pass_next_time_are_transient(state, side):
    assert transient(state, side)


@pytest.mark.parametrize("state, side", [
    ("42501", "source"), ("42501", "target"),  # permission
    ("22001", "target"), ("22P02", "target"), ("22021", "source"), ("22003", "target"),  # data exceptions
    ("23505", "target"), ("23503", "target"), ("23514", "target"), ("23502", "target"),  # constraints
    ("42P01", "source"), ("42703", "target"), ("42883", "target"),  # undefined objects
    ("22023", "source"), ("42704", "source"),  # a snapshot that no longer exists (by version)
    ("53200", "source"),  # the source is only read: a retry loads production again
    ("53100", "target"), ("53400", "target"),  # disk full, a configured limit: the same again
    ("57014", "target"),  # statement_timeout, pg_cancel_backend
    ("XX000", "target"), ("0A000", "source"),  # internal error, feature not supported: no rule
])
def test_failures_a_rerun_would_repeat_are_not_transient(state, side):
    assert not transient(state, side)


def test_a_failure_outside_a_side_is_never_transient():
    assert not transient("08006", "") and not transient(None, "", "server closed the connection")


@pytest.mark.parametrize("message, retry", [
    ("server closed the connection unexpectedly", True),
    ("consuming input failed: terminating connection because of crash of another server process", True),
    ('connection to server at "127.0.0.1", port 5432 failed: Connection refused', True),
    ('connection to server at "127.0.0.1", port 5432 failed: FATAL:  the database system is starting up', True),
    ('connection to server at "127.0.0.1", port 5432 failed: FATAL:  password authentication failed for user "a"',
     False),
    ('connection to server at "127.0.0.1", port 5432 failed: FATAL:  database "nope" does not exist', False),
    ('connection to server at "127.0.0.1", port 5432 failed: FATAL:  permission denied for database "d"', False),
    ("row count mismatch on t: read 3 rows from the source, the target took 2", False),
])
def test_without_a_sqlstate_libpqs_text_tells(message, retry):
    assert transient(None, "target", message) is retry
    assert transient(None, "source", message) is retry


def test_every_rule_says_why_and_no_two_rules_claim_the_same_state_and_side():
    seen = set()
    for rule in TRANSIENT:
        assert rule.why and len(rule.state) in (2, 5) and set(rule.sides) <= {"source", "target"}
        for side in rule.sides:
            assert (rule.state, side) not in seen, rule
            seen.add((rule.state, side))


def test_the_most_specific_rule_decides():
    assert errors.rule("53100", "target").state == "53100" and errors.rule("53210", "target").state == "53"
    assert errors.rule("42704", "source").state == "42704" and errors.rule("42704", "target").state == "42"
    assert errors.rule("0A000", "target") is None


def test_a_unit_failure_is_retried_by_the_same_table():
    assert UnitFailed("t", "target: deadlock detected", "target", "40P01").transient
    assert not UnitFailed("t", "target: permission denied", "target", "42501").transient
    assert not UnitFailed("t", "source: password authentication failed", "source").transient


def test_a_resource_failure_names_the_resource_even_when_retried():
    fix = UnitFailed("t", "target: out of memory", "target", "53200").fix_for(None)
    assert "memory" in fix and "sync again" in fix


def test_an_ended_snapshot_says_to_sync_again_not_to_fix_a_value():
    fix = UnitFailed("t", 'source: invalid snapshot identifier: "00000003-1"', "source", "22023").fix_for("cp.json")
    assert "snapshot" in fix and "--resume --checkpoint cp.json" in fix and "value" not in fix


# --------------------------------------------------------------------------- except ValueError


def _value_error_handlers() -> list[tuple[str, int, ast.Try]]:
    out = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Try):
                for h in node.handlers:
                    names = h.type.elts if isinstance(h.type, ast.Tuple) else [h.type]
                    if any(isinstance(n, ast.Name) and n.id == "ValueError" for n in names):
                        out.append((path.name, h.lineno, node))
    return out


def test_every_except_value_error_guards_one_statement():
    """A bare ValueError handler around several statements catches the errors of calls it was not
    written for (as the worker's once caught every ValueError as the rewriter's)."""
    wide = [(name, line) for name, line, node in _value_error_handlers() if len(node.body) != 1]
    assert wide == []


def test_the_worker_catches_the_rewriters_error_by_its_name():
    assert not [h for h in _value_error_handlers() if h[0] == "worker.py"]
    source = (PACKAGE / "worker.py").read_text()
    assert "except RewriteError" in source
