"""Red-team pass on subsets: conditions that try to leave the snapshot's read-only transaction, and
what reaches the source. Each test failed before its fix."""

from __future__ import annotations

import pytest

ESCAPES = [
    # closes the EXPLAIN's parentheses, ends the snapshot's transaction, writes in a read-write one
    "users: true); COMMIT; BEGIN READ WRITE; INSERT INTO public.log VALUES ('pwn'); COMMIT; SELECT (1",
    "users: true); ROLLBACK; SET default_transaction_read_only = off; INSERT INTO public.log VALUES ('pwn'); SELECT (1",
]


@pytest.mark.parametrize("where", ESCAPES)
def test_a_condition_with_statements_of_its_own_never_runs_them(pair, where):
    pair.both("CREATE TABLE users (id int PRIMARY KEY, email text); CREATE TABLE log (x text)")
    pair.source("INSERT INTO users SELECT g, 'u' || g || '@x.com' FROM generate_series(1, 10) g")
    res = pair.sync("--where", where)
    assert res.returncode == 2, res.stderr
    assert "Traceback" not in res.stderr and "internal error" not in res.stderr
    assert "the condition on users" in res.stderr and "one SQL condition" in res.stderr
    assert pair.qs("SELECT count(*) FROM log") == [(0,)]  # nothing written to the source
    assert pair.qt("SELECT count(*) FROM users") == [(0,)]  # the target untouched
