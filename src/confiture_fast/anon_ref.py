"""Reference rewriter in plain Python: the executable definition of what `_anon.Rewriter` must output.

Written for clarity, not speed, and independently of the Cython code: the property tests feed both
the same generated rows and require identical bytes (or the same error row and column).
"""

from __future__ import annotations

import datetime
import ipaddress
import math
import re

from confiture_fast.strategies import FieldRule, KeepParams, RewriteError, fake_pools, json_rules

_MASK = (1 << 64) - 1


# -- SipHash-2-4 --------------------------------------------------------------------------------
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


# -- COPY text escaping -------------------------------------------------------------------------
_SIMPLE_ESCAPES = {"b": 8, "f": 12, "n": 10, "r": 13, "t": 9, "v": 11}
_OCTAL = "01234567"
_HEX = "0123456789abcdefABCDEF"


class EndOfCopyMarker(ValueError):
    """A backslash-period inside a field: PostgreSQL reads it as the end of the data, not as '.'."""


def unescape(field: bytes) -> bytes:
    """COPY text field -> value bytes (the field is not `\\N` and has no dangling backslash)."""
    text = field.decode("latin-1")  # one char per byte, so indexes are byte offsets
    out = bytearray()
    i = 0
    while i < len(text):
        ch = text[i]
        i += 1
        if ch != "\\":
            out.append(ord(ch))
            continue
        ch = text[i]
        i += 1
        if ch == ".":
            raise EndOfCopyMarker()
        if ch in _OCTAL:
            digits = ch
            while len(digits) < 3 and i < len(text) and text[i] in _OCTAL:
                digits += text[i]
                i += 1
            out.append(int(digits, 8) & 0xFF)
        elif ch == "x" and i < len(text) and text[i] in _HEX:
            digits = text[i]
            i += 1
            if i < len(text) and text[i] in _HEX:
                digits += text[i]
                i += 1
            out.append(int(digits, 16))
        else:
            out.append(_SIMPLE_ESCAPES.get(ch, ord(ch)))
    return bytes(out)


_ESCAPED_OUT = {8: b"\\b", 9: b"\\t", 10: b"\\n", 11: b"\\v", 12: b"\\f", 13: b"\\r", 92: b"\\\\"}


def escape(value: bytes) -> bytes:
    """Value bytes -> COPY text, exactly as PostgreSQL's COPY TO writes them."""
    return b"".join(_ESCAPED_OUT.get(b, bytes([b])) for b in value)


def _ends_with_lone_backslash(field: bytes) -> bool:
    return (len(field) - len(field.rstrip(b"\\"))) % 2 == 1


# -- strategies ---------------------------------------------------------------------------------
def _u64(b: bytes) -> int:
    return int.from_bytes(b[:8], "little")


def _keystream(digest: bytes):
    """Endless keyed bytes: SipHash-128 of a block counter under the value's digest as the key."""
    block = 0
    while True:
        yield from siphash24(digest, block.to_bytes(8, "little"))
        block += 1


def _partial(text: str, keep_first: int, keep_last: int, mask: str) -> str:
    if len(text) <= keep_first + keep_last:
        return mask * len(text)  # too short to show anything
    return text[:keep_first] + mask * (len(text) - keep_first - keep_last) + text[len(text) - keep_last:]


def _preserve_format(text: str, digest: bytes, keep_prefix: int, keep_suffix: int) -> str:
    if len(text) <= keep_prefix + keep_suffix:
        keep_prefix = keep_suffix = 0
    stream = _keystream(digest)
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
    return "".join(out)


def _uuid(digest: bytes) -> str:
    b = bytearray(digest)
    b[6] = (b[6] & 0x0F) | 0x40  # version 4
    b[8] = (b[8] & 0x3F) | 0x80  # RFC 4122 variant
    h = b.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


_DATE_RE = re.compile(r"([0-9]{4,7})-([0-9]{2})-([0-9]{2})((?:[ T][0-9:.+-]*)?)( BC)?")
_CYCLE_YEARS, _CYCLE_DAYS = 400, 146097  # the Gregorian calendar repeats every 400 years


def _shift_date(text: str, days: int) -> str:
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


def _date_shift_days(digest: bytes, days: int) -> int:
    """A shift in [-days, -1] or [1, days]: never 0, so no date keeps its true value."""
    s = _u64(digest) % (2 * days)
    return s - days if s < days else s - days + 1


_NUMBER_RE = re.compile(r"-?([0-9]+)(?:\.([0-9]+))?")


_INT_LIMITS = (32767.0, 2147483647.0, 9223372036854774784.0)  # int2, int4, int8 (as doubles, rounded in)


def _noise(text: str, digest: bytes, p) -> str:
    if text in ("NaN", "Infinity", "-Infinity"):
        return text
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
    r = (_u64(digest) >> 11) / 2.0**52 - 1.0  # uniform in [-1, 1)
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
    return out


def _ip_text(value: int, bits: int) -> str:
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


def _ip(text: str, digest: bytes, p) -> str:
    addr_text, slash, mask_text = text.partition("/")
    try:
        if "%" in addr_text:  # IPv6 scope ids: Python reads them, PostgreSQL does not
            raise ValueError
        addr = ipaddress.ip_address(addr_text)
    except ValueError:
        raise ValueError("not an IP address") from None
    bits = addr.max_prefixlen
    keep = p.prefix if bits == 32 else p.prefix_v6
    value = int(addr)
    if slash and not (re.fullmatch("[0-9]{1,3}", mask_text) and int(mask_text) <= bits):
        raise ValueError("not an IP address")
    mask = int(mask_text) if slash else bits
    # Replace bits keep..end; a network address (zero host bits after its mask) stays one.
    end = mask if slash and value & ((1 << (bits - mask)) - 1) == 0 else bits
    if keep < end:
        width = end - keep
        field = ((1 << width) - 1) << (bits - end)
        fresh = (int.from_bytes(digest, "big") & ((1 << width) - 1)) << (bits - end)
        value = (value & ~field) | fresh
    return _ip_text(value, bits) + (f"/{mask}" if slash else "")


def _fake(rule: FieldRule, digest: bytes) -> str:
    pools = fake_pools(rule.strategy, rule.params.locale)
    u0, u1 = _u64(digest), _u64(digest[8:])
    if rule.strategy == "fake_first_name":
        return pools[0][u0 % len(pools[0])]
    if rule.strategy == "fake_last_name":
        return pools[1][u1 % len(pools[1])]
    if rule.strategy == "fake_name":
        return f"{pools[0][u0 % len(pools[0])]} {pools[1][u1 % len(pools[1])]}"
    if rule.strategy == "fake_email":
        first, last = pools[0][u0 % len(pools[0])], pools[1][u1 % len(pools[1])]
        return f"{first}.{last}.{digest.hex()[:rule.params.length]}@{rule.params.domain}"
    if rule.strategy == "fake_address":
        streets, cities = pools
        return f"{1 + u0 % 9999} {streets[u1 % len(streets)]}, {cities[(u1 >> 32) % len(cities)]}"
    if rule.strategy == "fake_company":
        return pools[0][u0 % len(pools[0])]
    raise ValueError(f"unknown strategy {rule.strategy!r}")


def apply(rule: FieldRule, value: bytes, row_key: bytes | None = None) -> bytes | None:
    """The strategy's output for one non-empty, non-NULL value (None means NULL).

    `row_key` is the unescaped value of the rule's key column (date_shift per_row_key), if not NULL.
    Raises ValueError when the value is not of the form the strategy reads.
    """
    p = rule.params
    s = rule.strategy
    if s == "redact":
        return b"[REDACTED]"
    if s == "null":
        return None
    if s == "keep":
        return value
    if s == "constant":
        return p.value.encode()
    if s == "partial":
        return _partial(value.decode(), p.keep_first, p.keep_last, p.mask_char).encode()
    digest = siphash24(rule.key, value if row_key is None else row_key)
    hexdigits = digest.hex()
    if s == "email":
        return f"user_{hexdigits[:p.length]}@{p.domain}".encode()
    if s == "hash":
        return hexdigits[:p.length].encode()
    if s == "phone":
        return f"+1-555-{_u64(digest) % 10000:04d}".encode()
    if s == "name":
        return f"User {hexdigits[:4].upper()}".encode()
    if s == "preserve_format":
        return _preserve_format(value.decode(), digest, p.keep_prefix, p.keep_suffix).encode()
    if s == "uuid":
        return _uuid(digest).encode()
    if s == "date_shift":
        return _shift_date(value.decode(), _date_shift_days(digest, p.days)).encode()
    if s == "noise":
        return _noise(value.decode(), digest, p).encode()
    if s == "ip":
        return _ip(value.decode(), digest, p).encode()
    if s.startswith("fake_"):
        return _fake(rule, digest).encode()
    raise ValueError(f"unknown strategy {s!r}")


_ARRAY_SPECIAL = frozenset(b'{},"\\ \t\n\r\v\f')
_MAX_ARRAY_DEPTH = 64


def _quote_element(s: bytes) -> bytes:
    """An array element as array_out writes it."""
    if s and s.lower() != b"null" and not _ARRAY_SPECIAL.intersection(s):
        return s
    return b'"' + s.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'


def apply_to_array(rule: FieldRule, value: bytes, row_key: bytes | None) -> bytes:
    """Applies the rule to each element of an array literal in PostgreSQL's output form."""
    bad = ValueError("not an array literal in PostgreSQL's output form")
    out = bytearray()
    i = 0
    if value.startswith(b"["):  # dimension bounds, e.g. [0:2]=
        eq = value.find(b"=")
        if eq < 0 or any(c not in b"0123456789[]:-" for c in value[:eq]):
            raise bad
        out += value[:eq + 1]
        i = eq + 1

    def element(i: int) -> int:
        if i >= len(value) or value[i] in b",}":
            raise bad
        if value[i] == ord('"'):
            raw = bytearray()
            i += 1
            while i < len(value) and value[i] != ord('"'):
                if value[i] == ord("\\"):
                    i += 1
                    if i == len(value):
                        break
                raw.append(value[i])
                i += 1
            if i >= len(value):
                raise bad
            i += 1
            quoted = True
        else:
            start = i
            while i < len(value) and value[i] not in _ARRAY_SPECIAL:
                i += 1
            raw = value[start:i]
            if i < len(value) and value[i] not in b",}":
                raise bad
            quoted = False
        if not quoted and bytes(raw).lower() == b"null":
            out.extend(b"NULL")
        elif not raw:
            out.extend(b'""')
        else:
            result = apply(rule, bytes(raw), row_key)
            out.extend(b"NULL" if result is None else _quote_element(result))
        return i

    def array(i: int, depth: int) -> int:
        if depth > _MAX_ARRAY_DEPTH:
            raise bad
        out.extend(b"{")
        i += 1
        if value[i:i + 1] == b"}":
            out.extend(b"}")
            return i + 1
        while True:
            i = array(i, depth + 1) if value[i:i + 1] == b"{" else element(i)
            c = value[i:i + 1]
            if c not in (b",", b"}"):
                raise bad
            out.extend(c)
            i += 1
            if c == b"}":
                return i

    if value[i:i + 1] != b"{" or array(i, 1) != len(value):
        raise bad
    return bytes(out)


_JSON_WS = b" \t\n\r"
_JSON_NUMBER = re.compile(rb"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")
_JSON_SIMPLE = {ord("b"): 8, ord("f"): 12, ord("n"): 10, ord("r"): 13, ord("t"): 9, ord('"'): 34,
                ord("\\"): 92, ord("/"): 47}


def _json_string_value(doc: bytes, i: int) -> tuple[bytes, int]:
    """The unescaped bytes of the JSON string starting at doc[i] == '"', and the index after it."""
    bad = ValueError("not valid JSON")
    out = bytearray()
    i += 1
    while True:
        if i >= len(doc) or doc[i] < 0x20:
            raise bad
        c = doc[i]
        if c == ord('"'):
            return bytes(out), i + 1
        if c != ord("\\"):
            out.append(c)
            i += 1
            continue
        e = doc[i + 1] if i + 1 < len(doc) else -1
        if e in _JSON_SIMPLE:
            out.append(_JSON_SIMPLE[e])
            i += 2
            continue
        if e != ord("u"):
            raise bad
        code, i = _json_hex4(doc, i + 2)
        if 0xD800 <= code < 0xDC00:  # a surrogate pair makes one code point
            if doc[i:i + 2] != b"\\u":
                raise bad
            low, i = _json_hex4(doc, i + 2)
            if not 0xDC00 <= low < 0xE000:
                raise bad
            code = 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00)
        elif 0xDC00 <= code < 0xE000 or code == 0:
            raise bad
        out += chr(code).encode()


def _json_hex4(doc: bytes, i: int) -> tuple[int, int]:
    digits = doc[i:i + 4]
    if len(digits) != 4 or not all(c in b"0123456789abcdefABCDEF" for c in digits):
        raise ValueError("not valid JSON")
    return int(digits, 16), i + 4


def _json_quote(value: bytes) -> bytes:
    """A JSON string as PostgreSQL's json output writes it."""
    out = bytearray(b'"')
    for c in value:
        if c == 34 or c == 92:
            out += b"\\" + bytes([c])
        elif c in (8, 12, 10, 13, 9):
            out += {8: b"\\b", 12: b"\\f", 10: b"\\n", 13: b"\\r", 9: b"\\t"}[c]
        elif c < 0x20:
            out += b"\\u%04x" % c
        else:
            out.append(c)
    return bytes(out + b'"')


def _path_matches(steps, location) -> bool:
    if len(steps) != len(location):
        return False
    for (kind, arg), (is_key, at) in zip(steps, location):
        if kind == "any_key" and is_key or kind == "any_index" and not is_key:
            continue
        if kind == "key" and is_key and at == arg.encode() or kind == "index" and not is_key and at == arg:
            continue
        return False
    return True


def apply_to_json(rule: FieldRule, doc: bytes) -> bytes:
    """Applies the json rule's strategies at their paths; every other byte of doc stays as it is."""
    subs = [(steps, FieldRule(index=rule.index, column=rule.column, strategy=name, key=rule.key,
                              params=params))
            for steps, name, params in json_rules(rule.params)]
    bad = ValueError("not valid JSON")
    out = bytearray()
    copied = 0  # doc[:copied] is already in out

    def replace(start: int, end: int, new: bytes) -> None:
        nonlocal copied
        out.extend(doc[copied:start])
        out.extend(new)
        copied = end

    def ws(i: int) -> int:
        while i < len(doc) and doc[i] in _JSON_WS:
            i += 1
        return i

    def value(i: int, location: list, active: FieldRule | None, depth: int) -> int:
        """Walks the value at doc[i]; `active` is the rule of an enclosing matched container."""
        sub = active
        if sub is None:
            sub = next((r for steps, r in subs if _path_matches(steps, location)), None)
        if sub is not None and sub.strategy == "keep":
            sub = None
            active = _KEEP
        if i >= len(doc):
            raise bad
        c = doc[i]
        if c in b"{[":
            if depth == _MAX_JSON_DEPTH:
                raise bad
            inner = _KEEP if sub is not None and sub.strategy == "null" else (sub or active)
            end = container(i, location, inner, depth + 1)
            if sub is not None and sub.strategy == "null":
                replace(i, end, b"null")
            return end
        if c == ord('"'):
            raw, end = _json_string_value(doc, i)
            if sub is not None and sub is not _KEEP and raw:
                result = apply(sub, raw)
                replace(i, end, b"null" if result is None else _json_quote(result))
            return end
        m = _JSON_NUMBER.match(doc, i)
        if m:
            end = m.end()
            if sub is not None and sub is not _KEEP:
                result = apply(sub, doc[i:end])
                new = b"null" if result is None else result if sub.strategy == "noise" else _json_quote(result)
                replace(i, end, new)
            return end
        for literal in (b"true", b"false", b"null"):
            if doc.startswith(literal, i):
                return i + len(literal)
        raise bad

    def container(i: int, location: list, active, depth: int) -> int:
        close = b"}" if doc[i] == ord("{") else b"]"
        i = ws(i + 1)
        if doc[i:i + 1] == close:
            return i + 1
        index = 0
        while True:
            if close == b"}":
                if doc[i:i + 1] != b'"':
                    raise bad
                key, i = _json_string_value(doc, i)
                i = ws(i)
                if doc[i:i + 1] != b":":
                    raise bad
                step = (True, key)
                i = ws(i + 1)
            else:
                step = (False, index)
            i = ws(value(i, location + [step], active, depth))
            index += 1
            if doc[i:i + 1] == close:
                return i + 1
            if doc[i:i + 1] != b",":
                raise bad
            i = ws(i + 1)

    end = ws(value(ws(0), [], None, 0))
    if end != len(doc):
        raise bad
    out.extend(doc[copied:])
    return bytes(out)


# Marks the inside of a `keep` or `null` match: nothing below it is rewritten.
_KEEP = FieldRule(index=-1, column="", strategy="keep", key=b"", params=KeepParams())
_MAX_JSON_DEPTH = 64


class ReferenceRewriter:
    """Same API as `_anon.Rewriter`: rewrite() any chunking of COPY text, finish() at the end."""

    def __init__(self, table: str, columns: list[str], rules: list[FieldRule]):
        self.table = table
        self.columns = list(columns)
        self.rules = {rule.index: rule for rule in rules if rule.strategy != "keep"}  # keep = untouched
        self.rows = 0
        self._tail = b""

    def _error(self, column_index: int, problem: str) -> RewriteError:
        return RewriteError(self.table, self.rows + 1, self.columns[column_index], problem)

    def rewrite(self, data: bytes) -> bytes:
        lines = (self._tail + bytes(data)).split(b"\n")
        self._tail = lines.pop()  # after the last newline: a partial row, or b""
        return b"".join(self.rewrite_row(line) + b"\n" for line in lines)

    def finish(self) -> None:
        if self._tail:
            cut_in = min(self._tail.count(b"\t"), len(self.columns) - 1)
            raise self._error(cut_in, "the data ends in the middle of this row (no final newline)")

    def rewrite_row(self, line: bytes) -> bytes:
        """One row without its newline -> the rewritten row without its newline."""
        fields = line.split(b"\t")
        for i, field in enumerate(fields[:len(self.columns)]):
            if _ends_with_lone_backslash(field):
                raise self._error(i, "the field ends with a lone backslash")
        if len(fields) < len(self.columns):
            raise self._error(len(fields), f"the row has {len(fields)} fields, {len(self.columns)} expected")
        if len(fields) > len(self.columns):
            raise self._error(len(self.columns) - 1, "the row has too many fields")
        out = list(fields)
        for i, rule in sorted(self.rules.items()):
            out[i] = self._rewrite_field(i, rule, fields[i], fields)
        self.rows += 1
        return b"\t".join(out)

    def _unescape(self, i: int, field: bytes) -> bytes:
        try:
            return unescape(field)
        except EndOfCopyMarker:
            raise self._error(i, "the field contains \\. (the end-of-copy marker)") from None

    def _rewrite_field(self, i: int, rule: FieldRule, field: bytes, fields: list[bytes]) -> bytes:
        if field in (b"", b"\\N"):  # empty stays empty, NULL stays NULL
            return field
        value = self._unescape(i, field)
        try:
            value.decode("utf-8")
        except UnicodeDecodeError as e:
            raise self._error(i, f"invalid UTF-8 at byte {e.start} of the unescaped value") from None
        if b"\0" in value:
            raise self._error(i, "the value contains a NUL byte")
        row_key = None
        if rule.key_index >= 0 and fields[rule.key_index] != b"\\N":
            row_key = self._unescape(rule.key_index, fields[rule.key_index])
        try:
            if rule.strategy == "json":
                result = apply_to_json(rule, value)
            elif rule.is_array and rule.strategy != "null":  # null replaces the whole array
                result = apply_to_array(rule, value, row_key)
            else:
                result = apply(rule, value, row_key)
        except ValueError as e:
            raise self._error(i, str(e)) from None
        return b"\\N" if result is None else escape(result)
