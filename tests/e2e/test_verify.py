"""verify against real servers: clean syncs pass; every kind of leak or mismatch fails, by name."""

from __future__ import annotations

import json
import os

import psycopg
import pytest

from confiture_fast import config
from confiture_fast.verify import _open
from conftest import run_cli
from test_scan import SEEDED
from test_sync import RULES, USERS_DDL, fill_users


def verify(pair, *args, rules=None):
    extra = ["--anonymize-config", str(pair.rules(rules))] if rules is not None else []
    return run_cli("verify", "--from", pair.src, "--to", pair.dst, *extra, *args, cwd=pair.tmp)


def as_json(res) -> dict:
    out = json.loads(res.stdout)
    out["by_table"] = {t["table"]: {**t, "cols": {c["column"]: c for c in t["columns"]}} for t in out["tables"]}
    return out


def test_clean_anonymized_sync_passes(pair):
    pair.both(USERS_DDL)
    fill_users(pair)
    assert pair.sync(rules=RULES).returncode == 0
    res = verify(pair, "--format", "json", rules=RULES)
    assert res.returncode == 0, res.stdout + res.stderr
    out = as_json(res)
    users = out["by_table"]["users"]
    assert out["ok"] and users["rows_source"] == users["rows_target"] == 200
    assert users["order_by"] == "primary key (id)"
    email = users["cols"]["email"]
    assert email["mode"] == "anonymized" and email["value_check"] == "exact" and email["format_check"] == "checked"
    assert email["duplicates"] == 0
    bio = users["cols"]["bio"]
    assert bio["mode"] == "untouched" and bio["fingerprint_source"] == bio["fingerprint_target"]
    text = verify(pair, rules=RULES)
    assert text.returncode == 0 and "verify: 1/1 table(s) ok" in text.stderr


def test_missing_rule_on_the_seeded_database_is_caught(pair):
    pair.both(SEEDED.split("INSERT", 1)[0])
    pair.source("INSERT" + SEEDED.split("INSERT", 1)[1])
    synced = """customers:
  - column: email
    strategy: email
  - column: first_name
    strategy: name
  - column: last_name
    strategy: name
  - column: notes
    strategy: redact
  - column: contact
    strategy: redact
"""
    # For verify, the columns left as they are were reviewed (scan flags them too).
    reviewed = "".join(f"  - column: {c}\n    strategy: keep\n" for c in ("birth_date", "profile", "aliases"))
    without_notes = synced.replace("  - column: notes\n    strategy: redact\n", "")
    pair.target("DROP TABLE products")
    pair.source("DROP TABLE products")
    res = pair.sync(rules=without_notes)
    assert res.returncode == 0, res.stderr
    missing_notes = without_notes + reviewed
    res = verify(pair, "--format", "json", rules=missing_notes)
    assert res.returncode == 1
    notes = as_json(res)["by_table"]["customers"]["cols"]["notes"]
    assert notes["mode"] == "untouched" and notes["leaks"] == {"email": 100}
    text = verify(pair, rules=missing_notes)
    assert "customers.notes: not anonymized, and 100 value(s) with an email" in text.stderr
    assert "FAILED" in text.stderr and "acme-corp" not in text.stderr  # no PII echoed
    res = verify(pair, "--format", "json", rules=without_notes)  # nothing reviewed: the array and json leak too
    cols = as_json(res)["by_table"]["customers"]["cols"]
    assert cols["aliases"]["leaks"] == {"email": 300} and cols["profile"]["leaks"] == {"phone": 300}

    res = pair.sync(rules=synced)
    assert res.returncode == 0, res.stderr
    res = verify(pair, "--format", "json", rules=synced + reviewed)
    assert res.returncode == 0, res.stdout
    res = verify(pair, "--format", "json", "--no-pii-patterns", rules=missing_notes)
    assert res.returncode == 1  # notes differ from the source now: not an identical copy either
    assert "differs from the source" in as_json(res)["by_table"]["customers"]["cols"]["notes"]["problems"][0]


TAMPER_DDL = "CREATE TABLE t (id int PRIMARY KEY, email text UNIQUE, h text, note text, n int)"
TAMPER_RULES = "t:\n  - column: email\n    strategy: email\n  - column: h\n    strategy: hash\n"


def test_every_mismatch_is_reported(pair):
    pair.source(TAMPER_DDL)
    pair.target(TAMPER_DDL.replace(" UNIQUE", ""))  # a target that lost its constraint can hold duplicates
    pair.source("""INSERT INTO t SELECT i, 'p' || i || '@corp.example', CASE WHEN i % 10 = 0 THEN NULL ELSE 'h' || i END,
                   'note ' || i, i FROM generate_series(1, 100) i""")
    pair.target("""INSERT INTO t SELECT i, 'user_' || lpad(to_hex(i), 16, '0') || '@example.com',
                   CASE WHEN i % 10 = 0 THEN NULL ELSE lpad(to_hex(i * 7), 16, '0') END, 'note ' || i, i
                   FROM generate_series(1, 100) i""")
    res = verify(pair, "--format", "json", rules=TAMPER_RULES)
    assert res.returncode == 0, res.stdout
    pair.target("""UPDATE t SET email = 'p5@corp.example' WHERE id = 5;         -- kept its source value
                   UPDATE t SET email = 'p9@corp.example' WHERE id = 6;         -- another row's source value
                   UPDATE t SET h = NULL WHERE id = 7; UPDATE t SET h = 'zz' WHERE id = 10;  -- NULL moved twice
                   UPDATE t SET h = 'not-hex' WHERE id = 11;                    -- wrong format
                   UPDATE t SET email = 'user_0000000000000001@example.com' WHERE id = 12;  -- duplicate
                   UPDATE t SET note = 'changed' WHERE id = 40;                 -- untouched column differs
                   INSERT INTO t VALUES (101, NULL, NULL, 'extra row', 0)""")
    res = verify(pair, "--format", "json", rules=TAMPER_RULES)
    assert res.returncode == 1
    t = as_json(res)["by_table"]["t"]
    assert t["rows_source"] == 100 and t["rows_target"] == 101 and "row counts differ" in t["problems"][0]
    email, h, note = t["cols"]["email"], t["cols"]["h"], t["cols"]["note"]
    assert email["unchanged_rows"] == 1 and email["equal_to_a_source_value"] == 2
    assert email["format_errors"] == 2 and email["duplicates"] == 1
    assert h["null_mismatches"] == 2 and h["format_errors"] == 2
    assert note["differing_rows"] == 1 and note["fingerprint_source"] != note["fingerprint_target"]
    assert any("first at row 40" in p for p in note["problems"])
    assert t["cols"]["n"]["problems"] == []


def test_bounded_value_set_falls_back_to_a_share_and_says_so(pair):
    pair.both("CREATE TABLE t (id int PRIMARY KEY, v text)")
    pair.source("INSERT INTO t SELECT i, 'value ' || i FROM generate_series(1, 2000) i")
    # Every target value is some other row's source value: a shuffled, unanonymized column.
    pair.target("INSERT INTO t SELECT i, 'value ' || (i % 2000 + 1) FROM generate_series(1, 2000) i")
    res = verify(pair, "--format", "json", "--max-values", "100", rules="t:\n  - column: v\n    strategy: redact\n")
    assert res.returncode == 1
    v = as_json(res)["by_table"]["t"]["cols"]["v"]
    assert v["value_check"].startswith("sampled: 1/32 of the value space")
    assert 0 < v["equal_to_a_source_value"] < 2000 and v["unchanged_rows"] == 0
    text = verify(pair, "--max-values", "100", rules="t:\n  - column: v\n    strategy: redact\n")
    assert "equality with source values sampled" in text.stderr


def test_arrays_nulls_and_tables_without_key(pair):
    ddl = "CREATE TABLE a (tags text[], label text, x int)"
    pair.both(ddl)
    pair.source("INSERT INTO a VALUES (ARRAY['a@x.org', 'b@x.org'], 'one', 1), (NULL, 'two', 2), ('{}', NULL, 3)")
    pair.target("""INSERT INTO a VALUES (NULL, 'two', 2), ('{}', NULL, 3),
                   (ARRAY['user_0123456789abcdef@example.com', 'b@x.org'], 'one', 1)""")
    res = verify(pair, "--format", "json", "--no-pii-patterns", rules="a:\n  - column: tags\n    strategy: email\n")
    t = as_json(res)["by_table"]["a"]
    assert t["order_by"] == "every untouched column (no usable key)"
    tags = t["cols"]["tags"]
    assert tags["null_mismatches"] == 0 and tags["equal_to_a_source_value"] == 1 and tags["format_errors"] == 1
    assert res.returncode == 1


def test_errors_and_read_only_sessions(pair):
    pair.both("CREATE TABLE t (id int PRIMARY KEY)")
    res = verify(pair, rules="t:\n  - column: nope\n    strategy: redact\n")
    assert res.returncode == 2 and "t.nope: no such column on the source" in res.stderr and "Traceback" not in res.stderr
    res = verify(pair, "--tables", "missing")
    assert res.returncode == 2 and "unknown table 'missing'" in res.stderr
    pair.source("CREATE TABLE only_src (id int)")
    res = verify(pair, "--format", "json")
    assert res.returncode == 1 and as_json(res)["by_table"]["only_src"]["problems"] == ["missing on the target"]
    env = config.resolve_environment(pair.dst, pair.tmp)
    with _open("target", env) as conn:
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
            conn.execute("CREATE TABLE x (a int)")


def test_scan_then_sync_then_verify_on_the_seeded_database(pair):
    """The whole loop: scan's suggestions, synced, verify clean; one rule dropped, verify names the leak."""
    pair.both(SEEDED.split("INSERT", 1)[0])
    pair.source("INSERT" + SEEDED.split("INSERT", 1)[1])
    scanned = run_cli("scan", "--from", pair.src, cwd=pair.tmp)
    assert scanned.returncode == 0, scanned.stderr
    res = pair.sync(rules=scanned.stdout)
    assert res.returncode == 0, res.stderr
    res = verify(pair, "--format", "json", rules=scanned.stdout)
    assert res.returncode == 0, res.stdout
    cols = as_json(res)["by_table"]["customers"]["cols"]
    assert cols["aliases"]["mode"] == "anonymized" and cols["aliases"]["format_check"] == "checked"
    assert cols["birth_date"]["strategy"] == "date_shift" and cols["birth_date"]["unchanged_rows"] == 0
    assert cols["profile"]["value_check"].startswith("per ruled path") and cols["profile"]["leaks"] == {}

    without_notes = scanned.stdout.replace("  - column: notes\n    strategy: redact\n", "")
    assert without_notes != scanned.stdout
    assert pair.sync(rules=without_notes).returncode == 0
    res = verify(pair, rules=without_notes)
    assert res.returncode == 1
    assert "customers.notes: not anonymized, and 100 value(s) with an email (first at row 3)" in res.stderr


def test_rule_with_an_unknown_strategy_is_refused(pair):
    pair.both("CREATE TABLE t (id int PRIMARY KEY, v text)")
    res = verify(pair, rules="t:\n  - column: v\n    strategy: emial\n")
    assert res.returncode == 2 and "t.v: unknown strategy 'emial'" in res.stderr


def test_table_whose_every_column_is_anonymized(pair):
    pair.both("CREATE TABLE e (email text, phone text)")
    pair.source("INSERT INTO e SELECT 'p' || i || '@corp.example', CASE WHEN i % 4 = 0 THEN NULL ELSE '+33 6 ' || i END "
                "FROM generate_series(1, 200) i")
    rules = "e:\n  - column: email\n    strategy: email\n  - column: phone\n    strategy: phone\n"
    assert pair.sync(rules=rules).returncode == 0
    res = verify(pair, "--format", "json", rules=rules)
    assert res.returncode == 0, res.stdout
    t = as_json(res)["by_table"]["e"]
    assert t["order_by"].startswith("none: no untouched column")
    pair.target("UPDATE e SET phone = NULL WHERE phone IS NOT NULL AND email < 'user_4'")
    res = verify(pair, "--format", "json", rules=rules)
    assert res.returncode == 1
    assert "NULLs: 50 on the source" in as_json(res)["by_table"]["e"]["cols"]["phone"]["problems"][0]


def test_a_column_named_like_pii_without_a_rule_is_flagged(pair):
    pair.both("CREATE TABLE people (id int PRIMARY KEY, first_name text, email_verified boolean, city text)")
    pair.source("INSERT INTO people SELECT i, 'Ann' || i, true, 'Lyon' FROM generate_series(1, 20) i")
    assert pair.sync().returncode == 0
    res = verify(pair, "--format", "json")
    assert res.returncode == 1
    cols = as_json(res)["by_table"]["people"]["cols"]
    assert cols["first_name"]["name_suggests"] == "a first name" and cols["city"]["name_suggests"] == "a city"
    assert cols["email_verified"]["problems"] == []
    res = verify(pair, "--format", "json", rules="people:\n  - column: first_name\n    strategy: keep\n"
                                                  "  - column: city\n    strategy: keep\n")
    assert res.returncode == 0, res.stdout
    assert verify(pair, "--no-pii-patterns").returncode == 0


def test_a_table_the_role_cannot_read_is_a_clean_error(pair):
    pair.both("CREATE TABLE secret_stuff (id int PRIMARY KEY)")
    role = "ro_" + pair.src.rsplit("/", 1)[1]
    pair.source(f"CREATE ROLE {role} LOGIN")
    src_as_role = pair.src.replace("postgres@", f"{role}@")
    res = run_cli("verify", "--from", src_as_role, "--to", pair.dst, cwd=pair.tmp)
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert "secret_stuff: permission denied" in res.stderr and "--exclude" in res.stderr


def test_json_paths_are_checked_inside_the_documents(pair):
    pair.both("CREATE TABLE p (id int PRIMARY KEY, profile jsonb)")
    pair.source("""INSERT INTO p SELECT i, jsonb_build_object('phone', '+33 6 12 34 56 ' || lpad(i::text, 2, '0'),
                   'theme', 'dark', 'tags', jsonb_build_array('a', i)) FROM generate_series(1, 40) i""")
    pair.target("""INSERT INTO p SELECT i, jsonb_build_object('phone', '+1-555-' || lpad(i::text, 4, '0'),
                   'theme', 'dark', 'tags', jsonb_build_array('a', i)) FROM generate_series(1, 40) i""")
    rules = 'p:\n  - column: profile\n    strategy: json\n    paths: {"$.phone": phone}\n'
    res = verify(pair, "--format", "json", rules=rules)
    assert res.returncode == 0, res.stdout
    profile = as_json(res)["by_table"]["p"]["cols"]["profile"]
    assert profile["format_check"] == "checked at the ruled paths" and profile["value_check"].startswith("per ruled path")

    # A path that misses: the sync copied the phone numbers, and verify finds them in the documents.
    pair.target("ALTER TABLE p RENAME TO p_anonymized; CREATE TABLE p (LIKE p_anonymized)")
    pair.target("""INSERT INTO p SELECT i, jsonb_build_object('phone', '+33 6 12 34 56 ' || lpad(i::text, 2, '0'),
                   'theme', 'dark', 'tags', jsonb_build_array('a', i)) FROM generate_series(1, 40) i""")
    typo = verify(pair, "--format", "json", rules=rules.replace("$.phone", "$.phon"))
    assert typo.returncode == 1
    profile = as_json(typo)["by_table"]["p"]["cols"]["profile"]
    assert profile["leaks"] == {"phone": 40} and "add their paths to the json rule" in profile["problems"][0]

    pair.target("DROP TABLE p; ALTER TABLE p_anonymized RENAME TO p")
    pair.target("""UPDATE p SET profile = jsonb_set(profile, '{phone}', '"+33 6 12 34 56 05"') WHERE id = 5;
                   UPDATE p SET profile = jsonb_set(profile, '{phone}', '"call me"') WHERE id = 9""")
    res = verify(pair, "--format", "json", rules=rules)
    profile = as_json(res)["by_table"]["p"]["cols"]["profile"]
    assert res.returncode == 1
    assert profile["unchanged_rows"] == 1 and profile["format_errors"] == 2
    assert any("first at row 5" in p for p in profile["problems"])


def test_values_print_the_same_whatever_the_server_defaults(pair):
    pair.both("CREATE TABLE t (id int PRIMARY KEY, at timestamptz, price money, f float8)")
    pair.source("ALTER DATABASE " + pair.src.rsplit("/", 1)[1] + " SET TimeZone = 'Pacific/Auckland'")
    pair.target("ALTER DATABASE " + pair.dst.rsplit("/", 1)[1] + " SET TimeZone = 'America/Lima'")
    for side in (pair.source, pair.target):
        side("INSERT INTO t VALUES (1, '2024-03-01 12:00:00+00', 12.5, 0.1), (2, NULL, NULL, 1e300)")
    res = verify(pair, "--format", "json")
    assert res.returncode == 0, res.stdout


def test_source_on_postgresql_15_target_on_18(pg15_server, target_server, tmp_path):
    src = pg15_server.create_database(f"v15_{os.getpid()}")
    dst = target_server.create_database(f"v18_{os.getpid()}")
    for uri in (src, dst):
        with psycopg.connect(uri, autocommit=True) as c:
            c.execute(USERS_DDL)
    with psycopg.connect(src, autocommit=True) as c:
        c.execute("""INSERT INTO users (email, phone, full_name, ssn, password_hash, bio)
                     SELECT 'p' || i || '@corp.example', '+33 6 ' || i, 'P ' || i, NULL, md5(i::text), 'b' || i
                     FROM generate_series(1, 100) i""")
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES)
    res = run_cli("sync", "--from", src, "--to", dst, "--no-progress", "--anonymize-config", str(rules))
    assert res.returncode == 0, res.stderr
    res = run_cli("verify", "--from", src, "--to", dst, "--anonymize-config", str(rules), "--format", "json")
    assert res.returncode == 0, res.stdout
    assert json.loads(res.stdout)["tables"][0]["rows_target"] == 100
