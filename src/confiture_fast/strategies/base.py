"""What every strategy shares: the parameter base, the Strategy contract, the PRF and the checks.

Pure Python and database-free. A strategy module subclasses `Strategy` and fills in every part the
registry (`confiture_fast.strategies`) asks for; the registry refuses a strategy that lacks one.
Every strategy maps an empty string to an empty string and NULL to NULL; keyed strategies derive
their output from a PRF (SipHash-2-4, 128-bit output) of the unescaped input bytes under a key from
`derive_key`.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any, ClassVar

import msgspec

from confiture_fast.catalog import Column

# Hex digits below which `email`/`hash` pseudonyms stop being unique at 10^8 rows (64 bits).
UNIQUE_HEX_FLOOR = 16
MAX_HEX = 32  # the PRF gives 128 bits

_KEY_PERSON = b"confiture-fast/k"  # BLAKE2b personalization: keys are used for nothing else


def derive_key(secret: bytes, seed: str | int) -> bytes:
    """16-byte PRF key for one rule: keyed BLAKE2b of the seed under the secret.

    The secret stays outside the config, so a leaked config (seed included) does not let anyone
    recompute pseudonyms from candidate values. BLAKE2b keys are at most 64 bytes: longer secrets are
    hashed down first.
    """
    if not secret:
        raise ValueError("the anonymization secret is empty")
    if len(secret) > 64:
        secret = hashlib.blake2b(secret, digest_size=64, person=b"confiture-fast/s").digest()
    return hashlib.blake2b(str(seed).encode(), key=secret, digest_size=16, person=_KEY_PERSON).digest()


# -- SipHash-2-4 (the reference PRF; the compiled one is _siphash.h) ----------------------------
_MASK = (1 << 64) - 1


def _rotl(x: int, b: int) -> int:
    return ((x << b) | (x >> (64 - b))) & _MASK


def _sipround(v: list[int]) -> None:
    v0, v1, v2, v3 = v
    v0 = (v0 + v1) & _MASK
    v1 = _rotl(v1, 13) ^ v0
    v0 = _rotl(v0, 32)
    v2 = (v2 + v3) & _MASK
    v3 = _rotl(v3, 16) ^ v2
    v0 = (v0 + v3) & _MASK
    v3 = _rotl(v3, 21) ^ v0
    v2 = (v2 + v1) & _MASK
    v1 = _rotl(v1, 17) ^ v2
    v2 = _rotl(v2, 32)
    v[:] = [v0, v1, v2, v3]


def siphash24(key: bytes, data: bytes, outlen: int = 16) -> bytes:
    """SipHash-2-4 with 8- or 16-byte output, byte order as in the reference implementation."""
    assert len(key) == 16 and outlen in (8, 16)
    k0 = int.from_bytes(key[:8], "little")
    k1 = int.from_bytes(key[8:], "little")
    v = [k0 ^ 0x736F6D6570736575, k1 ^ 0x646F72616E646F6D, k0 ^ 0x6C7967656E657261, k1 ^ 0x7465646279746573]
    if outlen == 16:
        v[1] ^= 0xEE
    full = len(data) - len(data) % 8
    blocks = [int.from_bytes(data[i:i + 8], "little") for i in range(0, full, 8)]
    blocks.append(int.from_bytes(data[full:], "little") | ((len(data) & 0xFF) << 56))
    for m in blocks:
        v[3] ^= m
        _sipround(v)
        _sipround(v)
        v[0] ^= m
    v[2] ^= 0xEE if outlen == 16 else 0xFF
    for _ in range(4):
        _sipround(v)
    out = (v[0] ^ v[1] ^ v[2] ^ v[3]).to_bytes(8, "little")
    if outlen == 16:
        v[1] ^= 0xDD
        for _ in range(4):
            _sipround(v)
        out += (v[0] ^ v[1] ^ v[2] ^ v[3]).to_bytes(8, "little")
    return out


# -- parameters ---------------------------------------------------------------------------------
# One frozen Struct per strategy, tagged with the strategy name so that a FieldRule survives a
# msgspec round trip (coordinator -> worker) with the right params type.
_STRUCT = dict(frozen=True, forbid_unknown_fields=True, tag_field="strategy", kw_only=True)


class Params(msgspec.Struct, **_STRUCT):
    # Accepted by every strategy: the planner refuses non-unique strategies on UNIQUE/PK columns
    # unless this is set, and width floors are lifted by it.
    allow_duplicates: bool = False


# -- shared pieces -------------------------------------------------------------------------------
_DOMAIN_RE = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
                        r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$")


def u64(b: bytes) -> int:
    return int.from_bytes(b[:8], "little")


def keystream(digest: bytes):
    """Endless keyed bytes: SipHash-128 of a block counter under the value's digest as the key."""
    block = 0
    while True:
        yield from siphash24(digest, block.to_bytes(8, "little"))
        block += 1


def check_domain(domain: str, problems: list[str]) -> None:
    if not _DOMAIN_RE.match(domain):
        problems.append(f"domain {domain!r} is not a plain DNS name (letters, digits, '-', '.')")


def check_hex_length(p, problems: list[str]) -> None:
    if not 1 <= p.length <= MAX_HEX:
        problems.append(f"length must be between 1 and {MAX_HEX} hex digits, got {p.length}")
    elif p.length < UNIQUE_HEX_FLOOR and not p.allow_duplicates:
        problems.append(f"length {p.length} is below the uniqueness floor of {UNIQUE_HEX_FLOOR} hex digits "
                        f"(collisions likely at 10^5 rows); raise it or set allow_duplicates: true")


class Strategy:
    """Everything about one strategy; the registry derives the rest of the program from these parts.

    A subclass must give every part listed in `REQUIRED` (the registry refuses it otherwise):
    `name` (the config word, and the name its compiled function registers under in _anon's dispatch
    table, from its own file in _compiled/), `params_type` (a Params Struct tagged with the name),
    `summary` and `output` (the docs/strategies.md table), `equal_by_design` (why verify must not
    call an output equal to a source value a leak, or None when it is one), `scan_ranks` (PII kind
    -> rank among scan's suggestions, 0 first), `reference` (the executable definition of the
    output, which the compiled function must match byte for byte) and `output_format` (the shape
    verify checks, or None).
    """

    REQUIRED: ClassVar[tuple[str, ...]] = ("name", "params_type", "summary", "output", "equal_by_design",
                                           "scan_ranks", "reference", "output_format")

    keyed: bool = True  # needs the secret
    unique: bool = False  # keeps distinct inputs distinct (at its default width)
    categories: frozenset[str] = frozenset("S")  # pg_type.typcategory values the output can go into
    same_row_by_design: bool = False  # verify: a row may keep its own value (needs equal_by_design)
    scan_params: ClassVar[dict[str, Any]] = {}  # params scan writes with a suggestion (no defaults)
    scan_unique_rank: int | None = None  # rank among the fallbacks scan tries on a unique column
    scan_fallback: bool = False  # scan suggests it for a kind no strategy ranks
    scan_whole_value: bool = False  # scan suggests it where no strategy rewrites inside the value
    identity: bool = False  # writes the input back: reviewed, not anonymized; copied through, nothing compiled
    writes_null: bool = False  # writes NULL for every value, arrays included
    documents: bool = False  # applies other strategies inside json/jsonb documents
    numeric_out: bool = False  # its output inside JSON is a number, not a string

    def missing(self) -> list[str]:
        """The parts of `REQUIRED` this strategy does not give."""
        out = [part for part in self.REQUIRED if not hasattr(self, part)]
        for method in ("reference", "output_format"):
            if getattr(type(self), method, None) is getattr(Strategy, method):
                out.append(method)
        return out

    def reference(self, params, value: bytes, digest: bytes | None) -> bytes | None:
        """The output for one non-empty, non-NULL unescaped value (None means NULL); `digest` is
        the PRF of the value (or of the row's key column) for keyed strategies, else None.
        Raises ValueError when the value is not of the form the strategy reads."""
        raise NotImplementedError(self.name)

    def output_format(self, params) -> re.Pattern[str] | None:
        """The shape every non-empty output has as COPY text, or None when it has no fixed shape."""
        raise NotImplementedError(self.name)

    def parse_params(self, raw: dict | None) -> tuple[Params | None, list[str]]:
        """Validates a rule's raw params (from YAML): unknown names, wrong types, out-of-range values."""
        try:
            params = msgspec.convert(dict(raw or {}), self.params_type)
        except msgspec.ValidationError as e:
            return None, [f"{self.name}: {e}"]
        problems: list[str] = []
        self.validate(params, problems)
        return params, [f"{self.name}: {p}" for p in problems]

    def validate(self, params, problems: list[str]) -> None:
        """Range checks beyond the types; appends problem texts."""

    def is_unique(self, params) -> bool:
        return self.unique

    def max_chars(self, params) -> int | None:
        """Longest output in characters, or None when it follows the input."""
        return None

    def check_column(self, params, column: Column) -> str | None:
        """A problem text when this strategy's output cannot be stored in `column`, else None."""
        # On array columns, category/base_type/max_length describe the elements, which the
        # strategy rewrites one by one.
        if column.category not in self.categories or column.base_type in ("uuid", "json", "jsonb"):
            return (f"{self.name} writes text, which column {column.name} of type {column.described} cannot hold"
                    + ("; use the uuid strategy" if column.base_type == "uuid" else ""))
        longest = self.max_chars(params)
        if column.max_length is not None and longest is not None and longest > column.max_length:
            return (f"{self.name} writes up to {longest} characters but column {column.name} is "
                    f"{column.described}")
        return None


class TypedStrategy(Strategy):
    """A strategy that reads and writes the text form of particular types."""

    base_types: tuple[str, ...] = ()

    def check_column(self, p, column: Column) -> str | None:
        if column.base_type not in self.base_types:
            return (f"{self.name} works on {', '.join(self.base_types)} columns; {column.name} is "
                    f"{column.described}")
        return None


