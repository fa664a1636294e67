"""Binary COPY for tables with rules (issue 17), through the real command line between real servers: the
same tables loaded through the binary rewriter and through the text one hold byte-identical rows (same
pseudonyms, so unique columns stay unique and foreign keys between the tables still match)."""

from __future__ import annotations

import json

# `_b` tables take the text path: their unruled column `n` is smallint on the source and integer on the
# target, a lossless widening, and binary COPY needs identical types. Everything else is the same.
TABLES = """
CREATE TABLE users{s} (id int PRIMARY KEY, email text NOT NULL UNIQUE, name varchar(60), code char(8),
                       tags text[], profile jsonb, raw json, created timestamptz, balance numeric(12,2), n {n});
CREATE TABLE orders{s} (id int PRIMARY KEY, user_email text REFERENCES users{s}(email), note text,
                        items jsonb[], n {n});
"""
FILL = """
INSERT INTO users{s} SELECT i, 'person' || i || CASE WHEN i % 7 = 0 THEN '@exämple.org' ELSE '@example.com' END,
    CASE i % 5 WHEN 0 THEN NULL WHEN 1 THEN '' WHEN 2 THEN 'Zoë Ångström ' || i ELSE E'tab\\there\\nline ' || i END,
    CASE WHEN i % 6 = 0 THEN NULL ELSE 'C' || (i % 1000) END,
    CASE i % 4 WHEN 0 THEN NULL WHEN 1 THEN ARRAY['a' || i, NULL, '', '日本'] WHEN 2 THEN '{}'
        ELSE ('[0:1][1:2]={{x' || i || ',y},{NULL,"z w"}}')::text[] END,
    CASE WHEN i % 9 = 0 THEN NULL ELSE jsonb_build_object('email', 'p' || i || '@corp.example', 'phone',
        '+1 555 ' || i, 'age', i % 90, 'nested', jsonb_build_object('email', 'deep' || i || '@x.y')) END,
    CASE WHEN i % 8 = 0 THEN NULL ELSE ('{"email":  "q' || i || E'@x.y", "kept": "\\u00e9", "n": ' || i || '}')::json END,
    CASE WHEN i % 10 = 0 THEN NULL ELSE timestamptz '2024-01-01 00:00:00+00' + i * interval '1 hour 1 second' END,
    (i * 13 % 100000) / 100.0, i % 30000
FROM generate_series(1, 3000) i;
INSERT INTO orders{s} SELECT i, CASE WHEN i % 11 = 0 THEN NULL ELSE 'person' || (i % 3000 + 1)
        || CASE WHEN (i % 3000 + 1) % 7 = 0 THEN '@exämple.org' ELSE '@example.com' END END,
    CASE WHEN i % 3 = 0 THEN NULL ELSE 'note ' || i || ' €' END,
    CASE WHEN i % 4 = 0 THEN NULL ELSE ARRAY[jsonb_build_object('sku', i), NULL] END, i % 30000
FROM generate_series(1, 6000) i;
"""
RULES = "".join(f"""
users{s}:
  - column: email
    strategy: email
  - column: name
    strategy: name
  - column: code
    strategy: partial
    keep_first: 1
    keep_last: 1
  - column: tags
    strategy: hash
    length: 12
    allow_duplicates: true
  - column: profile
    strategy: json
    paths:
      $.email: email
      $.phone: phone
      $.nested.email: email
  - column: raw
    strategy: json
    paths:
      $.email: fake_name
orders{s}:
  - column: user_email
    strategy: email
  - column: note
    strategy: redact
""" for s in ("_a", "_b"))


def test_a_binary_path_sync_loads_the_rows_a_text_path_sync_loads(pair):
    for s in ("_a", "_b"):
        tables = TABLES.replace("{s}", s)
        pair.source(tables.replace("{n}", "smallint"))
        pair.target(tables.replace("{n}", "smallint" if s == "_a" else "integer"))
        pair.source(FILL.replace("{s}", s))
    plan = pair.sync("--dry-run", "--format", "json", rules=RULES)
    assert plan.returncode == 0, plan.stderr
    binary = {t["name"]: [u["binary"] for u in t["units"]] for t in json.loads(plan.stdout)["tables"]}
    assert binary == {"users_a": [True], "orders_a": [True], "users_b": [False], "orders_b": [False]}
    assert "rules on text-like columns" in pair.sync("--dry-run", rules=RULES).stderr
    res = pair.sync(rules=RULES)
    assert res.returncode == 0, res.stderr

    cols = {"users": "id, email, name, code, tags::text, profile::text, raw::text, created, balance, n::int",
            "orders": "id, user_email, note, items::text, n::int"}
    for table, listed in cols.items():
        via_binary = pair.qt(f"SELECT {listed} FROM {table}_a ORDER BY id")
        assert via_binary == pair.qt(f"SELECT {listed} FROM {table}_b ORDER BY id"), table
        assert len(via_binary) == {"users": 3000, "orders": 6000}[table]
        assert via_binary != pair.qs(f"SELECT {listed} FROM {table}_a ORDER BY id")
    # what is not ruled arrives exact; what is, is rewritten
    for sql in ("SELECT id, created, balance, n FROM users_a ORDER BY id", "SELECT id, items FROM orders_a ORDER BY id"):
        assert pair.qt(sql) == pair.qs(sql), sql
    assert pair.qt("SELECT count(*) FROM users_a WHERE email LIKE 'person%' OR profile->>'email' LIKE 'p%' "
                   "OR raw::text LIKE '%\"q%' OR tags::text LIKE '%日本%'") == [(0,)]
    assert pair.qt("SELECT tags::text FROM users_a WHERE id = 3")[0][0].startswith("[0:1][1:2]={{")
    # the unique index and the foreign keys were rebuilt and validated on the pseudonyms
    assert pair.qt("SELECT count(*) FROM orders_a JOIN users_a ON user_email = email") == [(6000 - 6000 // 11,)]
    assert pair.qt("SELECT bool_and(convalidated) FROM pg_constraint WHERE contype IN ('f', 'u', 'p') "
                   "AND conrelid::regclass::text LIKE '%\\_a'") == [(True,)]
