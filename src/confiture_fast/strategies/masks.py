"""Unkeyed or shape-keeping masks: redact, null, keep, constant, partial, preserve_format."""

from __future__ import annotations

import re

from confiture_fast.catalog import Column
from confiture_fast import copytext
from confiture_fast.strategies.base import Params, Strategy, keystream


class RedactParams(Params, tag="redact"):
    pass


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


class RedactStrategy(Strategy):
    name, params_type, keyed = "redact", RedactParams, False
    summary = "one fixed marker"
    output = "`[REDACTED]`"
    equal_by_design = None
    scan_ranks = {"phone": 2, "address": 1, "city": 0, "postcode": 1, "birth_date": 1, "national_id": 0,
                  "ssn": 0, "bank": 0, "iban": 0, "card": 0, "ip": 1, "mac": 0, "gender": 1, "contact": 0,
                  "text": 0}
    scan_fallback = True  # suggested for kinds no strategy ranks

    def max_chars(self, p) -> int:
        return len("[REDACTED]")

    def reference(self, p, value, digest):
        return b"[REDACTED]"

    def output_format(self, p):
        return re.compile(r"\[REDACTED\]")


class NullStrategy(Strategy):
    """Replaces the whole value (an array too) by NULL."""

    name, params_type, keyed = "null", NullParams, False
    summary = "NULL, on arrays the whole array"
    output = "NULL"
    equal_by_design = "every value is NULL"
    same_row_by_design = True
    writes_null = True
    scan_ranks = {"birth_date": 2, "mac": 2, "salary": 1, "gender": 0}
    scan_whole_value = True  # what scan suggests where no strategy rewrites inside the value

    def check_column(self, params, column: Column) -> str | None:
        if column.not_null:
            return f"{self.name} cannot go into {column.name}, which is NOT NULL"
        return None

    def reference(self, p, value, digest):
        return None

    def output_format(self, p):
        return None


class KeepStrategy(Strategy):
    """Identity: says the column was reviewed and holds no PII."""

    name, params_type, keyed, unique = "keep", KeepParams, False, True
    summary = "the input, untouched (the column was reviewed)"
    output = "the input"
    equal_by_design = None  # verify compares a kept column like an untouched one
    identity = True
    scan_ranks = {}

    def check_column(self, params, column: Column) -> str | None:
        return None

    def reference(self, p, value, digest):
        return value

    def output_format(self, p):
        return None


_INT_RE = re.compile(r"^[+-]?[0-9]+$")
_NUMERIC_RE = re.compile(r"^[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?$|^(NaN|[+-]?Infinity)$")
_BOOL_VALUES = {"t", "f", "true", "false", "yes", "no", "on", "off", "1", "0", "y", "n"}


class ConstantStrategy(Strategy):
    name, params_type, keyed = "constant", ConstantParams, False
    summary = "one given value for every row"
    output = "`value`"
    equal_by_design = "one value for all rows"
    same_row_by_design = True
    scan_ranks = {}

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
            return f"{self.name} is only checked for text, number and boolean columns, not {column.described}"
        if not ok(p.value):
            return f"{self.name} {p.value!r} is not a valid {column.described} value for {column.name}"
        return None

    def reference(self, p: ConstantParams, value, digest):
        return p.value.encode()

    def output_format(self, p: ConstantParams):
        return re.compile(re.escape(copytext.escape(str(p.value).encode()).decode("utf-8", "replace")))


class PartialStrategy(Strategy):
    name, params_type, keyed = "partial", PartialParams, False
    summary = "first and last characters kept, the rest masked"
    output = "e.g. `****1234`"
    equal_by_design = None
    scan_ranks = {}

    def validate(self, p: PartialParams, problems):
        if p.keep_first < 0 or p.keep_last < 0:
            problems.append("keep_first and keep_last must be >= 0")
        if len(p.mask_char) != 1 or p.mask_char == "\0":
            problems.append(f"mask_char must be one character, got {p.mask_char!r}")

    def reference(self, p: PartialParams, value, digest):
        text, first, last, mask = value.decode(), p.keep_first, p.keep_last, p.mask_char
        if len(text) <= first + last:
            return (mask * len(text)).encode()  # too short to show anything
        return (text[:first] + mask * (len(text) - first - last) + text[len(text) - last:]).encode()

    def output_format(self, p):
        return None


class PreserveFormatStrategy(Strategy):
    name, params_type = "preserve_format", PreserveFormatParams
    summary = "same length, ASCII digits and letters re-drawn in place"
    output = "e.g. `AB-1234` -> `QX-8812`"
    equal_by_design = "short codes re-drawn in place can match other rows"
    scan_ranks = {"phone": 1, "postcode": 0}

    def validate(self, p: PreserveFormatParams, problems):
        if p.keep_prefix < 0 or p.keep_suffix < 0:
            problems.append("keep_prefix and keep_suffix must be >= 0")

    def reference(self, p: PreserveFormatParams, value, digest):
        text, keep_prefix, keep_suffix = value.decode(), p.keep_prefix, p.keep_suffix
        if len(text) <= keep_prefix + keep_suffix:
            keep_prefix = keep_suffix = 0
        stream = keystream(digest)
        out = []
        for i, ch in enumerate(text):
            if keep_prefix <= i < len(text) - keep_suffix and ch.isascii() and ch.isalnum():
                b = next(stream)
                if ch.isdigit():
                    ch = "0123456789"[b % 10]
                elif ch.isupper():
                    ch = chr(ord("A") + b % 26)
                else:
                    ch = chr(ord("a") + b % 26)
            out.append(ch)
        return "".join(out).encode()

    def output_format(self, p):
        return None


STRATEGIES = (RedactStrategy(), NullStrategy(), KeepStrategy(), ConstantStrategy(), PartialStrategy(),
              PreserveFormatStrategy())
