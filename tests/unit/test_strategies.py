"""Strategies: the PRF against published vectors, keys, params, column checks, output formats, uniqueness."""

import re

import pytest

import anon_ref
from confiture_fast import _anon, copytext, strategies
from confiture_fast.catalog import Column
from confiture_fast.strategies import STRATEGIES, FieldRule, Rewriter, derive_key, parse_params
from confiture_fast.strategies.pseudonyms import EmailParams, HashParams

# SipHash-2-4 reference vectors: key 00 01 .. 0f, message i = bytes 00 01 .. (i-1).
# Source: https://github.com/veorq/SipHash/blob/master/vectors.h (vectors_sip64, vectors_sip128).
SIP64 = {
    0: "310e0edd47db6f72", 1: "fd67dc93c539f874", 2: "5a4fa9d909806c0d", 3: "2d7efbd796666785",
    4: "b7877127e09427cf", 5: "8da699cd64557618", 6: "cee3fe586e46c9cb", 7: "37d1018bf50002ab",
    8: "6224939a79f5f593", 9: "b0e4a90bdf82009e", 10: "f3b9dd94c5bb5d7a", 11: "a7ad6b22462fb3f4",
    12: "fbe50e86bc8f1e75", 13: "903d84c02756ea14", 14: "eef27a8e90ca23f7", 15: "e545be4961ca29a1",
    16: "db9bc2577fcc2a3f", 63: "724506eb4c328a95",
}
SIP128 = {
    0: "a3817f04ba25a8e66df67214c7550293", 1: "da87c1d86b99af44347659119b22fc45",
    2: "8177228da4a45dc7fca38bdef60affe4", 3: "9c70b60c5267a94e5f33b6b02985ed51",
    4: "f88164c12d9c8faf7d0f6e7c7bcd5579", 5: "1368875980776f8854527a07690e9627",
    6: "14eeca338b208613485ea0308fd7a15e", 7: "a1f1ebbed8dbc153c0b84aa61ff08239",
    8: "3b62a9ba6258f5610f83e264f31497b4", 9: "264499060ad9baabc47f8b02bb6d71ed",
    10: "00110dc378146956c95447d3f3d0fbba", 11: "0151c568386b6677a2b4dc6f81e5dc18",
    12: "d626b266905ef35882634df68532c125", 13: "9869e247e9c08b10d029934fc4b952f7",
    14: "31fcefac66d7de9c7ec7485fe4494902", 15: "5493e99933b0a8117e08ec0f97cfc3d9",
    16: "6ee2a4ca67b054bbfd3315bf85230577", 63: "5150d1772f50834a503e069a973fbd7c",
}
KEY = bytes(range(16))
SIPHASHES = [pytest.param(_anon.siphash24, id="C"), pytest.param(strategies.siphash24, id="python")]


@pytest.mark.parametrize("siphash", SIPHASHES)
@pytest.mark.parametrize("n", sorted(SIP64))
def test_siphash64_reference_vectors(siphash, n):
    assert siphash(KEY, bytes(range(n)), 8).hex() == SIP64[n]


@pytest.mark.parametrize("siphash", SIPHASHES)
@pytest.mark.parametrize("n", sorted(SIP128))
def test_siphash128_reference_vectors(siphash, n):
    assert siphash(KEY, bytes(range(n)), 16).hex() == SIP128[n]


def test_c_and_python_siphash_agree_on_all_lengths():
    key = derive_key(b"secret", "x")
    for n in range(0, 200):
        data = bytes((i * 7 + n) % 256 for i in range(n))
        assert _anon.siphash24(key, data) == strategies.siphash24(key, data)


# -- keys -------------------------------------------------------------------------------------
def test_derive_key_is_deterministic_and_separates_secrets_and_seeds():
    k = derive_key(b"s3cret", "12345")
    assert len(k) == 16
    assert k == derive_key(b"s3cret", "12345") == derive_key(b"s3cret", 12345)
    assert k != derive_key(b"s3cret", "12346")
    assert k != derive_key(b"other", "12345")
    assert len(derive_key(b"x" * 200, "1")) == 16
    with pytest.raises(ValueError):
        derive_key(b"", "1")


# -- params -----------------------------------------------------------------------------------
def test_parse_params_defaults_and_values():
    p, problems = parse_params("email", {})
    assert problems == [] and p == EmailParams(length=16, domain="example.com")
    p, problems = parse_params("hash", {"length": 32})
    assert problems == [] and p.length == 32


@pytest.mark.parametrize("name,raw,needle", [
    ("email", {"lenght": 20}, "unknown field `lenght`"),
    ("email", {"length": "20"}, "Expected `int`"),
    ("email", {"length": 8}, "uniqueness floor"),
    ("email", {"length": 33}, "between 1 and 32"),
    ("email", {"domain": "exa mple.com"}, "not a plain DNS name"),
    ("email", {"domain": "a@b"}, "not a plain DNS name"),
    ("hash", {"length": 12}, "uniqueness floor"),
    ("hash", {"length": 0, "allow_duplicates": True}, "between 1 and 32"),
    ("phone", {"format": "x"}, "unknown field"),
    ("nope", {}, "unknown strategy 'nope'"),
])
def test_parse_params_problems(name, raw, needle):
    _, problems = parse_params(name, raw)
    assert any(needle in p for p in problems), problems


def test_short_widths_allowed_with_allow_duplicates():
    p, problems = parse_params("hash", {"length": 8, "allow_duplicates": True})
    assert problems == [] and not STRATEGIES["hash"].is_unique(p)
    assert STRATEGIES["hash"].is_unique(HashParams())


def test_strategy_properties():
    assert {n for n, s in STRATEGIES.items() if not s.keyed} >= {"redact"}
    assert {n for n, s in STRATEGIES.items() if s.unique} >= {"email", "hash"}
    assert not any(STRATEGIES[n].unique for n in ("phone", "name", "redact"))


def col(name="c", type="text", base_type="text", category="S", max_length=None, is_array=False):
    return Column(name=name, type=type, base_type=base_type, category=category, max_length=max_length,
                  is_array=is_array, not_null=False, has_default=False, generated=False, identity=False,
                  unique=False)


@pytest.mark.parametrize("strategy,raw,column,needle", [
    ("redact", {}, col(type="integer", base_type="int4", category="N"), "cannot hold"),
    ("hash", {}, col(type="uuid", base_type="uuid", category="U"), "use the uuid strategy"),
    ("email", {}, col(type="character varying(20)", base_type="varchar", max_length=20), "33 characters"),
    ("email", {"domain": "corp.example.org"}, col(type="character varying(37)", base_type="varchar",
                                                   max_length=37), "38 characters"),
    ("hash", {"length": 32}, col(type="character(20)", base_type="bpchar", max_length=20), "32 characters"),
    ("redact", {}, col(type="jsonb", base_type="jsonb", category="U"), "cannot hold"),
    ("phone", {}, col(type="integer[]", base_type="int4", category="N", is_array=True), "cannot hold"),
    ("email", {}, col(type="character varying(20)[]", base_type="varchar", max_length=20, is_array=True),
     "33 characters"),
])
def test_check_column_refuses(strategy, raw, column, needle):
    s = STRATEGIES[strategy]
    params, problems = s.parse_params(raw)
    assert not problems
    problem = s.check_column(params, column)
    assert problem and needle in problem, problem


@pytest.mark.parametrize("strategy,column", [
    ("email", col(type="character varying(33)", base_type="varchar", max_length=33)),
    ("redact", col(type="character varying(10)", base_type="varchar", max_length=10)),
    ("phone", col()), ("name", col(type="character varying(9)", base_type="varchar", max_length=9)),
    ("hash", col(type="citext", base_type="citext")),
    ("phone", col(type="text[]", is_array=True)),
])
def test_check_column_accepts(strategy, column):
    s = STRATEGIES[strategy]
    assert s.check_column(s.parse_params({})[0], column) is None


def test_field_rule_survives_msgspec_round_trip():
    import msgspec

    rule = FieldRule(index=1, column="email", strategy="email", key=derive_key(b"s", "1"),
                     params=EmailParams(length=20))
    for codec in (msgspec.json, msgspec.msgpack):
        assert codec.decode(codec.encode(rule), type=FieldRule) == rule


# -- formats ----------------------------------------------------------------------------------
def rewrite_values(strategy, values, raw_params=None, seed="1", secret=b"secret"):
    params, problems = parse_params(strategy, raw_params or {})
    assert not problems
    rule = FieldRule(index=0, column="v", strategy=strategy, key=derive_key(secret, seed), params=params)
    data = b"".join(copytext.escape(v.encode()) + b"\n" for v in values)
    out = Rewriter("t", ["v"], [rule]).rewrite(data)
    assert out == anon_ref.ReferenceRewriter("t", ["v"], [rule]).rewrite(data)
    return [copytext.unescape(line).decode() for line in out.split(b"\n")[:-1]]


INPUTS = ["alice@example.com", "bob@company.com", "Zoë Ünïcode", "a\tb\nc\\d", "\\N", "x" * 1000]

FORMATS = {
    "email": r"user_[0-9a-f]{16}@example\.com",
    "phone": r"\+1-555-[0-9]{4}",
    "name": r"User [0-9A-F]{4}",
    "redact": r"\[REDACTED\]",
    "hash": r"[0-9a-f]{16}",
}


@pytest.mark.parametrize("strategy", sorted(FORMATS))
def test_output_formats(strategy):
    out = rewrite_values(strategy, INPUTS)
    assert all(re.fullmatch(FORMATS[strategy], v) for v in out), out


def test_params_change_formats():
    assert all(re.fullmatch(r"user_[0-9a-f]{24}@test\.invalid", v)
               for v in rewrite_values("email", INPUTS, {"length": 24, "domain": "test.invalid"}))
    assert all(re.fullmatch(r"[0-9a-f]{32}", v) for v in rewrite_values("hash", INPUTS, {"length": 32}))
    assert all(re.fullmatch(r"[0-9a-f]{6}", v)
               for v in rewrite_values("hash", INPUTS, {"length": 6, "allow_duplicates": True}))


def test_keyed_outputs_are_deterministic_and_depend_on_key():
    for strategy in ("email", "hash", "name", "phone"):
        a = rewrite_values(strategy, INPUTS)
        assert a == rewrite_values(strategy, INPUTS)
        assert a != rewrite_values(strategy, INPUTS, secret=b"other")
        assert a != rewrite_values(strategy, INPUTS, seed="2")


def test_email_hex_is_the_prf_of_the_unescaped_value():
    key = derive_key(b"secret", "1")
    [out] = rewrite_values("email", ["a\tb"])
    assert out == f"user_{strategies.siphash24(key, b'a' + bytes([9]) + b'b').hex()[:16]}@example.com"


@pytest.mark.parametrize("strategy,raw", [("email", {}), ("hash", {})])
def test_unique_strategies_keep_a_million_distinct_inputs_distinct(strategy, raw):
    params, _ = parse_params(strategy, raw)
    rule = FieldRule(index=0, column="v", strategy=strategy, key=derive_key(b"secret", "u"), params=params)
    data = b"".join(b"person%d@example.com\n" % i for i in range(1_000_000))
    out = Rewriter("t", ["v"], [rule]).rewrite(data)
    lines = out.split(b"\n")[:-1]
    assert len(lines) == 1_000_000 and len(set(lines)) == 1_000_000


# -- section 2 strategies ------------------------------------------------------------------------
@pytest.mark.parametrize("name,raw,needle", [
    ("constant", {}, "missing required field `value`"),
    ("partial", {"keep_first": -1}, ">= 0"),
    ("partial", {"mask_char": "**"}, "one character"),
    ("preserve_format", {"keep_suffix": -2}, ">= 0"),
    ("date_shift", {"days": 0}, "between 1 and"),
    ("date_shift", {"per_row_key": 3}, "Expected `str | null`"),
    ("noise", {}, "exactly one"),
    ("noise", {"relative": 0.1, "absolute": 3}, "exactly one"),
    ("noise", {"relative": 2}, "(0, 1]"),
    ("ip", {"prefix": 33}, "between 0 and 32"),
    ("ip", {"prefix_v6": 129}, "between 0 and 128"),
    ("fake_name", {"locale": "xx_XX"}, "unknown locale"),
    ("fake_email", {"length": 8}, "uniqueness floor"),
])
def test_parse_params_problems_section2(name, raw, needle):
    _, problems = parse_params(name, raw)
    assert any(needle in p for p in problems), problems


def typed(name, type, base_type, category, not_null=False, is_array=False, max_length=None):
    return Column(name=name, type=type, base_type=base_type, category=category, max_length=max_length,
                  is_array=is_array, not_null=not_null, has_default=False, generated=False, identity=False,
                  unique=False)


INT4 = typed("n", "integer", "int4", "N")
NUMERIC = typed("n", "numeric(12,2)", "numeric", "N")
FLOAT8 = typed("n", "double precision", "float8", "N")
DATE = typed("d", "date", "date", "D")
TSTZ = typed("d", "timestamp with time zone", "timestamptz", "D")
TIME = typed("d", "time without time zone", "time", "D")
INET = typed("i", "inet", "inet", "I")
UUID = typed("u", "uuid", "uuid", "U")
BOOL = typed("b", "boolean", "bool", "B")
TEXT = typed("t", "text", "text", "S")


@pytest.mark.parametrize("strategy,raw,column,ok", [
    ("null", {}, INT4, True), ("null", {}, typed("n", "integer", "int4", "N", not_null=True), False),
    ("null", {}, typed("t", "text[]", "text", "S", is_array=True), True),
    ("keep", {}, UUID, True),
    ("constant", {"value": "42"}, INT4, True), ("constant", {"value": "4.5"}, INT4, False),
    ("constant", {"value": "4.5"}, NUMERIC, True), ("constant", {"value": "yes"}, BOOL, True),
    ("constant", {"value": "maybe"}, BOOL, False), ("constant", {"value": "x"}, UUID, False),
    ("constant", {"value": "abcdef"}, typed("t", "character varying(5)", "varchar", "S", max_length=5), False),
    ("partial", {}, TEXT, True), ("partial", {}, INT4, False),
    ("preserve_format", {}, TEXT, True), ("preserve_format", {}, INT4, False),
    ("uuid", {}, UUID, True), ("uuid", {}, TEXT, True),
    ("uuid", {}, typed("t", "character varying(20)", "varchar", "S", max_length=20), False),
    ("date_shift", {}, DATE, True), ("date_shift", {}, TSTZ, True), ("date_shift", {}, TIME, False),
    ("date_shift", {}, TEXT, False),
    ("noise", {"relative": 0.1}, INT4, True), ("noise", {"absolute": 1}, NUMERIC, True),
    ("noise", {"relative": 0.1}, FLOAT8, False), ("noise", {"relative": 0.1}, TEXT, False),
    ("ip", {}, INET, True), ("ip", {}, typed("i", "cidr", "cidr", "I"), True), ("ip", {}, TEXT, False),
    ("fake_name", {}, TEXT, True), ("fake_name", {}, typed("t", "character varying(8)", "varchar", "S",
                                                              max_length=8), False),
    ("fake_email", {}, INT4, False), ("fake_company", {"locale": "de_DE"}, TEXT, True),
])
def test_check_column_section2(strategy, raw, column, ok):
    s = STRATEGIES[strategy]
    params, problems = s.parse_params(raw)
    assert not problems
    assert (s.check_column(params, column) is None) == ok, s.check_column(params, column)


FORMATS2 = {
    "null": (None, {}),
    "constant": (r"fixed value", {"value": "fixed value"}),
    "uuid": (r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}", {}),
    "fake_email": (r"[a-z0-9]+\.[a-z0-9]+\.[0-9a-f]{16}@example\.com", {}),
    "fake_name": (r"\S+ \S+", {}),
    "fake_address": (r"[0-9]{1,4} .+, .+", {}),
}


@pytest.mark.parametrize("strategy", sorted(FORMATS2))
def test_output_formats_section2(strategy):
    pattern, raw = FORMATS2[strategy]
    params, _ = parse_params(strategy, raw)
    rule = FieldRule(index=0, column="v", strategy=strategy, key=derive_key(b"s", "1"), params=params)
    data = b"".join(copytext.escape(v.encode()) + b"\n" for v in INPUTS)
    out = Rewriter("t", ["v"], [rule]).rewrite(data).split(b"\n")[:-1]
    if pattern is None:
        assert out == [b"\\N"] * len(INPUTS)
    else:
        assert all(re.fullmatch(pattern, copytext.unescape(v).decode()) for v in out), out


def test_partial_and_preserve_format_keep_the_shape():
    assert rewrite_values("partial", ["4111111111111111", "abc", "12345"], {"keep_last": 4}) == \
        ["************1111", "***", "*2345"]
    assert rewrite_values("partial", ["Zoë Smith"], {"keep_first": 2, "keep_last": 0, "mask_char": "•"}) == \
        ["Zo•••••••"]
    out = rewrite_values("preserve_format", ["+1 (555) 123-4567", "GB82 WEST 1234 5698 7654 32", "ab-Ü9"],
                         {"keep_prefix": 3})
    assert re.fullmatch(r"\+1 \([0-9]{3}\) [0-9]{3}-[0-9]{4}", out[0]) and out[0] != "+1 (555) 123-4567"
    assert re.fullmatch(r"GB8[0-9] [A-Z]{4} [0-9]{4} [0-9]{4} [0-9]{4} [0-9]{2}", out[1])
    assert re.fullmatch(r"ab-Ü[0-9]", out[2])


def test_fake_values_come_from_the_locale_pools():
    from confiture_fast.strategies import fake_pools

    firsts, lasts = fake_pools("fake_name", "fr_FR")
    for v in rewrite_values("fake_name", INPUTS, {"locale": "fr_FR"}):
        first, _, last = v.partition(" ")
        assert first in firsts and last in lasts
    companies, = fake_pools("fake_company", "en_US")
    assert set(rewrite_values("fake_company", INPUTS)) <= set(companies)


@pytest.mark.parametrize("strategy", ["uuid", "fake_email"])
def test_section2_unique_strategies_keep_a_million_distinct_inputs_distinct(strategy):
    params, _ = parse_params(strategy, {})
    rule = FieldRule(index=0, column="v", strategy=strategy, key=derive_key(b"secret", "u"), params=params)
    data = b"".join(b"person%d@example.com\n" % i for i in range(1_000_000))
    lines = Rewriter("t", ["v"], [rule]).rewrite(data).split(b"\n")[:-1]
    assert len(lines) == len(set(lines)) == 1_000_000


def test_date_shift_moves_dates_within_bounds_and_per_row_key_moves_them_together():
    import datetime

    dates = [f"2024-{m:02d}-{d:02d}" for m in range(1, 13) for d in (1, 15, 28)]
    out = rewrite_values("date_shift", dates, {"days": 10})
    shifts = [(datetime.date.fromisoformat(b) - datetime.date.fromisoformat(a)).days for a, b in zip(dates, out)]
    assert all(1 <= abs(s) <= 10 for s in shifts) and len(set(shifts)) > 3

    params, _ = parse_params("date_shift", {"days": 10, "per_row_key": "user_id"})
    rule = FieldRule(index=1, column="created", strategy="date_shift", key=derive_key(b"s", "1"), params=params,
                     key_index=0)
    data = b"".join(b"%d\t%s\n" % (uid, d.encode()) for uid in (7, 8) for d in dates)
    rows = [line.split(b"\t") for line in Rewriter("t", ["user_id", "created"], [rule]).rewrite(data).split(b"\n")[:-1]]
    by_user: dict[bytes, set[int]] = {}
    for (uid, new), old in zip(rows, dates * 2):
        by_user.setdefault(uid, set()).add(
            (datetime.date.fromisoformat(new.decode()) - datetime.date.fromisoformat(old)).days)
    assert all(len(s) == 1 for s in by_user.values())


def test_noise_stays_within_bounds_and_keeps_the_scale():
    values = [f"{i * 37.25:.2f}" for i in range(1, 200)]
    out = rewrite_values("noise", values, {"relative": 0.1})
    for a, b in zip(values, out):
        assert re.fullmatch(r"-?[0-9]+\.[0-9]{2}", b)
        assert abs(float(b) - float(a)) <= 0.1 * float(a) + 0.005
    out = rewrite_values("noise", [str(i) for i in range(1000, 1100)], {"absolute": 5})
    assert all(re.fullmatch(r"[0-9]+", b) and abs(int(b) - (1000 + i)) <= 5 for i, b in enumerate(out))


def test_ip_keeps_the_network_prefix():
    import ipaddress

    out = rewrite_values("ip", ["192.168.7.42", "10.1.2.3/8", "10.0.0.0/8", "2001:db8:1:2:3:4:5:6"],
                         {"prefix": 24, "prefix_v6": 64})
    assert out[0].startswith("192.168.7.") and out[0] != "192.168.7.42"
    assert out[1].startswith("10.1.2.") and out[1].endswith("/8")
    assert out[2] == "10.0.0.0/8"  # a network stays that network
    assert ipaddress.IPv6Address(out[3]).packed[:8] == ipaddress.IPv6Address("2001:db8:1:2::").packed[:8]


@pytest.mark.parametrize("raw,needle", [
    ({}, "missing required field `paths`"),
    ({"paths": {}}, "paths is empty"),
    ({"paths": {"email": "email"}}, "must start with $"),
    ({"paths": {"$..email": "email"}}, "cannot read"),
    ({"paths": {"$.a": "emial"}}, "unknown or unusable strategy 'emial'"),
    ({"paths": {"$.a": "json"}}, "unknown or unusable strategy 'json'"),
    ({"paths": {"$.a": {"strategy": "hash", "length": 8}}}, "uniqueness floor"),
    ({"paths": {"$.a": {"strategy": "date_shift", "per_row_key": "id"}}}, "per_row_key"),
])
def test_json_params_problems(raw, needle):
    _, problems = parse_params("json", raw)
    assert any(needle in p for p in problems), problems


def test_json_paths_and_columns():
    from confiture_fast.copytext import parse_json_path

    assert parse_json_path('$.a[2][*]["b c"].*') == [("key", "a"), ("index", 2), ("any_index", None),
                                                      ("key", "b c"), ("any_key", None)]
    s = STRATEGIES["json"]
    params, problems = s.parse_params({"paths": {"$.email": "email", "$.phone": {"strategy": "partial"}}})
    assert not problems
    assert s.check_column(params, typed("j", "jsonb", "jsonb", "U")) is None
    assert s.check_column(params, typed("j", "json", "json", "U")) is None
    assert "jsonb" in s.check_column(params, TEXT)
    assert "arrays" in s.check_column(params, typed("j", "jsonb[]", "jsonb", "U", is_array=True))
