"""Sample databases for the demo, the benchmarks and the tests.

Everything is generated **server-side**: one ``INSERT ... SELECT ... FROM generate_series(1, n)`` per
table, with every value derived from the series number through ``md5`` (never ``random()``), so two
runs give byte-identical data on any PostgreSQL version, and a million rows take seconds.

Two families of tables:

* **The shop** (``confiture-fast demo``): ``users``, ``profiles`` and ``orders`` of a little web shop,
  full of fake PII. :data:`SHOP_SCHEMA` is the DDL (run identically on source and target),
  :func:`create_shop` creates schema + data, :func:`create_shop_schema` the empty target, and
  :data:`SHOP_RULES_YAML` is the matching ``db/sync/anonymization.yaml``.
* **The benchmark tables** (issues #4 and #7): ``users`` (the 10-column users table of the design
  notes, ~200 bytes of COPY text per row, same columns as the shop's), ``orders`` (2 PII columns),
  ``events`` (jsonb, no PII), ``wide`` (44 columns of mixed types) and ``plain`` (no PII at all),
  in any schema.
  :func:`create_bench_tables` creates and fills them, :func:`bench_schema_sql` is the DDL for the
  target, and :data:`BENCH_RULES_YAML` / :func:`bench_rules_yaml` the rules.

Awkward values are there on purpose, each in a few % of the rows (chosen by ``id % 100``, so any
table of 100+ rows has them all): NULL, the empty string, the literal two-character text ``\\N``,
tabs, newlines, carriage returns, backslashes, multi-byte UTF-8 (é, ß, 日本, emoji), and long
values (~4 KB, in the bios of one user in 1,000). Emails are unique (they embed the id).

For speed, the other values come from a pool of 10,000 precomputed rows: row i takes pool row
``i % 10000``, so columns other than ids, emails, password hashes and foreign keys repeat every
10,000 rows. Nothing depends on the server: PostgreSQL 15 and 18 generate the same bytes (tested).
"""

from __future__ import annotations

import json

from . import pg
from .pg import qualify, quote_ident

__all__ = [
    "SHOP_SCHEMA",
    "SHOP_TABLES",
    "SHOP_RULES_YAML",
    "create_shop",
    "create_shop_schema",
    "BENCH_TABLES",
    "BENCH_RULES_YAML",
    "bench_rules_yaml",
    "bench_schema_sql",
    "bench_table_ddl",
    "create_bench_tables",
]

SHOP_TABLES: tuple[str, ...] = ("users", "profiles", "orders")
BENCH_TABLES: tuple[str, ...] = ("users", "orders", "events", "wide", "plain")

# ------------------------------------------------------------------------------------------------
# DDL
# ------------------------------------------------------------------------------------------------

# The 10 columns of the users table, shared by the shop and the benchmark.
_USERS_COLUMNS = """\
    id            bigint GENERATED ALWAYS AS IDENTITY,
    email         text NOT NULL,
    phone         text,
    full_name     text,
    ssn           text,
    password_hash text,
    bio           text,
    created_at    timestamptz,
    is_active     boolean,
    balance       numeric(12,2)"""

SHOP_SCHEMA: str = """\
-- The sample shop of `confiture-fast demo`. Safe to run on a fresh database, and again.
DO $$ BEGIN
    CREATE TYPE order_status AS ENUM ('pending', 'paid', 'shipped', 'delivered', 'cancelled', 'refunded');
EXCEPTION WHEN duplicate_object THEN NULL;
END $$;

CREATE TABLE IF NOT EXISTS users (
""" + _USERS_COLUMNS + """,
    CONSTRAINT users_pkey PRIMARY KEY (id),
    CONSTRAINT users_email_key UNIQUE (email)
);

CREATE TABLE IF NOT EXISTS profiles (
    user_id     bigint NOT NULL,
    bio         text,
    avatar_url  text,
    birth_date  date,
    country     text,
    preferences jsonb,
    updated_at  timestamptz,
    CONSTRAINT profiles_pkey PRIMARY KEY (user_id),
    CONSTRAINT profiles_user_id_fkey FOREIGN KEY (user_id) REFERENCES users (id)
);

CREATE TABLE IF NOT EXISTS orders (
    id                bigserial,
    user_id           bigint NOT NULL,
    billing_address   text,
    credit_card_last4 text,
    total             numeric(12,2) NOT NULL,
    status            order_status NOT NULL DEFAULT 'pending',
    tags              text[],
    created_at        timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT orders_pkey PRIMARY KEY (id),
    CONSTRAINT orders_user_id_fkey FOREIGN KEY (user_id) REFERENCES users (id)
);

CREATE INDEX IF NOT EXISTS orders_user_id_idx ON orders (user_id);
"""


def _bench_ddl(schema: str) -> tuple[list[str], list[str]]:
    """(CREATE statements, constraint statements) of the benchmark tables."""
    q = lambda t: qualify(schema, t)  # noqa: E731
    wide_cols = ",\n".join(
        [f"    n_{k} integer" for k in range(1, 9)]
        + [f"    t_{k} text" for k in range(1, 9)]
        + [f"    f_{k} double precision" for k in range(1, 8)]
    )
    creates = [
        f"CREATE TABLE {q('users')} (\n{_USERS_COLUMNS}\n)",
        f"""CREATE TABLE {q('orders')} (
    id                bigint NOT NULL,
    user_id           bigint NOT NULL,
    billing_address   text,
    credit_card_last4 text,
    total             numeric(12,2) NOT NULL,
    status            text NOT NULL,
    created_at        timestamptz NOT NULL
)""",
        f"""CREATE TABLE {q('events')} (
    id         bigint NOT NULL,
    user_id    bigint,
    kind       text NOT NULL,
    payload    jsonb,
    created_at timestamptz NOT NULL
)""",
        f"""CREATE TABLE {q('wide')} (
    id            bigint NOT NULL,
    c_smallint    smallint,
    c_integer     integer,
    c_bigint      bigint,
    c_numeric     numeric(14,4),
    c_real        real,
    c_double      double precision,
    c_boolean     boolean,
    c_text        text,
    c_varchar     varchar(64),
    c_char        char(8),
    c_date        date,
    c_time        time,
    c_timestamp   timestamp,
    c_timestamptz timestamptz,
    c_interval    interval,
    c_uuid        uuid,
    c_jsonb       jsonb,
    c_bytea       bytea,
    c_int_array   integer[],
    c_inet        inet,
{wide_cols}
)""",
        f"""CREATE TABLE {q('plain')} (
    id          bigint NOT NULL,
    account_id  bigint NOT NULL,
    sku         text NOT NULL,
    quantity    integer NOT NULL,
    unit_price  numeric(10,2),
    discount    real,
    currency    char(3) NOT NULL,
    status      smallint NOT NULL,
    in_stock    boolean,
    note        text,
    created_at  timestamptz NOT NULL,
    updated_at  timestamptz
)""",
    ]
    constraints = [
        f"ALTER TABLE {q('users')} ADD CONSTRAINT users_pkey PRIMARY KEY (id), "
        "ADD CONSTRAINT users_email_key UNIQUE (email)",
        f"ALTER TABLE {q('orders')} ADD CONSTRAINT orders_pkey PRIMARY KEY (id)",
        f"ALTER TABLE {q('events')} ADD CONSTRAINT events_pkey PRIMARY KEY (id)",
        f"ALTER TABLE {q('wide')} ADD CONSTRAINT wide_pkey PRIMARY KEY (id)",
        f"ALTER TABLE {q('plain')} ADD CONSTRAINT plain_pkey PRIMARY KEY (id)",
    ]
    return creates, constraints


def bench_schema_sql(schema: str = "public", *, with_indexes: bool = True) -> str:
    """The DDL of the five benchmark tables in `schema` (for the empty target).

    Creates the schema if needed. With `with_indexes` (the default) every table has its primary key
    and ``users`` keeps ``UNIQUE(email)``; the result is the same catalog state as
    :func:`create_bench_tables` with the same arguments leaves on the source.
    """
    creates, constraints = _bench_ddl(schema)
    stmts = [f"CREATE SCHEMA IF NOT EXISTS {quote_ident(schema)}", *creates]
    if with_indexes:
        stmts += constraints
    return ";\n\n".join(stmts) + ";\n"


def bench_table_ddl(schema: str) -> dict[str, tuple[str, str]]:
    """{table: (its CREATE TABLE without any index, the ALTER TABLE that adds its constraints)}: the
    bench's physical floor loads into the bare table and times the constraint builds on their own."""
    creates, constraints = _bench_ddl(schema)
    return {t: (c, k) for t, c, k in zip(BENCH_TABLES, creates, constraints)}


# ------------------------------------------------------------------------------------------------
# Anonymization rules
# ------------------------------------------------------------------------------------------------

SHOP_RULES_YAML: str = """\
# Anonymization rules of the demo shop (db/sync/anonymization.yaml).
# The keyed strategies (email, phone, name, hash) also need ANONYMIZATION_SECRET.
users:
  - column: email
    strategy: email
    seed: 12345

  - column: phone
    strategy: phone
    seed: 12345

  - column: full_name
    strategy: name
    seed: 12345

  - column: ssn
    strategy: redact

  - column: password_hash
    strategy: hash

orders:
  - column: billing_address
    strategy: redact

  - column: credit_card_last4
    strategy: redact

profiles:
  - column: bio
    strategy: redact

  - column: avatar_url
    strategy: redact
"""


def bench_rules_yaml(schema: str = "public") -> str:
    """The 7 rules of the benchmark tables (users: email, phone, name, redact, hash; orders: 2 redacts).

    Table keys are ``users`` / ``orders`` for the public schema, ``<schema>.users`` otherwise.
    """
    def key(t: str) -> str:
        return t if schema == "public" else json.dumps(f"{schema}.{t}", ensure_ascii=False)

    return f"""\
# Anonymization rules of the benchmark tables.
{key('users')}:
  - column: email
    strategy: email
    seed: 12345
  - column: phone
    strategy: phone
    seed: 12345
  - column: full_name
    strategy: name
    seed: 12345
  - column: ssn
    strategy: redact
  - column: password_hash
    strategy: hash
{key('orders')}:
  - column: billing_address
    strategy: redact
  - column: credit_card_last4
    strategy: redact
"""


BENCH_RULES_YAML: str = bench_rules_yaml()

# ------------------------------------------------------------------------------------------------
# Data generation (server-side)
# ------------------------------------------------------------------------------------------------


def _lit(s: str) -> str:
    """A standard-conforming SQL string literal (tabs, newlines and backslashes are literal)."""
    return "'" + s.replace("'", "''") + "'"


def _arr(items: list[str]) -> str:
    return "(ARRAY[" + ", ".join(_lit(x) for x in items) + "]::text[])"


def _pick(items: list[str], n: str) -> str:
    return f"{_arr(items)}[1 + ({n}) % {len(items)}]"


_FIRST = ["Alice", "Bob", "Carol", "David", "Emma", "Frank", "Grace", "Hiro", "Isabel", "Jürgen",
          "Chloé", "Zoë", "José", "Søren", "Françoise", "Łukasz", "Ólafur", "Ngozi", "Priya",
          "Mohammed", "Olga", "Siobhán", "Yuki", "翔太", "美咲", "Дмитрий", "Ελένη", "Renée", "Björn",
          "Ana", "Liam", "Noah", "Mia", "Lucas", "Fatima", "Wei", "Sofia", "Mateo", "Aarav", "Léa"]
_LAST = ["Smith", "Johnson", "Müller", "Groß", "Dupont", "García", "Nguyễn", "O'Brien", "Kowalski",
         "Rossi", "Øvergård", "Çelik", "Andersson", "Papadopoulos", "van der Berg", "山田", "佐藤",
         "Иванов", "Schröder", "Fernández", "Lefèvre", "Wright", "Okafor", "Patel", "Kim", "Brown",
         "Martin", "Bernard", "Lee", "Silva"]
_DOMAINS = ["gmail.com", "yahoo.fr", "outlook.com", "example.org", "proton.me", "company.co.uk",
            "web.de", "mail.ru", "qq.com", "icloud.com"]
_HOBBIES = ["cooking", "hiking in the Alps", "jazz & blues", "crème brûlée", "photographie",
            "Go (the game)", "tea, not coffee", "\"quoted\" things", "running; cycling", "origami",
            "Straßenbahn spotting", "board games", "open source", "gardening", "sailing"]
_STREETS = ["Rue de la Paix", "Hauptstraße", "Main Street", "Calle Mayor", "Via Roma",
            "Shibuya 2-chome", "Øster Allé", "King's Road", "Avenida Paulista", "Nevsky Prospekt"]
_CITIES = ["75002 Paris", "10115 Berlin", "Springfield, IL 62701", "28013 Madrid", "00184 Roma",
           "東京都渋谷区 150-0002", "2100 København", "London SW3 4UT", "São Paulo 01310-100",
           "Санкт-Петербург 191186"]
_COUNTRIES = ["FR", "DE", "US", "ES", "IT", "JP", "DK", "GB", "BR", "RU"]
_STATUSES = ["pending", "paid", "shipped", "delivered", "cancelled", "refunded"]
_KINDS = ["page_view", "click", "add_to_cart", "checkout", "login", "logout", "search", "error"]
_PATHS = ["/", "/products", "/cart", "/checkout", "/account", "/search", "/café", "/日本"]
_AGENTS = ["Mozilla/5.0 (X11; Linux x86_64)", "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_0)",
           "curl/8.5.0", "okhttp/4.12", "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X)"]



# How it stays fast: almost every column is computed once for a *pool* of _POOL rows (k = 0.._POOL-1,
# all values derived from md5(k)), and row i takes the pool row k = i % _POOL;
# only what must differ per row (ids, emails, password hashes, foreign keys) is computed per row.
# Because _POOL is a multiple of 1000, the awkward-value buckets (`k % 100`, `k % 1000`) are those
# of `i % 100` and `i % 1000`. Inside the pool expressions the pool key is called `i`.
_POOL = 10_000


def _ints(h: str, prefix: str) -> str:
    """Four independent non-negative 28-bit integers from the md5 text column `h`."""
    return ", ".join(f"('x0' || substr({h}, {p}, 7))::bit(32)::int AS {prefix}{k}"
                     for k, p in enumerate((1, 8, 15, 22), start=1))


def _pooled_insert(table: str, n: int, salt: str, columns: list[str], pool: dict[str, str],
                   per_row: dict[str, str], *, overriding: bool = False) -> str:
    """``WITH p AS (pool) INSERT INTO table (columns) SELECT ... FROM generate_series(1, n) JOIN p``.

    `pool` maps a column alias to an expression over i (the pool key), h, g (md5 texts of it) and
    a1..a4, b1..b4 (integers from h and g). `per_row` maps a column to an expression over the row
    number i and the pool row p (k = i % _POOL); a column in neither is taken from p. OFFSET 0 keeps
    the planner from copying the md5 calls into every reference.
    """
    n = int(n)
    pool_sel = ",\n        ".join(f"{expr} AS {alias}" for alias, expr in pool.items())
    row_sel = ",\n    ".join(per_row.get(c, f"p.{c}") for c in columns)
    # Rows come out in the order of i: for each block of _POOL rows (outer loop), the pool rows in
    # the order of k (a rescan of the materialized CTE). No join on `i % _POOL`: the planner would
    # sort both sides for a merge join.
    return f"""
WITH pool AS MATERIALIZED (
    SELECT i AS k,
        {pool_sel}
    FROM (
        SELECT i, h, g, {_ints('h', 'a')}, {_ints('g', 'b')}
        FROM (SELECT i, md5('{salt}' || i) AS h, md5('{salt}:' || i) AS g
              FROM generate_series(0::bigint, {min(n, _POOL - 1)}::bigint) AS i OFFSET 0) AS s0
        OFFSET 0) AS s
)
INSERT INTO {table} ({', '.join(columns)}){' OVERRIDING SYSTEM VALUE' if overriding else ''}
SELECT {row_sel}
FROM generate_series(0::bigint, {n // _POOL}::bigint) AS blk
CROSS JOIN LATERAL (
    SELECT blk * {_POOL} + pool.k AS i, pool.* FROM pool
    WHERE pool.k BETWEEN 1 - blk * {_POOL} AND {n} - blk * {_POOL}
) AS p"""


def _ts(secs: str, micros: str) -> str:
    return (f"(timestamptz '2019-01-01 00:00:00+00' + ({secs}) * interval '1 second'"
            f" + ({micros}) % 1000000 * interval '1 microsecond')")


def _fk(users: int) -> str:
    """A well-spread user id in 1..users for row i (multiplicative hashing, cheap)."""
    return f"1 + (i * 2654435761) % {max(int(users), 1)}"


def _bio(bucket: str, x: str, first: str) -> str:
    """A free-text profile column with every awkward value in it."""
    hobby = _pick(_HOBBIES, x)
    long_text = f"repeat('All work and no play makes Jack a dull boy. ', 90 + ({x}) % 10)"
    return f"""CASE
        WHEN {bucket} < 30 THEN NULL
        WHEN {bucket} < 35 THEN ''
        WHEN {bucket} < 37 THEN E'\\\\N'
        WHEN {bucket} = 37 THEN 'Line one.' || chr(10) || 'I like ' || {hobby} || '.' || chr(10)
        WHEN {bucket} = 38 THEN 'Skills:' || chr(9) || {hobby} || chr(9) || 'SQL'
        WHEN {bucket} = 39 THEN 'Written on Windows.' || chr(13) || chr(10) || 'Second line.'
        WHEN {bucket} = 40 THEN 'My files: C:\\Users\\' || {first} || '\\Documents\\'
        WHEN {bucket} = 41 THEN 'Strawberry jam 🍓 and coffee ☕ — ' || {first}
        WHEN {bucket} = 42 THEN '東京在住のエンジニアです。日本語も話せます。'
        WHEN {bucket} = 43 AND i % 1000 = 43 THEN {long_text}
        WHEN {bucket} = 43 THEN repeat('Straße, café, naïve. ', 8)
        WHEN {bucket} = 44 THEN 'ends with a backslash \\'
        WHEN {bucket} = 45 THEN '\\t is not a tab, \\n is not a newline, \\\\N is not NULL'
        ELSE 'I like ' || {hobby} || '.'
    END"""


_USERS_COLS = ["id", "email", "phone", "full_name", "ssn", "password_hash", "bio", "created_at",
               "is_active", "balance"]


def _users_insert(table: str, n: int) -> str:
    first = _pick(_FIRST, "a1")
    last = _pick(_LAST, "a2")
    dom = _pick(_DOMAINS, "a3")
    # Lower/upper case spellings are computed here, not by lower(): its result depends on the
    # database's locale, and the data must not.
    first_lc = _pick([x.lower() for x in _FIRST], "a1")
    last_lc = _pick([x.lower().replace(" ", "") for x in _LAST], "a2")
    last_nosp = _pick([x.replace(" ", "") for x in _LAST], "a2")
    dom_uc = _pick([x.upper() for x in _DOMAINS], "a3")
    pool = {
        "email_pre": f"""CASE i % 100
            WHEN 17 THEN {first} || '.' || {last_nosp} || '+news'
            WHEN 41 THEN {first_lc} || '\\'
            ELSE {first_lc} || '.' || {last_lc} END""",
        "email_dom": f"'@' || CASE i % 100 WHEN 17 THEN {dom_uc} ELSE {dom} END",
        "phone": """CASE
            WHEN i % 100 IN (3, 13, 53, 83, 93) THEN NULL
            WHEN i % 100 = 7 THEN ''
            WHEN i % 100 = 11 THEN E'\\\\N'
            WHEN b1 % 4 = 0 THEN '+1-' || (200 + b2 % 800) || '-555-' || lpad((b3 % 10000)::text, 4, '0')
            WHEN b1 % 4 = 1 THEN '(' || (200 + b2 % 800) || ') 555-' || lpad((b3 % 10000)::text, 4, '0')
            WHEN b1 % 4 = 2 THEN '+33 6 ' || lpad((b2 % 100)::text, 2, '0') || ' '
                                 || lpad((b3 % 100)::text, 2, '0') || ' ' || lpad((b4 % 10000)::text, 4, '0')
            ELSE '+81-90-' || lpad((b2 % 10000)::text, 4, '0') || '-' || lpad((b3 % 10000)::text, 4, '0')
        END""",
        "full_name": f"""CASE i % 100
            WHEN 19 THEN NULL
            WHEN 23 THEN ''
            WHEN 29 THEN E'\\\\N'
            WHEN 31 THEN {first} || chr(9) || {last}
            WHEN 37 THEN {first} || ' ' || {last} || ' 🍓'
            WHEN 97 THEN {first} || ' ' || {last} || chr(10) || 'Jr.'
            ELSE {first} || ' ' || {last}
        END""",
        "ssn": """CASE WHEN i % 10 = 5 THEN NULL
             WHEN i % 100 = 47 THEN ''
             ELSE lpad((100 + a4 % 900)::text, 3, '0') || '-' || lpad((b4 % 100)::text, 2, '0') || '-'
                  || lpad((b2 % 10000)::text, 4, '0')
        END""",
        "pw_tail": "substr(g, 1, 21)",
        "bio": _bio("i % 100", "b2", first),
        "created_at": _ts("a4", "b3"),
        "is_active": "CASE WHEN i % 100 = 71 THEN NULL ELSE b1 % 10 <> 0 END",
        "balance": "CASE WHEN i % 100 = 73 THEN NULL ELSE ((b4 % 2000000) - 200000) / 100.0 END",
    }
    per_row = {
        "id": "i",
        "email": "p.email_pre || i || p.email_dom",
        "password_hash": "CASE WHEN i % 100 IN (59, 61, 67) THEN NULL ELSE '$2b$12$' || md5('pw' || i) || p.pw_tail END",
    }
    return _pooled_insert(table, n, "u", _USERS_COLS, pool, per_row, overriding=True)


def _profiles_insert(table: str, n: int) -> str:
    first = _pick(_FIRST, "a1")   # same salt as users: the user's own first name
    pool = {
        "bio": _bio("(i + 50) % 100", "b1", first),
        "avatar_url": """CASE WHEN i % 5 = 0 THEN NULL
             WHEN i % 100 = 1 THEN ''
             WHEN i % 100 = 21 THEN 'https://cdn.example.com/avatars/' || substr(g, 1, 16) || '.png?size=128&v=2'
             ELSE 'https://cdn.example.com/avatars/' || substr(g, 1, 16) || '.png'
        END""",
        "birth_date": "CASE WHEN i % 10 = 3 THEN NULL ELSE date '1940-01-01' + b3 % 25000 END",
        "country": f"CASE WHEN i % 100 = 9 THEN NULL ELSE {_pick(_COUNTRIES, 'b4')} END",
        "preferences": f"""CASE WHEN i % 100 = 50 THEN NULL
             ELSE jsonb_build_object('theme', CASE WHEN b1 % 2 = 0 THEN 'dark' ELSE 'light' END,
                                     'newsletter', b2 % 3 = 0,
                                     'nickname', {first},
                                     'note', CASE WHEN i % 100 = 51 THEN 'tab' || chr(9) || 'nl' || chr(10) || 'bs\\ "q"'
                                                  ELSE NULL END)
        END""",
        "updated_at": _ts("b4", "a3"),
    }
    cols = ["user_id", "bio", "avatar_url", "birth_date", "country", "preferences", "updated_at"]
    return _pooled_insert(table, n, "u", cols, pool, {"user_id": "i"})


def _orders_insert(table: str, n: int, users: int, *, shop: bool) -> str:
    street = _pick(_STREETS, "a2")
    city = _pick(_CITIES, "a3")
    country = _pick(_COUNTRIES, "a3")   # same index as the city: they match
    addr = f"(1 + a4 % 300) || ' ' || {street} || chr(10) || {city} || chr(10) || {country}"
    pool = {
        "billing_address": f"""CASE i % 100
            WHEN 5 THEN NULL
            WHEN 9 THEN ''
            WHEN 13 THEN E'\\\\N'
            WHEN 17 THEN (1 + a4 % 300) || ' ' || {street} || chr(13) || chr(10) || {city}
            WHEN 19 THEN 'Apt 4\\B, ' || {addr}
            WHEN 23 THEN 'c/o' || chr(9) || 'Reception' || chr(10) || {addr}
            ELSE {addr}
        END""",
        "credit_card_last4": """CASE WHEN i % 10 = 7 THEN NULL
             WHEN i % 100 = 31 THEN ''
             ELSE lpad((b2 % 10000)::text, 4, '0')
        END""",
        "total": "(1 + b3 % 100000) / 100.0",
        "status": _pick(_STATUSES, "b1") + ("::order_status" if shop else ""),
        "created_at": _ts("b4", "a3"),
    }
    cols = ["id", "user_id", "billing_address", "credit_card_last4", "total", "status", "created_at"]
    if shop:
        cols.insert(6, "tags")
        pool["tags"] = f"""CASE i % 20
            WHEN 0 THEN NULL
            WHEN 1 THEN ARRAY[]::text[]
            WHEN 2 THEN ARRAY['gift', 'with space', 'quote"d', 'back\\slash', 'comma,tag', NULL, 'été', '日本',
                              '{{braces}}', 'tab' || chr(9) || 'nl' || chr(10)]
            WHEN 3 THEN ARRAY['gift', 'express']
            WHEN 4 THEN ARRAY['NULL', '']
            ELSE ARRAY[{_pick(['gift', 'express', 'bulk', 'sale', 'b2b', 'first-order'], 'b2')}]
        END"""
    return _pooled_insert(table, n, "o", cols, pool, {"id": "i", "user_id": _fk(users)})


def _events_insert(table: str, n: int, users: int) -> str:
    pool = {
        "kind": _pick(_KINDS, "a2"),
        "payload": f"""CASE i % 100
            WHEN 0 THEN NULL
            WHEN 1 THEN '{{}}'::jsonb
            WHEN 2 THEN jsonb_build_object('message', 'line one' || chr(10) || 'tab' || chr(9) || 'back\\slash "quoted"',
                                           'unicode', 'café 日本 🍓', 'nested', jsonb_build_object('a', ARRAY[1, 2, 3]))
            ELSE jsonb_build_object('path', {_pick(_PATHS, 'a3')} || '/' || (a4 % 1000),
                                    'ms', b1 % 5000, 'ok', b2 % 50 <> 0,
                                    'agent', {_pick(_AGENTS, 'b3')}, 'session', substr(h, 1, 16))
        END""",
        "created_at": _ts("b4", "a3"),
    }
    per_row = {"id": "i", "user_id": f"CASE WHEN i % 10 = 0 THEN NULL ELSE {_fk(users)} END"}
    return _pooled_insert(table, n, "e", ["id", "user_id", "kind", "payload", "created_at"], pool, per_row)


def _wide_insert(table: str, n: int) -> str:
    pool = {
        "c_smallint": "CASE WHEN i % 100 = 1 THEN NULL ELSE (a1 % 65536 - 32768)::smallint END",
        "c_integer": "a2 - 134217728",
        "c_numeric": "CASE WHEN i % 100 = 2 THEN NULL ELSE (b1 - 134217728) / 10000.0 END",
        "c_real": "(b2 / 1024.0)::real",
        "c_double": "b3 / 7.0::float8",
        "c_boolean": "CASE WHEN i % 100 = 3 THEN NULL ELSE b4 % 2 = 0 END",
        "c_text": f"""CASE i % 100 WHEN 4 THEN NULL WHEN 5 THEN '' WHEN 6 THEN E'\\\\N'
            WHEN 7 THEN 'a' || chr(9) || 'b' || chr(10) || 'c' || chr(13) || 'd\\e'
            WHEN 8 THEN 'naïve café 日本 🍓'
            ELSE {_pick(_HOBBIES, 'a1')} END""",
        "c_varchar": "substr(h, 1, 8 + a2 % 24)",
        "c_char": "substr(g, 1, 8)",
        "c_date": "CASE WHEN i % 100 = 9 THEN NULL ELSE date '2000-01-01' + a3 % 9000 END",
        "c_time": "time '00:00' + (b1 % 86400) * interval '1 second'",
        "c_timestamp": "timestamp '2020-01-01' + b2 * interval '1 second'",
        "c_timestamptz": _ts("b3", "a4"),
        "c_interval": "make_interval(days => a1 % 400, secs => b1 % 86400)",
        "c_uuid": "CASE WHEN i % 100 = 10 THEN NULL ELSE (substr(h, 1, 8) || '-' || substr(h, 9, 4) || '-'"
                  " || substr(h, 13, 4) || '-' || substr(h, 17, 4) || '-' || substr(h, 21, 12))::uuid END",
        "c_jsonb": "CASE WHEN i % 100 = 11 THEN NULL ELSE jsonb_build_object('k', a1 % 100, 's', substr(g, 1, 6)) END",
        "c_bytea": "CASE WHEN i % 100 = 12 THEN NULL WHEN i % 100 = 13 THEN '\\x00ff5c0a09'::bytea"
                   " ELSE decode(substr(h, 1, 16), 'hex') END",
        "c_int_array": "ARRAY[a1 % 100, a2 % 100, a3 % 100]",
        "c_inet": "CASE WHEN i % 100 = 14 THEN NULL ELSE ('10.' || a1 % 256 || '.' || a2 % 256 || '.' || a3 % 256)::inet END",
    }
    ints = ["a1", "a2", "a3", "a4", "b1", "b2", "b3", "b4"]
    for k in range(1, 9):
        pool[f"n_{k}"] = f"CASE WHEN i % 100 = {20 + k} THEN NULL ELSE {ints[k - 1]} % 1000000 END"
    for k in range(1, 9):
        pool[f"t_{k}"] = f"CASE WHEN i % 100 = {30 + k} THEN NULL ELSE substr(g, {k * 3}, {4 + k}) END"
    for k in range(1, 8):
        pool[f"f_{k}"] = f"{ints[k]} / {k + 1}.5::float8"
    cols = ["id", "c_bigint", *pool]
    per_row = {"id": "i", "c_bigint": "i * 2654435761"}
    return _pooled_insert(table, n, "w", cols, pool, per_row)


def _plain_insert(table: str, n: int) -> str:
    pool = {
        "sku": "'SKU-' || upper(substr(h, 1, 10))",
        "quantity": "1 + a2 % 50",
        "unit_price": "CASE WHEN i % 100 = 1 THEN NULL ELSE (1 + a3 % 100000) / 100.0 END",
        "discount": "CASE WHEN i % 4 = 0 THEN (a4 % 50) / 100.0 ELSE NULL END",
        "currency": _pick(["EUR", "USD", "JPY", "GBP"], "b1"),
        "status": "(b2 % 6)::smallint",
        "in_stock": "CASE WHEN i % 100 = 2 THEN NULL ELSE b3 % 5 <> 0 END",
        "note": """CASE i % 100
            WHEN 3 THEN 'fragile' || chr(9) || 'handle with care' || chr(10) || 'C:\\store\\x'
            WHEN 4 THEN ''
            WHEN 5 THEN E'\\\\N'
            WHEN 6 THEN 'Lagerbestand prüfen — 在庫 🍓'
            ELSE NULL
        END""",
        "created_at": _ts("b4", "a2"),
        "updated_at": f"CASE WHEN i % 3 = 0 THEN NULL ELSE {_ts('b4 + a1 % 86400', 'b1')} END",
    }
    cols = ["id", "account_id", *pool]
    per_row = {"id": "i", "account_id": "1 + (i * 2654435761) % 100000"}
    return _pooled_insert(table, n, "p", cols, pool, per_row)


# ------------------------------------------------------------------------------------------------
# Public functions
# ------------------------------------------------------------------------------------------------


def _connect(conninfo: str):
    conn = pg.scratch(conninfo, "sample data")
    conn.execute("SET standard_conforming_strings = on")
    conn.execute("SET synchronous_commit = off")
    conn.execute("SET maintenance_work_mem = '256MB'")
    conn.execute("SET jit = off")
    conn.execute("SET work_mem = '64MB'")
    conn.execute("SET default_statistics_target = 10")   # a quick ANALYZE: 3,000-row samples
    return conn


def _set_identity(conn, table: str, column: str, n: int) -> None:
    """Leave the column's sequence where the data leaves it (the next insert gets n + 1)."""
    lit = _lit(table)
    if n > 0:
        conn.execute(f"SELECT setval(pg_get_serial_sequence({lit}, '{column}'), {int(n)}, true)")
    else:
        conn.execute(f"SELECT setval(pg_get_serial_sequence({lit}, '{column}'), 1, false)")


# The foreign keys of SHOP_SCHEMA, exactly as written there.
_SHOP_FKS = [("profiles_user_id_fkey", "FOREIGN KEY (user_id) REFERENCES users (id)"),
             ("orders_user_id_fkey", "FOREIGN KEY (user_id) REFERENCES users (id)")]


def create_shop_schema(conninfo: str) -> None:
    """Create the shop's tables (and its enum type), empty, in the database `conninfo`.

    Runs :data:`SHOP_SCHEMA`; existing objects are left as they are.
    """
    with _connect(conninfo) as conn:
        with conn.transaction():
            conn.execute(SHOP_SCHEMA)


def create_shop(conninfo: str, users: int = 50_000) -> dict[str, int]:
    """Create the shop's schema and data in `conninfo`; return ``{table: rows}``.

    ``users`` users, as many ``profiles`` and ``2 * users`` ``orders``. Deterministic: the same
    ``users`` gives the same bytes on every run. Calling it again on the same database replaces the
    rows of the three tables (a plain ``TRUNCATE`` without ``CASCADE``: it fails rather than empty
    some other table that references them). The default 50,000 users (200k rows) take 2-4 s here.
    """
    users = int(users)
    if users < 0:
        raise ValueError("users must be >= 0")
    n_orders = 2 * users if users else 0
    with _connect(conninfo) as conn:
        with conn.transaction():
            conn.execute(SHOP_SCHEMA)
            conn.execute("TRUNCATE orders, profiles, users RESTART IDENTITY")
            # The foreign keys are checked once at the end (re-added with the same definition)
            # rather than by a trigger per row: three times faster.
            for name, _ in _SHOP_FKS:
                conn.execute(f"ALTER TABLE {name.split('_', 1)[0]} DROP CONSTRAINT {name}")
            conn.execute(_users_insert("users", users))
            conn.execute(_profiles_insert("profiles", users))
            conn.execute(_orders_insert("orders", n_orders, users, shop=True))
            for name, definition in _SHOP_FKS:
                conn.execute(f"ALTER TABLE {name.split('_', 1)[0]} ADD CONSTRAINT {name} {definition}")
            _set_identity(conn, "users", "id", users)
            _set_identity(conn, "orders", "id", n_orders)
        conn.execute("ANALYZE users, profiles, orders")
    return {"users": users, "profiles": users, "orders": n_orders}


def create_bench_tables(conninfo: str, *, users: int = 1_000_000, orders: int = 0, events: int = 0,
                        wide: int = 0, plain: int = 0, schema: str = "public",
                        with_indexes: bool = True, replace: bool = False) -> dict[str, int]:
    """Create the five benchmark tables in `schema` and fill them; return ``{table: rows}``.

    All five tables are always created (a count of 0 leaves the table empty), so
    :func:`bench_schema_sql` and :data:`BENCH_RULES_YAML` always match. ``users`` is the 10-column
    users table of the design notes (~200 bytes of COPY text per row, PK + ``UNIQUE(email)``),
    ``orders`` has two PII text columns, ``events`` a jsonb payload and no PII, ``wide`` 44 columns
    of mixed types, ``plain`` only non-PII columns. ``orders.user_id`` / ``events.user_id`` point into
    ``users`` (no foreign keys: the benchmark measures the copy, not the checks).

    Rows are loaded into index-less tables and the constraints (when `with_indexes`) are added
    afterwards, then every table is ``VACUUM (ANALYZE)``-ed so the first COPY of a benchmark does not
    pay for hint bits. `replace` drops the five tables first if they exist.

    Measured on this 2-core machine (embedded PostgreSQL 18, fsync off) while other test suites were
    running (load average ~3): ``create_bench_tables(uri)``, i.e. 1M users, takes **5-9 s**, about
    60% of it the INSERT (~200 MB of rows), 30% the PK + UNIQUE(email) builds, 0.5 s the VACUUM
    ANALYZE; ``users=1M, orders=2M, events=5M`` take about 40 s.
    """
    counts = {"users": int(users), "orders": int(orders), "events": int(events), "wide": int(wide),
              "plain": int(plain)}
    if any(v < 0 for v in counts.values()):
        raise ValueError("row counts must be >= 0")
    creates, constraints = _bench_ddl(schema)
    q = lambda t: qualify(schema, t)  # noqa: E731
    inserts = {
        "users": _users_insert(q("users"), counts["users"]),
        "orders": _orders_insert(q("orders"), counts["orders"], counts["users"], shop=False),
        "events": _events_insert(q("events"), counts["events"], counts["users"]),
        "wide": _wide_insert(q("wide"), counts["wide"]),
        "plain": _plain_insert(q("plain"), counts["plain"]),
    }
    with _connect(conninfo) as conn:
        conn.execute(f"CREATE SCHEMA IF NOT EXISTS {quote_ident(schema)}")
        if replace:
            conn.execute("DROP TABLE IF EXISTS " + ", ".join(q(t) for t in BENCH_TABLES))
        for table, create in zip(BENCH_TABLES, creates):
            with conn.transaction():
                conn.execute(create)
                if counts[table]:
                    conn.execute(inserts[table])
        with conn.transaction():
            _set_identity(conn, q("users"), "id", counts["users"])
        if with_indexes:
            for stmt in constraints:
                conn.execute(stmt)
        for table in BENCH_TABLES:
            conn.execute(f"VACUUM (ANALYZE) {q(table)}")
    return counts
