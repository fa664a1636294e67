"""The compiled COPY-binary rewriter against its Python reference (generated rows of text, varchar, json,
jsonb and their arrays, NULLs, empty and multi-byte values, multi-dimensional arrays with NULL elements,
any chunking), malformed input, and against the text reference: the same values as COPY text get the
same rewritten values."""

from __future__ import annotations

import struct

from hypothesis import given, settings
from hypothesis import strategies as st

from anon_ref import BINARY_SIGNATURE, BinaryReferenceRewriter, ReferenceRewriter
from confiture_fast import copytext
from confiture_fast.strategies import BinaryRewriter, FieldRule, RewriteError
from test_rewriter import AWKWARD_TEXT, FAST, JSON_PATHS, QUICK, RULE_CHOICES, chunked, json_texts, make_rule, run

HEADER = BINARY_SIGNATURE + struct.pack(">II", 0, 0)
TRAILER = struct.pack(">h", -1)
ELEMENT_OID = {"text[]": 25, "jsonb[]": 3802}
FORMS = ["text", "text", "json", "jsonb", "text[]", "jsonb[]", "raw"]  # raw: any bytes, never ruled
JSON_RULES = [("json", {"paths": paths}) for paths in JSON_PATHS] + [("redact", {}), ("null", {}), ("keep", {})]


def field(value: bytes | None) -> bytes:
    return struct.pack(">i", -1) if value is None else struct.pack(">i", len(value)) + value


def encode_rows(rows: list[list[bytes | None]]) -> bytes:
    return HEADER + b"".join(struct.pack(">h", len(r)) + b"".join(map(field, r)) for r in rows) + TRAILER


def binary_array(dims: list[tuple[int, int]], elements: list[bytes | None], element_oid: int) -> bytes:
    """array_send's layout: ndim, has-NULL flag, element type, (size, lower bound) per dimension, elements."""
    out = struct.pack(">iII", len(dims), any(e is None for e in elements), element_oid)
    out += b"".join(struct.pack(">ii", size, lower) for size, lower in dims)
    return out + b"".join(map(field, elements))


def array_literal(value: bytes, jsonb: bool) -> bytes:
    """The text form array_out gives the binary array `value` (the text path's view of it)."""
    ndim, _, _ = struct.unpack(">iII", value[:12])
    dims = [struct.unpack(">ii", value[12 + 8 * k:20 + 8 * k]) for k in range(ndim)]
    pos, flat = 12 + 8 * ndim, []
    while pos < len(value):
        (n,) = struct.unpack(">i", value[pos:pos + 4])
        pos += 4
        flat.append(None if n < 0 else value[pos + jsonb:pos + n])
        pos += max(n, 0)

    def nest(items, sizes):
        if len(sizes) == 1:
            return items
        step = len(items) // sizes[0]
        return [nest(items[k * step:(k + 1) * step], sizes[1:]) for k in range(sizes[0])]

    bounds = b"".join(b"[%d:%d]" % (lo, lo + size - 1) for size, lo in dims) + b"=" \
        if any(lo != 1 for _, lo in dims) else b""
    return copytext.format_array(nest(flat, [s for s, _ in dims]) if dims else [], bounds)


TEXTS = AWKWARD_TEXT.map(str.encode)
JSONS = json_texts().map(str.encode)


@st.composite
def arrays(draw, element: st.SearchStrategy, element_oid: int, empty: bytes = b"") -> bytes:
    ndim = draw(st.integers(0, 3))
    dims = [(draw(st.integers(1, 3)), draw(st.sampled_from([1, 1, 0, -2, 5]))) for _ in range(ndim)]
    count = 1
    for size, _ in dims:
        count *= size
    elements = [draw(st.none() | st.just(empty) | element) for _ in range(count if ndim else 0)]
    return binary_array(dims, elements, element_oid)


def value_of(form: str) -> st.SearchStrategy:
    values = {"text": TEXTS, "json": JSONS, "jsonb": JSONS.map(lambda t: b"\x01" + t),
              "text[]": arrays(TEXTS, 25), "jsonb[]": arrays(JSONS.map(lambda t: b"\x01" + t), 3802, b"\x01"),
              "raw": st.binary(max_size=12)}[form]
    if form.endswith("[]"):  # an empty array is one of no dimensions
        return st.none() | values
    return st.none() | st.just(b"\x01" if form == "jsonb" else b"") | values


@st.composite
def tables(draw, max_rows=5):
    """(columns, rules, jsonb indexes, forms, rows of binary values)."""
    forms = draw(st.lists(st.sampled_from(FORMS), min_size=1, max_size=6))
    columns = [f"c{i}" for i in range(len(forms))]
    rules = []
    for i, form in enumerate(forms):
        if form == "raw" or not draw(st.booleans()):
            continue
        choices = JSON_RULES if form in ("json", "jsonb") else RULE_CHOICES
        rule = make_rule(i, columns, *draw(st.sampled_from(choices)))
        keys = [k for k, f in enumerate(forms) if f in ("text", "jsonb") and k != i]
        key_index = draw(st.sampled_from([-1] + keys)) if rule.strategy != "json" else -1
        rules.append(FieldRule(index=i, column=rule.column, strategy=rule.strategy, key=rule.key, params=rule.params,
                               is_array=form.endswith("[]"), key_index=key_index))
    jsonb = [i for i, f in enumerate(forms) if f.startswith("jsonb")]
    rows = [[draw(value_of(f)) for f in forms] for _ in range(draw(st.integers(0, max_rows)))]
    return columns, rules, jsonb, forms, rows


def both(columns, rules, jsonb, chunks):
    fast = run(BinaryRewriter("t", columns, rules, jsonb), chunks)
    ref = run(BinaryReferenceRewriter("t", columns, rules, jsonb), chunks)
    assert fast == ref
    return fast


def decode_rows(data: bytes, ncols: int) -> list[list[bytes | None]]:
    assert data.startswith(HEADER) and data.endswith(TRAILER)
    rows, pos = [], len(HEADER)
    while pos < len(data) - 2:
        assert struct.unpack(">h", data[pos:pos + 2])[0] == ncols
        pos += 2
        row = []
        for _ in range(ncols):
            (n,) = struct.unpack(">i", data[pos:pos + 4])
            row.append(None if n < 0 else data[pos + 4:pos + 4 + n])
            pos += 4 + max(n, 0)
        rows.append(row)
    return rows


@FAST
@given(tables(), st.lists(st.integers(0, 10_000), max_size=6))
def test_matches_reference_for_any_rows_and_chunking(table, cuts):
    columns, rules, jsonb, _, rows = table
    data = encode_rows(rows)
    outputs, error = both(columns, rules, jsonb, chunked(data, cuts))
    if error is None:
        assert len(decode_rows(b"".join(outputs), len(columns))) == len(rows)


@QUICK
@given(tables())
def test_output_does_not_depend_on_chunking(table):
    columns, rules, jsonb, _, rows = table
    data = encode_rows(rows)
    whole = both(columns, rules, jsonb, [data])
    bytewise = both(columns, rules, jsonb, [data[i:i + 1] for i in range(len(data))])
    assert whole[1] == bytewise[1]
    if whole[1] is None:
        assert b"".join(whole[0]) == b"".join(bytewise[0])


@QUICK
@given(tables())
def test_without_rules_output_is_input(table):
    columns, _, jsonb, _, rows = table
    data = encode_rows(rows)
    assert both(columns, [], jsonb, [data]) == ([data], None)


def text_form(value: bytes | None, form: str) -> bytes | None:
    if value is None or form == "raw":
        return value
    if form == "jsonb":
        return value[1:]
    return array_literal(value, form == "jsonb[]") if form.endswith("[]") else value


@FAST
@given(tables())
def test_binary_path_rewrites_values_as_the_text_path_does(table):
    """The same rows as COPY text through the text reference: the same error, or each ruled column's new
    value, seen as text, is the text path's (a json rule on an array column is left to the text path)."""
    columns, rules, jsonb, forms, rows = table
    rules = [r for r in rules if not (r.is_array and r.strategy == "json")]
    binary = both(columns, rules, jsonb, [encode_rows(rows)])
    text_rows = b"".join(copytext.format_row(text_form(v, f) for v, f in zip(r, forms)) for r in rows)
    text = run(ReferenceRewriter("t", columns, rules), [text_rows])
    assert binary[1] == text[1]
    if binary[1] is None:
        got = [[text_form(v, f) for v, f in zip(r, forms)] for r in decode_rows(b"".join(binary[0]), len(columns))]
        expected = [copytext.parse_row(line) for line in b"".join(text[0]).split(b"\n")[:-1]]
        ruled = [r.index for r in rules]
        assert [[row[i] for i in ruled] for row in got] == [[row[i] for i in ruled] for row in expected]


# -- malformed data: the same output or the same error, never a crash ------------------------------
PIECES = [struct.pack(">h", n) for n in (-1, 0, 1, 2, 3)] + [struct.pack(">i", n) for n in (-2, -1, 0, 1, 3, 12)] + [
    b"\x01", b"\xff", b"\xc3\xa9", b"\x00", b"ab", b"{}", HEADER, BINARY_SIGNATURE, struct.pack(">iII", 1, 0, 25),
    struct.pack(">iII", 7, 0, 25), struct.pack(">ii", 2, 1), struct.pack(">ii", -1, 1)]
NASTY = st.lists(st.sampled_from(PIECES) | st.binary(max_size=6), max_size=30).map(b"".join)


@settings(max_examples=500, deadline=None)
@given(st.integers(1, 3), st.sets(st.integers(0, 2)), st.booleans(), st.booleans(), NASTY,
       st.lists(st.integers(0, 200), max_size=3))
def test_arbitrary_bytes_give_same_result_or_same_error(ncols, ruled, with_header, arrays_, data, cuts):
    columns = [f"c{i}" for i in range(ncols)]
    rules = [FieldRule(index=i, column=columns[i], strategy="hash", key=b"k" * 16,
                       params=make_rule(i, columns, "hash").params, is_array=arrays_)
             for i in sorted(ruled) if i < ncols]
    both(columns, rules, [0] if ncols > 1 else [], chunked(HEADER * with_header + data, cuts))


@FAST
@given(tables(max_rows=3), st.data())
def test_corrupted_streams_give_the_same_error(table, data):
    columns, rules, jsonb, _, rows = table
    stream = bytearray(encode_rows(rows))
    for _ in range(data.draw(st.integers(1, 3))):
        stream[data.draw(st.integers(0, len(stream) - 1))] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(stream)))
    both(columns, rules, jsonb, chunked(bytes(stream[:cut]), data.draw(st.lists(st.integers(0, 400), max_size=3))))


def test_errors_name_the_row_and_column():
    columns = ["id", "email"]
    rule = make_rule(1, columns, "email")
    rows = [[b"\x00\x00\x00\x01", b"a@b.c"], [b"\x00\x00\x00\x02", b"\xff"]]
    outputs, error = run(BinaryRewriter("t", columns, [rule]), [encode_rows(rows)])
    assert error == (2, "email")
    _, error = run(BinaryRewriter("t", columns, [rule]), [encode_rows(rows[:1])[:-1]])
    assert error == (2, "email")  # the data ends before the trailer
    try:
        BinaryRewriter("t", columns, [rule]).rewrite(b"COPY" + HEADER)
    except RewriteError as e:
        assert "binary format" in e.problem
    else:
        raise AssertionError("a stream without the signature was accepted")


def test_a_one_mebibyte_value_across_many_chunks():
    columns = ["id", "big", "doc"]
    rules = [make_rule(1, columns, "hash"), make_rule(2, columns, "json", {"paths": {"$.email": "email"}})]
    big = ("é€𝄞\t\\N" * 50_000).encode()
    rows = [[b"1", big, b'\x01{"email": "a@b.c"}'], [None, None, None], [b"3", b"", b"\x01"]]
    data = encode_rows(rows)
    outputs, error = both(columns, rules, [2], chunked(data, list(range(7, len(data), 65_521))))
    assert error is None
    out = decode_rows(b"".join(outputs), 3)
    assert out[1] == [None, None, None] and out[2] == [b"3", b"", b"\x01"]
    assert out[0][1] != big and out[0][2].startswith(b'\x01{"email": "') and b"a@b.c" not in out[0][2]


# -- through a real server: its binary COPY, the pump, both paths loading the same rows ----------
ROUND_TRIP_COLUMNS = ["id", "created", "amount", "name", "born", "code", "tags", "grid", "doc", "j", "jb"]
ROUND_TRIP_TABLE = ("(id int, created timestamptz, amount numeric(12,2), name varchar(40), born text, code char(6), "
                    "tags text[], grid varchar(20)[], doc jsonb, j json, jb jsonb[])")
ROUND_TRIP_ROWS = [
    (1, "2024-01-02 03:04:05.678+00", "12.50", "Zoë Ångström", "1990-05-17", "AB12", ["x", None, "", "é€𝄞"],
     "[0:1][2:3]={{a,b},{NULL,\"d e\"}}", '{"email": "a@b.c", "n": 1, "deep": {"email": ["x"]}}',
     '{"email":  "q\\"uote\\\\ \\u00e9\\t", "kept": 1}', ['{"a": 1}', None]),
    (2, None, None, "", "", "", [], "{}", "{}", "[]", []),
    (3, "infinity", "-0.01", None, None, None, None, None, None, None, None),
    (4, "1999-12-31 23:59:59+05", "1e3", "tab\there\nnewline\\back", "2000-02-29 12:00:00", "€€€€€€",
     ["\\N", "NULL", "{,}"], "{{x}}", '"just a string"', "null", ['"s"', '{}']),
]


def round_trip_rules():
    rules = [make_rule(3, ROUND_TRIP_COLUMNS, "email"),
             make_rule(5, ROUND_TRIP_COLUMNS, "partial", {"keep_first": 1, "keep_last": 1}),
             make_rule(6, ROUND_TRIP_COLUMNS, "hash", {"length": 8, "allow_duplicates": True}),
             make_rule(7, ROUND_TRIP_COLUMNS, "redact"),
             make_rule(8, ROUND_TRIP_COLUMNS, "json", {"paths": {"$.email": "email", "$.deep.*[*]": "hash"}}),
             make_rule(9, ROUND_TRIP_COLUMNS, "json", {"paths": {"$.email": "fake_name"}}),
             make_rule(10, ROUND_TRIP_COLUMNS, "constant", {"value": '{"x": "é"}'})]
    shift = make_rule(4, ROUND_TRIP_COLUMNS, "date_shift", {"days": 300, "per_row_key": "name"})
    arrays_ = {6, 7, 10}
    return [FieldRule(index=r.index, column=r.column, strategy=r.strategy, key=r.key, params=r.params,
                      is_array=r.index in arrays_) for r in rules] + [
        FieldRule(index=4, column="born", strategy="date_shift", key=shift.key, params=shift.params, key_index=3)]


def test_through_a_real_server_the_binary_path_loads_what_the_text_path_loads(source_server):
    import os

    import psycopg

    from confiture_fast import _pump
    from confiture_fast.strategies import Rewriter

    uri = source_server.create_database(f"binary_round_trip_{os.getpid()}")
    cols = ", ".join(ROUND_TRIP_COLUMNS)
    with psycopg.connect(uri, autocommit=True) as conn:
        for t in ("src", "via_text", "via_binary"):
            conn.execute(f"CREATE TABLE {t} {ROUND_TRIP_TABLE}")
        conn.cursor().executemany(f"INSERT INTO src VALUES ({', '.join(['%s'] * 11)})", ROUND_TRIP_ROWS)
        with conn.cursor().copy("COPY src TO STDOUT (FORMAT binary)") as copy:
            data = b"".join(bytes(b) for b in copy)
    rules, jsonb = round_trip_rules(), [8, 10]
    # the server's own binary stream: the compiled rewriter and its reference agree, cut anywhere
    assert both(ROUND_TRIP_COLUMNS, rules, jsonb, chunked(data, list(range(5, len(data), 37))))[1] is None
    for table, binary, rewriter in (("via_text", False, Rewriter("src", ROUND_TRIP_COLUMNS, rules)),
                                    ("via_binary", True, BinaryRewriter("src", ROUND_TRIP_COLUMNS, rules, jsonb))):
        fmt = b" (FORMAT binary)" if binary else b""
        with psycopg.connect(uri) as src, psycopg.connect(uri) as dst:
            src.execute("SELECT 1")  # both idle in a transaction, as the pump wants them
            dst.execute("SELECT 1")
            counts = _pump.pump(src, dst, f"COPY src ({cols}) TO STDOUT".encode() + fmt,
                                f"COPY {table} ({cols}) FROM STDIN".encode() + fmt, rewriter, 2, binary=binary)
            dst.commit()
        assert counts[:2] == (len(ROUND_TRIP_ROWS), len(ROUND_TRIP_ROWS))
    with psycopg.connect(uri, autocommit=True) as conn:
        def text_of(t):
            with conn.cursor().copy(f"COPY (SELECT * FROM {t} ORDER BY id) TO STDOUT") as copy:
                return b"".join(bytes(b) for b in copy)

        via_text = text_of("via_text")
        assert text_of("via_binary") == via_text
        assert via_text != text_of("src") and "Zoë".encode() not in via_text and b"a@b.c" not in via_text
        (grid, jb, name), = conn.execute("SELECT grid::text, jb::text, name FROM via_binary WHERE id = 1").fetchall()
    assert grid == "[0:1][2:3]={{[REDACTED],[REDACTED]},{NULL,[REDACTED]}}"  # dimensions, bounds and NULL kept
    assert jb == '{"{\\"x\\": \\"é\\"}",NULL}' and name.startswith("user_")
