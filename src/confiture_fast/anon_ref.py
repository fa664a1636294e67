"""Reference rewriter in plain Python: the executable definition of what `_anon.Rewriter` must output.

Written for clarity, not speed, and independently of the Cython code: the property tests feed both
the same generated rows and require identical bytes (or the same error row and column).
"""

from __future__ import annotations

from confiture_fast.strategies import FieldRule, RewriteError

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
def apply(rule: FieldRule, value: bytes) -> bytes | None:
    """The strategy's output for one non-empty, non-NULL value (None means NULL)."""
    p = rule.params
    if rule.strategy == "redact":
        return b"[REDACTED]"
    digest = siphash24(rule.key, value)
    hexdigits = digest.hex()
    if rule.strategy == "email":
        return f"user_{hexdigits[:p.length]}@{p.domain}".encode()
    if rule.strategy == "hash":
        return hexdigits[:p.length].encode()
    if rule.strategy == "phone":
        return f"+1-555-{int.from_bytes(digest[:8], 'little') % 10000:04d}".encode()
    if rule.strategy == "name":
        return f"User {hexdigits[:4].upper()}".encode()
    raise ValueError(f"unknown strategy {rule.strategy!r}")


class ReferenceRewriter:
    """Same API as `_anon.Rewriter`: rewrite() any chunking of COPY text, finish() at the end."""

    def __init__(self, table: str, columns: list[str], rules: list[FieldRule]):
        self.table = table
        self.columns = list(columns)
        self.rules = {rule.index: rule for rule in rules}
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
        out = []
        for i, field in enumerate(fields[:len(self.columns)]):
            if _ends_with_lone_backslash(field):
                raise self._error(i, "the field ends with a lone backslash")
            rule = self.rules.get(i)
            out.append(field if rule is None else self._rewrite_field(i, rule, field))
        if len(fields) < len(self.columns):
            raise self._error(len(fields), f"the row has {len(fields)} fields, {len(self.columns)} expected")
        if len(fields) > len(self.columns):
            raise self._error(len(self.columns) - 1, "the row has too many fields")
        self.rows += 1
        return b"\t".join(out)

    def _rewrite_field(self, i: int, rule: FieldRule, field: bytes) -> bytes:
        if field in (b"", b"\\N"):  # empty stays empty, NULL stays NULL
            return field
        try:
            value = unescape(field)
        except EndOfCopyMarker:
            raise self._error(i, "the field contains \\. (the end-of-copy marker)") from None
        try:
            value.decode("utf-8")
        except UnicodeDecodeError as e:
            raise self._error(i, f"invalid UTF-8 at byte {e.start} of the unescaped value") from None
        if b"\0" in value:
            raise self._error(i, "the value contains a NUL byte")
        result = apply(rule, value)
        return b"\\N" if result is None else escape(result)
