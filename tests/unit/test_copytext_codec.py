"""The COPY-text codec (confiture_fast.copytext): escapes, rows, array literals and JSON paths, and the
structural rule that it is the only Python implementation of them in the package. What a real server
prints and reads back is pinned in tests/differential/test_codec_vs_server.py."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import confiture_fast
from confiture_fast import copytext
from confiture_fast.copytext import NotAnArray

PACKAGE = Path(confiture_fast.__file__).parent
SETTINGS = settings(max_examples=60, deadline=None)

values = st.binary(max_size=40) | st.text(max_size=20).map(str.encode) | st.sampled_from(
    [b"\\N", b"\\.", b"\\", b"N", b"NULL", b"null", b"", b"\t\n\r\b\f\v", "é€𝄞".encode()])


# -- escapes -------------------------------------------------------------------------------------
@pytest.mark.parametrize("byte, field", [(b"\b", b"\\b"), (b"\f", b"\\f"), (b"\n", b"\\n"), (b"\r", b"\\r"),
                                         (b"\t", b"\\t"), (b"\v", b"\\v"), (b"\\", b"\\\\")])
def test_every_byte_copy_to_escapes_is_written_as_its_escape_and_read_back(byte, field):
    assert copytext.escape(b"a" + byte + b"z") == b"a" + field + b"z"
    assert copytext.unescape(b"a" + field + b"z") == b"a" + byte + b"z"


def test_copy_to_writes_every_other_byte_as_itself():
    others = bytes(b for b in range(256) if b not in copytext.ESCAPES)
    assert copytext.escape(others) == others


@given(values)
@SETTINGS
def test_any_value_round_trips_through_one_field(value):
    field = copytext.escape(value)
    assert b"\t" not in field and b"\n" not in field and not copytext.ends_with_lone_backslash(field)
    assert copytext.unescape(field) == value


@pytest.mark.parametrize("field", [b"\\101\\", b"a\\\\\\"])
def test_a_field_that_ends_with_a_lone_backslash_is_refused(field):
    assert copytext.ends_with_lone_backslash(field)
    with pytest.raises(ValueError, match="lone backslash"):
        copytext.unescape(field)


def test_an_escaped_backslash_at_the_end_is_not_a_lone_one():
    assert not copytext.ends_with_lone_backslash(b"a\\\\") and copytext.unescape(b"a\\\\") == b"a\\"


def test_the_end_of_copy_marker_inside_a_field_is_refused_and_a_period_escape_elsewhere_is_not_read_as_one():
    with pytest.raises(copytext.EndOfCopyMarker):
        copytext.unescape(b"ab\\.")
    assert copytext.unescape(b"\\\\.") == b"\\."


# -- NULL, empty strings, rows --------------------------------------------------------------------
def test_null_the_empty_string_and_the_two_characters_backslash_n_are_three_different_fields():
    assert [copytext.encode_field(v) for v in (None, b"", b"\\N")] == [b"\\N", b"", b"\\\\N"]
    assert [copytext.decode_field(f) for f in (b"\\N", b"", b"\\\\N")] == [None, b"", b"\\N"]


@given(st.lists(st.none() | values, min_size=1, max_size=6))
@SETTINGS
def test_a_row_of_values_round_trips_null_and_empty_kept_apart(row):
    line = copytext.format_row(row)
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert copytext.parse_row(line[:-1]) == row


def test_multi_byte_text_is_left_byte_for_byte():
    text = "Zoë 東京 𝄞 €".encode()
    assert copytext.escape(text) == text and copytext.parse_row(copytext.format_row([text])[:-1]) == [text]


@given(st.lists(st.lists(st.none() | values, min_size=2, max_size=2), max_size=8), st.data())
@SETTINGS
def test_rows_come_out_whole_whatever_the_chunking(rows, data):
    text = b"".join(copytext.format_row(r) for r in rows)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(text)), max_size=6)))
    chunks = [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)])]
    assert [[copytext.decode_field(f) for f in fields] for fields in copytext.copy_rows(chunks)] == rows


def test_a_partial_last_row_stays_pending():
    splitter = copytext.RowSplitter()
    assert splitter.feed(b"1\ta\n2\t") == [b"1\ta"] and splitter.pending == b"2\t"
    assert splitter.feed(b"b\n") == [b"2\tb"] and splitter.pending == b""


# -- array literals -------------------------------------------------------------------------------
@st.composite
def arrays(draw, leaf):
    """Elements lists as array_out can print them: rectangular, up to three dimensions, or empty."""
    dims = draw(st.lists(st.integers(1, 3), max_size=3))

    def build(dims):
        if len(dims) == 1:
            return [draw(leaf) for _ in range(dims[0])]
        return [build(dims[1:]) for _ in range(dims[0])]

    return build(dims) if dims else []


array_leaf = st.none() | values.filter(lambda v: b"\0" not in v)


@given(arrays(array_leaf))
@SETTINGS
def test_array_literals_round_trip_nested_quoted_and_null_elements(items):
    literal = copytext.format_array(items)
    assert copytext.parse_array(literal) == (b"", items)
    assert list(copytext.array_values(items)) == list(copytext.array_values(copytext.parse_array(literal)[1]))


@pytest.mark.parametrize("literal, items", [
    (b'{a,"b c",NULL,"NULL","",null}', [b"a", b"b c", None, b"NULL", b"", None]),
    (b'{"x\\"y","back\\\\slash","{}",","}', [b'x"y', b"back\\slash", b"{}", b","]),
    (b"{{1,2},{NULL,4}}", [[b"1", b"2"], [None, b"4"]]),
    (b"{{{a}},{{b}}}", [[[b"a"]], [[b"b"]]]),
    (b"{}", []),
    ("{é,€,\"𝄞 x\"}".encode(), ["é".encode(), "€".encode(), "𝄞 x".encode()]),
])
def test_array_literals_are_read_as_array_out_writes_them(literal, items):
    assert copytext.parse_array(literal) == (b"", items)
    assert copytext.format_array(items) == literal.replace(b"null", b"NULL")


def test_array_out_quotes_what_array_in_would_misread():
    assert [copytext.quote_element(v) for v in (b"", b"NULL", b"nUlL", b"a b", b"a,b", b"{", b"x\ty", b"plain")] == [
        b'""', b'"NULL"', b'"nUlL"', b'"a b"', b'"a,b"', b'"{"', b'"x\ty"', b"plain"]


def test_the_bounds_decoration_is_kept_as_it_is():
    assert copytext.parse_array(b"[0:1]={a,b}") == (b"[0:1]=", [b"a", b"b"])
    assert copytext.parse_array(b"[-2:-1][1:1]={{x},{y}}") == (b"[-2:-1][1:1]=", [[b"x"], [b"y"]])
    assert copytext.format_array([b"a", None], b"[0:1]=") == b"[0:1]={a,NULL}"


def test_the_element_delimiter_is_the_types():
    literal = b"{(1,1),(0,0);(3,3),(2,2)}"  # box[]: elements hold commas, ';' separates them
    assert copytext.parse_array(literal, b";") == (b"", [b"(1,1),(0,0)", b"(3,3),(2,2)"])
    assert copytext.format_array([b"(1,1),(0,0)", b"a;b"], delimiter=b";") == b'{(1,1),(0,0);"a;b"}'
    assert copytext.parse_array(literal)[1][:2] == [b"(1", b"1)"]  # read with the wrong delimiter


@pytest.mark.parametrize("literal", [b"", b"{", b"{a", b"a}", b"{a,}", b"{,a}", b"{a,,b}", b'{"open}', b"{a b}",
                                     b"{a}x", b"{ a}", b"[1:2]{a}", b"[x]={a}", b"{a\\}", b'{"a"b}',
                                     b"{" * 66 + b"}" * 66])
def test_anything_array_out_does_not_write_is_refused(literal):
    with pytest.raises(NotAnArray, match="not an array literal"):
        copytext.parse_array(literal)


def test_map_array_keeps_the_dimensions():
    assert copytext.map_array([[b"a", None], [b"b", b""]], lambda v: v and v.upper()) == [[b"A", None], [b"B", b""]]


# -- JSON paths -----------------------------------------------------------------------------------
def test_json_paths_are_read_step_by_step():
    assert copytext.parse_json_path('$.a.b[0][*]["odd key"].*["q\\"uote"]') == [
        ("key", "a"), ("key", "b"), ("index", 0), ("any_index", None), ("key", "odd key"), ("any_key", None),
        ("key", 'q"uote')]
    assert copytext.parse_json_path("$") == []


@pytest.mark.parametrize("path", ["a.b", "$.", "$[x]", "$..a", "$.a[", "$[-1]", "$.1a"])
def test_a_malformed_json_path_is_refused_with_the_forms_it_accepts(path):
    with pytest.raises(ValueError, match=r"\$"):
        copytext.parse_json_path(path)


@given(st.lists(st.text(max_size=6) | st.none(), max_size=5))
@SETTINGS
def test_the_paths_scan_writes_read_back_as_the_same_steps(keys):
    path = "$" + "".join(map(copytext.json_path_step, keys))
    assert copytext.parse_json_path(path) == [("any_index", None) if k is None else ("key", k) for k in keys]


def test_a_path_names_exactly_the_locations_of_its_depth():
    steps = copytext.parse_json_path("$.a[*].*")
    assert copytext.json_path_matches(steps, ((True, "a"), (False, 3), (True, "z")))
    assert not copytext.json_path_matches(steps, ((True, "a"), (True, "3"), (True, "z")))  # [*] is not a key
    assert not copytext.json_path_matches(steps, ((True, "a"), (False, 3)))
    assert not copytext.json_path_matches(copytext.parse_json_path("$[1]"), ((False, 2),))
    assert copytext.json_path_matches(copytext.parse_json_path('$["1"]'), ((True, "1"),))


# -- the only implementation ------------------------------------------------------------------------
def _modules():
    return sorted(p for p in PACKAGE.rglob("*.py") if p.name != "copytext.py")


# Two-character escapes only a COPY-text escape table holds, and the names of the codec's functions.
_ESCAPE_MARKERS = {"\\b", "\\f", "\\v", b"\\b", b"\\f", b"\\v", b"\\N", "\\N"}
_CODEC_NAMES = re.compile(r"_?(un)?escape|copy_escape|.*array_(literal|elements?)|parse_array|quote_element|"
                          r"parse_json_path|_?path_matches|split_row|parse_row|format_row|format_array")

_USERS = {("verify.py", "array_elements")}  # what verify checks, read with copytext.parse_array


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_other_module_of_the_package_defines_copy_text_escapes_array_parsing_or_json_paths(path):
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, (str, bytes)):
            assert node.value not in _ESCAPE_MARKERS, f"line {node.lineno}: a COPY escape; use confiture_fast.copytext"
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)) and (path.name, node.name) not in _USERS:
            assert not _CODEC_NAMES.fullmatch(node.name), f"line {node.lineno}: {node.name} belongs in copytext"


@pytest.mark.parametrize("source, target", [
    (b"{{alice@example.com,x},{y,z}}", b"{{alice@example.com,u1},{u2,u3}}"),  # two dimensions
    (b"[0:1]={alice@example.com,x}", b"[0:1]={u1,alice@example.com}"),  # bounds decoration
])
def test_verify_finds_a_source_value_left_in_an_array_of_any_shape(source, target):
    from confiture_fast import verify

    seen = verify._HashSet(100)
    seen.add_values(verify.array_elements(source))
    report = verify.ColumnReport(column="a", mode="anonymized", strategy="email")
    params, _ = verify.strategies.parse_params("email", {})
    checker = verify._Anonymized(report, params, True, seen)
    checker.check(1, (source,), (target,))
    assert report.equal_to_a_source_value == 1


def test_the_reference_rewriter_is_a_test_oracle_outside_the_package():
    assert not (PACKAGE / "anon_ref.py").exists()
    for path in PACKAGE.rglob("*.py"):
        assert "anon_ref" not in path.read_text(encoding="utf-8"), path
