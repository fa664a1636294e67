"""The Cython rewriter against the Python reference (generated rows, any chunking), malformed input,
and a round trip through a real PostgreSQL server that pins the COPY text escaping down."""

import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from anon_ref import ReferenceRewriter, apply
from confiture_fast.copytext import escape, unescape
from confiture_fast.strategies import FieldRule, RewriteError, Rewriter, derive_key, parse_params

FAST = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
QUICK = settings(FAST, max_examples=60)

RULE_CHOICES = [("email", {}), ("email", {"length": 32, "domain": "staging.test"}), ("phone", {}),
                ("name", {}), ("redact", {}), ("hash", {}), ("hash", {"length": 5, "allow_duplicates": True}),
                ("null", {}), ("keep", {}), ("constant", {"value": "c\t\\N\n€"}), ("partial", {}),
                ("partial", {"keep_first": 2, "keep_last": 1, "mask_char": "\t"}),
                ("partial", {"keep_first": 1, "keep_last": 0, "mask_char": "€"}), ("preserve_format", {}),
                ("preserve_format", {"keep_prefix": 3, "keep_suffix": 2}), ("uuid", {}), ("fake_name", {}),
                ("fake_first_name", {"locale": "ja_JP"}), ("fake_last_name", {"locale": "de_DE"}),
                ("fake_email", {"locale": "fr_FR"}), ("fake_address", {}), ("fake_company", {})]


def make_rule(index, columns, strategy, raw=None, seed="s"):
    params, problems = parse_params(strategy, raw)
    assert not problems
    return FieldRule(index=index, column=columns[index], strategy=strategy,
                     key=derive_key(b"test-secret", seed), params=params)


def run(rewriter, chunks):
    """Outputs of each rewrite() call and the error, if any, as (row, column)."""
    outputs = []
    try:
        for chunk in chunks:
            outputs.append(rewriter.rewrite(chunk))
        rewriter.finish()
    except RewriteError as e:
        assert e.table == rewriter.table
        return outputs, (e.row, e.column)
    return outputs, None


def both(columns, rules, chunks):
    fast = run(Rewriter("t", columns, rules), chunks)
    ref = run(ReferenceRewriter("t", columns, rules), chunks)
    assert fast == ref
    return fast


def chunked(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    return [data[a:b] for a, b in zip([0] + points, points + [len(data)])]


# -- generated well-formed rows -----------------------------------------------------------------
AWKWARD_TEXT = st.lists(st.one_of(
    st.sampled_from(["\t", "\n", "\r", "\\", "N", ".", "\\N", "\\.", "\b", "\f", "\v", "\x01", "\x1f",
                     "\x7f", "7", "x", "é", "€", "𝄞", "\u2028", " "]),
    st.characters(codec="utf-8", exclude_characters="\x00"),
), max_size=12).map("".join)
RAW_BYTES = st.binary(max_size=12)  # pass-through columns may hold any bytes, even invalid UTF-8


@st.composite
def encoded_field(draw, value: bytes | None) -> bytes:
    """COPY text for a value, escaping each byte in PostgreSQL's form or one of the other legal ones."""
    if value is None:
        return b"\\N"
    out = bytearray()
    for i, b in enumerate(value):
        last = i == len(value) - 1
        forms = [escape(bytes([b])), b"\\%03o" % b, b"\\x%02x" % b, b"\\x%02X" % b]
        if last:
            forms += [b"\\%o" % b, b"\\x%x" % b]
        if chr(b) not in "\\\t\n\rbfnrtvxN01234567." and b < 128:
            forms.append(b"\\" + bytes([b]))  # any other escaped char stands for itself
        out += forms[draw(st.integers(0, len(forms) - 1))] if draw(st.integers(0, 3)) == 0 else forms[0]
    return bytes(out)


@st.composite
def tables(draw, max_rows=6):
    ncols = draw(st.integers(1, 7))
    columns = [f"c{i}" for i in range(ncols)]
    ruled = draw(st.sets(st.integers(0, ncols - 1)))
    rules = [make_rule(i, columns, *draw(st.sampled_from(RULE_CHOICES))) for i in sorted(ruled)]
    rows = []
    for _ in range(draw(st.integers(0, max_rows))):
        fields = []
        for i in range(ncols):
            kind = draw(st.sampled_from(["null", "empty", "text", "text", "raw" if i not in ruled else "text"]))
            value = {"null": None, "empty": b""}.get(kind)
            if kind == "text":
                value = draw(AWKWARD_TEXT).encode()
            elif kind == "raw":
                value = draw(RAW_BYTES)
            fields.append(draw(encoded_field(value)))
        rows.append(b"\t".join(fields) + b"\n")
    return columns, rules, b"".join(rows)


@FAST
@given(tables(), st.lists(st.integers(0, 10_000), max_size=6))
def test_matches_reference_for_any_rows_and_chunking(table, cuts):
    columns, rules, data = table
    outputs, error = both(columns, rules, chunked(data, cuts))
    assert error is None
    assert b"".join(outputs).count(b"\n") == data.count(b"\n")


@QUICK
@given(tables())
def test_output_does_not_depend_on_chunking(table):
    columns, rules, data = table
    whole, _ = both(columns, rules, [data])
    bytewise, _ = both(columns, rules, [data[i:i + 1] for i in range(len(data))])
    assert b"".join(whole) == b"".join(bytewise)


@QUICK
@given(tables())
def test_without_rules_output_is_input(table):
    columns, _, data = table
    outputs, error = both(columns, [], [data])
    assert error is None and b"".join(outputs) == data


@FAST
@given(tables())
def test_ruled_fields_hold_the_strategy_output_and_the_rest_is_untouched(table):
    """An independent look at the output: split it and check every field against its rule."""
    columns, rules, data = table
    out = b"".join(both(columns, rules, [data])[0])
    by_index = {r.index: r for r in rules}
    for row_in, row_out in zip(data.split(b"\n"), out.split(b"\n")):
        for i, (f_in, f_out) in enumerate(zip(row_in.split(b"\t"), row_out.split(b"\t"), strict=True)):
            rule = by_index.get(i)
            if rule is None or rule.strategy == "keep" or f_in in (b"", b"\\N"):
                assert f_out == f_in
            else:
                expected = apply(rule, unescape(f_in))
                assert f_out == b"\\N" if expected is None else unescape(f_out) == expected


# -- arbitrary bytes: same output or the same error, never a crash -------------------------------
NASTY = st.binary(max_size=80) | st.lists(
    st.sampled_from([b"\t", b"\n", b"\\", b"N", b"x", b"7", b"0", b"a", b"\xff", b"\xc3", b"\xa9",
                     b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\\000", b"\\N", b"\\\\", b"\\."]), max_size=40).map(b"".join)


@settings(max_examples=600, deadline=None)
@given(st.integers(1, 4), st.sets(st.integers(0, 3)), NASTY, st.lists(st.integers(0, 200), max_size=3))
def test_arbitrary_bytes_give_same_result_or_same_error(ncols, ruled, data, cuts):
    columns = [f"c{i}" for i in range(ncols)]
    rules = [make_rule(i, columns, "hash") for i in sorted(ruled) if i < ncols]
    both(columns, rules, chunked(data, cuts))


# -- big values --------------------------------------------------------------------------------
@pytest.mark.parametrize("seed", [1])
def test_one_mebibyte_values(seed):
    rnd = random.Random(seed)
    alphabet = "ab\t\n\\N.é€𝄞\x01\x7f "
    text = "".join(rnd.choice(alphabet) for _ in range(1 << 20))
    value = text.encode()
    columns = ["id", "big", "also_big", "tail"]
    rules = [make_rule(1, columns, "hash"), make_rule(3, columns, "email")]
    row = b"\t".join([b"1", escape(value), escape(value), escape(text[:100].encode())]) + b"\n"
    data = row + b"2\t\\N\t\t\n" + row
    outputs, error = both(columns, rules, chunked(data, [rnd.randrange(len(data)) for _ in range(20)]))
    assert error is None
    out_rows = b"".join(outputs).split(b"\n")
    assert out_rows[0].split(b"\t")[2] == escape(value)


# -- strategies that parse their input: same output or the same error as the reference ----------
def compare_values(strategy, raw, values, key_values=None):
    columns = ["v", "k"]
    params, problems = parse_params(strategy, raw)
    assert not problems
    rule = FieldRule(index=0, column="v", strategy=strategy, key=derive_key(b"k", "s"), params=params,
                     key_index=1 if key_values is not None else -1)
    for i, value in enumerate(values):
        key = b"\\N" if key_values is None or key_values[i] is None else escape(key_values[i].encode())
        both(columns, [rule], [escape(value.encode()) + b"\t" + key + b"\n"])


DATES = st.builds(
    lambda y, m, d, rest, bc: f"{y:04d}-{m:02d}-{d:02d}{rest}{' BC' if bc else ''}",
    st.integers(0, 300000), st.integers(0, 13), st.integers(0, 32),
    st.sampled_from(["", " 00:00:00", " 12:34:56.789", " 23:59:59+02", " 01:02:03.5-09:30", "T10:00",
                     " 12:00:00+00:53:28"]), st.booleans())
DATEISH = st.text(st.sampled_from("0123456789-: .T+BCinfty"), max_size=30)


@FAST
@given(st.lists(DATES | DATEISH | st.sampled_from(["infinity", "-infinity"]), max_size=8),
       st.sampled_from([1, 30, 365, 3650000]))
def test_date_shift_matches_reference(values, days):
    compare_values("date_shift", {"days": days}, values)


@FAST
@given(st.lists(st.tuples(DATES, st.none() | st.text(max_size=5)), max_size=8))
def test_date_shift_with_row_key_matches_reference(pairs):
    compare_values("date_shift", {"per_row_key": "k"}, [d for d, _ in pairs], [k for _, k in pairs])


NUMBERS = st.builds(lambda neg, i, frac: ("-" if neg else "") + i + (f".{frac}" if frac else ""),
                    st.booleans(), st.from_regex(r"[0-9]{1,25}", fullmatch=True),
                    st.none() | st.from_regex(r"[0-9]{1,12}", fullmatch=True))
NUMBERISH = st.text(st.sampled_from("0123456789-.eE+NaInfity"), max_size=20)


@FAST
@given(st.lists(NUMBERS | NUMBERISH | st.sampled_from(["NaN", "Infinity", "-Infinity", "9" * 400]), max_size=8),
       st.sampled_from([{"relative": 0.1}, {"relative": 1}, {"absolute": 5}, {"absolute": 0.25}]))
def test_noise_matches_reference(values, raw):
    compare_values("noise", raw, values)


def _ip_forms(value: int, v6: bool, mask: int | None) -> st.SearchStrategy[str]:
    import ipaddress

    addr = ipaddress.IPv6Address(value) if v6 else ipaddress.IPv4Address(value & 0xFFFFFFFF)
    forms = [str(addr)] + ([addr.exploded, addr.exploded.upper()] if v6 else [])
    suffix = "" if mask is None else f"/{mask % (129 if v6 else 33)}"
    return st.sampled_from([f + suffix for f in forms])


IPS = st.builds(lambda *a: a, st.integers(0, 2**128 - 1) | st.sampled_from([0, 1, 2**32, 0xFFFF << 32]),
                st.booleans(), st.none() | st.integers(0, 128)).flatmap(lambda a: _ip_forms(*a))
IPISH = st.text(st.sampled_from("0123456789abcdefABCDEF:./%"), max_size=45)


@FAST
@given(st.lists(IPS | IPISH | st.sampled_from(["::", "::1", "1::", ":::", "1:2:3:4:5:6:7:8", "1:2:3:4:5:6:7::",
                                               "::ffff:1.2.3.4", "1.2.3.4/32", "10.0.0.0/8", "fe80::1%eth0"]),
                max_size=8),
       st.sampled_from([{}, {"prefix": 0, "prefix_v6": 0}, {"prefix": 32, "prefix_v6": 128},
                        {"prefix": 13, "prefix_v6": 77}]))
def test_ip_matches_reference(values, raw):
    compare_values("ip", raw, values)


# -- arrays -------------------------------------------------------------------------------------
def array_literal(items, depth=0) -> str:
    """An array literal as array_out writes it, from nested lists of str/None."""
    parts = []
    for item in items:
        if isinstance(item, list):
            parts.append(array_literal(item, depth + 1))
        elif item is None:
            parts.append("NULL")
        else:
            parts.append(_quote(item))
    return "{" + ",".join(parts) + "}"


def _quote(s: str) -> str:
    if s and s.lower() != "null" and not set(s) & set('{},"\\ \t\n\r\v\f'):
        return s
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


ARRAYS = st.recursive(st.lists(st.none() | AWKWARD_TEXT, max_size=4),
                      lambda inner: st.lists(inner, min_size=1, max_size=3), max_leaves=10).map(array_literal)
ARRAYISH = st.text(st.sampled_from('{},"\\ aNUL[]:=0-'), max_size=20)


@FAST
@given(st.lists(ARRAYS | ARRAYISH | st.sampled_from(["[0:1]={a,b}", "{}", "{{}}", "{NULL,null,\"NULL\"}"]),
                max_size=6),
       st.sampled_from(RULE_CHOICES))
def test_arrays_match_reference(values, choice):
    params, problems = parse_params(*choice)
    assert not problems
    rule = FieldRule(index=0, column="v", strategy=choice[0], key=derive_key(b"k", "a"), params=params,
                     is_array=True)
    data = b"".join(escape(v.encode()) + b"\n" for v in values)
    both(["v"], [rule], [data])


def test_array_elements_are_rewritten_one_by_one():
    params, _ = parse_params("hash", {})
    rule = FieldRule(index=0, column="tags", strategy="hash", key=derive_key(b"k", "a"), params=params,
                     is_array=True)
    literal = '{alice,NULL,"",{"bob smith","x\\"y"}}'
    out = Rewriter("t", ["tags"], [rule]).rewrite(escape(literal.encode()) + b"\n")
    a, b, c = (apply(rule, v.encode()).decode() for v in ("alice", "bob smith", 'x"y'))
    assert unescape(out[:-1]).decode() == "{%s,NULL,\"\",{%s,%s}}" % (a, b, c)


# -- json ---------------------------------------------------------------------------------------
JSON_KEYS = st.sampled_from(["email", "phone", "contact", "tags", "n", "x", 'em"ail', "é", ""])
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-10**20, 10**20) | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=8) | st.sampled_from(["a@b.c", "", "\\N"]),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(JSON_KEYS, inner, max_size=4), max_leaves=12)


@st.composite
def json_texts(draw):
    import json

    doc = draw(st.dictionaries(JSON_KEYS, JSON_VALUES, min_size=1, max_size=6)
               | st.lists(st.dictionaries(JSON_KEYS, JSON_VALUES, max_size=4), max_size=3) | JSON_VALUES)
    ascii_only = draw(st.booleans())
    seps = draw(st.sampled_from([(", ", ": "), (",", ":"), (" ,\n ", " :\t")]))
    text = json.dumps(doc, ensure_ascii=ascii_only, separators=seps)
    if draw(st.booleans()):
        text = text.replace('"email"', '"em\\u0061il"')
    return draw(st.sampled_from(["", " ", "\n"])) + text + draw(st.sampled_from(["", " \r\n"]))


JSON_PATHS = [
    {"$.email": "email", "$.contact.phone": "phone", "$.tags[*]": "hash"},
    {"$.*": "redact"},
    {"$": "hash"},
    {"$.contact": "null", "$.n": {"strategy": "noise", "absolute": 3}, "$.x[1]": "partial"},
    {"$[0]": "partial", "$[*].email": "keep", "$[*]": {"strategy": "fake_name", "locale": "de_DE"}},
    {'$["em\\"ail"]': "uuid", '$["é"].*': "preserve_format", "$.tags": "keep"},
    {"$.contact.*[*]": {"strategy": "hash", "length": 32}},
]
JSONISH = st.text(st.sampled_from('{}[],:" \\u0123456789abcdefnultrsx.-+eE'), max_size=25)


@FAST
@given(st.lists(json_texts() | JSONISH, min_size=1, max_size=4), st.sampled_from(JSON_PATHS))
def test_json_matches_reference(docs, paths):
    params, problems = parse_params("json", {"paths": paths})
    assert not problems
    rule = FieldRule(index=0, column="j", strategy="json", key=derive_key(b"k", "j"), params=params)
    both(["j"], [rule], [escape(d.encode()) + b"\n" for d in docs])


TRICKY_JSON = [
    '{"email": "a@b.c", "contact": {"phone": "555", "phone": "666"}, "tags": ["x", 2.5e3, null, true, {}]}',
    '{"em\\u0061il":"a@b.c","contact":{"\\u0070hone":"\\ud83d\\ude00 \\n\\t\\"q\\" \\/"}}',
    '[{"email": ""}, {"email": null}, {"email": 12}, {"email": ["a", {"b": "c"}]}]',
    '{"n": -0.0, "x": [0, 1e-7, "\\u00e9"], "contact": {"a": [[["deep"]]]}}',
    '  {\t"email" :\r\n"x" }  ', '"just a string"', "123.45", "[]", "{}", "null",
    '{"email": "\\ud800"}', '{"email": "\\u0000"}', '{"email": "a\\qb"}', '{"email": "raw\ttab"}',
    '{"email": 01}', '{"email": "x",}', '[1 2]', '{"a" 1}', '{"email": tru}', "[" * 70 + "]" * 70,
]


@pytest.mark.parametrize("doc", TRICKY_JSON)
@pytest.mark.parametrize("paths", JSON_PATHS)
def test_tricky_json_matches_reference(doc, paths):
    params, _ = parse_params("json", {"paths": paths})
    rule = FieldRule(index=0, column="j", strategy="json", key=derive_key(b"k", "j"), params=params)
    both(["j"], [rule], [escape(doc.encode()) + b"\n"])


def test_json_rewrites_only_the_paths():
    import json

    params, _ = parse_params("json", {"paths": {"$.email": "email", "$.contact.phone": "phone",
                                                "$.tags[*]": "redact", "$.card": "null"}})
    rule = FieldRule(index=0, column="j", strategy="json", key=derive_key(b"k", "j"), params=params)
    doc = '{"id": 7, "email": "a@b.c", "contact": {"phone": "555-1234", "city": "Paris"},  "tags": ["x", 1],' \
          ' "card": {"no": "4111"}, "note":"em\\u00e9"}'
    out = Rewriter("t", ["j"], [rule]).rewrite(escape(doc.encode()) + b"\n")
    text = unescape(out[:-1]).decode()
    got = json.loads(text)
    assert got["email"] == apply(FieldRule(index=0, column="j", strategy="email", key=rule.key,
                                           params=parse_params("email", {})[0]), b"a@b.c").decode()
    assert got["contact"]["phone"].startswith("+1-555-") and got["contact"]["city"] == "Paris"
    assert got["tags"] == ["[REDACTED]", "[REDACTED]"] and got["card"] is None
    assert text.startswith('{"id": 7, "email": "user_') and text.endswith(', "note":"em\\u00e9"}')


# -- malformed input ---------------------------------------------------------------------------
MALFORMED = [
    # (chunks, (row, column)) with columns a, b, c and a hash rule on b
    ([b"1\t2\n"], (1, "c")),                                 # too few fields
    ([b"1\t2\t3\t4\n"], (1, "c")),                           # too many
    ([b"1\t2\t3\n", b"4\n"], (2, "b")),                      # too few on row 2
    ([b"1\t2\t3\n1\tab\\\t3\n"], (2, "b")),                  # lone backslash before the separator
    ([b"1\t2\t3\\\n"], (1, "c")),                            # ... before the newline, untouched column
    ([b"1\\\t2\t3\n"], (1, "a")),                            # ... in an untouched column
    ([b"1\t\xff\t3\n"], (1, "b")),                           # invalid UTF-8 in the ruled column
    ([b"1\t\\xff\t3\n"], (1, "b")),                          # ... made by an escape
    ([b"1\tab\\303\t3\n"], (1, "b")),                        # truncated multi-byte sequence
    ([b"1\t\xc0\xaf\t3\n"], (1, "b")),                       # overlong
    ([b"1\t\xed\xa0\x80\t3\n"], (1, "b")),                   # surrogate
    ([b"1\t\xf4\x90\x80\x80\t3\n"], (1, "b")),               # above U+10FFFF
    ([b"1\ta\\000b\t3\n"], (1, "b")),                        # NUL
    ([b"1\ta\\.b\t3\n"], (1, "b")),                          # end-of-copy marker inside a value
    ([b"1\t\\.\t3\n"], (1, "b")),
    ([b"1\t2\t3\n", b"4\t5\t6"], (2, "c")),                  # no final newline
    ([b"1\t2\t3\n", b"4\t5"], (2, "b")),                     # cut inside column b
    ([b"1\t2\t", b"3"], (1, "c")),
]


@pytest.mark.parametrize("chunks,where", MALFORMED)
def test_malformed_input_names_table_row_and_column(chunks, where):
    columns = ["a", "b", "c"]
    rules = [make_rule(1, columns, "hash")]
    for rewriter in (Rewriter("users", columns, rules), ReferenceRewriter("users", columns, rules)):
        with pytest.raises(RewriteError) as e:
            for chunk in chunks:
                rewriter.rewrite(chunk)
            rewriter.finish()
        assert (e.value.table, e.value.row, e.value.column) == ("users", *where)
        assert f"row {where[0]}" in str(e.value) and repr(where[1]) in str(e.value)


def test_invalid_utf8_in_untouched_columns_passes_through():
    columns = ["a", "b", "c"]
    data = b"\xff\xfe\t2\t\\xff\n"
    assert Rewriter("t", columns, [make_rule(1, columns, "hash")]).rewrite(data)[:3] == b"\xff\xfe\t"


def test_rows_counts_processed_rows():
    r = Rewriter("t", ["a"], [])
    r.rewrite(b"1\n2\n3")
    assert r.rows == 2
    r.rewrite(b"\n")
    r.finish()
    assert r.rows == 3


def test_null_empty_and_literal_backslash_n():
    columns = ["v"]
    rule = make_rule(0, columns, "hash")
    out = Rewriter("t", columns, [rule]).rewrite(b"\\N\n\n\\\\N\n")
    nul, empty, literal = out.split(b"\n")[:3]
    assert nul == b"\\N" and empty == b""
    assert literal == apply(rule, b"\\N") and len(literal) == 16


def test_bad_rules_are_refused():
    columns = ["a", "b"]
    with pytest.raises(ValueError):
        Rewriter("t", columns, [make_rule(1, columns, "hash"), make_rule(1, columns, "email")])
    rule = make_rule(1, columns, "hash")
    with pytest.raises(ValueError):
        Rewriter("t", ["a", "x"], [rule])


# -- a real server pins the escaping down ------------------------------------------------------
AWKWARD_VALUES = ["plain", "", None, "\\N", "\\.", ".", "\\", "a\tb", "line\nbreak", "cr\rlf\r\n",
                  "\b\f\v", "ctrl\x01\x02\x1b\x1f\x7f", "back\\slash\\\\", "é€𝄞 ünï", "\u2028\u00a0",
                  "N", "\\x41\\101", " trailing \\", "x" * 5000]


@pytest.fixture(scope="module")
def server():
    from confiture_fast.embedded import ThrowawayServer

    with ThrowawayServer() as s:
        yield s


def copy_out(conn, table):
    with conn.cursor().copy(f"COPY {table} TO STDOUT") as copy:
        return b"".join(bytes(chunk) for chunk in copy)


def copy_in(conn, table, data, chunk=777):
    with conn.cursor().copy(f"COPY {table} FROM STDIN") as copy:
        for i in range(0, len(data), chunk):
            copy.write(data[i:i + chunk])


def test_round_trip_through_postgresql(server):
    import psycopg

    rnd = random.Random(7)
    rows = [(i, v, rnd.choice(AWKWARD_VALUES), v, rnd.choice(AWKWARD_VALUES))
            for i, v in enumerate(AWKWARD_VALUES * 3)]
    columns = ["id", "a", "b", "c", "d"]
    with psycopg.connect(server.uri(), autocommit=True) as conn:
        for t in ("src", "passed", "masked"):
            conn.execute(f"CREATE TABLE {t} (id int, a text, b text, c varchar(5000), d text)")
        conn.cursor().executemany("INSERT INTO src VALUES (%s, %s, %s, %s, %s)", rows)
        data = copy_out(conn, "(SELECT * FROM src ORDER BY id)")

        # Our escaping of a value is PostgreSQL's, byte for byte.
        for line, row in zip(data.split(b"\n"), rows):
            expected = [b"\\N" if v is None else escape(str(v).encode()) for v in row]
            assert line.split(b"\t") == expected

        # Pass-through leaves every byte alone.
        passed = Rewriter("src", columns, []).rewrite(data)
        assert passed == data
        copy_in(conn, "passed", passed)
        assert conn.execute("SELECT * FROM passed ORDER BY id").fetchall() == rows

        # With rules, the server stores what each strategy promises.
        rules = [make_rule(1, columns, "hash"), make_rule(2, columns, "redact"),
                 make_rule(3, columns, "email", {"length": 32}), make_rule(4, columns, "name")]
        rewriter = Rewriter("src", columns, rules)
        masked = b"".join(rewriter.rewrite(data[i:i + 100]) for i in range(0, len(data), 100))
        rewriter.finish()
        assert masked == ReferenceRewriter("src", columns, rules).rewrite(data)
        copy_in(conn, "masked", masked)
        got = conn.execute("SELECT * FROM masked ORDER BY id").fetchall()
        by_index = {r.index: r for r in rules}
        for row_in, row_out in zip(rows, got):
            assert row_out[0] == row_in[0]
            for i in range(1, 5):
                v = row_in[i]
                if v is None or v == "":
                    assert row_out[i] == v
                else:
                    assert row_out[i] == apply(by_index[i], v.encode()).decode()


def test_server_reads_every_escape_form_as_the_reference_does(server):
    """Non-canonical escapes (octal, hex, \\c): PostgreSQL's COPY FROM and our unescape agree."""
    import psycopg

    fields = [b"\\101\\x42\\x4", b"\\7\\77\\1010x", b"\\xg\\q\\a", b"\\x414", b"\\1234", b"N\\N",
              b"\\b\\f\\v\\r\\n\\t\\\\", b"\\303\\251", b"\\xe2\\x82\\xac"]
    data = b"".join(b"%d\t%s\n" % (i, f) for i, f in enumerate(fields))
    with psycopg.connect(server.uri(), autocommit=True) as conn:
        conn.execute("CREATE TABLE escapes_text (id int, v text)")
        copy_in(conn, "escapes_text", data)
        got = conn.execute("SELECT v FROM escapes_text ORDER BY id").fetchall()
        assert [g[0].encode() for g in got] == [unescape(f) for f in fields]
        with pytest.raises(psycopg.errors.BadCopyFileFormat):  # why the rewriters refuse a \. in a value
            copy_in(conn, "escapes_text", b"1\ta\\.b\n")


def test_typed_strategies_round_trip_through_postgresql(server):
    """PostgreSQL accepts what date_shift, noise, ip, uuid and the fake_* strategies write, and the
    values keep their promises (bounded shifts, same network, same scale)."""
    import ipaddress
    import uuid
    from decimal import Decimal

    import psycopg

    ddl = ("(id int, k int, d date, ts timestamp(3), tz timestamptz, n numeric(14,3), i int4, ip inet, "
           "net cidr, u uuid, name text, addr varchar(80))")
    rows = [
        (1, 7, "2024-02-29", "2024-02-29 23:59:59.999", "2024-01-01 00:00:00+00", "-12.345", 100,
         "192.168.1.77", "10.1.0.0/16", "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", "Zoë", "1 Main St"),
        (2, 7, "0044-03-15 BC", "1999-12-31 12:00:00", "1970-01-01 00:00:00.5+00", "0.000", -5,
         "2001:db8::1/64", "2001:db8::/32", "00000000-0000-0000-0000-000000000000", "a\tb", "x\\y"),
        (3, None, "infinity", "-infinity", "infinity", "99999999999.999", 0, "::ffff:1.2.3.4", "0.0.0.0/0",
         "ffffffff-ffff-ffff-ffff-ffffffffffff", "", None),
        (4, 8, None, None, None, None, None, None, None, None, None, "Rue de l'Église"),
    ]
    columns = ["id", "k", "d", "ts", "tz", "n", "i", "ip", "net", "u", "name", "addr"]
    specs = [("d", "date_shift", {"days": 30, "per_row_key": "k"}), ("ts", "date_shift", {"days": 2}),
             ("tz", "date_shift", {}), ("n", "noise", {"relative": 0.01}), ("i", "noise", {"absolute": 3}),
             ("ip", "ip", {}), ("net", "ip", {"prefix": 8, "prefix_v6": 16}), ("u", "uuid", {}),
             ("name", "fake_name", {"locale": "fr_FR"}), ("addr", "fake_address", {})]
    rules = []
    for col, strategy, raw in specs:
        params, problems = parse_params(strategy, raw)
        assert not problems
        rules.append(FieldRule(index=columns.index(col), column=col, strategy=strategy, params=params,
                               key=derive_key(b"test-secret", "typed"),
                               key_index=columns.index("k") if col == "d" else -1))
    with psycopg.connect(server.uri(), autocommit=True) as conn:
        conn.execute("SET DateStyle = ISO; SET TimeZone = 'UTC'")
        conn.execute(f"CREATE TABLE typed {ddl}")
        conn.execute(f"CREATE TABLE typed_out {ddl}")
        conn.cursor().executemany(f"INSERT INTO typed VALUES ({', '.join(['%s'] * len(columns))})", rows)
        data = copy_out(conn, "(SELECT * FROM typed ORDER BY id)")
        masked = Rewriter("typed", columns, rules).rewrite(data)
        assert masked == ReferenceRewriter("typed", columns, rules).rewrite(data)
        copy_in(conn, "typed_out", masked)
        shifts = conn.execute("""
            SELECT CASE WHEN isfinite(b.d) THEN a.d - b.d END, a.d IS NOT DISTINCT FROM b.d,
                   CASE WHEN isfinite(b.ts) THEN extract(epoch FROM a.ts - b.ts) / 86400 END,
                   a.ts IS NOT DISTINCT FROM b.ts,
                   CASE WHEN isfinite(b.tz) THEN extract(epoch FROM a.tz - b.tz) / 86400 END,
                   a.tz IS NOT DISTINCT FROM b.tz
            FROM typed b JOIN typed_out a USING (id) ORDER BY id""").fetchall()
        rest = ", ".join(columns[5:])
        before = conn.execute(f"SELECT {rest} FROM typed ORDER BY id").fetchall()
        after = conn.execute(f"SELECT {rest} FROM typed_out ORDER BY id").fetchall()
    for row_shifts in shifts:
        for days, same, limit in zip(row_shifts[0::2], row_shifts[1::2], (30, 2, 30)):
            if days is None:
                assert same  # NULL or infinity
            else:
                assert days == int(days) and 1 <= abs(days) <= limit and not same
    for b, a in zip(before, after):
        row_b, row_a = dict(zip(columns[5:], b)), dict(zip(columns[5:], a))
        if row_b["n"] is not None:
            assert abs(row_a["n"] - row_b["n"]) <= abs(row_b["n"]) * Decimal("0.01") + Decimal("0.0005")
            assert row_a["n"].as_tuple().exponent == -3
        if row_b["i"] is not None:
            assert abs(row_a["i"] - row_b["i"]) <= 3
        if row_b["ip"] is not None:
            old, new = ipaddress.ip_interface(row_b["ip"]), ipaddress.ip_interface(row_a["ip"])
            keep = 24 if old.version == 4 else 64
            assert new.network.prefixlen == old.network.prefixlen
            assert int(new.ip) >> (old.max_prefixlen - keep) == int(old.ip) >> (old.max_prefixlen - keep)
        if row_b["net"] is not None:
            assert ipaddress.ip_network(row_a["net"]).prefixlen == ipaddress.ip_network(row_b["net"]).prefixlen
        if row_b["u"] is not None:
            assert uuid.UUID(str(row_a["u"])).version == 4 and row_a["u"] != row_b["u"]
        if row_b["name"]:
            assert row_a["name"] != row_b["name"] and " " in row_a["name"]
        assert (row_a["addr"] is None) == (row_b["addr"] is None)


def test_arrays_round_trip_through_postgresql(server):
    import psycopg

    rows = [(1, ["alice", None, "", "b c", 'q"uote', "back\\slash", "NULL", "{x}", "tab\tnl\n"],
             [[1, 2], [3, None]], ["2024-02-29", None], ["10.0.0.1", "2001:db8::7/64"]),
            (2, [], None, [], None)]
    columns = ["id", "tags", "nums", "days", "ips"]
    specs = [("tags", "hash", {}), ("nums", "noise", {"absolute": 2}), ("days", "date_shift", {"days": 3}),
             ("ips", "ip", {})]
    rules = [FieldRule(index=columns.index(c), column=c, strategy=s, key=derive_key(b"k", "arr"),
                       params=parse_params(s, raw)[0], is_array=True) for c, s, raw in specs]
    with psycopg.connect(server.uri(), autocommit=True) as conn:
        conn.execute("SET DateStyle = ISO")
        for t in ("arr", "arr_out"):
            conn.execute(f"CREATE TABLE {t} (id int, tags text[], nums int[], days date[], ips inet[])")
        conn.cursor().executemany("INSERT INTO arr VALUES (%s, %s, %s, %s::date[], %s::inet[])", rows)
        data = copy_out(conn, "(SELECT * FROM arr ORDER BY id)")
        masked = Rewriter("arr", columns, rules).rewrite(data)
        assert masked == ReferenceRewriter("arr", columns, rules).rewrite(data)
        copy_in(conn, "arr_out", masked)
        got = conn.execute("""SELECT a.tags, a.nums, b.nums, cardinality(a.days), a.days[1] - b.days[1],
                                     a.ips[1] << '10.0.0.0/24'::inet, masklen(a.ips[2])
                              FROM arr b JOIN arr_out a USING (id) ORDER BY id""").fetchall()
    tags, nums_a, nums_b, ndays, shift, same_net, masklen = got[0]
    hashes = [None if v is None else ("" if v == "" else apply(rules[0], v.encode()).decode()) for v in rows[0][1]]
    assert tags == hashes
    assert all(abs(x - y) <= 2 for xs, ys in zip(nums_a, nums_b) for x, y in zip(xs, ys) if x is not None)
    assert nums_a[1][1] is None and ndays == 2 and 1 <= abs(shift) <= 3 and same_net and masklen == 64
    assert got[1][:2] == ([], None)


def test_json_round_trip_through_postgresql(server):
    import json

    import psycopg

    docs = ['{"id": 1, "email": "a@b.c", "contact": {"phone": "555 1234", "city": "Zürich"}, "tags": ["x", "y"]}',
            '{"email": "q\\"uote\\\\ \\u00e9\\t", "contact": null, "n": 12.50}',
            '[1, 2]', 'null']
    params, _ = parse_params("json", {"paths": {"$.email": "email", "$.contact.phone": "fake_name",
                                                "$.tags[*]": "hash", "$.n": {"strategy": "noise", "relative": 0.1}}})
    rule_j = FieldRule(index=1, column="j", strategy="json", key=derive_key(b"k", "j"), params=params)
    rule_b = FieldRule(index=2, column="b", strategy="json", key=derive_key(b"k", "j"), params=params)
    with psycopg.connect(server.uri(), autocommit=True) as conn:
        for t in ("docs", "docs_out"):
            conn.execute(f"CREATE TABLE {t} (id int, j json, b jsonb)")
        conn.cursor().executemany("INSERT INTO docs VALUES (%s, %s, %s)", [(i, d, d) for i, d in enumerate(docs)])
        data = copy_out(conn, "(SELECT * FROM docs ORDER BY id)")
        masked = Rewriter("docs", ["id", "j", "b"], [rule_j, rule_b]).rewrite(data)
        assert masked == ReferenceRewriter("docs", ["id", "j", "b"], [rule_j, rule_b]).rewrite(data)
        copy_in(conn, "docs_out", masked)
        got = conn.execute("SELECT j::text, b FROM docs_out ORDER BY id").fetchall()
    j0, b0 = got[0]
    assert j0.startswith('{"id": 1, "email": "user_') and '"city": "Zürich"' in j0  # json keeps its bytes
    assert b0["contact"]["city"] == "Zürich" and b0["email"].startswith("user_") and len(b0["tags"][0]) == 16
    assert b0["contact"]["phone"] != "555 1234" and json.loads(j0) == b0
    assert abs(float(got[1][1]["n"]) - 12.5) <= 1.25 and got[2][1] == [1, 2] and got[3][1] is None
