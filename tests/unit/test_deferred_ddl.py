"""What build_plan defers on the target (indexes and keys of loaded tables in phase 1, foreign keys from or
into emptied tables in phase 2), what it keeps in place and why, and what it refuses, on synthetic catalogs."""

from __future__ import annotations

import pytest

from confiture_fast.catalog import Dependent
from confiture_fast.errors import ValidationError
from confiture_fast.plan import Selection, build_plan

from .catalog_builder import SECRET, catalog, col, fk, pk_index, plain_index, table


def users(**kw):
    return table("users", col("id", "int4"), col("email"), indexes=(pk_index("users"), plain_index("users", "users_email", "email")), **kw)


def orders(**kw):
    return table("orders", col("id", "int4"), col("user_id", "int4"), indexes=(pk_index("orders"),),
                 foreign_keys=(fk("orders_user_id_fkey", "orders", ("user_id",), "users", ("id",)),), **kw)


def plan_of(source, target=None, sel=Selection(), **kw):
    return build_plan(catalog(*source), target if target is not None else catalog(*source), sel, None, SECRET, **kw)


def deferred(plan):
    return {(d.table, d.name, d.phase) for d in plan.deferred}


def test_indexes_and_keys_of_loaded_tables_are_deferred_in_phase_one_and_foreign_keys_in_phase_two():
    plan = plan_of([users(), orders()])
    assert deferred(plan) == {("users", "users_pkey", 1), ("users", "users_email", 1), ("orders", "orders_pkey", 1),
                              ("orders", "orders_user_id_fkey", 2)}
    assert plan.kept == ()


def test_a_key_is_dropped_as_a_constraint_and_a_plain_index_as_an_index():
    by_name = {d.name: d for d in plan_of([users()]).deferred}
    assert by_name["users_pkey"].drop_sql == 'ALTER TABLE "public"."users" DROP CONSTRAINT "users_pkey"'
    assert by_name["users_pkey"].create_sql == 'ALTER TABLE "public"."users" ADD CONSTRAINT "users_pkey" PRIMARY KEY (id)'
    assert by_name["users_email"].drop_sql == 'DROP INDEX "public"."users_email"'
    assert by_name["users_email"].create_sql == 'CREATE INDEX users_email ON "public"."users" USING btree (email)'


def test_a_foreign_key_is_recreated_as_declared_with_a_not_valid_fallback():
    (d,) = [d for d in plan_of([users(), orders()]).deferred if d.phase == 2]
    add = ('ALTER TABLE "public"."orders" ADD CONSTRAINT "orders_user_id_fkey" FOREIGN KEY ("user_id") '
           'REFERENCES "public"."users"("id")')
    assert d.drop_sql == 'ALTER TABLE "public"."orders" DROP CONSTRAINT "orders_user_id_fkey"'
    assert d.create_sql == add and d.fallback_sql == add + " NOT VALID"


def test_a_foreign_key_comment_survives_in_both_the_key_and_its_fallback():
    o = table("orders", col("id", "int4"), col("user_id", "int4"),
              foreign_keys=(fk("o_u", "orders", ("user_id",), "users", ("id",), comment="who's buying"),))
    (d,) = [d for d in plan_of([users(), o]).deferred if d.phase == 2]
    comment = """COMMENT ON CONSTRAINT "o_u" ON "public"."orders" IS 'who''s buying'"""
    assert d.create_sql.endswith(";\n" + comment) and d.fallback_sql.endswith(" NOT VALID;\n" + comment)


def test_what_a_drop_loses_is_given_back_in_order():
    ix = pk_index("users", tablespace="fast", comment="the key", constraint_comment="pk", clustered=True,
                  replica_identity=True, statistics=((1, 500),), options=(("fillfactor", "70"),))
    (d,) = [d for d in plan_of([table("users", col("id", "int4"), indexes=(ix,))]).deferred]
    assert d.create_sql.split(";\n") == [
        'SET LOCAL default_tablespace = "fast"',
        'ALTER TABLE "public"."users" ADD CONSTRAINT "users_pkey" PRIMARY KEY (id)',
        """ALTER INDEX "public"."users_pkey" SET ("fillfactor" = '70')""",
        'ALTER INDEX "public"."users_pkey" ALTER COLUMN 1 SET STATISTICS 500',
        """COMMENT ON INDEX "public"."users_pkey" IS 'the key'""",
        """COMMENT ON CONSTRAINT "users_pkey" ON "public"."users" IS 'pk'""",
        'ALTER TABLE "public"."users" CLUSTER ON "users_pkey"',
        'ALTER TABLE "public"."users" REPLICA IDENTITY USING INDEX "users_pkey"',
    ]


def test_storage_parameters_of_a_partitioned_tables_key_are_not_set_on_its_parent_index():
    ix = pk_index("m", options=(("fillfactor", "70"),))
    t = table("m", col("id", "int4"), kind="p", leaves=(), indexes=(ix,))
    (d,) = plan_of([t]).deferred
    assert "SET (" not in d.create_sql


def test_indexes_of_unselected_tables_stay():
    plan = plan_of([users(), table("other", col("id", "int4"), indexes=(pk_index("other"),))],
                   sel=Selection(tables=("users",)))
    assert {d.table for d in plan.deferred} == {"users"}


def test_indexes_of_tables_already_completed_on_resume_stay():
    plan = plan_of([users(), table("t", col("id", "int4"), indexes=(pk_index("t"),))], completed=frozenset({"t"}))
    assert {d.table for d in plan.deferred} == {"users"} and plan.completed == ("t",)


def test_indexes_stay_where_our_role_could_not_create_them_again():
    src = [users()]
    assert plan_of(src, catalog(users(), creatable=())).deferred == ()
    assert plan_of(src, catalog(users(owned=False))).deferred == ()


def test_an_index_another_object_depends_on_is_kept_and_the_reason_said():
    view = Dependent("rule _RETURN on view v")
    t = table("users", col("id", "int4"), indexes=(pk_index("users", dependents=(view,)),))
    plan = plan_of([t])
    assert plan.deferred == ()
    assert [(k.table, k.name, k.why) for k in plan.kept] == [("users", "users_pkey", "rule _RETURN on view v depends on it")]


def test_an_index_only_a_deferred_foreign_key_depends_on_is_deferred_too():
    needed_by_fk = Dependent("constraint orders_user_id_fkey on table orders", '"public"."orders"', "orders_user_id_fkey")
    u = table("users", col("id", "int4"), indexes=(pk_index("users", dependents=(needed_by_fk,)),))
    plan = plan_of([u, orders()])
    assert ("users", "users_pkey", 1) in deferred(plan) and plan.kept == ()


def test_an_index_a_foreign_key_of_an_unloaded_table_depends_on_is_kept():
    needed = Dependent("constraint x_fkey on table x", '"public"."x"', "x_fkey")
    u = table("users", col("id", "int4"), indexes=(pk_index("users", dependents=(needed,)),))
    plan = plan_of([u, table("x", col("id", "int4"))], sel=Selection(tables=("users",)))
    assert [k.name for k in plan.kept] == ["users_pkey"]


def test_a_foreign_key_into_a_loaded_table_from_an_unselected_one_needs_cascade():
    with pytest.raises(ValidationError) as info:
        plan_of([users(), orders()], sel=Selection(tables=("users",)))
    assert info.value.problems == ["orders is not selected but its foreign key orders_user_id_fkey references users, "
                                   "which will be emptied: select it too, or pass --cascade to empty it"]


def test_with_cascade_the_referencing_table_is_emptied_and_its_foreign_key_deferred_but_not_its_indexes():
    plan = plan_of([users(), orders()], sel=Selection(tables=("users",)), cascade=True)
    assert plan.cascade == ("orders",) and plan.cascade_relations == ('"public"."orders"',)
    assert ("orders", "orders_user_id_fkey", 2) in deferred(plan)
    assert ("orders", "orders_pkey", 1) not in deferred(plan)


def lines():
    return table("order_lines", col("id", "int4"), col("order_id", "int4"), indexes=(pk_index("order_lines"),),
                 foreign_keys=(fk("order_lines_order_id_fkey", "order_lines", ("order_id",), "orders", ("id",)),))


def test_cascade_reaches_the_tables_that_reference_a_cascaded_one_as_truncate_cascade_would():
    """users <- orders <- order_lines with only users selected: emptying orders needs order_lines emptied
    too (TRUNCATE refuses a table another one references), and the key between them deferred."""
    plan = plan_of([users(), orders(), lines()], sel=Selection(tables=("users",)), cascade=True)
    assert plan.cascade == ("order_lines", "orders")
    assert {("orders", "orders_user_id_fkey", 2), ("order_lines", "order_lines_order_id_fkey", 2)} <= deferred(plan)


def test_without_cascade_only_the_tables_referencing_a_selected_one_are_named():
    with pytest.raises(ValidationError) as info:
        plan_of([users(), orders(), lines()], sel=Selection(tables=("users",)))
    assert [p.split(" is not")[0] for p in info.value.problems] == ["orders"]


def test_a_foreign_key_from_a_loaded_table_into_an_unselected_one_is_deferred():
    plan = plan_of([users(), orders()], sel=Selection(tables=("orders",)))
    assert ("orders", "orders_user_id_fkey", 2) in deferred(plan)
    assert {d.table for d in plan.deferred if d.phase == 1} == {"orders"}


def test_a_foreign_key_something_depends_on_is_refused():
    dep = Dependent("rule _RETURN on view v")
    o = table("orders", col("id", "int4"), col("user_id", "int4"),
              foreign_keys=(fk("o_u", "orders", ("user_id",), "users", ("id",), dependents=(dep,)),))
    with pytest.raises(ValidationError) as info:
        plan_of([users(), o])
    assert any("its foreign key o_u must be dropped during the load, but rule _RETURN on view v depends on it" in p
               for p in info.value.problems)


def test_a_foreign_key_on_a_table_our_role_does_not_own_is_refused():
    with pytest.raises(ValidationError) as info:
        plan_of([users(), orders()], catalog(users(), orders(owned=False)))
    assert any(p.startswith("orders: its foreign key orders_user_id_fkey must be dropped") and "OWNER TO" in p
               for p in info.value.problems)
