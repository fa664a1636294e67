"""Issue 12, the source side: bench never writes into a protected database, protection holds by
identity (not by file name), row-level security never yields a silent subset, one unreadable table
stops nothing it is not part of, and libpq's own conventions (service files, PG* variables) hold."""

import itertools
import os

import psycopg
import pytest

from conftest import run_cli

BENCH_SCHEMA = "confiture_fast_bench"
_roles = itertools.count()


def _schemas(uri: str) -> set[str]:
    with psycopg.connect(uri, autocommit=True) as c:
        return {r[0] for r in c.execute("SELECT nspname FROM pg_namespace")}


def _as(uri: str, role: str) -> str:
    return uri.replace("postgresql://postgres@", f"postgresql://{role}@", 1)


def _role(pair, *attrs: str) -> str:
    """A login role of its own (roles are shared by every database of the server)."""
    name = f"reader{next(_roles)}_{os.getpid()}"
    pair.source(f"CREATE ROLE {name} LOGIN {' '.join(attrs)}")
    pair.source(f"GRANT USAGE ON SCHEMA public TO {name}")
    return name


def _port(uri: str) -> int:
    return int(uri.rsplit(":", 1)[1].split("/", 1)[0])


def _db(uri: str) -> str:
    return uri.rsplit("/", 1)[1]


def _one_table(pair, rows: int = 100) -> None:
    pair.both("CREATE TABLE t (id int PRIMARY KEY, v text)")
    pair.source(f"INSERT INTO t SELECT g, 'v' || g FROM generate_series(1, {rows}) g")
    pair.target("INSERT INTO t VALUES (-1, 'kept')")


# --------------------------------------------------------------------------- 2. bench never writes into a source


def test_bench_refuses_a_protected_source(pair, tmp_path):
    (tmp_path / "production.yaml").write_text(f"name: production\ndatabase_url: {pair.src}\n")
    res = run_cli("bench", "--from", "production", "--to", pair.dst, "--env-dir", str(tmp_path),
                  "--rows", "100", "--repeat", "1")
    assert res.returncode == 2, res.stderr
    assert "protected" in res.stderr and "--from" in res.stderr
    assert "Traceback" not in res.stderr
    assert BENCH_SCHEMA not in _schemas(pair.src) and BENCH_SCHEMA not in _schemas(pair.dst)


def test_bench_refuses_a_source_that_is_a_protected_database_under_another_name(pair, tmp_path):
    (tmp_path / "prod.yaml").write_text(f"database_url: {pair.src}\n")
    other_spelling = pair.src.replace("127.0.0.1", "localhost")
    res = run_cli("bench", "--from", other_spelling, "--to", pair.dst, "--env-dir", str(tmp_path),
                  "--rows", "100", "--repeat", "1")
    assert res.returncode == 2, res.stderr
    assert "protected environment" in res.stderr and "prod" in res.stderr
    assert BENCH_SCHEMA not in _schemas(pair.src)


def test_bench_refuses_a_target_that_is_a_protected_database_in_another_file(pair, tmp_path):
    (tmp_path / "production.yaml").write_text(f"database_url: {pair.dst}\n")
    (tmp_path / "scratch.yaml").write_text(f"database_url: {pair.dst}\n")
    res = run_cli("bench", "--from", pair.src, "--to", "scratch", "--env-dir", str(tmp_path),
                  "--rows", "100", "--repeat", "1")
    assert res.returncode == 2, res.stderr
    assert "protected environment production" in res.stderr
    assert BENCH_SCHEMA not in _schemas(pair.src) and BENCH_SCHEMA not in _schemas(pair.dst)


def test_bench_says_it_writes_into_from():
    res = run_cli("bench", "--help")
    assert res.returncode == 0
    flat = " ".join(res.stdout.split())
    assert "writes into --from" in flat or "WRITES its scratch schema" in flat


def test_bench_output_says_it_writes_into_from(pair, tmp_path):
    res = run_cli("bench", "--from", pair.src, "--to", pair.dst, "--env-dir", str(tmp_path), "--rows", "100",
                  "--repeat", "1", "--shape", "plain", "--format", "json")
    assert res.returncode == 0, res.stderr
    assert f"writes a scratch schema {BENCH_SCHEMA} into --from" in res.stderr


# --------------------------------------------------------------------------- 3. protection by identity


def _protected_sync(pair, tmp_path, to: str, *files: tuple[str, str]):
    _one_table(pair)
    for name, body in files:
        (tmp_path / name).write_text(body)
    return run_cli("sync", "--from", pair.src, "--to", to, "--env-dir", str(tmp_path), "--no-progress")


def test_sync_refuses_a_uri_to_a_protected_database(pair, tmp_path):
    res = _protected_sync(pair, tmp_path, pair.dst.replace("127.0.0.1", "localhost"),
                          ("production.yaml", f"database_url: {pair.dst}\n"))
    assert res.returncode == 2, res.stderr
    assert "protected environment production" in res.stderr and "fix:" in res.stderr
    assert pair.qt("SELECT id, v FROM t") == [(-1, "kept")]


def test_sync_refuses_a_second_file_for_a_protected_database(pair, tmp_path):
    res = _protected_sync(pair, tmp_path, "copy",
                          ("live.yaml", f"protected: true\ndatabase_url: {pair.dst}\n"),
                          ("copy.yaml", f"database_url: {pair.dst}\n"))
    assert res.returncode == 2, res.stderr
    assert "protected environment live" in res.stderr
    assert pair.qt("SELECT id, v FROM t") == [(-1, "kept")]


def test_sync_refuses_a_protected_database_the_address_cannot_tell(pair, tmp_path):
    """Another host name (hostaddr) for the same server: only the connection's identity tells."""
    to = f"host=db-alias.invalid hostaddr=127.0.0.1 port={_port(pair.dst)} dbname={_db(pair.dst)} user=postgres"
    res = _protected_sync(pair, tmp_path, to, ("production.yaml", f"database_url: {pair.dst}\n"))
    assert res.returncode == 2, res.stderr
    assert "protected environment production" in res.stderr
    assert pair.qt("SELECT id, v FROM t") == [(-1, "kept")]


def test_unreachable_or_unset_protected_environments_warn_and_do_not_stop_a_sync(pair, tmp_path, monkeypatch):
    body_unreachable = "database:\n  host: 127.0.0.1\n  port: 1\n  database: app\n  password: Unr3achableSecret\n"
    body_unset = ("protected: true\ndatabase:\n  host: 127.0.0.1\n  port: 2\n  database: app\n"
                  "  password: ${NOT_SET_PROD_PASSWORD}\n")
    monkeypatch.delenv("NOT_SET_PROD_PASSWORD", raising=False)
    res = _protected_sync(pair, tmp_path, pair.dst, ("production.yaml", body_unreachable),
                          ("live.yaml", body_unset))
    assert res.returncode == 0, res.stderr
    assert pair.qt("SELECT count(*) FROM t") == [(100,)]
    assert "could not check" in res.stderr and "production" in res.stderr
    assert "NOT_SET_PROD_PASSWORD is not set" in res.stderr
    assert "Unr3achableSecret" not in res.stderr + res.stdout


def test_a_protected_source_is_compared_through_its_own_connection(pair, tmp_path):
    """--from production through a tunnel (--source-port): its file's own address is not reachable."""
    _one_table(pair)
    (tmp_path / "production.yaml").write_text(
        f"database:\n  host: 127.0.0.1\n  port: 1\n  database: {_db(pair.src)}\n  user: postgres\n")
    res = run_cli("sync", "--from", "production", "--source-port", str(_port(pair.src)), "--to", pair.dst,
                  "--env-dir", str(tmp_path), "--no-progress")
    assert res.returncode == 0, res.stderr
    assert "could not check" not in res.stderr
    assert pair.qt("SELECT count(*) FROM t") == [(100,)]


# --------------------------------------------------------------------------- 4. row-level security


RLS_CASES = {
    "select policy": "ALTER TABLE t ENABLE ROW LEVEL SECURITY; "
                     "CREATE POLICY p ON t FOR SELECT USING (id % 10 = 0)",
    "all policy": "ALTER TABLE t ENABLE ROW LEVEL SECURITY; CREATE POLICY p ON t USING (id <= 10)",
    "restrictive": "ALTER TABLE t ENABLE ROW LEVEL SECURITY; CREATE POLICY p ON t USING (true); "
                   "CREATE POLICY r ON t AS RESTRICTIVE FOR SELECT USING (id > 50)",
    "no policy": "ALTER TABLE t ENABLE ROW LEVEL SECURITY",
}


def _rls_source(pair, case: str) -> str:
    _one_table(pair)
    role = _role(pair)
    pair.source(f"GRANT SELECT ON t TO {role}; " + RLS_CASES[case])
    return role


@pytest.mark.parametrize("case", sorted(RLS_CASES))
def test_sync_refuses_a_source_table_under_row_level_security(pair, case):
    role = _rls_source(pair, case)
    res = run_cli("sync", "--from", _as(pair.src, role), "--to", pair.dst, "--no-progress")
    assert res.returncode == 2, res.stderr
    assert "row-level security" in res.stderr and "BYPASSRLS" in res.stderr
    assert pair.qt("SELECT id, v FROM t") == [(-1, "kept")]


def test_forced_row_level_security_applies_to_the_owner(pair):
    _one_table(pair)
    role = _role(pair)
    pair.source(f"ALTER TABLE t OWNER TO {role}; ALTER TABLE t ENABLE ROW LEVEL SECURITY; "
                "ALTER TABLE t FORCE ROW LEVEL SECURITY; CREATE POLICY p ON t USING (id < 5)")
    res = run_cli("sync", "--from", _as(pair.src, role), "--to", pair.dst, "--no-progress")
    assert res.returncode == 2, res.stderr
    assert "row-level security" in res.stderr
    assert pair.qt("SELECT id, v FROM t") == [(-1, "kept")]


def test_owner_and_bypassrls_roles_copy_every_row(pair):
    _one_table(pair)
    owner, bypass = _role(pair), _role(pair, "BYPASSRLS")
    pair.source(f"GRANT SELECT ON t TO {bypass}; ALTER TABLE t OWNER TO {owner}; "
                "ALTER TABLE t ENABLE ROW LEVEL SECURITY; CREATE POLICY p ON t USING (id < 5)")
    for role in (owner, bypass):
        res = run_cli("sync", "--from", _as(pair.src, role), "--to", pair.dst, "--no-progress")
        assert res.returncode == 0, res.stderr
        assert pair.qt("SELECT count(*) FROM t") == [(100,)]


def test_row_level_security_on_a_leaf_partition_is_refused(pair):
    pair.both("CREATE TABLE m (id int, v text) PARTITION BY RANGE (id); "
              "CREATE TABLE m1 PARTITION OF m FOR VALUES FROM (0) TO (50); "
              "CREATE TABLE m2 PARTITION OF m FOR VALUES FROM (50) TO (1000)")
    pair.source("INSERT INTO m SELECT g, 'v' FROM generate_series(1, 99) g")
    role = _role(pair)
    pair.source(f"GRANT SELECT ON m, m1, m2 TO {role}; ALTER TABLE m2 ENABLE ROW LEVEL SECURITY; "
                f"CREATE POLICY p ON m2 USING (id < 60)")
    res = run_cli("sync", "--from", _as(pair.src, role), "--to", pair.dst, "--no-progress")
    assert res.returncode == 2, res.stderr
    assert "row-level security" in res.stderr and "m2" in res.stderr
    assert pair.qt("SELECT count(*) FROM m") == [(0,)]


def test_row_level_security_on_an_inheritance_child_is_refused(pair):
    pair.both("CREATE TABLE people (id int PRIMARY KEY, v text); CREATE TABLE staff (PRIMARY KEY (id)) INHERITS (people)")
    pair.source("INSERT INTO staff SELECT g, 'v' FROM generate_series(1, 30) g")
    role = _role(pair)
    pair.source(f"GRANT SELECT ON people, staff TO {role}; ALTER TABLE staff ENABLE ROW LEVEL SECURITY; "
                "CREATE POLICY p ON staff USING (id < 3)")
    res = run_cli("sync", "--from", _as(pair.src, role), "--to", pair.dst, "--no-progress")
    assert res.returncode == 2, res.stderr
    assert "staff: row-level security" in res.stderr


def test_verify_and_scan_refuse_row_level_security_instead_of_agreeing(pair):
    role = _rls_source(pair, "select policy")
    pair.target("DELETE FROM t; INSERT INTO t SELECT g, 'v' || g FROM generate_series(10, 100, 10) g")
    res = run_cli("verify", "--from", _as(pair.src, role), "--to", pair.dst, cwd=pair.tmp)
    assert res.returncode != 0, res.stdout + res.stderr
    assert "row-level security" in res.stderr
    res = run_cli("scan", "--from", _as(pair.src, role), cwd=pair.tmp)
    assert res.returncode == 2, res.stderr
    assert "row-level security" in res.stderr


def test_every_source_session_turns_row_security_off(pair):
    from confiture_fast import coordinator, pg, scan
    from confiture_fast.config import resolve_environment

    with pg.source(pair.src, "test") as conn:
        assert conn.execute("SHOW row_security").fetchone() == ("off",)
    with scan.connect_read_only("source", resolve_environment(pair.src, pair.tmp)) as conn:
        assert conn.execute("SHOW row_security").fetchone() == ("off",)
    with coordinator.Session(pair.src, pair.dst, "src", "dst") as session:
        assert session.src.execute("SHOW row_security").fetchone() == ("off",)


# --------------------------------------------------------------------------- 16. one unreadable table


def _unreadable(pair) -> str:
    _one_table(pair)
    # large enough (over 1 MiB) for its key range to matter, with an integer primary key
    pair.both("CREATE TABLE secret (id int PRIMARY KEY, pad text)")
    pair.source("INSERT INTO secret SELECT g, repeat('x', 200) FROM generate_series(1, 8000) g; ANALYZE secret")
    role = _role(pair)
    pair.source(f"GRANT SELECT ON t TO {role}")
    return role


def test_an_unreadable_table_left_out_stops_nothing(pair):
    src = _as(pair.src, _unreadable(pair))
    res = run_cli("sync", "--from", src, "--to", pair.dst, "--exclude", "secret", "--no-progress")
    assert res.returncode == 0, res.stderr
    assert pair.qt("SELECT count(*) FROM t") == [(100,)]
    res = run_cli("scan", "--from", src, "--exclude", "secret", cwd=pair.tmp)
    assert res.returncode == 0, res.stderr
    res = run_cli("verify", "--from", src, "--to", pair.dst, "--exclude", "secret", cwd=pair.tmp)
    assert res.returncode == 0, res.stdout + res.stderr


@pytest.mark.parametrize("command", ["sync", "scan", "verify"])
def test_an_unreadable_selected_table_is_a_clean_error(pair, command):
    src = _as(pair.src, _unreadable(pair))
    args = {"sync": ["--to", pair.dst, "--no-progress"], "scan": [], "verify": ["--to", pair.dst]}[command]
    res = run_cli(command, "--from", src, *args, cwd=pair.tmp)
    assert res.returncode == 2, res.stderr
    assert "GRANT SELECT ON" in res.stderr and "--exclude it" in res.stderr
    assert "internal error" not in res.stderr and "Traceback" not in res.stderr
    assert pair.qt("SELECT id, v FROM t") == [(-1, "kept")]


def test_an_unreadable_partition_is_a_clean_error(pair):
    pair.both("CREATE TABLE m (id int, pad text, PRIMARY KEY (id)) PARTITION BY RANGE (id); "
              "CREATE TABLE m1 PARTITION OF m FOR VALUES FROM (0) TO (10000); "
              "CREATE TABLE m2 PARTITION OF m FOR VALUES FROM (10000) TO (20000)")
    pair.source("INSERT INTO m SELECT g, repeat('x', 200) FROM generate_series(1, 16000) g; ANALYZE m")
    pair.target("INSERT INTO m VALUES (1, 'kept')")
    role = _role(pair)
    pair.source(f"GRANT SELECT ON m, m1 TO {role}")
    res = run_cli("sync", "--from", _as(pair.src, role), "--to", pair.dst, "--no-progress")
    assert res.returncode == 2, res.stderr
    assert "GRANT SELECT ON" in res.stderr and "m2" in res.stderr and "internal error" not in res.stderr
    assert pair.qt("SELECT id, pad FROM m") == [(1, "kept")]


# --------------------------------------------------------------------------- 22. libpq's conventions


def test_a_service_file_entry_and_pgdatabase(pair, tmp_path):
    _one_table(pair)
    service_file = tmp_path / "pg_service.conf"
    service_file.write_text(f"# the production service\n[shop_src]\nhost=127.0.0.1\nport={_port(pair.src)}\n"
                            f"dbname={_db(pair.src)}\nuser=postgres\npassword=Serv1ceSecret\n")
    target_without_db = pair.dst.rsplit("/", 1)[0]
    env = {"PGSERVICEFILE": str(service_file), "PGDATABASE": _db(pair.dst)}
    res = run_cli("sync", "--from", "service=shop_src", "--to", target_without_db, "--no-progress",
                  "--env-dir", str(tmp_path), "--format", "json", env=env)
    assert res.returncode == 0, res.stderr
    assert pair.qt("SELECT count(*) FROM t") == [(100,)]
    assert "Serv1ceSecret" not in res.stdout + res.stderr
    res = run_cli("sync", "--from", "service=shop_src", "--to", target_without_db, "--dry-run",
                  "--env-dir", str(tmp_path), env=env)
    assert res.returncode == 0, res.stderr
    assert "Serv1ceSecret" not in res.stdout + res.stderr


def test_pg_variables_fill_what_the_string_leaves_out(pair, tmp_path):
    """`dbname=X` alone: host and port come from PGHOST / PGPORT, as for psql (not localhost:5432)."""
    _one_table(pair)
    env = {"PGHOST": "127.0.0.1", "PGPORT": str(_port(pair.dst)), "PGUSER": "postgres"}
    res = run_cli("sync", "--from", pair.src, "--to", f"dbname={_db(pair.dst)}", "--no-progress",
                  "--env-dir", str(tmp_path), env=env)
    assert res.returncode == 0, res.stderr
    assert pair.qt("SELECT count(*) FROM t") == [(100,)]


def test_scan_and_verify_accept_a_service(pair, tmp_path):
    _one_table(pair)
    pair.target("DELETE FROM t; INSERT INTO t SELECT g, 'v' || g FROM generate_series(1, 100) g")
    service_file = tmp_path / "pg_service.conf"
    service_file.write_text(f"[src]\nhost=127.0.0.1\nport={_port(pair.src)}\ndbname={_db(pair.src)}\n"
                            f"user=postgres\n")
    env = {"PGSERVICEFILE": str(service_file)}
    res = run_cli("scan", "--from", "service=src", cwd=pair.tmp, env=env)
    assert res.returncode == 0, res.stderr
    res = run_cli("verify", "--from", "service=src", "--to", pair.dst, cwd=pair.tmp, env=env)
    assert res.returncode == 0, res.stdout + res.stderr


