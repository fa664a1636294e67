"""The COPY-text codec against a real PostgreSQL server: it decodes exactly what COPY TO prints for
generated text values and arrays (text[], and box[] whose element delimiter is ';'), it encodes
exactly what the server prints, and COPY FROM of its encoding gives back the same values."""

from __future__ import annotations

import os

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from confiture_fast import copytext

SERVER = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

# PostgreSQL text holds any character but NUL; surrogates are not characters.
text = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=12) | st.sampled_from(
    ["", "\\N", "\\.", "NULL", "null", "\\", "a\tb\nc\rd", "\b\f\v", '"q"', "{x}", "a,b", " lead", "é€𝄞"])


@pytest.fixture(scope="module")
def conn(source_server):
    uri = source_server.create_database(f"codec_{os.getpid()}")
    with psycopg.connect(uri, autocommit=True) as c:
        c.execute("CREATE TABLE texts (id int, v text)")
        c.execute("CREATE TABLE arrays (id int, a text[])")
        c.execute("CREATE TABLE boxes (id int, b box[])")
        yield c


def copy_out(conn, sql: str) -> list[list[bytes]]:
    with conn.cursor().copy(f"COPY ({sql}) TO STDOUT") as copy:
        return list(copytext.copy_rows(copy))


def copy_in(conn, table: str, rows) -> None:
    data = b"".join(copytext.format_row(r) for r in rows)
    with conn.cursor().copy(f"COPY {table} FROM STDIN") as copy:
        for i in range(0, len(data), 333):  # rows cut anywhere, as the pump's batches cut them
            copy.write(data[i:i + 333])


@st.composite
def arrays(draw, leaf):
    """(bounds decoration, elements): rectangular, up to three dimensions, lower bounds other than 1."""
    dims = draw(st.lists(st.integers(1, 3), max_size=3))
    lows = [draw(st.sampled_from([1, 1, 0, -3, 7])) for _ in dims]

    def build(dims):
        if len(dims) == 1:
            return [draw(leaf) for _ in range(dims[0])]
        return [build(dims[1:]) for _ in range(dims[0])]

    if not dims:
        return b"", []
    bounds = b"" if all(lo == 1 for lo in lows) else b"".join(
        b"[%d:%d]" % (lo, lo + n - 1) for lo, n in zip(lows, dims)) + b"="
    return bounds, build(dims)


def _encoded(items):
    return copytext.map_array(items, lambda v: None if v is None else v.encode())


@given(st.lists(st.none() | text, max_size=8))
@SERVER
def test_copy_to_prints_our_encoding_and_we_decode_it(conn, values):
    conn.execute("TRUNCATE texts")
    conn.cursor().executemany("INSERT INTO texts VALUES (%s, %s)", list(enumerate(values)))
    rows = copy_out(conn, "SELECT v FROM texts ORDER BY id")
    assert [f for f, in rows] == [copytext.encode_field(None if v is None else v.encode()) for v in values]
    assert [copytext.decode_field(f) for f, in rows] == [None if v is None else v.encode() for v in values]


@given(st.lists(st.none() | text, max_size=8))
@SERVER
def test_copy_from_of_our_encoding_stores_the_same_values(conn, values):
    conn.execute("TRUNCATE texts")
    copy_in(conn, "texts", [(b"%d" % i, None if v is None else v.encode()) for i, v in enumerate(values)])
    assert [v for v, in conn.execute("SELECT v FROM texts ORDER BY id")] == values


@given(arrays(st.none() | text))
@SERVER
def test_text_arrays_print_as_we_format_them_and_read_back_as_we_parse_them(conn, array):
    bounds, items = array
    literal = copytext.format_array(_encoded(items), bounds)
    conn.execute("TRUNCATE arrays")
    copy_in(conn, "arrays", [(b"1", literal)])
    conn.execute("INSERT INTO arrays VALUES (2, %s)", (items,))  # the same elements from psycopg
    (ours,), (theirs,) = copy_out(conn, "SELECT a FROM arrays ORDER BY id")
    assert ours == copytext.escape(literal)  # array_out, byte for byte
    assert copytext.parse_array(copytext.decode_field(ours)) == (bounds, _encoded(items))
    assert copytext.parse_array(copytext.decode_field(theirs)) == (b"", _encoded(items))
    assert [a for a, in conn.execute("SELECT a FROM arrays ORDER BY id")] == [items, items]


box = st.tuples(*[st.integers(-9, 9)] * 4).map(
    lambda t: "(%d,%d),(%d,%d)" % (max(t[0], t[2]), max(t[1], t[3]), min(t[0], t[2]), min(t[1], t[3])))


@given(arrays(st.none() | box))
@SERVER
def test_box_arrays_use_their_types_delimiter(conn, array):
    (delimiter,), = conn.execute("SELECT typdelim FROM pg_catalog.pg_type WHERE oid = 'pg_catalog.box'::regtype")
    assert delimiter == ";"
    bounds, items = array
    literal = copytext.format_array(_encoded(items), bounds, b";")
    conn.execute("TRUNCATE boxes")
    copy_in(conn, "boxes", [(b"1", literal)])
    (field,), = copy_out(conn, "SELECT b FROM boxes")
    assert field == copytext.escape(literal)
    assert copytext.parse_array(copytext.decode_field(field), b";") == (bounds, _encoded(items))
