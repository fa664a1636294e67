"""incremental.py's decisions, without a server: the 32-bit xid window against a recorded 64-bit
horizon (wraparound included), which tables go incremental and why the others are reloaded in full."""

from __future__ import annotations

import re

import msgspec
import pytest

from confiture_fast import incremental as inc
from confiture_fast.plan import Selection, build_plan

from .catalog_builder import SECRET, catalog, col, fk, pk_index, rules, table

E = 1 << 32  # one epoch of 32-bit transaction ids


def matches(predicate: str, xmin: int) -> bool:
    """Evaluates window_predicate's SQL for a row's 32-bit xmin, as the server would."""
    py = predicate.replace("xmin::text::bigint", str(xmin)).replace("AND", "and").replace("OR", "or")
    assert re.fullmatch(r"[\d\s()<>=andorfalse]+", py), py
    return eval(py.replace("false", "False"))  # noqa: S307 - digits, comparisons and and/or only


@pytest.mark.parametrize("horizon, xmax", [(1000, 5000), (3 * E + 100, 3 * E + 90_000), (5 * E - 10, 5 * E + 10),
                                           (7 * E + 5, 7 * E + (1 << 31) - 1)])
def test_the_window_holds_every_xid_written_since_the_horizon_and_none_older(horizon, xmax):
    window = inc.xid_window(horizon, horizon, xmax)
    assert isinstance(window, tuple)
    predicate = inc.window_predicate(*window)
    for xid64 in (horizon, horizon + 1, (horizon + xmax) // 2, xmax - 1):
        assert matches(predicate, xid64 % E), xid64  # no false negative: a changed row is copied
    for xid64 in (horizon - 1, horizon - 1000, xmax, xmax + 10):
        assert not matches(predicate, xid64 % E), xid64  # older rows (within 2^31) are left alone


def test_a_window_across_the_32_bit_wraparound_takes_both_ends():
    lo, hi = inc.xid_window(2 * E - 100, 2 * E - 50, 2 * E + 100)
    assert (lo, hi) == (E - 100, 100)
    p = inc.window_predicate(lo, hi)
    assert matches(p, E - 1) and matches(p, 3) and matches(p, 99) and not matches(p, 100) and not matches(p, E - 101)


def test_an_old_frozen_row_may_fall_in_the_window_which_only_costs_a_copy():
    """A frozen tuple keeps its xmin (PostgreSQL 9.4+); one older than 2^32 transactions can read as
    inside the window: a false positive, copied again, never a missed change."""
    horizon = 9 * E + 500
    p = inc.window_predicate(*inc.xid_window(horizon, horizon, horizon + 1000))
    assert matches(p, (horizon - E + 10) % E)


def test_nothing_ran_since_the_horizon_means_an_empty_window():
    assert inc.window_predicate(*inc.xid_window(777, 777, 777)) == "false"


def test_the_window_is_refused_at_2_31_transactions_and_when_the_counter_went_back():
    assert isinstance(inc.xid_window(E, E, E + (1 << 31) - 1), tuple)
    assert "more than 2^31" in inc.xid_window(E, E + 5, E + (1 << 31))
    assert "has not yet seen" in inc.xid_window(E + 10, E + 5, E + 50)


def test_a_standby_behind_the_last_syncs_snapshot_is_refused():
    """Its xmin below the recorded horizon: a transaction the last sync saw committed may still run
    there, its rows invisible now and outside the window later: they would be lost."""
    assert "hot standby" in inc.xid_window(1000, 999, 5000)


def _plan(spec=None, secret=SECRET, users_cols=None):
    users = table("users", *(users_cols or (col("id", "int4"), col("email"), col("name"))), indexes=(pk_index("users"),))
    orders = table("orders", col("id", "int8"), col("user_id", "int4"),
                   foreign_keys=(fk("orders_user_fk", "orders", ("user_id",), "users", ("id",)),))
    cat = catalog(users, orders)
    plan = build_plan(cat, cat, Selection(), rules(spec) if spec else None, secret)
    return cat, {t.name: t for t in plan.tables}


def _state(t, secret_fp="s1", horizon=100, key=("id",)):
    return inc.table_state(t, "src", (1, 2), secret_fp, key, horizon)


def test_an_unchanged_table_goes_incremental():
    _, p = _plan({"users": {"email": "email"}})
    before = _state(p["users"])
    assert inc.full_reason(_state(p["users"], horizon=500), before, 600, []) is None


@pytest.mark.parametrize("change, why", [
    (lambda s: None, "no state recorded"),
    (lambda s: msgspec.structs.replace(s, source="other"), "another source database"),
    (lambda s: msgspec.structs.replace(s, source_table=9), "source table was created again"),
    (lambda s: msgspec.structs.replace(s, target_table=9), "target table was created again"),
    (lambda s: msgspec.structs.replace(s, secret="s0"), "secret changed"),
    (lambda s: msgspec.structs.replace(s, key=("id", "x")), "primary key changed"),
    (lambda s: msgspec.structs.replace(s, horizon=600 - (1 << 31)), "more than 2^31"),
])
def test_what_the_last_sync_recorded_decides_a_full_reload_and_says_why(change, why):
    _, p = _plan({"users": {"email": "email"}})
    assert why in inc.full_reason(_state(p["users"], horizon=500), change(_state(p["users"])), 600, [])


def test_changed_rules_secret_or_columns_change_the_fingerprints():
    _, base = _plan({"users": {"email": "email"}})
    _, strategy = _plan({"users": {"email": "hash"}})
    _, other_secret = _plan({"users": {"email": "email"}}, secret=b"another-secret-0123456789abcdef")
    _, seed = _plan({"users": {"email": {"strategy": "email", "seed": "s2"}}})
    _, cols = _plan({"users": {"email": "email"}}, users_cols=(col("id", "int4"), col("email"), col("name"), col("x")))
    b = _state(base["users"])
    assert _state(strategy["users"]).rules != b.rules
    assert _state(other_secret["users"]).rules != b.rules  # the keys the secret derives
    assert _state(seed["users"]).rules != b.rules
    assert _state(cols["users"]).columns != b.columns
    assert "rules changed" in inc.full_reason(_state(strategy["users"]), b, 200, [])
    assert "columns changed" in inc.full_reason(_state(cols["users"]), b, 200, [])
    assert _state(base["orders"]).rules == _state(_plan({"users": {"email": "email"}})[1]["orders"]).rules


def test_a_table_without_a_primary_key_or_with_its_key_not_copied_is_reloaded_in_full():
    cat, p = _plan()
    assert "no primary key" in inc.blockers(p["users"], cat.tables[("public", "users")], (), "replica", False)[0]
    assert "not copied" in inc.blockers(p["users"], cat.tables[("public", "users")], ("nope",), "replica", False)[0]
    assert inc.blockers(p["users"], cat.tables[("public", "users")], ("id",), "replica", True) == []


def test_foreign_keys_without_replica_mode_force_a_full_reload():
    cat, p = _plan()
    users, orders = cat.tables[("public", "users")], cat.tables[("public", "orders")]
    assert "foreign keys" in inc.blockers(p["users"], users, ("id",), "disable-user-triggers", True)[0]
    assert "foreign keys" in inc.blockers(p["orders"], orders, ("id",), "disable-user-triggers", False)[0]


def test_a_large_share_of_changed_rows_is_reloaded_in_full():
    assert inc.too_large(50, 1000) is None
    assert "51 of its 1,000 rows changed (more than 5%" in inc.too_large(51, 1000)
    assert inc.too_large(0, 0) is None


def test_key_ranges_hold_about_bucket_rows_and_differ_where_counts_or_hashes_do():
    assert inc.bucket_width(1, 1_000_000, 1_000_000) == (1_000_000 - 1) // (1_000_000 // inc.BUCKET_ROWS) + 1
    assert inc.bucket_width(None, None, 0) == 1
    assert inc.bucket_width(1, 10**12, 10**9) == (10**12 - 1) // inc.MAX_BUCKETS + 1
    src = {0: (10, 55), 1: (10, 155), 3: (1, 7)}
    dst = {0: (10, 55), 1: (10, 154), 2: (4, 9)}
    assert inc.differing(src, dst) == [1, 2, 3]
