"""The unit layer's guard holds: nothing here can reach a server or start one."""

from __future__ import annotations

import subprocess

import psycopg
import pytest

from confiture_fast.embedded import ThrowawayServer

from .conftest import ServerTouched


def test_connecting_to_postgresql_is_refused_in_the_unit_layer():
    with pytest.raises(ServerTouched):
        psycopg.connect("host=127.0.0.1 port=1 dbname=x")
    with pytest.raises(ServerTouched):
        psycopg.Connection.connect("host=127.0.0.1 port=1 dbname=x")


def test_starting_a_throwaway_server_or_a_subprocess_is_refused_in_the_unit_layer():
    with pytest.raises(ServerTouched):
        ThrowawayServer("/usr/lib/postgresql/15/bin").start()
    with pytest.raises(ServerTouched):
        subprocess.run(["true"])
