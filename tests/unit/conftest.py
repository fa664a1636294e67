"""The unit layer never reaches a PostgreSQL server: a test that asks for a server fixture fails at setup,
and connecting, starting a throwaway server or running a subprocess raises. So `pytest tests/unit` needs no
PostgreSQL binaries and a test that quietly needs a server cannot land here."""

from __future__ import annotations

import subprocess

import psycopg
import pytest

from confiture_fast import embedded

SERVER_FIXTURES = {"source_server", "target_server", "pg15_server", "pair"}


class ServerTouched(AssertionError):
    """A unit test reached for a server."""


def _refuse(*_args, **_kwargs):
    raise ServerTouched("unit tests run without PostgreSQL: move this test to tests/e2e/")


def pytest_runtest_setup(item):
    wanted = SERVER_FIXTURES & set(getattr(item, "fixturenames", ()))
    if wanted:
        raise ServerTouched(f"{item.nodeid} uses {', '.join(sorted(wanted))}: server tests belong in tests/e2e/")


@pytest.fixture(autouse=True)
def _no_server(monkeypatch):
    monkeypatch.setattr(psycopg, "connect", _refuse)
    monkeypatch.setattr(psycopg.Connection, "connect", _refuse)
    monkeypatch.setattr(psycopg.AsyncConnection, "connect", _refuse)
    monkeypatch.setattr(embedded.ThrowawayServer, "start", _refuse)
    monkeypatch.setattr(subprocess, "run", _refuse)
    monkeypatch.setattr(subprocess, "Popen", _refuse)
