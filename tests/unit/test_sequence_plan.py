"""Which target sequences build_plan resets after the load, from where, and which privileges it asks for,
on synthetic catalogs."""

from __future__ import annotations

import pytest

from confiture_fast.catalog import Sequence
from confiture_fast.errors import ValidationError
from confiture_fast.plan import Selection, SequenceSync, build_plan

from .catalog_builder import SECRET, catalog, col, table


def plan_of(src_seqs, dst_seqs, *, id_type="int4"):
    src = catalog(table("users", col("id", id_type), sequences=src_seqs))
    dst = catalog(table("users", col("id", id_type), sequences=dst_seqs), role="loader")
    return build_plan(src, dst, Selection(), None, SECRET)


def test_a_target_sequence_follows_the_source_columns_own_sequence():
    plan = plan_of((Sequence("id", '"public"."users_id_seq"'),), (Sequence("id", '"public"."users_id_seq"'),))
    assert plan.sequences == (SequenceSync("users", "id", '"public"."users_id_seq"', '"public"."users_id_seq"'),)


def test_a_source_sequence_only_usable_through_pg_sequence_last_value_is_read_inexactly_from_its_start():
    seq = Sequence("id", '"public"."s"', can_select=False, can_usage=True, start=1000)
    (s,) = plan_of((seq,), (Sequence("id", '"public"."s"'),)).sequences
    assert not s.exact and s.start == 1000


def test_without_a_source_sequence_an_integer_target_sequence_follows_the_loaded_values():
    (s,) = plan_of((), (Sequence("id", '"public"."users_id_seq"'),)).sequences
    assert s.source is None and s.follow == 'SELECT max("id")::bigint FROM "public"."users"'
    assert plan_of((), (Sequence("id", '"public"."s"'),), id_type="text").sequences == ()


def test_sequence_privileges_are_checked_while_planning():
    hidden = Sequence("id", '"public"."s"', can_select=False, can_usage=False)
    locked = Sequence("id", '"public"."s"', can_update=False)
    with pytest.raises(ValidationError) as info:
        plan_of((hidden,), (locked,))
    assert info.value.problems == [
        'users.id: the target user cannot reset its sequence "public"."s" after the load: '
        'GRANT UPDATE ON SEQUENCE "public"."s" TO "loader"',
        'users.id: the source user cannot read its sequence "public"."s": GRANT SELECT ON SEQUENCE "public"."s" '
        'TO "sync", or --exclude users']
