"""Keyed pseudonyms with a fixed shape: email, hash, phone, name, uuid."""

from __future__ import annotations

import re

from confiture_fast.catalog import Column
from confiture_fast.strategies.base import (UNIQUE_HEX_FLOOR, Params, Strategy, check_domain, check_hex_length,
                                            u64)


class EmailParams(Params, tag="email"):
    length: int = 16
    domain: str = "example.com"


class PhoneParams(Params, tag="phone"):
    pass


class NameParams(Params, tag="name"):
    pass


class HashParams(Params, tag="hash"):
    length: int = 16


class UuidParams(Params, tag="uuid"):
    pass


class EmailStrategy(Strategy):
    name, params_type, unique = "email", EmailParams, True
    summary = "hex pseudonym in an email address"
    output = "`user_<length hex>@<domain>`"
    equal_by_design = None
    scan_ranks = {"email": 0}

    def validate(self, p: EmailParams, problems):
        check_hex_length(p, problems)
        check_domain(p.domain, problems)

    def is_unique(self, p: EmailParams) -> bool:
        return p.length >= UNIQUE_HEX_FLOOR

    def max_chars(self, p: EmailParams) -> int:
        return len("user_@") + p.length + len(p.domain)

    def reference(self, p: EmailParams, value, digest):
        return f"user_{digest.hex()[:p.length]}@{p.domain}".encode()

    def output_format(self, p: EmailParams):
        return re.compile(rf"user_[0-9a-f]{{{p.length}}}@{re.escape(p.domain)}")


class PhoneStrategy(Strategy):
    name, params_type = "phone", PhoneParams
    summary = "a fictional North American number"
    output = "`+1-555-XXXX`"
    equal_by_design = None
    scan_ranks = {"phone": 0}

    def max_chars(self, p) -> int:
        return len("+1-555-0000")

    def reference(self, p, value, digest):
        return f"+1-555-{u64(digest) % 10000:04d}".encode()

    def output_format(self, p):
        return re.compile(r"\+1-555-\d{4}")


class NameStrategy(Strategy):
    name, params_type = "name", NameParams
    summary = "a placeholder person name"
    output = "`User XXXX` (4 uppercase hex)"
    equal_by_design = None
    scan_ranks = {"first_name": 1, "last_name": 1, "full_name": 0}

    def max_chars(self, p) -> int:
        return len("User 0000")

    def reference(self, p, value, digest):
        return f"User {digest.hex()[:4].upper()}".encode()

    def output_format(self, p):
        return re.compile(r"User [0-9A-F]{4}")


class HashStrategy(Strategy):
    name, params_type, unique = "hash", HashParams, True
    summary = "hex pseudonym"
    output = "`<length hex>`"
    equal_by_design = None
    scan_ranks = {"email": 2, "username": 0, "national_id": 1, "ssn": 1, "bank": 1, "iban": 1, "card": 1,
                  "mac": 1, "secret": 0, "token": 0}
    scan_unique_rank = 0

    def validate(self, p: HashParams, problems):
        check_hex_length(p, problems)

    def is_unique(self, p: HashParams) -> bool:
        return p.length >= UNIQUE_HEX_FLOOR

    def max_chars(self, p: HashParams) -> int:
        return p.length

    def reference(self, p: HashParams, value, digest):
        return digest.hex()[:p.length].encode()

    def output_format(self, p: HashParams):
        return re.compile(rf"[0-9a-f]{{{p.length}}}")


class UuidStrategy(Strategy):
    name, params_type, unique = "uuid", UuidParams, True
    summary = "a version-4-shaped UUID from the PRF"
    output = "`xxxxxxxx-xxxx-4xxx-[89ab]xxx-xxxxxxxxxxxx`"
    equal_by_design = None
    scan_ranks = {}
    scan_unique_rank = 1

    def max_chars(self, p) -> int:
        return 36

    def check_column(self, p, column: Column) -> str | None:
        if column.base_type == self.name:
            return None
        return super().check_column(p, column)

    def reference(self, p, value, digest):
        b = bytearray(digest)
        b[6] = (b[6] & 0x0F) | 0x40  # version 4
        b[8] = (b[8] & 0x3F) | 0x80  # RFC 4122 variant
        h = b.hex()
        return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}".encode()

    def output_format(self, p):
        return re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")


STRATEGIES = (EmailStrategy(), PhoneStrategy(), NameStrategy(), HashStrategy(), UuidStrategy())
