"""Anonymization strategies: their parameters, their properties, and whether their output fits a column.

Pure Python and database-free: config validation and the planner import this module, the rewriters
(`_anon` compiled, `anon_ref` reference) read the `FieldRule`s it defines. Every strategy maps an
empty string to an empty string and NULL to NULL; keyed strategies derive their output from a PRF
(SipHash-2-4, 128-bit output) of the unescaped input bytes under a key from `derive_key`.
"""

from __future__ import annotations

import hashlib
import re
from typing import Union

import msgspec

from confiture_fast.catalog import Column

# Hex digits below which `email`/`hash` pseudonyms stop being unique at 10^8 rows (64 bits).
UNIQUE_HEX_FLOOR = 16
MAX_HEX = 32  # the PRF gives 128 bits

_KEY_PERSON = b"confiture-fast/k"  # BLAKE2b personalization: keys are used for nothing else


class RewriteError(ValueError):
    """A COPY row the rewriter cannot handle; names the table, 1-based row, column and problem."""

    def __init__(self, table: str, row: int, column: str, problem: str):
        super().__init__(f"table {table!r}, row {row}, column {column!r}: {problem}")
        self.table = table
        self.row = row
        self.column = column
        self.problem = problem


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


# -- parameters ---------------------------------------------------------------------------------
# One frozen Struct per strategy, tagged with the strategy name so that a FieldRule survives a
# msgspec round trip (coordinator -> worker) with the right params type.
_STRUCT = dict(frozen=True, forbid_unknown_fields=True, tag_field="strategy")


class Params(msgspec.Struct, **_STRUCT):
    # Accepted by every strategy: the planner refuses non-unique strategies on UNIQUE/PK columns
    # unless this is set, and width floors are lifted by it.
    allow_duplicates: bool = False


class EmailParams(Params, tag="email"):
    length: int = 16
    domain: str = "example.com"


class PhoneParams(Params, tag="phone"):
    pass


class NameParams(Params, tag="name"):
    pass


class RedactParams(Params, tag="redact"):
    pass


class HashParams(Params, tag="hash"):
    length: int = 16


AnyParams = Union[EmailParams, PhoneParams, NameParams, RedactParams, HashParams]


class FieldRule(msgspec.Struct, frozen=True):
    """One anonymized column of one table, as the rewriters consume it."""

    index: int  # position of the column in the COPY column list
    column: str
    strategy: str
    key: bytes  # 16 bytes from derive_key (any 16 bytes for unkeyed strategies)
    params: AnyParams
    is_array: bool = False


# -- strategies ---------------------------------------------------------------------------------
_DOMAIN_RE = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
                        r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$")


def _check_hex_length(p, problems: list[str]) -> None:
    if not 1 <= p.length <= MAX_HEX:
        problems.append(f"length must be between 1 and {MAX_HEX} hex digits, got {p.length}")
    elif p.length < UNIQUE_HEX_FLOOR and not p.allow_duplicates:
        problems.append(f"length {p.length} is below the uniqueness floor of {UNIQUE_HEX_FLOOR} hex digits "
                        f"(collisions likely at 10^5 rows); raise it or set allow_duplicates: true")


class Strategy:
    """What the planner and the validator need to know about one strategy."""

    name: str = ""
    params_type: type[Params] = Params
    keyed: bool = True  # needs the secret
    unique: bool = False  # keeps distinct inputs distinct (at its default width)
    categories: frozenset[str] = frozenset("S")  # pg_type.typcategory values the output can go into

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
        if column.is_array:
            return f"{self.name} on {column.name} ({column.type}): array columns are not supported yet"
        if column.category not in self.categories or column.base_type in ("uuid", "json", "jsonb"):
            return (f"{self.name} writes text, which column {column.name} of type {column.type} cannot hold"
                    + ("; use the uuid strategy" if column.base_type == "uuid" else ""))
        longest = self.max_chars(params)
        if column.max_length is not None and longest is not None and longest > column.max_length:
            return (f"{self.name} writes up to {longest} characters but column {column.name} is "
                    f"{column.type}")
        return None


class EmailStrategy(Strategy):
    name, params_type, unique = "email", EmailParams, True

    def validate(self, p: EmailParams, problems):
        _check_hex_length(p, problems)
        if not _DOMAIN_RE.match(p.domain):
            problems.append(f"domain {p.domain!r} is not a plain DNS name (letters, digits, '-', '.')")

    def is_unique(self, p: EmailParams) -> bool:
        return p.length >= UNIQUE_HEX_FLOOR

    def max_chars(self, p: EmailParams) -> int:
        return len("user_@") + p.length + len(p.domain)


class PhoneStrategy(Strategy):
    name, params_type = "phone", PhoneParams

    def max_chars(self, p) -> int:
        return len("+1-555-0000")


class NameStrategy(Strategy):
    name, params_type = "name", NameParams

    def max_chars(self, p) -> int:
        return len("User 0000")


class RedactStrategy(Strategy):
    name, params_type, keyed = "redact", RedactParams, False

    def max_chars(self, p) -> int:
        return len("[REDACTED]")


class HashStrategy(Strategy):
    name, params_type, unique = "hash", HashParams, True

    def validate(self, p: HashParams, problems):
        _check_hex_length(p, problems)

    def is_unique(self, p: HashParams) -> bool:
        return p.length >= UNIQUE_HEX_FLOOR

    def max_chars(self, p: HashParams) -> int:
        return p.length


STRATEGIES: dict[str, Strategy] = {s.name: s for s in (
    EmailStrategy(), PhoneStrategy(), NameStrategy(), RedactStrategy(), HashStrategy(),
)}


def parse_params(name: str, raw: dict | None) -> tuple[Params | None, list[str]]:
    """Params Struct for strategy `name` from raw config values, plus the problems found."""
    strategy = STRATEGIES.get(name)
    if strategy is None:
        return None, [f"unknown strategy {name!r} (known: {', '.join(sorted(STRATEGIES))})"]
    return strategy.parse_params(raw)
