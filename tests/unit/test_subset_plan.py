"""subset.py on synthetic catalogs: the three inputs parsed, the closure's groups and steps, its SQL, and
how build_plan uses it. The closure's results are checked on real servers (tests/e2e/test_subset.py)."""

from __future__ import annotations

import msgspec
import pytest

from confiture_fast import subset
from confiture_fast.errors import ValidationError
from confiture_fast.plan import Selection, build_plan
from confiture_fast.request import Subset, SubsetRoot

from .catalog_builder import SECRET, catalog, col, fk, leaf, table


def _pk(t, *cols):
    return msgspec.structs.replace(t, primary_key=cols or ("id",))


SHOP = catalog(
    _pk(table("users", col("id", "int4"), col("boss_id", "int4"),
              foreign_keys=(fk("users_boss", "users", ("boss_id",), "users", ("id",)),))),
    _pk(table("orders", col("id", "int4"), col("user_id", "int4"),
              foreign_keys=(fk("orders_user", "orders", ("user_id",), "users", ("id",)),))),
    _pk(table("products", col("id", "int4"), col("sku", "text"))),
    _pk(table("lines", col("order_id", "int4"), col("no", "int4"), col("sku", "text"),
              foreign_keys=(fk("lines_order", "lines", ("order_id",), "orders", ("id",)),
                            fk("lines_sku", "lines", ("sku",), "products", ("sku",)))), "order_id", "no"),
    _pk(table("reviews", col("id", "int4"), col("product_id", "int4"),
              foreign_keys=(fk("reviews_product", "reviews", ("product_id",), "products", ("id",)),))),
    _pk(table("ships", col("id", "int4"), col("order_id", "int4"), col("no", "int4"),
              foreign_keys=(fk("ships_line", "ships", ("order_id", "no"), "lines", ("order_id", "no")),))),
    table("countries", col("code", "text")),
    _pk(table("events", col("id", "int4"), col("user_id", "int4"), kind="p",
              leaves=(leaf("public", "events_a"), leaf("public", "events_b")),
              foreign_keys=(fk("events_user", "events", ("user_id",), "users", ("id",)),))),
    partitions={"events_a": "events", "events_b": "events"})
ALL = list(SHOP.tables.values())


def planned(*roots: SubsetRoot, selected=ALL, secret=SECRET) -> subset.SubsetPlan:
    return subset.plan(SHOP, selected, Subset(roots), secret)


def where(t: str, cond: str) -> SubsetRoot:
    return SubsetRoot(t, "--where", where=(cond,))


# ---- parsing ------------------------------------------------------------------------------------------

def test_flags_are_parsed_into_roots_a_condition_keeping_its_commas_and_colons():
    s = subset.parse(["users: id IN (1, 2) AND note = 'a:b'", '"a:b".t: x = 1'], ["orders: 0.5%"], None)
    assert s.roots == (SubsetRoot("users", "--where", where=("id IN (1, 2) AND note = 'a:b'",)),
                       SubsetRoot('"a:b".t', "--where", where=("x = 1",)),
                       SubsetRoot("orders", "--sample", sample=0.5))


def test_every_malformed_entry_is_reported_at_once(tmp_path):
    bad = tmp_path / "subset.yaml"
    bad.write_text("users: {where: 3, limit: 5}\norders: [1]\n")
    with pytest.raises(ValidationError) as e:
        subset.parse(["users id = 1", "orders:"], ["users: 0%", "users: 150%", "users: ten%", "users 5%"], bad)
    text = "\n".join(e.value.problems)
    assert len(e.value.problems) == 9 and e.value.exit_code == 2
    assert "--where 'users id = 1': write it as 'TABLE: CONDITION'" in text
    assert "--sample 'users: 0%': the sample must be a percentage above 0 and at most 100" in text
    assert "unknown key(s) limit" in text and "where must be a SQL condition" in text
    assert "orders: expected {where" in text


def test_the_config_file_gives_the_same_roots_as_the_flags(tmp_path):
    path = tmp_path / "subset.yaml"
    path.write_text('users: {where: "id = 42", sample: "1%"}\norders:\n  sample: 2.5%\n')
    assert subset.parse([], [], path).roots == (SubsetRoot("users", str(path), where=("id = 42",), sample=1.0),
                                                SubsetRoot("orders", str(path), sample=2.5))


def test_a_sample_smaller_than_one_bucket_is_refused():
    """0.00001% rounds to no bucket of the million: the subset would be silently empty."""
    with pytest.raises(ValidationError) as e:
        subset.parse([], ["users: 0.00001%"], None)
    assert "at least 0.0001%" in e.value.problems[0]
    assert subset.parse([], ["users: 0.0001%"], None).roots == (SubsetRoot("users", "--sample", sample=0.0001),)


# ---- the closure's plan -------------------------------------------------------------------------------

def test_children_first_then_parents_breadth_first_and_lookup_tables_whole():
    p = planned(where("users", "id = 42"))
    assert p.problems == () and p.whole == ("countries",)
    (g,) = p.groups
    steps = [e.describe.split(":")[0] + ":" + e.kind for e in g.edges]
    assert steps == ["users -> users:child", "users -> orders:child", "users -> events:child",
                     "orders -> lines:child", "lines -> ships:child",
                     "users -> users:parent", "lines -> products:parent"]
    # left out: a parents step back along the key a table was reached by alone (orders -> users, ...)
    # products are parents only: their other children (reviews) are never reached, yet connected: a subset
    assert "reviews" in g.tables and not any(e.to == g.tables.index("reviews") for e in g.edges)


def test_a_composite_key_and_a_unique_non_primary_key_are_followed_on_their_columns():
    g = planned(where("ships", "id = 1")).groups[0]
    e = next(e for e in g.edges if e.fk == "ships_line")
    assert (e.kind, e.columns, e.ref_columns) == ("parent", ("order_id", "no"), ("order_id", "no"))
    step = subset._step(g, e)
    assert 'x."order_id" = p."order_id" AND x."no" = p."no"' in step
    sku = subset._step(g, next(e for e in g.edges if e.fk == "lines_sku"))
    assert 'x."sku" = p."sku"' in sku and "c.down" not in sku  # a parents step starts from every row


def test_several_conditions_on_one_table_are_anded_and_a_sample_hashes_the_primary_key():
    p = planned(where("users", "id > 1"), where("public.users", "id < 9"),
                SubsetRoot("lines", "--sample", sample=1.5))
    seeds = {s.table: s for s in p.groups[0].seeds}
    assert seeds["users"].predicate == "(id > 1\n) AND (id < 9\n)"
    key = subset.sample_key(SECRET)
    assert seeds["lines"].predicate == (f'(pg_catalog.hashtextextended(ROW("order_id", "no")::text, {key}) '
                                        "& 9223372036854775807) % 1000000 < 15000")
    assert subset.sample_predicate(("id",), 1.0, 5) == \
        '(pg_catalog.hashtextextended("id"::text, 5) & 9223372036854775807) % 1000000 < 10000'
    assert subset.sample_key(None) != key and subset.sample_key(None) == subset.sample_key(None)


def test_problems_are_collected_not_raised():
    sel = [t for t in ALL if t.name != "orders"]
    p = planned(where("nowhere", "true"), where("orders", "true"), where("events_a", "true"),
                SubsetRoot("countries", "--sample", sample=5.0), SubsetRoot("users", "x.yaml", sample=1.0),
                SubsetRoot("users", "--sample", sample=2.0), selected=sel)
    assert list(p.problems) == [
        "--where: unknown table 'nowhere' on the source",
        "--where: orders is not among the selected tables (--tables, --include, --exclude): select it too, "
        "or drop its condition",
        "--where: 'events_a' is a partition of events: give the condition on that table",
        "--sample: countries has no primary key, which the sample hashes to choose rows: use --where on it "
        "instead (e.g. a condition on a key column)",
        "--sample: users is given a sample twice: keep one"]


def test_a_parents_step_back_is_kept_where_the_table_is_reached_another_way_too():
    g = planned(where("users", "id = 42"), where("orders", "id = 7")).groups[0]
    assert "orders -> users: parent, orders(user_id) references users(id)" in [e.describe for e in g.edges]
    assert "lines -> orders: parent, lines(order_id) references orders(id)" not in [e.describe for e in g.edges]


def test_each_unit_runs_only_the_steps_into_its_table():
    g = planned(where("users", "id = 42")).groups[0]
    users, lines, reviews = (g.tables.index(t) for t in ("users", "lines", "reviews"))
    assert [e.describe.split(":")[0] for e in subset.relevant(g, users).edges] == ["users -> users", "users -> users"]
    assert {e.describe.split(":")[0] for e in subset.relevant(g, lines).edges} == {
        "users -> users", "users -> orders", "orders -> lines"}
    assert subset.rows_sql(g, reviews, "*", '"public"."reviews"', True) == 'SELECT * FROM ONLY "public"."reviews" WHERE false'


def test_no_roots_no_groups_and_no_whole_tables():
    assert planned() == subset.SubsetPlan((), ())


# ---- its SQL and the plan's units ---------------------------------------------------------------------

def test_the_closure_is_one_recursive_query_and_each_leaf_reads_its_rows_by_ctid():
    g = planned(where("users", "id = 42 -- the CEO")).groups[0]
    sql = subset.closure_sql(g)
    assert sql.startswith("WITH RECURSIVE closure(t, down, rel, tid) AS ((SELECT 0, true, tableoid, ctid FROM ONLY "
                          '"public"."users" WHERE (id = 42 -- the CEO\n)) UNION SELECT n.* FROM closure c CROSS '
                          "JOIN LATERAL (")
    assert sql.count("FROM closure") == 1  # PostgreSQL allows one recursive reference
    assert 'JOIN "public"."events" x' in sql  # a partitioned table is read with its partitions
    tag = g.tables.index("events")
    assert subset.rows_sql(g, tag, '"id"', '"public"."events_a"', True).endswith(
        f"""SELECT "id" FROM ONLY "public"."events_a" WHERE ctid = ANY (ARRAY(SELECT c.tid FROM closure c """
        f"""WHERE c.t = {tag} AND c.rel = '"public"."events_a"'::regclass))""")


def test_build_plan_gives_subset_tables_one_unit_per_leaf_with_the_counted_rows():
    big = msgspec.structs.replace(SHOP.tables[("public", "orders")], leaves=(
        leaf("public", "orders", rows=10_000_000, size=4 << 30, key="id", key_range=(1, 10_000_000)),))
    cat = msgspec.structs.replace(SHOP, tables={**SHOP.tables, big.key: big})
    p = subset.plan(cat, list(cat.tables.values()), Subset((where("users", "id = 42"),)), SECRET)
    uncounted = build_plan(cat, cat, Selection(), None, None, subset=p)  # a sync counts nothing: whole sizes
    assert uncounted.table("orders").est_rows == 10_000_000 and uncounted.table("orders").subset
    p = msgspec.structs.replace(p, rows={"orders": 12, "events": 4})
    plan = build_plan(cat, cat, Selection(), None, None, subset=p)
    orders, events, countries = plan.table("orders"), plan.table("events"), plan.table("countries")
    assert orders.subset and len(orders.units) == 1 and orders.est_rows == 12 and "closure" in orders.units[0].copy_out
    assert events.subset and len(events.units) == 2 and not countries.subset
    assert countries.units[0].copy_out == 'COPY "public"."countries" ("code") TO STDOUT (FORMAT binary)'
    with pytest.raises(ValidationError) as e:
        build_plan(cat, cat, Selection(), None, None, subset=msgspec.structs.replace(p, problems=("bad condition",)))
    assert e.value.problems == ["bad condition"]
