"""Issue 13, point 4: one PostgreSQL layer. Read from the source with ast: no module but pg.py opens a
connection, and identifiers are quoted by one function; the layer's pure parts (messages without
values or passwords, the identity comparison) without a server. tests/e2e/test_pg_layer.py checks the
sessions' settings on a real server."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import confiture_fast
from confiture_fast import pg
from confiture_fast.redact import Redactor

PACKAGE = Path(confiture_fast.__file__).parent
SOURCES = sorted(p for p in PACKAGE.rglob("*.py"))
PG = PACKAGE / "pg.py"


def _connects(tree: ast.AST) -> list[int]:
    """Lines that open a connection: `<anything>.connect` (psycopg.connect, psycopg.Connection.connect,
    a module alias's connect), or `connect` imported from psycopg."""
    lines = [n.lineno for n in ast.walk(tree) if isinstance(n, ast.Attribute) and n.attr == "connect"]
    lines += [n.lineno for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and (n.module or "").startswith("psycopg")
              and any(a.name in ("connect", "Connection", "AsyncConnection") for a in n.names)]
    return lines


def _quotings(tree: ast.AST) -> list[int]:
    """Lines that quote an identifier by hand: `.replace('"', '""')`, or '"' + ... glued around a value."""
    out = []
    for n in ast.walk(tree):
        if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute) and n.func.attr == "replace" \
                and [getattr(a, "value", None) for a in n.args] == ['"', '""']:
            out.append(n.lineno)
        elif isinstance(n, ast.BinOp) and isinstance(n.op, ast.Add) and isinstance(n.right, ast.Constant) \
                and n.right.value == '"':
            out.append(n.lineno)
        elif isinstance(n, ast.JoinedStr):
            parts = n.values
            for a, b, c in zip(parts, parts[1:], parts[2:]):
                if isinstance(b, ast.FormattedValue) and isinstance(a, ast.Constant) and isinstance(c, ast.Constant) \
                        and str(a.value).endswith('"') and str(c.value).startswith('"."'):
                    out.append(n.lineno)  # f'"{schema}"."{table}"'
    return out


def _parse(path: Path) -> ast.AST:
    return ast.parse(path.read_text(encoding="utf-8"))


@pytest.mark.parametrize("path", [p for p in SOURCES if p != PG], ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_module_but_pg_opens_a_connection(path):
    assert _connects(_parse(path)) == [], f"{path.name} connects: open sessions with pg.source/target/probe/scratch"


def test_pg_opens_every_connection_in_one_place():
    assert len(_connects(_parse(PG))) == 1


def test_the_connection_finder_finds_each_spelling():
    tree = ast.parse("import psycopg\nfrom psycopg import connect\nfrom psycopg import Connection as C\n"
                     "psycopg.connect('')\npsycopg.Connection.connect('')\nC.connect('')\n")
    assert sorted(_connects(tree)) == [2, 3, 4, 5, 6]


@pytest.mark.parametrize("path", [p for p in SOURCES if p != PG], ids=lambda p: str(p.relative_to(PACKAGE)))
def test_identifiers_are_quoted_by_pg_only(path):
    assert _quotings(_parse(path)) == [], f"{path.name} quotes identifiers itself: use pg.quote_ident/qualify"


def test_the_quoting_finder_finds_hand_made_quoting():
    tree = ast.parse("""a = '"' + n.replace('"', '""') + '"'\nb = f'"{s}"."{t}"'\nc = f'"{v}" is bad'\n""")
    assert sorted(set(_quotings(tree))) == [1, 2]
    assert _quotings(_parse(PG)) != []  # the one implementation


@pytest.mark.parametrize("name, quoted", [("users", '"users"'), ('we"ird', '"we""ird"'), ("a.b", '"a.b"'),
                                          ("Mixed Case", '"Mixed Case"'), ("", '""')])
def test_quote_ident_doubles_quotes_and_keeps_everything_else(name, quoted):
    assert pg.quote_ident(name) == quoted
    assert pg.qualify(name, "t") == f'{quoted}."t"'


def test_the_catalog_quotes_with_the_same_function():
    from confiture_fast import catalog

    assert catalog.quote_ident is pg.quote_ident and catalog.qualify is pg.qualify


def test_a_connect_failure_names_its_cause_and_never_the_password():
    class Failed(Exception):
        pass

    conninfo = "host=db.example port=5432 dbname=prod user=app password=s3cr3t-pw"
    exc = Failed('connection failed: connection to server at "10.0.0.1", port 5432 failed: FATAL:  '
                 'password authentication failed for user "app" (s3cr3t-pw)')
    err = pg.connect_failed("source", "prod", exc, conninfo)
    assert "s3cr3t-pw" not in err.render()
    assert err.message == 'cannot connect to the source prod: FATAL:  password authentication failed for user "app" (***)'
    assert "password" in err.fix and err.exit_code == 2


def test_a_failure_line_masks_the_secrets_the_redactor_knows(monkeypatch):
    monkeypatch.setattr(Redactor, "secrets", ["hunter22"])
    assert pg.first_line(Exception("ERROR:  bad value hunter22\nDETAIL:  more")) == "ERROR:  bad value ***"
    assert pg.server_error("ERROR:  role hunter22 is odd")[0] == "role *** is odd"


def test_one_identity_type_for_sync_and_bench():
    """bench compares databases with the same Identity as the sync (its own tuple is gone)."""
    from confiture_fast import coordinator

    assert coordinator.identity is pg.identity
    assert not hasattr(coordinator, "_identity")
    assert "_identity" not in (PACKAGE / "bench.py").read_text()
