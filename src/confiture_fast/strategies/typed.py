"""Strategies that read and write the text form of particular types: date_shift, noise, ip."""

from __future__ import annotations

import datetime
import ipaddress
import math
import re

from confiture_fast.strategies.base import Params, TypedStrategy, u64


class DateShiftParams(Params, tag="date_shift"):
    days: int = 30
    per_row_key: str | None = None  # a column of the same row whose value picks the shift


class NoiseParams(Params, tag="noise"):
    relative: float | None = None  # at most this fraction of |value|, e.g. 0.1
    absolute: float | None = None  # at most this much


class IpParams(Params, tag="ip"):
    prefix: int = 24  # IPv4 network bits kept
    prefix_v6: int = 64


_DATE_RE = re.compile(r"([0-9]{4,7})-([0-9]{2})-([0-9]{2})((?:[ T][0-9:.+-]*)?)( BC)?")
_CYCLE_YEARS, _CYCLE_DAYS = 400, 146097  # the Gregorian calendar repeats every 400 years


def shift_date(text: str, days: int) -> str:
    """Moves the date part of an ISO date/timestamp[tz] by `days`; the time and zone stay."""
    if text in ("infinity", "-infinity"):
        return text
    m = _DATE_RE.fullmatch(text)
    if not m:
        raise ValueError("not an ISO date or timestamp (set DateStyle to ISO)")
    year = int(m[1])
    year = 1 - year if m[5] else year  # astronomical numbering: 1 BC is year 0
    # Move the year into 2001..2400 by whole 400-year cycles, where Python's date type works.
    cycles = (year - 2001) // _CYCLE_YEARS
    try:
        d = datetime.date(year - cycles * _CYCLE_YEARS, int(m[2]), int(m[3]))
    except ValueError:
        raise ValueError("not a valid calendar date") from None
    ordinal = d.toordinal() + days + cycles * _CYCLE_DAYS
    cycles2, rest = divmod(ordinal - datetime.date(2001, 1, 1).toordinal(), _CYCLE_DAYS)
    shifted = datetime.date.fromordinal(datetime.date(2001, 1, 1).toordinal() + rest)
    year2 = shifted.year + cycles2 * _CYCLE_YEARS
    bc = year2 <= 0
    shown = 1 - year2 if bc else year2
    return f"{shown:04d}-{shifted.month:02d}-{shifted.day:02d}{m[4]}{' BC' if bc else ''}"


def shift_days(digest: bytes, days: int) -> int:
    """A shift in [-days, -1] or [1, days]: never 0, so no date keeps its true value."""
    s = u64(digest) % (2 * days)
    return s - days if s < days else s - days + 1


class DateShiftStrategy(TypedStrategy):
    name, params_type = "date_shift", DateShiftParams
    base_types = ("date", "timestamp", "timestamptz")
    summary = "the date moved by a keyed shift of 1..days days, either way; time and zone kept"
    output = "a date/timestamp"
    equal_by_design = "other rows hold the shifted dates"
    scan_ranks = {"birth_date": 0}

    def validate(self, p: DateShiftParams, problems):
        if not 1 <= p.days <= 3_650_000:
            problems.append(f"days must be between 1 and 3650000, got {p.days}")

    def reference(self, p: DateShiftParams, value, digest):
        return shift_date(value.decode(), shift_days(digest, p.days)).encode()

    def output_format(self, p):
        return None


_NUMBER_RE = re.compile(r"-?([0-9]+)(?:\.([0-9]+))?")
_INT_LIMITS = (32767.0, 2147483647.0, 9223372036854774784.0)  # int2, int4, int8 (as doubles, rounded in)


class NoiseStrategy(TypedStrategy):
    name, params_type = "noise", NoiseParams
    base_types = ("int2", "int4", "int8", "numeric")
    summary = "the number moved by at most the relative or absolute bound, scale and range kept"
    output = "a number"
    equal_by_design = "a small move can land on another row's value"
    same_row_by_design = True
    numeric_out = True
    scan_ranks = {"salary": 0}
    scan_params = {"relative": 0.1}

    def validate(self, p: NoiseParams, problems):
        if (p.relative is None) == (p.absolute is None):
            problems.append("give exactly one of relative or absolute")
        elif p.relative is not None and not 0 < p.relative <= 1:
            problems.append(f"relative must be in (0, 1], got {p.relative}")
        elif p.absolute is not None and not 0 < p.absolute < 1e15:
            problems.append(f"absolute must be positive and below 1e15, got {p.absolute}")

    def reference(self, p: NoiseParams, value, digest):
        text = value.decode()
        if text in ("NaN", "Infinity", "-Infinity"):
            return value
        m = _NUMBER_RE.fullmatch(text)
        if not m:
            raise ValueError("not a plain decimal number")
        scale = len(m[2] or "")
        x = float(text)
        # Keep the value storable where the input was: no more integer digits than it has, and an
        # integer stays in the smallest of the int2/int4/int8 ranges that holds it.
        int_digits = len(m[1].lstrip("0")) or 1
        limit = float("9" * int_digits + "." + "9" * scale)
        if scale == 0:
            limit = min([limit] + [lim for lim in _INT_LIMITS if abs(x) <= lim][:1])
        r = (u64(digest) >> 11) / 2.0**52 - 1.0  # uniform in [-1, 1)
        bound = p.absolute if p.absolute is not None else abs(x) * p.relative
        delta = bound * r
        y = x + delta
        if abs(y) > limit:
            y = x - delta  # the other way
        if abs(y) > limit:
            y = math.copysign(limit, y)
        if not math.isfinite(y):
            raise ValueError("value too large for noise")
        out = "%.*f" % (scale, y)
        if out.startswith("-") and not out.strip("-0."):
            out = out[1:]  # no negative zero
        return out.encode()

    def output_format(self, p):
        return None


def ip_text(value: int, bits: int) -> str:
    """IPv4 dotted quad, or IPv6 with the longest run (>= 2) of zero groups as '::' (RFC 5952)."""
    if bits == 32:
        return ".".join(str((value >> s) & 255) for s in (24, 16, 8, 0))
    groups = [(value >> (112 - 16 * i)) & 0xFFFF for i in range(8)]
    best_start, best_len = -1, 1
    i = 0
    while i < 8:
        j = i
        while j < 8 and groups[j] == 0:
            j += 1
        if j - i > best_len:
            best_start, best_len = i, j - i
        i = j + 1 if j == i else j
    hexes = [f"{g:x}" for g in groups]
    if best_start < 0:
        return ":".join(hexes)
    return ":".join(hexes[:best_start]) + "::" + ":".join(hexes[best_start + best_len:])


class IpStrategy(TypedStrategy):
    name, params_type = "ip", IpParams
    base_types = ("inet", "cidr")
    summary = "the network prefix kept, the host bits re-drawn"
    output = "an address of the same network"
    equal_by_design = "the network prefix is kept"
    same_row_by_design = True
    scan_ranks = {"ip": 0}

    def validate(self, p: IpParams, problems):
        if not 0 <= p.prefix <= 32:
            problems.append(f"prefix must be between 0 and 32, got {p.prefix}")
        if not 0 <= p.prefix_v6 <= 128:
            problems.append(f"prefix_v6 must be between 0 and 128, got {p.prefix_v6}")

    def reference(self, p: IpParams, value, digest):
        addr_text, slash, mask_text = value.decode().partition("/")
        if "%" in addr_text:  # IPv6 scope ids: Python reads them, PostgreSQL does not
            raise ValueError("not an IP address")
        try:
            addr = ipaddress.ip_address(addr_text)
        except ValueError:
            raise ValueError("not an IP address") from None
        bits = addr.max_prefixlen
        keep = p.prefix if bits == 32 else p.prefix_v6
        number = int(addr)
        if slash and not (re.fullmatch("[0-9]{1,3}", mask_text) and int(mask_text) <= bits):
            raise ValueError("not an IP address")
        mask = int(mask_text) if slash else bits
        # Replace bits keep..end; a network address (zero host bits after its mask) stays one.
        end = mask if slash and number & ((1 << (bits - mask)) - 1) == 0 else bits
        if keep < end:
            width = end - keep
            field = ((1 << width) - 1) << (bits - end)
            fresh = (int.from_bytes(digest, "big") & ((1 << width) - 1)) << (bits - end)
            number = (number & ~field) | fresh
        return (ip_text(number, bits) + (f"/{mask}" if slash else "")).encode()

    def output_format(self, p):
        return None


STRATEGIES = (DateShiftStrategy(), NoiseStrategy(), IpStrategy())
