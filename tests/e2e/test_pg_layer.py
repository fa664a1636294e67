"""Issue 13, points 4 and 8 on a real server: the sessions pg.py opens carry each role's settings,
import a snapshot, keep a connect_timeout the conninfo gives; a connection that cannot succeed is not
retried, one that may is, and neither message holds the password."""

from __future__ import annotations

import socket

import psycopg
import pytest

from confiture_fast import pg, worker


def _settings(conn: psycopg.Connection) -> dict[str, str]:
    names = ("default_transaction_read_only", "row_security", "search_path", "DateStyle", "statement_timeout",
             "application_name")
    return {n: conn.execute(f"SELECT pg_catalog.current_setting('{n}')").fetchone()[0] for n in names}


def test_each_role_gets_its_settings(pair):
    with pg.source(pair.src, "test") as conn:
        assert _settings(conn) == {"default_transaction_read_only": "on", "row_security": "off", "search_path": "",
                                   "DateStyle": "ISO, YMD", "statement_timeout": "0",
                                   "application_name": "confiture-fast test"}
    with pg.source(pair.src, "scan", statement_timeout_ms=1500) as conn:
        assert _settings(conn)["statement_timeout"] == "1500ms"
    with pg.target(pair.dst, "finish") as conn:
        s = _settings(conn)
        assert (s["default_transaction_read_only"], s["search_path"], s["application_name"]) == \
            ("off", "", "confiture-fast finish")
    with pg.probe(pair.dst, 2) as conn:
        s = _settings(conn)
        assert (s["default_transaction_read_only"], s["statement_timeout"]) == ("on", "2s")
    with pg.scratch(pair.dst, "bench", row_security=False) as conn:
        s = _settings(conn)
        assert (s["row_security"], s["default_transaction_read_only"]) == ("off", "off")
        assert s["search_path"] != ""  # sample SQL names its tables on the search_path


def test_a_source_session_reads_the_exported_snapshot(pair):
    pair.source("CREATE TABLE t (id int); INSERT INTO t VALUES (1), (2)")
    with pg.source(pair.src, "coordinator") as holder:
        holder.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        snapshot = holder.execute("SELECT pg_export_snapshot()").fetchone()[0]
        pair.source("DELETE FROM t")
        with pg.source(pair.src, "worker", snapshot) as conn:
            assert conn.execute("SELECT count(*) FROM public.t").fetchone() == (2,)
            with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
                conn.execute("DELETE FROM public.t")


def test_the_conninfo_connect_timeout_is_kept_and_otherwise_bounded(pair):
    with pg.target(pair.dst, "x") as conn:
        assert conn.info.get_parameters()["connect_timeout"] == str(pg.CONNECT_TIMEOUT)
    with pg.target(pair.dst + "?connect_timeout=3", "x") as conn:
        assert conn.info.get_parameters()["connect_timeout"] == "3"


def _missing_database(uri: str) -> str:
    return uri.rsplit("/", 1)[0].replace("postgresql://postgres@", "postgresql://postgres:pw-s3cr3t@") + "/no_such_db"


def test_a_connection_that_cannot_succeed_is_not_retried_and_keeps_the_password_out(pair):
    missing = _missing_database(pair.src)
    with pytest.raises(psycopg.OperationalError) as exc:
        pg.source(missing, "worker")
    failed = worker._failed("t", "source", exc.value)
    assert not failed.transient
    assert "no_such_db" in failed.detail and "pw-s3cr3t" not in failed.detail
    err = pg.connect_failed("source", "prod", exc.value, missing)
    assert "pw-s3cr3t" not in err.render() and "createdb" in err.fix


def test_a_server_that_is_not_there_yet_is_retried(pair):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens once the socket closes
    with pytest.raises(psycopg.OperationalError) as exc:
        pg.target(f"postgresql://postgres@127.0.0.1:{port}/x", "worker")
    assert worker._failed("t", "target", exc.value).transient
