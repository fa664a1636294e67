"""The COPY-text helpers that are pure: the codec's field escapes (what PostgreSQL's COPY TO writes and
COPY FROM reads), verify's array elements and constraint column lists."""

from __future__ import annotations

import pytest

from confiture_fast.copytext import EndOfCopyMarker, escape, unescape
from confiture_fast.verify import array_elements, constraint_columns


def test_array_literals_and_constraint_column_lists_are_read_as_postgresql_writes_them():
    assert array_elements(b'{a,"b c",NULL,"x\\\\"y",""}') == [b"a", b"b c", b'x"y']  # a COPY field: escaped
    assert array_elements(b"{}") == [] and array_elements(b"{{1,2},{3,4}}") == [b"1", b"2", b"3", b"4"]
    assert constraint_columns('PRIMARY KEY (id, "Odd ""name""", b)') == ["id", 'Odd "name"', "b"]


@pytest.mark.parametrize("value, field", [
    (b"plain", b"plain"), (b"tab\there", b"tab\\there"), (b"new\nline", b"new\\nline"), (b"cr\r", b"cr\\r"),
    (b"back\\slash", b"back\\\\slash"), (b"\x08\x0b\x0c", b"\\b\\v\\f"), (b"caf\xc3\xa9", b"caf\xc3\xa9"),
    (b"\\N", b"\\\\N"), (b"", b""),
])
def test_escape_writes_what_copy_to_writes_and_unescape_reads_it_back(value, field):
    assert escape(value) == field
    assert unescape(field) == value


@pytest.mark.parametrize("field, value", [
    (b"\\101\\102", b"AB"), (b"\\0", b"\x00"), (b"\\4011", b"\x011"),  # octal: at most three digits, wrapped
    (b"\\x41\\x4", b"A\x04"), (b"\\x4G", b"\x04G"), (b"\\xZ", b"xZ"),  # hex: one or two digits
    (b"\\q", b"q"), (b"\\\"", b'"'),  # any other escaped character is itself
])
def test_unescape_reads_every_escape_copy_from_accepts(field, value):
    assert unescape(field) == value


def test_a_backslash_period_inside_a_field_is_the_end_of_copy_marker():
    with pytest.raises(EndOfCopyMarker):
        unescape(b"a\\.b")


def test_every_byte_round_trips():
    value = bytes(range(256)) * 2
    assert unescape(escape(value)) == value
    assert b"\t" not in escape(value) and b"\n" not in escape(value)


@pytest.mark.parametrize("literal", [b"{a", b"a}", b'{"unterminated}', b"{a,,b}", b"[1:2]{a}"])
def test_anything_but_an_array_literal_gives_verify_no_elements(literal):
    assert array_elements(literal) == []


def test_verify_reads_the_elements_of_nested_arrays_and_arrays_with_bounds():
    assert array_elements(b"{{1},{2}}") == [b"1", b"2"] and array_elements(b"[1:2]={a,b}") == [b"a", b"b"]
