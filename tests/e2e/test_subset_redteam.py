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


@pytest.mark.parametrize("condition", ["nextval('public.s') > 0", "public.writes()",
                                       "pg_catalog.set_config('transaction_read_only', 'off', true) IS NOT NULL"])
@pytest.mark.parametrize("dry_run", [False, True])
def test_a_condition_that_writes_is_refused_before_the_target_is_touched(pair, condition, dry_run):
    """The source refuses the write (read-only transaction); before, the refusal came from a table's COPY
    after other tables were reloaded (exit 1), or as an internal error from --dry-run's count."""
    pair.both("CREATE TABLE users (id int PRIMARY KEY, email text); CREATE TABLE other (x int); CREATE SEQUENCE s")
    pair.source("INSERT INTO users SELECT g, 'u' || g || '@x.com' FROM generate_series(1, 10) g; "
                "INSERT INTO other VALUES (1); CREATE FUNCTION public.writes() RETURNS bool LANGUAGE plpgsql AS "
                "$$BEGIN INSERT INTO public.other VALUES (2); RETURN true; END$$")
    pair.target("INSERT INTO other VALUES (7)")
    res = pair.sync("--where", f"users: {condition}", *(["--dry-run"] if dry_run else []))
    assert res.returncode == 2, res.stderr
    assert "the condition on users fails on the source" in res.stderr and "internal error" not in res.stderr
    assert pair.qt("SELECT x FROM other") == [(7,)]  # the target untouched
    assert pair.qs("SELECT x FROM other") == [(1,)] and pair.qs("SELECT last_value, is_called FROM s") == [(1, False)]


def test_a_table_or_key_given_twice_in_the_subset_config_is_refused(pair):
    """YAML keeps the last of two equal keys: the first condition was dropped without a word."""
    pair.both("CREATE TABLE users (id int PRIMARY KEY, email text)")
    pair.source("INSERT INTO users SELECT g, 'u' || g || '@x.com' FROM generate_series(1, 10) g")
    config = pair.tmp / "subset.yaml"
    config.write_text("users:\n  where: id = 1\n  where: id > 0\nusers:\n  sample: 50%\n")
    res = pair.sync("--subset-config", str(config))
    assert res.returncode == 2, res.stderr
    assert f"{config}:3: 'where' is given twice (first at line 2)" in res.stderr
    assert f"{config}:4: 'users' is given twice (first at line 1)" in res.stderr
    assert pair.qt("SELECT count(*) FROM users") == [(0,)]


def test_verify_refuses_a_condition_with_statements_of_its_own_too(pair):
    from conftest import run_cli

    pair.both("CREATE TABLE users (id int PRIMARY KEY, email text); CREATE TABLE log (x text)")
    res = run_cli("verify", "--from", pair.src, "--to", pair.dst, "--where", ESCAPES[0])
    assert res.returncode == 2 and "the condition on users" in res.stderr, res.stderr
    assert pair.qs("SELECT count(*) FROM log") == [(0,)]
