"""Subsets (--where, --sample, --subset-config) between real servers, through the command line. Each
case is compared with the closure computed here independently, in Python, from every row of the
source: seed rows, children recursively (only from seed and child rows), parents recursively."""

from __future__ import annotations

import json
import random

import pytest

SHOP = """
CREATE TABLE currencies (code text PRIMARY KEY, name text);
CREATE TABLE categories (id int PRIMARY KEY, parent_id int REFERENCES categories, name text);
CREATE TABLE products (id int PRIMARY KEY, sku text NOT NULL UNIQUE, category_id int REFERENCES categories, name text);
CREATE TABLE customers (id int PRIMARY KEY, referrer_id int REFERENCES customers, name text, favorite_order int);
CREATE TABLE orders (id int PRIMARY KEY, customer_id int NOT NULL REFERENCES customers, note text);
ALTER TABLE customers ADD FOREIGN KEY (favorite_order) REFERENCES orders DEFERRABLE INITIALLY DEFERRED;
CREATE INDEX ON orders (customer_id);
CREATE TABLE order_lines (order_id int REFERENCES orders, line_no int, sku text REFERENCES products (sku),
                          qty int, PRIMARY KEY (order_id, line_no));
CREATE INDEX ON order_lines (sku);
CREATE TABLE shipments (id int PRIMARY KEY, order_id int, line_no int, carrier text,
                        FOREIGN KEY (order_id, line_no) REFERENCES order_lines);
CREATE INDEX ON shipments (order_id, line_no);
CREATE TABLE reviews (id int PRIMARY KEY, customer_id int REFERENCES customers, product_id int REFERENCES products,
                      stars int);
CREATE TABLE events (id int, at date, customer_id int REFERENCES customers, kind text, PRIMARY KEY (id, at))
    PARTITION BY RANGE (at);
CREATE TABLE events_2024 PARTITION OF events FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
CREATE TABLE events_2025 PARTITION OF events FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
CREATE TABLE notes (body text);
"""

# (child, its columns, parent, the referenced columns): the foreign keys above, for the oracle
FKS = [("categories", ("parent_id",), "categories", ("id",)),
       ("products", ("category_id",), "categories", ("id",)),
       ("customers", ("referrer_id",), "customers", ("id",)),
       ("customers", ("favorite_order",), "orders", ("id",)),
       ("orders", ("customer_id",), "customers", ("id",)),
       ("order_lines", ("order_id",), "orders", ("id",)),
       ("order_lines", ("sku",), "products", ("sku",)),
       ("shipments", ("order_id", "line_no"), "order_lines", ("order_id", "line_no")),
       ("reviews", ("customer_id",), "customers", ("id",)),
       ("reviews", ("product_id",), "products", ("id",)),
       ("events", ("customer_id",), "customers", ("id",))]
TABLES = ["currencies", "categories", "products", "customers", "orders", "order_lines", "shipments", "reviews",
          "events", "notes"]


def _fill(pair) -> None:
    rnd = random.Random(7)
    rows = ["INSERT INTO currencies VALUES ('EUR', 'euro'), ('USD', 'dollar')",
            "INSERT INTO notes VALUES ('a'), ('b')"]
    rows.append("INSERT INTO categories VALUES " + ", ".join(
        f"({i}, {rnd.randint(1, i - 1) if i > 1 and rnd.random() < 0.8 else 'NULL'}, 'c{i}')" for i in range(1, 21)))
    rows.append("INSERT INTO products VALUES " + ", ".join(
        f"({i}, 'sku-{i}', {rnd.randint(1, 20) if rnd.random() < 0.9 else 'NULL'}, 'p{i}')" for i in range(1, 61)))
    rows.append("INSERT INTO customers (id, referrer_id, name) VALUES " + ", ".join(
        f"({i}, {rnd.randint(1, i - 1) if i > 1 and rnd.random() < 0.5 else 'NULL'}, 'n{i}')" for i in range(1, 201)))
    rows.append("INSERT INTO orders VALUES " + ", ".join(
        f"({i}, {rnd.randint(1, 200)}, 'o{i}')" for i in range(1, 501)))
    lines = [(o, n) for o in range(1, 501) for n in range(1, rnd.randint(1, 4) + 1)]
    rows.append("INSERT INTO order_lines VALUES " + ", ".join(
        f"({o}, {n}, {repr('sku-' + str(rnd.randint(1, 60))) if rnd.random() < 0.9 else 'NULL'}, {n})"
        for o, n in lines))
    rows.append("INSERT INTO shipments VALUES " + ", ".join(
        f"({i}, {o}, {n}, 'x')" for i, (o, n) in enumerate(rnd.sample(lines, 300), 1)))
    rows.append("INSERT INTO reviews VALUES " + ", ".join(
        f"({i}, {rnd.randint(1, 200)}, {rnd.randint(1, 60)}, {rnd.randint(1, 5)})" for i in range(1, 151)))
    rows.append("INSERT INTO events VALUES " + ", ".join(
        f"({i}, '{rnd.choice(['2024-03-01', '2025-06-01'])}', {rnd.randint(1, 200) if rnd.random() < 0.9 else 'NULL'}, 'k')"
        for i in range(1, 401)))
    rows.append("UPDATE customers SET favorite_order = (SELECT min(id) FROM orders o WHERE o.customer_id = customers.id) "
                "WHERE id % 3 = 0")
    pair.source(SHOP + ";\n".join(rows))
    pair.target(SHOP)


@pytest.fixture
def shop(pair):
    _fill(pair)
    return pair


def _rows(pair, uri: str, table: str) -> list[dict]:
    import psycopg
    from psycopg.rows import dict_row

    with psycopg.connect(uri, row_factory=dict_row) as c:
        return c.execute(f"SELECT * FROM {table}").fetchall()


def closure(pair, seeds: dict[str, str], tables=TABLES) -> dict[str, set[tuple]]:
    """The subset the semantics define, from every source row: rows as tuples of their values."""
    data = {t: _rows(pair, pair.src, t) for t in tables}
    key = lambda r: tuple(r.values())  # noqa: E731
    down = {t: set() for t in tables}
    for t, cond in seeds.items():
        down[t] = {key(r) for r in _rows(pair, pair.src, f"{t} WHERE {cond}")}
    fks = [f for f in FKS if f[0] in tables and f[2] in tables]

    def refs(rows, cols):
        return {tuple(r[c] for c in cols) for r in rows if all(r[c] is not None for c in cols)}

    changed = True
    while changed:  # children, from down rows only
        changed = False
        for child, cols, parent, rcols in fks:
            wanted = refs([r for r in data[parent] if key(r) in down[parent]], rcols)
            new = {key(r) for r in data[child] if tuple(r[c] for c in cols) in wanted} - down[child]
            if new:
                down[child] |= new
                changed = True
    out = {t: set(down[t]) for t in tables}
    changed = True
    while changed:  # parents, from every included row
        changed = False
        for child, cols, parent, rcols in fks:
            wanted = refs([r for r in data[child] if key(r) in out[child]], cols)
            new = {key(r) for r in data[parent] if tuple(r[c] for c in rcols) in wanted} - out[parent]
            if new:
                out[parent] |= new
                changed = True
    connected = _connected(set(seeds), fks)
    return {t: ({key(r) for r in data[t]} if t not in connected else out[t]) for t in tables}


def _connected(roots: set[str], fks) -> set[str]:
    seen, todo = set(roots), list(roots)
    while todo:
        t = todo.pop()
        for child, _, parent, _ in fks:
            for a, b in ((child, parent), (parent, child)):
                if a == t and b not in seen:
                    seen.add(b)
                    todo.append(b)
    return seen


def target_rows(pair, tables=TABLES) -> dict[str, set[tuple]]:
    return {t: {tuple(r.values()) for r in _rows(pair, pair.dst, t)} for t in tables}


def _ok(res):
    assert res.returncode == 0, res.stdout + res.stderr
    return res


@pytest.mark.parametrize("seeds", [
    {"customers": "id = 42"},  # one customer: orders, lines, shipments, reviews, events; their parents
    {"orders": "id IN (3, 7)"},  # a middle table: its customer (and referrers, favourite order) as parents only
    {"categories": "id = 1"},  # a self-reference downwards: the category tree under 1, its products, ...
    {"shipments": "carrier = 'x' AND id < 5", "reviews": "stars = 5"},  # two roots, composite FK upwards
    {"events": "id < 20"},  # a partitioned root
])
def test_the_subset_is_the_closure_of_its_seed_rows(shop, seeds):
    args = [a for t, c in seeds.items() for a in ("--where", f"{t}: {c}")]
    _ok(shop.sync(*args))
    got, want = target_rows(shop), closure(shop, seeds)
    assert got == want
    assert got["customers"] and got["currencies"] == want["currencies"] and len(got["notes"]) == 2
    # every foreign key holds on the target: they were rebuilt VALID
    assert shop.qt("SELECT count(*) FROM pg_constraint WHERE contype = 'f' AND NOT convalidated") == [(0,)]


def test_a_sample_is_the_same_on_every_run_and_changes_with_the_secret(shop):
    _ok(shop.sync("--sample", "customers: 20%"))
    first = target_rows(shop, ["customers", "orders"])
    _ok(shop.sync("--sample", "customers: 20%"))
    assert target_rows(shop, ["customers", "orders"]) == first
    roots = {r[0] for r in shop.qt("SELECT id FROM customers")}
    # about 20% of the 200 customers are seeds; their referrers and favourite orders' customers come along
    assert 20 <= len(roots) <= 120
    _ok(shop.sync("--sample", "customers: 20%",
                  env={"ANONYMIZATION_SECRET": "another-secret-0123456789abcdef"}))
    other = target_rows(shop, ["customers", "orders"])
    assert other != first
    # the rows the documented hash picks, and their closure
    from confiture_fast.subset import sample_key

    key = sample_key(b"another-secret-0123456789abcdef")
    picked = f"(hashtextextended(id::text, {key}) & 9223372036854775807) % 1000000 < 200000"
    assert other == {t: v for t, v in closure(shop, {"customers": picked}).items() if t in other}


def test_where_and_sample_together_and_the_config_file(shop):
    config = shop.tmp / "subset.yaml"
    config.write_text('customers: {where: "id <= 100", sample: "30%"}\n')
    _ok(shop.sync("--subset-config", str(config)))
    from_file = target_rows(shop, ["customers", "orders"])
    _ok(shop.sync("--where", "customers: id <= 100", "--sample", "customers: 30%"))
    assert target_rows(shop, ["customers", "orders"]) == from_file
    seeds = shop.qs("SELECT count(*) FROM customers WHERE id <= 100")[0][0]
    assert 0 < len(from_file["customers"]) and min(len(from_file["orders"]), seeds) > 0


def test_bad_subsets_are_refused_all_at_once_before_the_target_is_touched(shop):
    shop.target("INSERT INTO currencies VALUES ('GBP', 'pound')")
    res = shop.sync("--where", "customers: no_such_column = 1", "--where", "nowhere: true",
                    "--where", "orders: id = ", "--sample", "notes: 5%", "--where", "currencies: true",
                    "--exclude", "currencies", "--sample", "customers: 0%")
    assert res.returncode == 2, res.stderr
    assert "Traceback" not in res.stderr
    assert "--sample 'customers: 0%': the sample must be a percentage" in res.stderr  # parsed first, alone
    res = shop.sync("--where", "customers: no_such_column = 1", "--where", "nowhere: true",
                    "--where", "orders: id = ", "--sample", "notes: 5%", "--where", "currencies: true",
                    "--exclude", "currencies")
    assert res.returncode == 2, res.stderr
    err = res.stderr
    assert "unknown table 'nowhere'" in err
    assert "currencies is not among the selected tables" in err
    assert "notes has no primary key" in err
    assert "the condition on customers does not compile on the source" in err and "no_such_column" in err
    assert "the condition on orders does not compile on the source" in err
    assert shop.qt("SELECT code FROM currencies") == [("GBP",)]
    assert shop.qt("SELECT count(*) FROM customers") == [(0,)]


def test_dry_run_shows_roots_steps_and_rows_and_writes_nothing(shop):
    res = _ok(shop.sync("--where", "customers: id = 42", "--dry-run"))
    out = res.stderr + res.stdout
    want = closure(shop, {"customers": "id = 42"})
    assert "subset roots: customers WHERE id = 42" in out
    assert "1. customers -> customers: child, customers(referrer_id) references customers(id)" in out
    assert "orders -> order_lines: child, order_lines(order_id) references orders(id)" in out
    assert "order_lines -> products: parent, order_lines(sku) references products(sku)" in out
    assert f"order_lines {len(want['order_lines']):,}" in out and f"events {len(want['events']):,}" in out
    assert "copied whole (no foreign-key path to a root): currencies, notes" in out
    assert shop.qt("SELECT count(*) FROM customers") == [(0,)]
    res = _ok(shop.sync("--where", "customers: id = 42", "--dry-run", "--format", "json"))
    plan = json.loads(res.stdout)
    assert {t["name"]: t["est_rows"] for t in plan["tables"] if t["subset"]}["orders"] == len(want["orders"])


def test_the_summary_says_whole_or_subset_and_the_checkpoint_remembers_the_subset(shop):
    cp = shop.tmp / "cp.json"
    shop.source("ANALYZE")
    res = _ok(shop.sync("--where", "customers: id = 42", "--checkpoint", str(cp)))
    assert "start  orders (~500 rows, estimated)" in res.stderr  # uncounted: the whole table's estimate
    n = len(closure(shop, {"customers": "id = 42"})["orders"])
    assert f"subset of {n:,} rows" in res.stderr and "whole" in res.stderr
    res = shop.sync("--where", "customers: id = 43", "--checkpoint", str(cp), "--resume")
    assert res.returncode == 2 and "selection" in res.stderr.lower(), res.stderr
    _ok(shop.sync("--where", "customers: id = 42", "--checkpoint", str(cp), "--resume"))


def _verify(pair, *args, env=None):
    from conftest import run_cli

    return run_cli("verify", "--from", pair.src, "--to", pair.dst, "--no-pii-patterns", "--format", "json", *args, env=env)


def test_verify_compares_the_target_with_the_same_subset_of_the_source(shop):
    _ok(shop.sync("--where", "customers: id = 42", "--sample", "products: 50%"))
    res = _verify(shop, "--where", "customers: id = 42", "--sample", "products: 50%")
    assert res.returncode == 0, res.stdout + res.stderr
    report = {t["table"]: t for t in json.loads(res.stdout)["tables"]}
    from confiture_fast.subset import sample_key

    half = f"(hashtextextended(id::text, {sample_key(b'test-secret-0123456789abcdef')}) & 9223372036854775807) " \
           "% 1000000 < 500000"
    want = closure(shop, {"customers": "id = 42", "products": half})
    assert target_rows(shop) == want
    assert report["orders"]["rows_source"] == report["orders"]["rows_target"] == len(want["orders"]) > 0
    # against whole tables, or another subset, the copy is found incomplete
    assert _verify(shop).returncode == 1
    assert _verify(shop, "--where", "customers: id = 43").returncode == 1
    res = _verify(shop, "--where", "customers: id = 42", "--sample", "products: 50%",
                  env={"ANONYMIZATION_SECRET": "another-secret-0123456789abcdef"})
    assert res.returncode == 1
    res = _verify(shop, "--where", "customers: nope")
    assert res.returncode == 2 and "the condition on customers does not compile" in res.stderr


def test_the_demo_shows_a_one_customer_subset():
    from conftest import run_cli

    res = run_cli("demo", "--users", "60")
    assert res.returncode == 0, res.stderr
    out = " ".join(res.stderr.split())
    assert '--where "users: id = 42"' in out and "'support' now holds customer 42" in out
    assert "reference: users 1, profiles 1," in out and "subset of 1 rows" in out


def test_bench_times_a_sample_against_the_full_sync_of_the_same_tables():
    from conftest import run_cli

    res = run_cli("bench", "--subset", "5", "--rows", "2000", "--repeat", "1", "--format", "json")
    assert res.returncode == 0, res.stderr
    report = json.loads(res.stdout)
    assert report["rows"] == {"users": 2000, "orders": 4000, "order_lines": 8000}
    got = report["subset_rows"]
    assert 0 < got["users"] < 2000 and got["order_lines"] == 2 * got["orders"] and got["orders"] < 4000
    assert len(report["full_s"]) == len(report["subset_s"]) == 1 and report["ratio"] > 0
    assert report["scans"] == ["confiture_fast_bench.users"]  # the sample hashes every user; the keys are indexed
