"""Anonymization strategies: their parameters, their properties, and whether their output fits a column.

Pure Python and database-free: config validation and the planner import this module, the rewriters
(`_anon` compiled, `anon_ref` reference) read the `FieldRule`s it defines. Every strategy maps an
empty string to an empty string and NULL to NULL; keyed strategies derive their output from a PRF
(SipHash-2-4, 128-bit output) of the unescaped input bytes under a key from `derive_key`.
"""

from __future__ import annotations

import functools
import hashlib
import re
import unicodedata
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
_STRUCT = dict(frozen=True, forbid_unknown_fields=True, tag_field="strategy", kw_only=True)


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


class NullParams(Params, tag="null"):
    pass


class KeepParams(Params, tag="keep"):
    pass


class ConstantParams(Params, tag="constant"):
    value: str


class PartialParams(Params, tag="partial"):
    keep_first: int = 0
    keep_last: int = 4
    mask_char: str = "*"


class PreserveFormatParams(Params, tag="preserve_format"):
    keep_prefix: int = 0
    keep_suffix: int = 0


class UuidParams(Params, tag="uuid"):
    pass


class DateShiftParams(Params, tag="date_shift"):
    days: int = 30
    per_row_key: str | None = None  # a column of the same row whose value picks the shift


class NoiseParams(Params, tag="noise"):
    relative: float | None = None  # at most this fraction of |value|, e.g. 0.1
    absolute: float | None = None  # at most this much


class IpParams(Params, tag="ip"):
    prefix: int = 24  # IPv4 network bits kept
    prefix_v6: int = 64


class FakeNameParams(Params, tag="fake_name"):
    locale: str = "en_US"


class FakeFirstNameParams(Params, tag="fake_first_name"):
    locale: str = "en_US"


class FakeLastNameParams(Params, tag="fake_last_name"):
    locale: str = "en_US"


class FakeAddressParams(Params, tag="fake_address"):
    locale: str = "en_US"


class FakeCompanyParams(Params, tag="fake_company"):
    locale: str = "en_US"


class FakeEmailParams(Params, tag="fake_email"):
    locale: str = "en_US"
    length: int = 16
    domain: str = "example.com"


class JsonParams(Params, tag="json"):
    # JSON path -> strategy name, or {"strategy": name, <its params>}
    paths: dict[str, Union[str, dict]]


AnyParams = Union[JsonParams, EmailParams, PhoneParams, NameParams, RedactParams, HashParams, NullParams, KeepParams,
                  ConstantParams, PartialParams, PreserveFormatParams, UuidParams, DateShiftParams,
                  NoiseParams, IpParams, FakeNameParams, FakeFirstNameParams, FakeLastNameParams,
                  FakeAddressParams, FakeCompanyParams, FakeEmailParams]


class FieldRule(msgspec.Struct, frozen=True):
    """One anonymized column of one table, as the rewriters consume it."""

    index: int  # position of the column in the COPY column list
    column: str
    strategy: str
    key: bytes  # 16 bytes from derive_key (any 16 bytes for unkeyed strategies)
    params: AnyParams
    is_array: bool = False  # the column is an array: the strategy rewrites each element
    key_index: int = -1  # date_shift per_row_key: position of the column whose value keys the PRF


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


class NullStrategy(Strategy):
    name, params_type, keyed = "null", NullParams, False

    def check_column(self, params, column: Column) -> str | None:
        if column.not_null:
            return f"null cannot go into {column.name}, which is NOT NULL"
        return None


class KeepStrategy(Strategy):
    """Identity: says the column was reviewed and holds no PII."""

    name, params_type, keyed, unique = "keep", KeepParams, False, True

    def check_column(self, params, column: Column) -> str | None:
        return None


_INT_RE = re.compile(r"^[+-]?[0-9]+$")
_NUMERIC_RE = re.compile(r"^[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?$|^(NaN|[+-]?Infinity)$")
_BOOL_VALUES = {"t", "f", "true", "false", "yes", "no", "on", "off", "1", "0", "y", "n"}


class ConstantStrategy(Strategy):
    name, params_type, keyed = "constant", ConstantParams, False

    def validate(self, p: ConstantParams, problems):
        if "\0" in p.value:
            problems.append("value cannot contain a NUL character")

    def check_column(self, p: ConstantParams, column: Column) -> str | None:
        ok = {
            "S": lambda v: column.max_length is None or len(v) <= column.max_length,
            "N": lambda v: bool((_INT_RE if column.base_type in ("int2", "int4", "int8") else _NUMERIC_RE)
                                .match(v.strip())),
            "B": lambda v: v.strip().lower() in _BOOL_VALUES,
        }.get(column.category)
        if ok is None or column.base_type in ("uuid", "json", "jsonb"):
            return f"constant is only checked for text, number and boolean columns, not {column.described}"
        if not ok(p.value):
            return f"constant {p.value!r} is not a valid {column.described} value for {column.name}"
        return None


class PartialStrategy(Strategy):
    name, params_type, keyed = "partial", PartialParams, False

    def validate(self, p: PartialParams, problems):
        if p.keep_first < 0 or p.keep_last < 0:
            problems.append("keep_first and keep_last must be >= 0")
        if len(p.mask_char) != 1 or p.mask_char == "\0":
            problems.append(f"mask_char must be one character, got {p.mask_char!r}")


class PreserveFormatStrategy(Strategy):
    name, params_type = "preserve_format", PreserveFormatParams

    def validate(self, p: PreserveFormatParams, problems):
        if p.keep_prefix < 0 or p.keep_suffix < 0:
            problems.append("keep_prefix and keep_suffix must be >= 0")


class UuidStrategy(Strategy):
    name, params_type, unique = "uuid", UuidParams, True

    def max_chars(self, p) -> int:
        return 36

    def check_column(self, p, column: Column) -> str | None:
        if column.base_type == "uuid":
            return None
        return super().check_column(p, column)


class TypedStrategy(Strategy):
    """A strategy that reads and writes the text form of particular types."""

    base_types: tuple[str, ...] = ()

    def check_column(self, p, column: Column) -> str | None:
        if column.base_type not in self.base_types:
            return (f"{self.name} works on {', '.join(self.base_types)} columns; {column.name} is "
                    f"{column.described}")
        return None


class DateShiftStrategy(TypedStrategy):
    name, params_type = "date_shift", DateShiftParams
    base_types = ("date", "timestamp", "timestamptz")

    def validate(self, p: DateShiftParams, problems):
        if not 1 <= p.days <= 3_650_000:
            problems.append(f"days must be between 1 and 3650000, got {p.days}")


class NoiseStrategy(TypedStrategy):
    name, params_type = "noise", NoiseParams
    base_types = ("int2", "int4", "int8", "numeric")

    def validate(self, p: NoiseParams, problems):
        if (p.relative is None) == (p.absolute is None):
            problems.append("give exactly one of relative or absolute")
        elif p.relative is not None and not 0 < p.relative <= 1:
            problems.append(f"relative must be in (0, 1], got {p.relative}")
        elif p.absolute is not None and not 0 < p.absolute < 1e15:
            problems.append(f"absolute must be positive and below 1e15, got {p.absolute}")


class IpStrategy(TypedStrategy):
    name, params_type = "ip", IpParams
    base_types = ("inet", "cidr")

    def validate(self, p: IpParams, problems):
        if not 0 <= p.prefix <= 32:
            problems.append(f"prefix must be between 0 and 32, got {p.prefix}")
        if not 0 <= p.prefix_v6 <= 128:
            problems.append(f"prefix_v6 must be between 0 and 128, got {p.prefix_v6}")


# -- locale data for the fake_* strategies -------------------------------------------------------
FAKE_POOL_DRAWS = 1000  # generated values per pool (streets, cities, companies), before dedup


def _check_locale(p, problems):
    import faker.config

    if p.locale not in faker.config.AVAILABLE_LOCALES:
        problems.append(f"unknown locale {p.locale!r} (Faker knows e.g. en_US, fr_FR, de_DE, ja_JP)")


def _ascii_word(s: str) -> str:
    """Lowercase ASCII letters of s (accents dropped), for the local part of fake emails."""
    plain = unicodedata.normalize("NFKD", s).encode("ascii", "ignore").decode().lower()
    return "".join(ch for ch in plain if ch.isalnum())


@functools.lru_cache(maxsize=None)
def fake_pools(kind: str, locale: str) -> tuple[tuple[str, ...], ...]:
    """The value lists a fake_* strategy picks from, built once per process from Faker's providers.

    Names come straight from the locale's provider lists; streets, cities and companies are drawn
    from a Faker instance with a fixed seed. Sorted and deduplicated, so the same Faker version
    gives the same pools (and pseudonyms) everywhere.
    """
    from faker import Faker

    fake = Faker(locale)
    fake.seed_instance(20240601)

    def attr(name):
        for provider in fake.get_providers():
            if hasattr(provider, name):
                return sorted(set(getattr(provider, name)))
        raise ValueError(f"Faker locale {locale} has no {name}")

    def drawn(method):
        return sorted({getattr(fake, method)() for _ in range(FAKE_POOL_DRAWS)})

    if kind in ("fake_name", "fake_first_name", "fake_last_name"):
        return tuple(attr("first_names")), tuple(attr("last_names"))
    if kind == "fake_email":
        firsts = sorted({w for w in map(_ascii_word, attr("first_names")) if w} or {"user"})
        lasts = sorted({w for w in map(_ascii_word, attr("last_names")) if w} or {"user"})
        return tuple(firsts), tuple(lasts)
    if kind == "fake_address":
        return tuple(drawn("street_name")), tuple(drawn("city"))
    if kind == "fake_company":
        return (tuple(drawn("company")),)
    raise ValueError(f"no pools for {kind}")


class FakeStrategy(Strategy):
    """Realistic values picked from locale pools by the keyed PRF."""

    def validate(self, p, problems):
        _check_locale(p, problems)

    def max_chars(self, p) -> int:
        pools = fake_pools(self.name, p.locale)
        longest = [max(map(len, pool)) for pool in pools]
        return {
            "fake_name": lambda: longest[0] + 1 + longest[1],
            "fake_first_name": lambda: longest[0],
            "fake_last_name": lambda: longest[1],
            "fake_address": lambda: 4 + 1 + longest[0] + 2 + longest[1],
            "fake_company": lambda: longest[0],
        }[self.name]()


class FakeEmailStrategy(FakeStrategy):
    """first.last.<hex>@domain: the hex part keeps distinct inputs distinct."""

    name, params_type, unique = "fake_email", FakeEmailParams, True

    def validate(self, p: FakeEmailParams, problems):
        _check_locale(p, problems)
        _check_hex_length(p, problems)
        if not _DOMAIN_RE.match(p.domain):
            problems.append(f"domain {p.domain!r} is not a plain DNS name (letters, digits, '-', '.')")

    def is_unique(self, p: FakeEmailParams) -> bool:
        return p.length >= UNIQUE_HEX_FLOOR

    def max_chars(self, p: FakeEmailParams) -> int:
        firsts, lasts = fake_pools(self.name, p.locale)
        return max(map(len, firsts)) + 1 + max(map(len, lasts)) + 1 + p.length + 1 + len(p.domain)


_PATH_STEP = re.compile(r"""\.([A-Za-z_][A-Za-z0-9_$-]*|\*)|\[(\*|[0-9]+|"(?:[^"\\]|\\.)*")\]""")


def parse_json_path(path: str) -> list[tuple[str, str | int | None]]:
    """`$.a.b[0][*]["odd key"].*` -> [("key", "a"), ("key", "b"), ("index", 0), ("any_index", None),
    ("key", "odd key"), ("any_key", None)]; ValueError when it is not that form."""
    import json

    if not path.startswith("$"):
        raise ValueError(f"JSON path {path!r} must start with $")
    steps: list[tuple[str, str | int | None]] = []
    pos = 1
    while pos < len(path):
        m = _PATH_STEP.match(path, pos)
        if not m:
            raise ValueError(f"JSON path {path!r}: cannot read {path[pos:]!r} "
                             f"(use .name, [\"name\"], [N], [*] or .*)")
        name, bracket = m.groups()
        if name == "*":
            steps.append(("any_key", None))
        elif name is not None:
            steps.append(("key", name))
        elif bracket == "*":
            steps.append(("any_index", None))
        elif bracket.startswith('"'):
            steps.append(("key", json.loads(bracket)))
        else:
            steps.append(("index", int(bracket)))
        pos = m.end()
    return steps


def json_rules(p: "JsonParams") -> list[tuple[list, str, Params]]:
    """The json strategy's (path steps, strategy name, params) in the order given; ValueError on
    the first problem."""
    out = []
    for path, spec in p.paths.items():
        steps = parse_json_path(path)
        raw = {"strategy": spec} if isinstance(spec, str) else dict(spec)
        name = raw.pop("strategy", None)
        if not isinstance(name, str) or name not in STRATEGIES or name == "json":
            raise ValueError(f"{path}: unknown or unusable strategy {name!r}")
        params, problems = STRATEGIES[name].parse_params(raw)
        if problems:
            raise ValueError(f"{path}: {'; '.join(problems)}")
        if getattr(params, "per_row_key", None):
            raise ValueError(f"{path}: per_row_key is not available inside json")
        out.append((steps, name, params))
    return out


class JsonStrategy(Strategy):
    """Applies other strategies at paths inside json/jsonb values; the rest stays byte-identical."""

    name, params_type = "json", JsonParams
    categories = frozenset("U")

    def validate(self, p: JsonParams, problems):
        if not p.paths:
            problems.append("paths is empty")
        try:
            json_rules(p)
        except ValueError as e:
            problems.append(str(e))

    def check_column(self, p, column: Column) -> str | None:
        if column.is_array:
            return f"json on {column.name} ({column.described}): arrays of json are not supported"
        if column.base_type not in ("json", "jsonb"):
            return f"json works on json and jsonb columns; {column.name} is {column.described}"
        return None


def _fake(name: str, params_type) -> FakeStrategy:
    strategy = FakeStrategy()
    strategy.name, strategy.params_type = name, params_type
    return strategy


STRATEGIES: dict[str, Strategy] = {s.name: s for s in (
    EmailStrategy(), PhoneStrategy(), NameStrategy(), RedactStrategy(), HashStrategy(),
    NullStrategy(), KeepStrategy(), ConstantStrategy(), PartialStrategy(), PreserveFormatStrategy(),
    UuidStrategy(), DateShiftStrategy(), NoiseStrategy(), IpStrategy(),
    _fake("fake_name", FakeNameParams), _fake("fake_first_name", FakeFirstNameParams),
    _fake("fake_last_name", FakeLastNameParams), _fake("fake_address", FakeAddressParams),
    _fake("fake_company", FakeCompanyParams), FakeEmailStrategy(), JsonStrategy(),
)}


def parse_params(name: str, raw: dict | None) -> tuple[Params | None, list[str]]:
    """Params Struct for strategy `name` from raw config values, plus the problems found."""
    strategy = STRATEGIES.get(name)
    if strategy is None:
        return None, [f"unknown strategy {name!r} (known: {', '.join(sorted(STRATEGIES))})"]
    return strategy.parse_params(raw)
