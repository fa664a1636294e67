"""Known-answer vectors for every keyed strategy: users join pseudonyms across databases and runs, so
an output change between versions must fail here. The key derivation (BLAKE2b, hashlib) and the PRF
(SipHash-2-4, written below from the paper) are recomputed independently of the code under test; the
compiled rewriter and the reference implementation must both give the pinned outputs."""

from __future__ import annotations

import datetime
import hashlib
import ipaddress
import struct
import uuid

import faker
import pytest

import anon_ref
from confiture_fast import copytext
from confiture_fast.strategies import FieldRule, Rewriter, derive_key, parse_params

SECRET = b"test-secret-0123456789abcdef"  # the secret tests/conftest.py gives every CLI run
SEED = "v1"
# fake_* pick from Faker's locale lists: another Faker version may change them, and with them the pseudonyms.
FAKER_VERSION = "40.63.0"

# (strategy, params, input, pinned output)
VECTORS = [
    ("email", {}, "alice@example.com", "user_ab0eee6c8c723b5b@example.com"),
    ("email", {"length": 32, "domain": "staging.test"}, "bob@corp.example",
     "user_e85c481ee9e7d8abb6f9e7ad18123505@staging.test"),
    ("hash", {}, "alice", "49f32608cd11b5a1"),
    ("hash", {"length": 32}, "Zoë", "49dc1efd416637106083e5bb36a7b0b2"),
    ("uuid", {}, "42", "1f476adf-7ec7-48ef-8205-ad814c3d5e8b"),
    ("phone", {}, "+33 6 12 34 56 78", "+1-555-7406"),
    ("name", {}, "Alice Martin", "User E011"),
    ("preserve_format", {}, "AB-1234-xy", "GH-2905-tt"),
    ("preserve_format", {"keep_prefix": 2, "keep_suffix": 2}, "FR7630006000011234567890189",
     "FR2194633615334413977611489"),
    ("date_shift", {}, "2024-02-29", "2024-03-30"),
    ("date_shift", {"days": 3650}, "1999-12-31 23:59:59+01", "1999-12-23 23:59:59+01"),
    ("noise", {"relative": 0.1}, "1234.56", "1353.66"),
    ("noise", {"absolute": 5}, "100", "99"),
    ("ip", {}, "192.168.10.20", "192.168.10.232"),
    ("ip", {}, "2001:db8::1", "2001:db8::e778:9a95:5991:e06d"),
    ("partial", {}, "4111111111111111", "************1111"),
]
FAKE_VECTORS = [
    ("fake_name", {}, "Alice", "Christine Mcknight"),
    ("fake_first_name", {}, "Alice", "Christine"),
    ("fake_last_name", {"locale": "de_DE"}, "Alice", "Drub"),
    ("fake_email", {}, "alice@example.com", "terrance.owens.ab0eee6c8c723b5b@example.com"),
    ("fake_address", {}, "1 rue de Rivoli", "1800 Melendez Springs, Salashaven"),
    ("fake_company", {"locale": "fr_FR"}, "ACME", "Monnier S.A.S."),
]


# -- SipHash-2-4, from Aumasson & Bernstein, "SipHash: a fast short-input PRF" (2012), with the
# 128-bit output variant of the reference implementation ------------------------------------------
M64 = 0xFFFFFFFFFFFFFFFF


def _rotl(x, b):
    return ((x << b) | (x >> (64 - b))) & M64


def siphash_2_4(key: bytes, msg: bytes, out_bytes: int = 16) -> bytes:
    k0, k1 = struct.unpack("<QQ", key)
    v0, v1, v2, v3 = (k0 ^ 0x736F6D6570736575, k1 ^ 0x646F72616E646F6D,
                      k0 ^ 0x6C7967656E657261, k1 ^ 0x7465646279746573)
    if out_bytes == 16:
        v1 ^= 0xEE

    def rounds(n):
        nonlocal v0, v1, v2, v3
        for _ in range(n):
            v0 = (v0 + v1) & M64; v1 = _rotl(v1, 13) ^ v0; v0 = _rotl(v0, 32)  # noqa: E702
            v2 = (v2 + v3) & M64; v3 = _rotl(v3, 16) ^ v2  # noqa: E702
            v0 = (v0 + v3) & M64; v3 = _rotl(v3, 21) ^ v0  # noqa: E702
            v2 = (v2 + v1) & M64; v1 = _rotl(v1, 17) ^ v2; v2 = _rotl(v2, 32)  # noqa: E702

    padded = msg + b"\0" * (7 - len(msg) % 8) + bytes([len(msg) % 256])
    for (m,) in struct.iter_unpack("<Q", padded):
        v3 ^= m
        rounds(2)
        v0 ^= m
    v2 ^= 0xEE if out_bytes == 16 else 0xFF
    rounds(4)
    out = struct.pack("<Q", v0 ^ v1 ^ v2 ^ v3)
    if out_bytes == 16:
        v1 ^= 0xDD
        rounds(4)
        out += struct.pack("<Q", v0 ^ v1 ^ v2 ^ v3)
    return out


def test_independent_siphash_matches_the_papers_vectors():
    key, msg = bytes(range(16)), bytes(range(15))
    assert siphash_2_4(key, msg, 8) == bytes.fromhex("e545be4961ca29a1")  # the paper, appendix A
    assert siphash_2_4(key, b"", 16) == bytes.fromhex("a3817f04ba25a8e66df67214c7550293")  # vectors.h
    assert siphash_2_4(key, msg, 16) == bytes.fromhex("5493e99933b0a8117e08ec0f97cfc3d9")


def independent_key(secret: bytes, seed: str) -> bytes:
    return hashlib.blake2b(seed.encode(), key=secret, digest_size=16, person=b"confiture-fast/k").digest()


def test_key_derivation_is_keyed_blake2b_of_the_seed():
    assert derive_key(SECRET, SEED) == independent_key(SECRET, SEED)
    assert independent_key(SECRET, SEED).hex() == "2cc6dc7b7b6d133bfe541f2018c7df80"
    long_secret = b"s" * 100  # longer than BLAKE2b's 64-byte key: hashed down first
    short = hashlib.blake2b(long_secret, digest_size=64, person=b"confiture-fast/s").digest()
    assert derive_key(long_secret, 7) == independent_key(short, "7")


def rule(strategy, raw) -> FieldRule:
    params, problems = parse_params(strategy, raw)
    assert not problems
    return FieldRule(index=0, column="c", strategy=strategy, key=derive_key(SECRET, SEED), params=params)


def through(rewriter_type, strategy, raw, value: str) -> str:
    """The value as one COPY text row through a rewriter, back to text."""
    rw = rewriter_type("t", ["c"], [rule(strategy, raw)])
    out = rw.rewrite(copytext.escape(value.encode()) + b"\n")
    rw.finish()
    assert out.endswith(b"\n")
    return copytext.unescape(out[:-1]).decode()


@pytest.mark.parametrize("rewriter_type", [Rewriter, anon_ref.ReferenceRewriter], ids=["compiled", "reference"])
@pytest.mark.parametrize("strategy,raw,value,expected", VECTORS, ids=[f"{v[0]}-{i}" for i, v in enumerate(VECTORS)])
def test_pinned_pseudonyms(rewriter_type, strategy, raw, value, expected):
    assert through(rewriter_type, strategy, raw, value) == expected


@pytest.mark.parametrize("rewriter_type", [Rewriter, anon_ref.ReferenceRewriter], ids=["compiled", "reference"])
@pytest.mark.parametrize("strategy,raw,value,expected", FAKE_VECTORS, ids=[v[0] for v in FAKE_VECTORS])
def test_pinned_fake_values_for_the_pinned_faker(rewriter_type, strategy, raw, value, expected):
    assert faker.VERSION == FAKER_VERSION, (
        f"Faker {faker.VERSION} may change every fake_* pseudonym: pin Faker=={FAKER_VERSION} or say so in the "
        "release notes and update these vectors")
    assert through(rewriter_type, strategy, raw, value) == expected


# -- the pinned outputs recomputed from the independent PRF, for the strategies whose formula is short --
def digest(value: str) -> bytes:
    return siphash_2_4(independent_key(SECRET, SEED), value.encode())


def u64(b: bytes) -> int:
    return int.from_bytes(b[:8], "little")


def test_simple_strategies_follow_from_the_independent_prf():
    d = digest("alice@example.com")
    assert "user_ab0eee6c8c723b5b@example.com" == f"user_{d.hex()[:16]}@example.com"
    assert "terrance.owens.ab0eee6c8c723b5b@example.com".split(".")[2].startswith(d.hex()[:16])
    assert "49f32608cd11b5a1" == digest("alice").hex()[:16]
    assert "49dc1efd416637106083e5bb36a7b0b2" == digest("Zoë").hex()
    assert "+1-555-7406" == f"+1-555-{u64(digest('+33 6 12 34 56 78')) % 10000:04d}"
    assert "User E011" == f"User {digest('Alice Martin').hex()[:4].upper()}"
    b = bytearray(digest("42"))
    b[6] = (b[6] & 0x0F) | 0x40
    b[8] = (b[8] & 0x3F) | 0x80
    assert "1f476adf-7ec7-48ef-8205-ad814c3d5e8b" == str(uuid.UUID(bytes=bytes(b)))


def test_date_shift_and_ip_follow_from_the_independent_prf():
    def shift(value, days):
        s = u64(digest(value)) % (2 * days)
        return s - days if s < days else s - days + 1  # never 0

    assert datetime.date(2024, 2, 29) + datetime.timedelta(days=shift("2024-02-29", 30)) == datetime.date(2024, 3, 30)
    assert (datetime.date(1999, 12, 31) + datetime.timedelta(days=shift("1999-12-31 23:59:59+01", 3650))
            == datetime.date(1999, 12, 23))
    host = int.from_bytes(digest("192.168.10.20"), "big") & 0xFF  # a /24 kept by default: 8 bits replaced
    assert str(ipaddress.IPv4Address((192 << 24) | (168 << 16) | (10 << 8) | host)) == "192.168.10.232"
    low = int.from_bytes(digest("2001:db8::1"), "big") & ((1 << 64) - 1)  # a /64 kept by default
    assert str(ipaddress.IPv6Address((0x20010DB8 << 96) | low)) == "2001:db8::e778:9a95:5991:e06d"


@pytest.mark.parametrize("rewriter_type", [Rewriter, anon_ref.ReferenceRewriter], ids=["compiled", "reference"])
def test_pinned_date_shift_keyed_by_another_column(rewriter_type):
    """per_row_key: the shift comes from the row's key column, so one patient's dates move together."""
    params, problems = parse_params("date_shift", {"per_row_key": "patient"})
    assert not problems
    r = FieldRule(index=1, column="d", strategy="date_shift", key=derive_key(SECRET, SEED), params=params,
                  key_index=0)
    rw = rewriter_type("t", ["patient", "d"], [r])
    out = rw.rewrite(b"P-17\t2024-02-29\nP-17\t2023-01-01\n")
    rw.finish()
    assert out == b"P-17\t2024-03-16\nP-17\t2023-01-17\n"
    s = u64(digest("P-17")) % 60  # the independent PRF of the key column's value, days = 30
    assert s - 30 + (s >= 30) == 16
