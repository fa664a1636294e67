"""The target is not trusted: another role may have written anything into it (issue 12, points 1, 5,
19 and 20). Nothing another role wrote runs with the sync's privileges, no user trigger fires during
the load, restricted roles get a clear answer before anything is written, and runs into one target
take turns."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
import uuid

import psycopg
import pytest

from conftest import run_cli

STATE = "_confiture_fast.pending_ddl"


@pytest.fixture
def state_home(tmp_path):
    """A state folder of our own (the signing key lives there), as XDG_STATE_HOME for the CLI."""
    return tmp_path / "state"


def sync(pair, state_home, *args, to=None, secret="test-secret-0123456789abcdef"):
    return run_cli("sync", "--from", pair.src, "--to", to or pair.dst, "--no-progress", *args,
                   env={"XDG_STATE_HOME": str(state_home), "ANONYMIZATION_SECRET": secret})


def new_role(pair, prefix: str, *sql: str) -> tuple[str, str]:
    """A login role of the target server (roles are shared by the whole server: a unique name) and a
    URI that connects to the target database as it."""
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    pair.target(f"CREATE ROLE {name} LOGIN")
    for s in sql:
        pair.target(s.format(role=name))
    return name, pair.dst.replace("postgres@", f"{name}@", 1)


def as_role(uri: str, sql: str) -> None:
    with psycopg.connect(uri, autocommit=True) as c:
        c.execute(sql)


def is_super(pair, role: str) -> bool:
    return pair.qt("SELECT rolsuper FROM pg_roles WHERE rolname = %s", (role,))[0][0]


def users(pair, rows: int = 50) -> None:
    pair.both("CREATE TABLE users (id int PRIMARY KEY, email text UNIQUE)")
    pair.source(f"INSERT INTO users SELECT g, 'u' || g || '@x.org' FROM generate_series(1, {rows}) g")


def insert_record(pair, table: str, name: str, phase: int, sql: str, signer=None) -> None:
    """A pending_ddl record, signed where the table has MAC columns, as a run would sign it whose state
    folder and secret are `signer` (else with a forged MAC)."""
    cols = {r[0] for r in pair.qt("SELECT attname FROM pg_attribute WHERE attrelid = %s::regclass", (STATE,))}
    values = {"table_name": table, "name": name, "phase": phase, "create_sql": sql}
    if "mac" in cols:
        values["mac"], values["mac_secret"] = keys_for(*signer).sign((table, name, phase, sql)) if signer \
            else (b"forged", None)
    with psycopg.connect(pair.dst, autocommit=True) as c:
        c.execute(f"INSERT INTO {STATE} ({', '.join(values)}) VALUES ({', '.join(['%s'] * len(values))})",
                  tuple(values.values()))


def keys_for(state_home, secret=None):
    from confiture_fast.target import StateKeys

    return StateKeys(secret, state_home / "confiture-fast" / "pending-ddl.key")


def make_state(pair, state_home) -> None:
    """The state schema and table, made by a real sync (so by our role, in this version's layout)."""
    pair.both("CREATE TABLE seed (id int PRIMARY KEY)")
    assert sync(pair, state_home, "--tables", "seed").returncode == 0


# -- 1. SQL read back from the target is never trusted ----------------------------------------------
def test_state_schema_planted_by_another_role_is_refused(pair, state_home):
    users(pair)
    mallory, uri = new_role(pair, "mallory", "GRANT CREATE ON DATABASE " + pair.dst.rsplit("/", 1)[1] + " TO {role}")
    as_role(uri, f"""CREATE SCHEMA _confiture_fast;
        CREATE TABLE {STATE} (id bigserial PRIMARY KEY, table_name text NOT NULL, name text NOT NULL,
            phase int NOT NULL, create_sql text NOT NULL, dropped_at timestamptz NOT NULL DEFAULT now(),
            mac bytea, mac_secret bytea);
        INSERT INTO {STATE} (table_name, name, phase, create_sql) VALUES ('users', 'x', 1, 'ALTER ROLE {mallory} SUPERUSER')""")
    res = sync(pair, state_home)
    assert res.returncode == 2, res.stderr
    assert f"owned by {mallory}" in res.stderr and "fix:" in res.stderr and "Traceback" not in res.stderr
    assert not is_super(pair, mallory)
    assert pair.qt("SELECT count(*) FROM users") == [(0,)]  # untouched


def test_forged_record_in_our_own_table_never_runs(pair, state_home):
    users(pair)
    make_state(pair, state_home)
    mallory, _ = new_role(pair, "mallory")
    insert_record(pair, "users", "users_email_key", 1, f"ALTER ROLE {mallory} SUPERUSER")
    res = sync(pair, state_home)
    assert res.returncode == 2, res.stderr
    err = " ".join(res.stderr.split()).replace('"', "")
    assert "cannot be verified" in err and "users_email_key" in err and f"DELETE FROM {STATE} WHERE id =" in err
    assert not is_super(pair, mallory)
    assert pair.qt(f"SELECT count(*) FROM {STATE}") == [(1,)]  # kept, never lost silently


def test_record_signed_elsewhere_runs_only_with_that_key_or_the_shared_secret(pair, tmp_path, state_home):
    users(pair)
    make_state(pair, state_home)
    pair.target("ALTER TABLE users DROP CONSTRAINT users_email_key")
    laptop = tmp_path / "laptop"
    # written (signed) by a run on another machine, which shared the anonymization secret
    insert_record(pair, "users", "users_email_key", 1,
                  'ALTER TABLE "public"."users" ADD CONSTRAINT "users_email_key" UNIQUE (email)',
                  (laptop, b"shared-secret-0123456789"))
    res = sync(pair, state_home, secret="another-secret-0123456789")
    assert res.returncode == 2 and "cannot be verified" in res.stderr, res.stderr
    res = sync(pair, state_home, secret="shared-secret-0123456789")
    assert res.returncode == 0, res.stderr
    assert pair.qt("SELECT count(*) FROM pg_indexes WHERE indexname = 'users_email_key'") == [(1,)]
    assert pair.qt(f"SELECT count(*) FROM {STATE}") == [(0,)]


@pytest.mark.parametrize("plant, named", [
    ("CREATE VIEW {state} AS SELECT 1::bigint AS id, 'users'::text AS table_name, 'x'::text AS name, 1 AS phase, "
     "'SELECT 1'::text AS create_sql", "not confiture-fast's table"),
    ("CREATE FUNCTION _confiture_fast.f() RETURNS int LANGUAGE sql AS 'SELECT 1'", "function _confiture_fast.f()"),
    ("CREATE FUNCTION public.esc() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN ALTER ROLE {mallory} SUPERUSER; "
     "RETURN NEW; END$$; CREATE TRIGGER t BEFORE INSERT ON {state} FOR EACH ROW EXECUTE FUNCTION public.esc()",
     "trigger t on"),
    ("CREATE RULE r AS ON INSERT TO {state} DO ALSO SELECT 1", "rule r on"),
    ("CREATE INDEX planted ON {state} (lower(name))", "index _confiture_fast.planted"),
])
def test_objects_planted_in_the_state_schema_are_refused(pair, state_home, plant, named):
    users(pair)
    make_state(pair, state_home)
    mallory, _ = new_role(pair, "mallory")
    if plant.startswith("CREATE VIEW"):
        pair.target(f"DROP TABLE {STATE}")
    pair.target(plant.format(state=STATE, mallory=mallory))
    res = sync(pair, state_home)
    assert res.returncode == 2, res.stderr
    assert named in res.stderr and "fix:" in res.stderr and "Traceback" not in res.stderr
    assert not is_super(pair, mallory)
    assert pair.qt("SELECT count(*) FROM users") == [(0,)]


def test_functions_planted_in_public_never_capture_our_statements(pair, state_home):
    """A role with CREATE on public shadows a catalog function our queries call; with an empty
    search_path it is never called. Definitions read that way are schema-qualified and rebuild."""
    users(pair)
    mallory, uri = new_role(pair, "mallory", "GRANT CREATE ON SCHEMA public TO {role}")
    as_role(uri, f"""CREATE FUNCTION public.quote_ident(name) RETURNS text LANGUAGE plpgsql AS $$
        BEGIN ALTER ROLE {mallory} SUPERUSER; RETURN pg_catalog.quote_ident($1::text); END $$""")
    pair.both("""CREATE SCHEMA crm;
        CREATE FUNCTION public.norm(text) RETURNS text LANGUAGE sql IMMUTABLE AS 'SELECT pg_catalog.lower($1)';
        CREATE TABLE crm.orders (id serial PRIMARY KEY, user_id int REFERENCES public.users(id), note text);
        CREATE INDEX orders_norm ON crm.orders (public.norm(note))""")
    pair.source("INSERT INTO crm.orders (user_id, note) SELECT g, 'N' || g FROM generate_series(1, 50) g")
    before = pair.qt("SELECT indexrelid::regclass::text, pg_get_indexdef(indexrelid) FROM pg_index "
                     "WHERE indrelid IN ('crm.orders'::regclass, 'users'::regclass) ORDER BY 1")
    res = sync(pair, state_home)
    assert res.returncode == 0, res.stderr
    assert not is_super(pair, mallory)
    after = pair.qt("SELECT indexrelid::regclass::text, pg_get_indexdef(indexrelid) FROM pg_index "
                    "WHERE indrelid IN ('crm.orders'::regclass, 'users'::regclass) ORDER BY 1")
    assert after == before
    assert pair.qt("SELECT count(*) FROM pg_constraint WHERE conrelid = 'crm.orders'::regclass AND contype = 'f'") == [(1,)]
    assert pair.qt("SELECT count(*) FROM crm.orders") == [(50,)]


def test_a_superuser_loads_a_lesser_owners_table_as_that_owner(pair, state_home):
    """A CHECK (or default) its owner wrote runs with the owner's privileges, never the sync's."""
    users(pair)
    mallory, uri = new_role(pair, "mallory", "ALTER TABLE users OWNER TO {role}", "GRANT CREATE ON SCHEMA public TO {role}")
    as_role(uri, f"""CREATE FUNCTION public.ok(int) RETURNS bool LANGUAGE plpgsql AS $$
        BEGIN IF current_user <> '{mallory}' THEN ALTER ROLE {mallory} SUPERUSER; END IF; RETURN true; END $$;
        ALTER TABLE users ADD CONSTRAINT users_ok CHECK (public.ok(id))""")
    res = sync(pair, state_home)
    assert res.returncode == 0, res.stderr
    assert not is_super(pair, mallory)
    assert pair.qt("SELECT count(*) FROM users") == [(50,)]


# -- 5. no user trigger fires ---------------------------------------------------------------------
TRIGGERS = """
CREATE TABLE fired (what text);
CREATE FUNCTION public.log_row() RETURNS trigger LANGUAGE plpgsql AS
  $$BEGIN INSERT INTO public.fired VALUES (TG_NAME); RETURN NULL; END$$;
CREATE TRIGGER t_always AFTER INSERT ON users FOR EACH ROW EXECUTE FUNCTION public.log_row();
ALTER TABLE users ENABLE ALWAYS TRIGGER t_always;
CREATE TRIGGER t_replica AFTER INSERT ON users FOR EACH ROW EXECUTE FUNCTION public.log_row();
ALTER TABLE users ENABLE REPLICA TRIGGER t_replica;
CREATE TRIGGER t_origin AFTER INSERT ON users FOR EACH ROW EXECUTE FUNCTION public.log_row();
CREATE TRIGGER t_disabled AFTER INSERT ON users FOR EACH ROW EXECUTE FUNCTION public.log_row();
ALTER TABLE users DISABLE TRIGGER t_disabled;
CREATE TRIGGER t_stmt AFTER INSERT ON users FOR EACH STATEMENT EXECUTE FUNCTION public.log_row();
ALTER TABLE users ENABLE ALWAYS TRIGGER t_stmt;
CREATE TRIGGER t_truncate AFTER TRUNCATE ON users FOR EACH STATEMENT EXECUTE FUNCTION public.log_row();
ALTER TABLE users ENABLE REPLICA TRIGGER t_truncate;
"""
NOTES = """
CREATE TABLE notes (id int PRIMARY KEY, user_id int REFERENCES users(id));
CREATE TRIGGER n_truncate AFTER TRUNCATE ON notes FOR EACH STATEMENT EXECUTE FUNCTION public.log_row();
ALTER TABLE notes ENABLE ALWAYS TRIGGER n_truncate;
"""


def trigger_modes(pair):
    return pair.qt("SELECT tgname, tgenabled FROM pg_trigger WHERE NOT tgisinternal ORDER BY 1")


@pytest.mark.parametrize("who", ["superuser", "owner"])
def test_no_user_trigger_fires_and_each_keeps_its_mode(pair, state_home, who):
    """Superuser: replica mode, where ENABLE ALWAYS and ENABLE REPLICA triggers still fire; a plain
    owner: the triggers are disabled in the load's transaction. Row, statement and TRUNCATE
    triggers (also of a --cascade table emptied up front); modes O, A, R, D come back exactly."""
    users(pair)
    pair.source("CREATE TABLE notes (id int PRIMARY KEY, user_id int REFERENCES users(id))")
    pair.target(TRIGGERS + NOTES)
    pair.target("INSERT INTO users VALUES (1, 'old'); INSERT INTO notes VALUES (1, 1); TRUNCATE fired")
    to = None
    if who == "owner":
        dev, to = new_role(pair, "dev", "GRANT CREATE ON DATABASE " + pair.dst.rsplit("/", 1)[1] + " TO {role}",
                           "ALTER TABLE users OWNER TO {role}", "ALTER TABLE notes OWNER TO {role}",
                           "GRANT INSERT ON fired TO {role}")
    modes = trigger_modes(pair)
    res = sync(pair, state_home, "--tables", "users", "--cascade", to=to)
    assert res.returncode == 0, res.stderr
    assert pair.qt("SELECT what FROM fired") == []
    assert trigger_modes(pair) == modes
    assert pair.qt("SELECT count(*) FROM users") == [(50,)] and pair.qt("SELECT count(*) FROM notes") == [(0,)]


def test_trigger_that_would_fire_on_a_table_we_do_not_own_is_refused_up_front(pair, state_home):
    users(pair)
    pair.target(TRIGGERS)
    pair.target("INSERT INTO users VALUES (1, 'old'); TRUNCATE fired")
    dev, to = new_role(pair, "dev", "GRANT INSERT, TRUNCATE ON users TO {role}", "GRANT INSERT ON fired TO {role}")
    res = sync(pair, state_home, "--tables", "users", to=to)
    assert res.returncode == 2, res.stderr
    assert "t_always" in res.stderr and "ENABLE ALWAYS" in res.stderr and "only the table's owner" in res.stderr
    assert "fix:" in res.stderr and "Traceback" not in res.stderr
    assert pair.qt("SELECT id FROM users") == [(1,)] and pair.qt("SELECT what FROM fired") == []


# -- 19. restricted target roles -------------------------------------------------------------------
def test_owner_without_create_on_the_database_loads_with_indexes_in_place(pair, state_home):
    users(pair)
    dev, to = new_role(pair, "dev", "ALTER TABLE users OWNER TO {role}", "GRANT CREATE ON SCHEMA public TO {role}")
    res = sync(pair, state_home, to=to)
    assert res.returncode == 0, res.stderr
    assert "indexes stay in place" in res.stderr and "GRANT CREATE ON DATABASE" in res.stderr
    assert pair.qt("SELECT count(*) FROM users") == [(50,)]
    assert pair.qt("SELECT count(*) FROM pg_indexes WHERE tablename = 'users'") == [(2,)]
    assert pair.qt("SELECT count(*) FROM pg_namespace WHERE nspname = '_confiture_fast'") == [(0,)]


def test_owner_without_create_on_the_database_and_a_foreign_key_to_drop(pair, state_home):
    users(pair)
    pair.both("CREATE TABLE orders (id int PRIMARY KEY, user_id int REFERENCES users(id))")
    dev, to = new_role(pair, "dev", "ALTER TABLE users OWNER TO {role}", "ALTER TABLE orders OWNER TO {role}",
                       "GRANT CREATE ON SCHEMA public TO {role}")
    pair.target("INSERT INTO users VALUES (1, 'old')")
    res = sync(pair, state_home, to=to)
    assert res.returncode == 2, res.stderr
    assert "orders_user_id_fkey" in res.stderr and "GRANT CREATE ON DATABASE" in res.stderr
    assert "CREATE SCHEMA _confiture_fast AUTHORIZATION" in res.stderr.replace('"', "")
    assert pair.qt("SELECT id FROM users") == [(1,)]


def test_non_owner_after_a_superuser_created_the_state_schema(pair, state_home):
    users(pair)
    make_state(pair, state_home)  # as postgres
    dev, to = new_role(pair, "dev", "ALTER TABLE users OWNER TO {role}",
                       "GRANT CREATE ON DATABASE " + pair.dst.rsplit("/", 1)[1] + " TO {role}",
                       "GRANT CREATE ON SCHEMA public TO {role}")
    pair.target("INSERT INTO users VALUES (1, 'old')")
    res = sync(pair, state_home, "--tables", "users", to=to)
    assert res.returncode == 2, res.stderr
    assert "owned by postgres" in res.stderr and "ALTER SCHEMA" in res.stderr and "Traceback" not in res.stderr
    assert pair.qt("SELECT id FROM users") == [(1,)]


# -- 20. concurrent runs, lock waits, leftover records ------------------------------------------------
def start_sync(pair, state_home, *args):
    import os

    env = {**os.environ, "ANONYMIZATION_SECRET": "test-secret-0123456789abcdef", "COLUMNS": "200",
           "XDG_STATE_HOME": str(state_home)}
    return subprocess.Popen([sys.executable, "-m", "confiture_fast", "sync", "--from", pair.src, "--to", pair.dst,
                             "--no-progress", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env)


def wait_for(pred, timeout=60.0, what=""):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def stderr_lines(proc) -> list[str]:
    """The lines a running process writes to stderr, as they come (read by a thread)."""
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(proc.stderr.readline, "")), daemon=True)
    reader.start()
    proc.stderr_reader = reader
    return lines


def test_concurrent_runs_take_turns_and_lock_waits_are_explained(pair, state_home):
    users(pair)
    blocker = psycopg.connect(pair.dst, autocommit=True, application_name="blocker-app")
    blocker.execute("BEGIN")
    blocker.execute("LOCK TABLE users IN ACCESS SHARE MODE")
    blocker_pid = blocker.info.backend_pid
    first = start_sync(pair, state_home)
    lines1 = stderr_lines(first)
    try:
        wait_for(lambda: pair.qt("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                                 "AND datname = current_database()")[0][0] > 0, what="the first sync to wait")
        res = sync(pair, state_home, "--no-wait")
        assert res.returncode == 1, res.stderr
        assert "another sync into this target is running (pid" in res.stderr and "Traceback" not in res.stderr
        second = start_sync(pair, state_home)
        lines2 = stderr_lines(second)
        # the blocker is held until both have said why they wait, however long that takes
        wait_for(lambda: any("waiting for a lock" in line for line in lines1), what="the first to explain its wait")
        wait_for(lambda: any("waiting: another sync" in line for line in lines2), what="the second to wait its turn")
    finally:
        blocker.execute("COMMIT")
        blocker.close()
    for proc in (first, second):
        proc.wait(120)
        proc.stderr_reader.join(10)
    err1, err2 = "".join(lines1), "".join(lines2)
    assert first.returncode == 0, err1
    assert second.returncode == 0, err2
    assert "waiting for a lock on public.users on the target" in err1 and "blocker-app" in err1
    assert f"held by pid {blocker_pid}" in err1
    assert "waiting: another sync into this target is running" in err2
    assert pair.qt("SELECT count(*) FROM users") == [(50,)]


@pytest.mark.parametrize("make, sql, forgotten", [
    # the index exists already, identical: 42P07, the record is forgotten
    ("CREATE INDEX users_email ON users (email)", "CREATE INDEX users_email ON public.users USING btree (email)", True),
    # the primary key exists already, identical: 42P16 / 42P07, forgotten
    ("", 'ALTER TABLE "public"."users" ADD CONSTRAINT "users_pkey" PRIMARY KEY (id)', True),
    # another primary key is in its place: 42P16, reported and kept
    ("ALTER TABLE users DROP CONSTRAINT users_pkey, ADD CONSTRAINT other_pkey PRIMARY KEY (id)",
     'ALTER TABLE "public"."users" ADD CONSTRAINT "users_pkey" PRIMARY KEY (id)', False),
    # an index of that name with another definition: 42P07, reported and kept
    ("CREATE INDEX users_email ON users (id)", "CREATE INDEX users_email ON public.users USING btree (email)", False),
])
def test_leftover_record_whose_object_exists_is_reconciled(pair, state_home, make, sql, forgotten):
    users(pair)
    make_state(pair, state_home)
    if make:
        pair.target(make)
    name = "users_pkey" if "PRIMARY" in sql else "users_email"
    insert_record(pair, "seed", name, 1, sql, (state_home,))  # not a table this run loads
    res = sync(pair, state_home, "--tables", "users")
    if forgotten:
        assert res.returncode == 0, res.stderr
        assert pair.qt(f"SELECT count(*) FROM {STATE}") == [(0,)]
    else:
        assert res.returncode == 1, res.stderr
        err = " ".join(res.stderr.split())
        assert name in err and "differs from the recorded definition" in err and "Traceback" not in err
        assert pair.qt(f"SELECT count(*) FROM {STATE}") == [(1,)]
    assert pair.qt("SELECT count(*) FROM users") == [(50,)]
