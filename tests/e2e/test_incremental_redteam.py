"""Red-team pass on `sync --incremental`: what the target can plant between runs. Each test failed
before its fix."""

from __future__ import annotations

from test_incremental import RULES, fill, incremental


def test_a_rule_planted_on_a_target_table_never_fires_the_table_is_reloaded(pair):
    """COPY and TRUNCATE fire no rule, but the incremental DELETE and INSERT would: a rule written by
    another role (here DO ALSO, writing elsewhere) would run inside the sync's transaction."""
    fill(pair)
    assert pair.sync(rules=RULES).returncode == 0
    pair.target("CREATE TABLE public.loot (email text); "
                "CREATE RULE steal AS ON INSERT TO public.users DO ALSO INSERT INTO public.loot VALUES (NEW.email); "
                "CREATE RULE keep AS ON DELETE TO public.users DO INSTEAD NOTHING")
    pair.source("UPDATE users SET score = -1 WHERE id <= 5; DELETE FROM orders WHERE user_id = 7; "
                "DELETE FROM users WHERE id = 7")
    tables = incremental(pair)
    assert tables["users"]["mode"] == "full" and "rule" in tables["users"]["reason"]
    assert pair.qt("SELECT count(*) FROM loot") == [(0,)]
    assert pair.qt("SELECT count(*) FROM users WHERE score = -1") == [(5,)]
    assert pair.qt("SELECT count(*) FROM users WHERE id = 7") == [(0,)]


def test_rows_another_role_changed_on_the_target_are_kept_until_a_full_sync(pair):
    """The documented limit, as it behaves: the refresh compares keys, not values, so a value changed
    on the target stays (a row with a key of its own is deleted, a deleted row stays missing); a full
    sync puts every one right."""
    fill(pair)
    assert pair.sync(rules=RULES).returncode == 0
    pair.target("UPDATE users SET score = -99 WHERE id = 3; DELETE FROM orders WHERE id = 5; "
                "INSERT INTO users VALUES (5000, 'planted@example.com', 'P', 0)")
    pair.source("UPDATE users SET score = score + 1 WHERE id = 4")
    tables = incremental(pair)
    assert tables["users"]["mode"] == "incremental" and tables["orders"]["mode"] == "incremental"
    assert pair.qt("SELECT score FROM users WHERE id = 3") == [(-99,)]  # kept: not detected
    assert pair.qt("SELECT count(*) FROM orders WHERE id = 5") == [(0,)]  # not copied back
    assert pair.qt("SELECT count(*) FROM users WHERE id = 5000") == [(0,)]  # a key the source lacks: deleted
    assert pair.sync(rules=RULES).returncode == 0
    assert pair.qt("SELECT score FROM users WHERE id = 3") == [(3,)]
    assert pair.qt("SELECT count(*) FROM orders WHERE id = 5") == [(1,)]


def test_a_state_table_handed_to_another_role_is_refused(pair):
    fill(pair)
    assert pair.sync(rules=RULES).returncode == 0
    pair.target("CREATE ROLE cf_other_state; ALTER TABLE _confiture_fast.sync_state OWNER TO cf_other_state")
    try:
        pair.source("UPDATE users SET score = 0 WHERE id = 1")
        res = pair.sync("--incremental", rules=RULES)
        assert res.returncode == 2 and "cf_other_state" in res.stderr and "Traceback" not in res.stderr, res.stderr
        assert pair.qt("SELECT score FROM users WHERE id = 1") == [(1,)]  # the target untouched
    finally:
        pair.target("ALTER TABLE _confiture_fast.sync_state OWNER TO CURRENT_USER; DROP ROLE cf_other_state")


def test_subset_and_incremental_runs_write_nothing_on_the_source(pair):
    """Nothing written to the source through a subset sync, a full sync and an incremental one: no row
    inserted, updated or deleted in its database, catalogs included (a temporary table would insert
    into pg_class). Analyzed first, so that no autoanalyze writes statistics meanwhile."""
    fill(pair)
    pair.source("UPDATE users SET score = 0 WHERE id = 1")
    pair.source("ANALYZE")
    probe = ("SELECT tup_inserted, tup_updated, tup_deleted FROM pg_catalog.pg_stat_database "
             "WHERE datname = pg_catalog.current_database()")
    before = pair.qs(probe)
    assert pair.sync("--where", "users: id < 10", rules=RULES).returncode == 0
    assert pair.sync(rules=RULES).returncode == 0
    pair.target("UPDATE users SET score = 0 WHERE id = 1")  # what the source changed: nothing to copy
    assert {t["mode"] for t in incremental(pair).values()} == {"incremental"}
    assert pair.qs(probe) == before


def test_no_secret_or_rule_value_in_the_state_records_or_the_checkpoint(pair):
    fill(pair)
    rules = RULES + "  - {column: score, strategy: constant, value: '424242'}\n"
    secret = "a-secret-nobody-may-read-0123456789"
    ckpt = pair.tmp / "ckpt.json"
    res = pair.sync("--checkpoint", str(ckpt), rules=rules, env={"ANONYMIZATION_SECRET": secret})
    assert res.returncode == 0, res.stderr
    pair.source("UPDATE users SET name = 'x' WHERE id = 2")
    res = pair.sync("--incremental", "--checkpoint", str(pair.tmp / "ckpt2.json"), "--format", "json", rules=rules,
                    env={"ANONYMIZATION_SECRET": secret})
    assert res.returncode == 0, res.stderr
    records = b"".join(bytes(r) for (r,) in pair.qt("SELECT record FROM _confiture_fast.sync_state"))
    assert records and b"424242" not in records and secret.encode() not in records
    for text in (res.stdout, res.stderr, *(p.read_text() for p in pair.tmp.glob("ckpt*.json"))):
        assert secret not in text


def test_a_policy_another_role_put_on_a_target_table_is_refused_before_the_target_is_touched(pair):
    """Row-level security on the target hid rows from the incremental survey and its DELETE (a refresh
    that silently left the table wrong) and ran the policy's expression, written by the table's owner,
    with the sync role's rights; a full load failed in its COPY."""
    import uuid

    from conftest import run_cli

    pair.both("CREATE TABLE items (id int PRIMARY KEY, v text)")
    pair.source("INSERT INTO items SELECT g, 'v' || g FROM generate_series(1, 100) g")
    owner, syncer = f"cf_own_{uuid.uuid4().hex[:8]}", f"cf_sync_{uuid.uuid4().hex[:8]}"
    pair.target(f"CREATE ROLE {owner}; CREATE ROLE {syncer} LOGIN; ALTER TABLE items OWNER TO {owner}; "
                f"GRANT SELECT, INSERT, UPDATE, DELETE, TRUNCATE ON items TO {syncer}; "
                f"GRANT CREATE ON DATABASE {pair.dst.rsplit('/', 1)[1]} TO {syncer}")
    to = pair.dst.replace("postgres@", f"{syncer}@", 1)

    def sync(*args):
        return run_cli("sync", "--from", pair.src, "--to", to, "--no-progress", *args)
    first = sync()
    assert first.returncode == 0, first.stderr
    pair.target("ALTER TABLE items ENABLE ROW LEVEL SECURITY; "
                f"CREATE POLICY half ON items TO {syncer} USING (id % 2 = 0) WITH CHECK (true)")
    pair.source("DELETE FROM items WHERE id = 3; UPDATE items SET v = 'changed' WHERE id = 4")
    for args in (("--incremental",), ()):
        res = sync(*args)
        assert res.returncode == 2, (args, res.stdout, res.stderr)
        assert "row-level security" in res.stderr and "target role" in res.stderr
    assert pair.qt("SELECT count(*), count(*) FILTER (WHERE v = 'changed') FROM items") == [(100, 0)]


def test_a_planted_trigger_never_fires_and_a_replayed_older_record_only_copies_more(pair):
    """A trigger another role put on a synced table (ENABLE ALWAYS) does not fire in the refresh; an
    older record of the same table put back (ours, signed) has an earlier horizon: a wider window, rows
    copied again, the same result as a full sync."""
    fill(pair)
    assert pair.sync(rules=RULES).returncode == 0
    old = pair.qt("SELECT record, mac, mac_secret FROM _confiture_fast.sync_state WHERE table_name = 'users'")[0]
    pair.source("UPDATE users SET score = 1000 WHERE id = 10")
    assert incremental(pair)["users"]["mode"] == "incremental"
    pair.target("CREATE TABLE public.fired (n int); CREATE FUNCTION public.note() RETURNS trigger LANGUAGE plpgsql "
                "AS $$BEGIN INSERT INTO public.fired VALUES (1); RETURN NULL; END$$; "
                "CREATE TRIGGER spy AFTER INSERT OR DELETE ON public.users FOR EACH ROW EXECUTE FUNCTION public.note(); "
                "ALTER TABLE public.users ENABLE ALWAYS TRIGGER spy")
    with __import__("psycopg").connect(pair.dst, autocommit=True) as c:
        c.execute("UPDATE _confiture_fast.sync_state SET record = %s, mac = %s, mac_secret = %s "
                  "WHERE table_name = 'users'", old)
    pair.source("UPDATE users SET score = 2000 WHERE id = 11")
    got = incremental(pair)["users"]
    assert got["mode"] == "incremental" and got["updated"] == 2  # id 10 again (older window) and id 11
    assert pair.qt("SELECT count(*) FROM fired") == [(0,)]
    assert pair.qt("SELECT id, score FROM users WHERE id IN (10, 11) ORDER BY 1") == [(10, 1000), (11, 2000)]
    assert pair.qt("SELECT tgenabled FROM pg_trigger WHERE tgname = 'spy'") == [("A",)]


def test_a_record_copied_from_another_table_does_not_verify_and_the_table_is_reloaded(pair):
    fill(pair)
    assert pair.sync(rules=RULES).returncode == 0
    pair.target("UPDATE _confiture_fast.sync_state o SET record = u.record, mac = u.mac, mac_secret = u.mac_secret "
                "FROM _confiture_fast.sync_state u WHERE o.table_name = 'orders' AND u.table_name = 'users'")
    got = incremental(pair)
    assert got["orders"]["mode"] == "full" and "does not verify" in got["orders"]["reason"]
    assert got["users"]["mode"] == "incremental"
