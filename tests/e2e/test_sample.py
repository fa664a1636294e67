"""The sample datasets (confiture_fast.sample), against a real throwaway PostgreSQL."""

from __future__ import annotations

import psycopg
import pytest
import yaml

from confiture_fast import sample
from confiture_fast.embedded import ThrowawayServer

SHOP_USERS = 1_000
BENCH = dict(users=2_000, orders=1_500, events=1_000, wide=300, plain=500)


@pytest.fixture(scope="module")
def server():
    with ThrowawayServer() as s:
        yield s


@pytest.fixture(scope="module")
def shops(server):
    """Two shops made by two runs, and a schema-only one."""
    a = server.create_database("shop_a")
    b = server.create_database("shop_b")
    empty = server.create_database("shop_empty")
    counts = [sample.create_shop(a, users=SHOP_USERS), sample.create_shop(b, users=SHOP_USERS)]
    sample.create_shop_schema(empty)
    return a, b, empty, counts


@pytest.fixture(scope="module")
def benches(server):
    a = server.create_database("bench_a")
    b = server.create_database("bench_b")
    target = server.create_database("bench_target")
    counts = [sample.create_bench_tables(a, schema="Bench Mark", **BENCH),
              sample.create_bench_tables(b, schema="Bench Mark", **BENCH)]
    with psycopg.connect(target, autocommit=True) as conn:
        conn.execute(sample.bench_schema_sql("Bench Mark"))
    return a, b, target, counts


def q(uri: str, sql: str, *params):
    with psycopg.connect(uri) as conn:
        return conn.execute(sql, params or None).fetchall()


def scalar(uri: str, sql: str, *params):
    return q(uri, sql, *params)[0][0]


def table_md5(uri: str, table: str) -> str:
    return scalar(uri, f"SELECT md5(string_agg(t::text, '|' ORDER BY t.{'user_id' if table.endswith('profiles') else 'id'})) "
                       f"FROM {table} AS t")


def columns(uri: str, schema: str) -> list[tuple]:
    return q(uri, """SELECT table_name, ordinal_position, column_name, data_type, is_nullable, column_default,
                            is_identity, identity_generation
                     FROM information_schema.columns WHERE table_schema = %s ORDER BY 1, 2""", schema)


def constraints(uri: str, schema: str) -> list[tuple]:
    return q(uri, """SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid) FROM pg_constraint
                     WHERE connamespace = (SELECT oid FROM pg_namespace WHERE nspname = %s) ORDER BY 1, 2""", schema)


def copy_text(uri: str, table: str) -> bytes:
    with psycopg.connect(uri) as conn, conn.cursor().copy(f"COPY {table} TO STDOUT") as cp:
        return b"".join(bytes(chunk) for chunk in cp)


# -- the shop ---------------------------------------------------------------------------------------

def test_shop_row_counts(shops):
    a, _, _, counts = shops
    assert counts[0] == {"users": SHOP_USERS, "profiles": SHOP_USERS, "orders": 2 * SHOP_USERS}
    for table, n in counts[0].items():
        assert scalar(a, f"SELECT count(*) FROM {table}") == n


def test_shop_is_deterministic(shops):
    a, b, _, _ = shops
    for table in sample.SHOP_TABLES:
        assert table_md5(a, table) == table_md5(b, table), table


def test_shop_emails_unique_and_fks_hold(shops):
    a, *_ = shops
    assert scalar(a, "SELECT count(DISTINCT email) FROM users") == SHOP_USERS
    assert scalar(a, "SELECT count(*) FROM users WHERE email NOT LIKE '%_@_%'") == 0
    # the foreign keys were re-added (and therefore validated) after the load
    names = {c[1] for c in constraints(a, "public")}
    assert {"profiles_user_id_fkey", "orders_user_id_fkey", "users_email_key", "users_pkey"} <= names
    assert scalar(a, "SELECT count(DISTINCT user_id) FROM orders") > SHOP_USERS // 2


def test_shop_sequences_follow_the_data(shops):
    a, *_ = shops
    with psycopg.connect(a) as conn:
        new_user = conn.execute("INSERT INTO users (email) VALUES ('new@example.com') RETURNING id").fetchone()[0]
        new_order = conn.execute("INSERT INTO orders (user_id, total) VALUES (%s, 1) RETURNING id",
                                 (new_user,)).fetchone()[0]
        conn.rollback()
    assert new_user == SHOP_USERS + 1
    assert new_order == 2 * SHOP_USERS + 1


@pytest.mark.parametrize("table,column", [("users", "phone"), ("users", "full_name"), ("users", "bio"),
                                          ("profiles", "bio"), ("orders", "billing_address")])
def test_shop_awkward_values(shops, table, column):
    a, *_ = shops
    row = q(a, f"""SELECT count(*) FILTER (WHERE {column} IS NULL),
                          count(*) FILTER (WHERE {column} = ''),
                          count(*) FILTER (WHERE {column} = E'\\\\N'),
                          count(*) FILTER (WHERE {column} <> ''),
                          count(*)
                   FROM {table}""")[0]
    nulls, empties, literal_n, nonempty, total = row
    assert nulls > 0 and empties > 0 and literal_n > 0
    assert nonempty > total // 2


def test_shop_awkward_characters(shops):
    a, *_ = shops
    checks = {
        "tab": "strpos(v, chr(9)) > 0",
        "newline": "strpos(v, chr(10)) > 0",
        "carriage return": "strpos(v, chr(13)) > 0",
        "backslash": "strpos(v, chr(92)) > 0",
        "non-ASCII": "v ~ '[^\\x01-\\x7f]'",
        "emoji": "strpos(v, '🍓') > 0",
        "CJK": "strpos(v, '日本') > 0",
        "long": "length(v) > 3000",
    }
    for table, cols in {"users": ["full_name", "bio", "email"], "orders": ["billing_address"],
                        "profiles": ["bio"]}.items():
        union = " UNION ALL ".join(f"SELECT {c} AS v FROM {table}" for c in cols)
        for name, cond in checks.items():
            if table != "users" and name in ("long", "emoji", "CJK"):
                continue
            assert scalar(a, f"SELECT count(*) FROM ({union}) z WHERE {cond}") > 0, (table, name)
    # the awkward values survive as COPY escapes
    text = copy_text(a, "users")
    for escape in (b"\\t", b"\\n", b"\\r", b"\\\\", b"\\\\N", b"\t\\N\t"):
        assert escape in text, escape
    assert "é".encode() in text and "🍓".encode() in text
    tags = q(a, "SELECT tags FROM orders WHERE id <= 20 ORDER BY id")
    assert [] in [r[0] for r in tags] and None in [r[0] for r in tags]
    assert any(r[0] and None in r[0] and "back\\slash" in r[0] for r in tags)


def test_shop_schema_only_gives_empty_identical_tables(shops):
    a, _, empty, _ = shops
    for table in sample.SHOP_TABLES:
        assert scalar(empty, f"SELECT count(*) FROM {table}") == 0
    assert columns(empty, "public") == columns(a, "public")
    assert constraints(empty, "public") == constraints(a, "public")
    assert scalar(empty, "SELECT enum_range(NULL::order_status)::text") == \
        "{pending,paid,shipped,delivered,cancelled,refunded}"


def test_shop_is_rerunnable(server):
    uri = server.create_database("shop_again")
    sample.create_shop_schema(uri)
    sample.create_shop_schema(uri)
    first = sample.create_shop(uri, users=200)
    before = table_md5(uri, "orders")
    assert sample.create_shop(uri, users=200) == first == {"users": 200, "profiles": 200, "orders": 400}
    assert table_md5(uri, "orders") == before
    assert scalar(uri, "SELECT count(*) FROM users") == 200


def test_shop_rules_match_the_schema(shops):
    a, *_ = shops
    rules = yaml.safe_load(sample.SHOP_RULES_YAML)
    assert set(rules) == {"users", "orders", "profiles"}
    cols = {(t, c) for t, _, c, *_ in columns(a, "public")}
    strategies = {}
    for table, items in rules.items():
        for item in items:
            assert (table, item["column"]) in cols
            strategies[(table, item["column"])] = item["strategy"]
    assert strategies == {
        ("users", "email"): "email", ("users", "phone"): "phone", ("users", "full_name"): "name",
        ("users", "ssn"): "redact", ("users", "password_hash"): "hash",
        ("orders", "billing_address"): "redact", ("orders", "credit_card_last4"): "redact",
        ("profiles", "bio"): "redact", ("profiles", "avatar_url"): "redact",
    }
    assert all(i["seed"] == 12345 for i in rules["users"] if i["strategy"] in ("email", "phone", "name"))


# -- the benchmark tables ---------------------------------------------------------------------------

S = '"Bench Mark"'


def test_bench_row_counts(benches):
    a, _, _, counts = benches
    assert counts[0] == BENCH
    for table, n in BENCH.items():
        assert scalar(a, f"SELECT count(*) FROM {S}.{table}") == n


def test_bench_is_deterministic(benches):
    a, b, _, _ = benches
    for table in sample.BENCH_TABLES:
        assert table_md5(a, f"{S}.{table}") == table_md5(b, f"{S}.{table}"), table


def test_bench_users_match_the_shop_users(benches, shops):
    """The same 10 columns and the same values for the same ids."""
    a, *_ = benches
    shop, *_ = shops
    assert [c[2:] for c in columns(a, "Bench Mark") if c[0] == "users"] == \
        [c[2:] for c in columns(shop, "public") if c[0] == "users"]
    assert table_md5(a, f"(SELECT * FROM {S}.users WHERE id <= {SHOP_USERS})") == table_md5(shop, "users")


def test_bench_users_shape(benches):
    a, *_ = benches
    assert scalar(a, f"SELECT count(DISTINCT email) FROM {S}.users") == BENCH["users"]
    per_row = len(copy_text(a, f"{S}.users")) / BENCH["users"]
    assert 160 <= per_row <= 230, per_row          # ~190 bytes of COPY text per row
    assert len(columns(a, "Bench Mark")) == 10 + 7 + 5 + 44 + 12
    assert len([c for c in columns(a, "Bench Mark") if c[0] == "wide"]) == 44
    for table in ("users", "orders", "events", "wide", "plain"):
        text = copy_text(a, f"{S}.{table}")
        assert b"\\N" in text, table                  # NULLs everywhere
    wide = copy_text(a, f"{S}.wide")
    assert b"\\\\x00ff5c0a09" in wide and b"\\t" in wide and "日本".encode() in wide
    events = copy_text(a, f"{S}.events")
    assert "🍓".encode() in events and b"\\\\n" in events  # jsonb: the JSON escape of a newline
    assert scalar(a, f"SELECT count(*) FROM {S}.orders WHERE user_id NOT BETWEEN 1 AND %s", BENCH["users"]) == 0


def test_bench_target_schema_is_identical_and_empty(benches):
    a, _, target, _ = benches
    assert columns(target, "Bench Mark") == columns(a, "Bench Mark")
    assert constraints(target, "Bench Mark") == constraints(a, "Bench Mark")
    assert {c[1] for c in constraints(a, "Bench Mark")} >= {"users_pkey", "users_email_key", "orders_pkey"}
    for table in sample.BENCH_TABLES:
        assert scalar(target, f"SELECT count(*) FROM {S}.{table}") == 0


def test_bench_without_indexes_and_replace(server):
    uri = server.create_database("bench_noidx")
    counts = sample.create_bench_tables(uri, users=300, with_indexes=False)
    assert counts == {"users": 300, "orders": 0, "events": 0, "wide": 0, "plain": 0}
    assert scalar(uri, "SELECT count(*) FROM pg_index WHERE indrelid = 'public.users'::regclass") == 0
    with pytest.raises(psycopg.errors.DuplicateTable):
        sample.create_bench_tables(uri, users=10)
    sample.create_bench_tables(uri, users=400, plain=10, replace=True)
    assert scalar(uri, "SELECT count(*) FROM users") == 400
    assert scalar(uri, "SELECT count(*) FROM pg_index WHERE indrelid = 'public.users'::regclass") == 2
    with psycopg.connect(uri) as conn:   # the identity sequence follows the data
        assert conn.execute("INSERT INTO users (email) VALUES ('x@y') RETURNING id").fetchone()[0] == 401
        conn.rollback()


def test_bench_rules(benches):
    a, *_ = benches
    assert yaml.safe_load(sample.BENCH_RULES_YAML).keys() == {"users", "orders"}
    rules = yaml.safe_load(sample.bench_rules_yaml("Bench Mark"))
    assert rules.keys() == {"Bench Mark.users", "Bench Mark.orders"}
    cols = {(t, c) for t, _, c, *_ in columns(a, "Bench Mark")}
    got = [(k.split(".", 1)[1], i["column"], i["strategy"]) for k, items in rules.items() for i in items]
    assert all((t, c) in cols for t, c, _ in got)
    assert sorted(s for t, _, s in got if t == "users") == ["email", "hash", "name", "phone", "redact"]
    assert [s for t, _, s in got if t == "orders"] == ["redact", "redact"]


# -- across PostgreSQL versions ---------------------------------------------------------------------

DEBIAN_PG15 = "/usr/lib/postgresql/15/bin"


@pytest.mark.skipif(not __import__("os").path.exists(f"{DEBIAN_PG15}/initdb"), reason="no PostgreSQL 15 here")
def test_same_data_on_postgresql_15(shops, benches):
    """Nothing depends on the server: PostgreSQL 15 generates the bytes PostgreSQL 18 does."""
    shop18, bench18 = shops[0], benches[0]
    with ThrowawayServer(DEBIAN_PG15) as old:
        uri = old.create_database("prod")
        sample.create_shop(uri, users=SHOP_USERS)
        sample.create_bench_tables(uri, schema="Bench Mark", **BENCH)
        for table in sample.SHOP_TABLES:
            assert table_md5(uri, table) == table_md5(shop18, table), table
        for table in sample.BENCH_TABLES:
            assert table_md5(uri, f"{S}.{table}") == table_md5(bench18, f"{S}.{table}"), table
