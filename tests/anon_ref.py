"""Reference rewriters in plain Python: the test oracles of what `_anon.Rewriter` (COPY text) and
`_anon.BinaryRewriter` (COPY binary) must output.

Written for clarity, not speed, and independently of the Cython code: the property tests feed both
the same generated rows and require identical bytes (or the same error row and column). It lives
under tests/ because nothing at run time uses it (the pump drives the compiled rewriter in C, so a
Python rewriter could not stand in for it); what it shares with the program, it takes from the
package: the COPY-text codec (`confiture_fast.copytext`) and each strategy's `reference`.
"""

from __future__ import annotations

import re
import struct

from confiture_fast import copytext
from confiture_fast.strategies import (DOCUMENTS, IDENTITY, NULLING, NUMERIC_OUT, STRATEGIES, FieldRule, RewriteError,
                                       json_rules, siphash24)


# -- strategies ----------------------------------------------------------------------------------
def apply(rule: FieldRule, value: bytes, row_key: bytes | None = None) -> bytes | None:
    """The strategy's output for one non-empty, non-NULL value (None means NULL), as its module defines it.

    `row_key` is the unescaped value of the rule's key column (a per_row_key param), if not NULL.
    Raises ValueError when the value is not of the form the strategy reads.
    """
    strategy = STRATEGIES.get(rule.strategy)
    if strategy is None:
        raise ValueError(f"unknown strategy {rule.strategy!r}")
    digest = siphash24(rule.key, value if row_key is None else row_key) if strategy.keyed else None
    return strategy.reference(rule.params, value, digest)


def apply_to_array(rule: FieldRule, value: bytes, row_key: bytes | None) -> bytes:
    """Applies the rule to each element of an array literal in PostgreSQL's output form; NULL and
    empty elements stay as they are."""
    bounds, items = copytext.parse_array(value)
    return copytext.format_array(copytext.map_array(items, lambda v: apply(rule, v, row_key) if v else v), bounds)


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
            sub = next((r for steps, r in subs if copytext.json_path_matches(steps, location)), None)
        if sub is not None and sub.strategy in IDENTITY:
            sub = None
            active = _KEEP
        if i >= len(doc):
            raise bad
        c = doc[i]
        if c in b"{[":
            if depth == _MAX_JSON_DEPTH:
                raise bad
            inner = _KEEP if sub is not None and sub.strategy in NULLING else (sub or active)
            end = container(i, location, inner, depth + 1)
            if sub is not None and sub.strategy in NULLING:
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
                new = b"null" if result is None else result if sub.strategy in NUMERIC_OUT else _json_quote(result)
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
                step = (True, key.decode())  # valid UTF-8: the value was checked
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
_IDENTITY = STRATEGIES[min(IDENTITY)]
_KEEP = FieldRule(index=-1, column="", strategy=_IDENTITY.name, key=b"", params=_IDENTITY.params_type())
_MAX_JSON_DEPTH = 64


def check_text(value: bytes, error) -> None:
    """Raises error(problem) for what PostgreSQL text cannot hold: invalid UTF-8, a NUL byte."""
    try:
        value.decode("utf-8")
    except UnicodeDecodeError as e:
        raise error(f"invalid UTF-8 at byte {e.start} of the unescaped value") from None
    if b"\0" in value:
        raise error("the value contains a NUL byte")


class ReferenceRewriter:
    """Same API as `_anon.Rewriter`: rewrite() any chunking of COPY text, finish() at the end."""

    def __init__(self, table: str, columns: list[str], rules: list[FieldRule]):
        self.table = table
        self.columns = list(columns)
        self.rules = {rule.index: rule for rule in rules if rule.strategy not in IDENTITY}  # untouched
        self.rows = 0
        self._rows = copytext.RowSplitter()

    def _error(self, column_index: int, problem: str) -> RewriteError:
        return RewriteError(self.table, self.rows + 1, self.columns[column_index], problem)

    def rewrite(self, data: bytes) -> bytes:
        return b"".join(self.rewrite_row(line) + copytext.ROW_END for line in self._rows.feed(data))

    def finish(self) -> None:
        if self._rows.pending:
            cut_in = min(self._rows.pending.count(copytext.FIELD_SEP), len(self.columns) - 1)
            raise self._error(cut_in, "the data ends in the middle of this row (no final newline)")

    def rewrite_row(self, line: bytes) -> bytes:
        """One row without its newline -> the rewritten row without its newline."""
        fields = copytext.split_row(line)
        for i, field in enumerate(fields[:len(self.columns)]):
            if copytext.ends_with_lone_backslash(field):
                raise self._error(i, "the field ends with a lone backslash")
        if len(fields) < len(self.columns):
            raise self._error(len(fields), f"the row has {len(fields)} fields, {len(self.columns)} expected")
        if len(fields) > len(self.columns):
            raise self._error(len(self.columns) - 1, "the row has too many fields")
        out = list(fields)
        for i, rule in sorted(self.rules.items()):
            out[i] = self._rewrite_field(i, rule, fields[i], fields)
        self.rows += 1
        return copytext.FIELD_SEP.join(out)

    def _unescape(self, i: int, field: bytes) -> bytes:
        try:
            return copytext.unescape(field)
        except copytext.EndOfCopyMarker as e:
            raise self._error(i, str(e)) from None

    def _rewrite_field(self, i: int, rule: FieldRule, field: bytes, fields: list[bytes]) -> bytes:
        if field in (b"", copytext.NULL):  # empty stays empty, NULL stays NULL
            return field
        value = self._unescape(i, field)
        check_text(value, lambda problem: self._error(i, problem))
        row_key = None
        if rule.key_index >= 0 and fields[rule.key_index] != copytext.NULL:
            row_key = self._unescape(rule.key_index, fields[rule.key_index])
        try:
            if rule.strategy in DOCUMENTS:
                result = apply_to_json(rule, value)
            elif rule.is_array and rule.strategy not in NULLING:  # null replaces the whole array
                result = apply_to_array(rule, value, row_key)
            else:
                result = apply(rule, value, row_key)
        except ValueError as e:
            raise self._error(i, str(e)) from None
        return copytext.encode_field(result)


# -- COPY binary ---------------------------------------------------------------------------------
BINARY_SIGNATURE = b"PGCOPY\n\xff\r\n\x00"
BINARY_NULL = struct.pack(">i", -1)


class BinaryReferenceRewriter:
    """Same API as `_anon.BinaryRewriter`: rewrite() any chunking of COPY binary data, finish() at the end.

    A ruled value's text is its bytes (after the version byte 1 of jsonb, of a column listed in
    `jsonb`); an array's elements are rewritten one by one as the text path does (NULL and empty stay).
    Structure errors are reported as soon as their bytes have arrived, like the compiled one does."""

    def __init__(self, table: str, columns: list[str], rules: list[FieldRule], jsonb=()):
        self.table = table
        self.columns = list(columns)
        self.rules = {rule.index: rule for rule in rules if rule.strategy not in IDENTITY}
        self.jsonb = frozenset(jsonb)
        self.rows = 0
        self._pending = b""
        self._stage = 0  # 0 before the header, 1 rows, 2 after the trailer

    def _error(self, column_index: int, problem: str) -> RewriteError:
        return RewriteError(self.table, self.rows + 1, self.columns[column_index], problem)

    def rewrite(self, data: bytes) -> bytes:
        self._pending += data
        out = []
        while self._pending:
            n = self._complete()
            if n is None:
                break
            unit, self._pending = self._pending[:n], self._pending[n:]
            if self._stage == 0 or n == 2:  # the header, or the trailer
                self._stage += 1
                out.append(unit)
            else:
                out.append(self._rewrite_tuple(unit))
        return b"".join(out)

    def finish(self) -> None:
        if self._pending or self._stage != 2:
            raise self._error(len(self.columns) - 1, "the data ends in the middle of a row or before the trailer")

    def _complete(self) -> int | None:
        """Length of the header, row or trailer at the start of the pending data, None while incomplete."""
        d = self._pending
        last = len(self.columns) - 1
        if self._stage == 0:
            if len(d) < 19:
                return None
            flags, ext = struct.unpack(">II", d[11:19])
            if d[:11] != BINARY_SIGNATURE or flags & 0x7FFF0000 or ext > 0x7FFFFFFF:
                raise self._error(0, "not COPY's binary format")
            return 19 + ext if len(d) >= 19 + ext else None
        if self._stage == 2:
            raise self._error(last, "data after the end-of-data trailer")
        if len(d) < 2:
            return None
        (count,) = struct.unpack(">h", d[:2])
        if count == -1:
            return 2
        if count != len(self.columns):
            raise self._error(last, f"the row has {count} fields, {len(self.columns)} expected")
        off = 2
        for i in range(len(self.columns)):
            if len(d) < off + 4:
                return None
            (length,) = struct.unpack(">i", d[off:off + 4])
            off += 4
            if length < -1:
                raise self._error(i, "a field length below -1")
            off += max(length, 0)
            if len(d) < off:
                return None
        return off

    def _rewrite_tuple(self, unit: bytes) -> bytes:
        values, off = [], 2
        for _ in self.columns:
            (length,) = struct.unpack(">i", unit[off:off + 4])
            off += 4
            values.append(None if length < 0 else unit[off:off + length])
            off += max(length, 0)
        out = list(values)
        for i, rule in sorted(self.rules.items()):
            out[i] = self._rewrite_field(i, rule, values)
        self.rows += 1
        return unit[:2] + b"".join(BINARY_NULL if v is None else struct.pack(">i", len(v)) + v for v in out)

    def _text(self, i: int, value: bytes) -> bytes:
        if i not in self.jsonb:
            return value
        if value[:1] != b"\x01":
            raise self._error(i, "a binary jsonb value that does not start with version byte 1")
        return value[1:]

    def _rewrite_field(self, i: int, rule: FieldRule, values: list[bytes | None]) -> bytes | None:
        value = values[i]
        if value is None:
            return None
        row_key = None
        if rule.key_index >= 0 and values[rule.key_index] is not None:
            row_key = self._text(rule.key_index, values[rule.key_index])
        if rule.is_array:
            return None if rule.strategy in NULLING else self._rewrite_array(i, rule, value, row_key)
        return self._rewrite_value(i, rule, self._text(i, value), row_key)

    def _rewrite_value(self, i: int, rule: FieldRule, text: bytes, row_key: bytes | None) -> bytes | None:
        """The new value (version byte included) for one value or array element whose text is `text`."""
        prefix = b"\x01" if i in self.jsonb else b""
        if not text:
            return prefix
        check_text(text, lambda problem: self._error(i, problem))
        try:
            result = apply_to_json(rule, text) if rule.strategy in DOCUMENTS else apply(rule, text, row_key)
        except ValueError as e:
            raise self._error(i, str(e)) from None
        return None if result is None else prefix + result

    def _rewrite_array(self, i: int, rule: FieldRule, value: bytes, row_key: bytes | None) -> bytes:
        bad = self._error(i, "not an array in COPY's binary form")
        if len(value) < 12:
            raise bad
        ndim, flags, _element_type = struct.unpack(">iII", value[:12])
        if not 0 <= ndim <= 6 or flags > 1:
            raise bad
        header = 12 + 8 * ndim
        if len(value) < header:
            raise bad
        count = 1 if ndim else 0
        for k in range(ndim):
            (size,) = struct.unpack(">i", value[12 + 8 * k:16 + 8 * k])
            if size < 0:
                raise bad
            count *= size
            if count > (len(value) - header) // 4:
                raise bad
        elements, pos, nulls = [], header, False
        for _ in range(count):
            if len(value) - pos < 4:
                raise bad
            (length,) = struct.unpack(">i", value[pos:pos + 4])
            pos += 4
            new = None
            if length != -1:
                if length < -1 or len(value) - pos < length:
                    raise bad
                new = self._rewrite_value(i, rule, self._text(i, value[pos:pos + length]), row_key)
                pos += length
            nulls = nulls or new is None
            elements.append(BINARY_NULL if new is None else struct.pack(">i", len(new)) + new)
        if pos != len(value):
            raise bad
        return value[:4] + struct.pack(">I", 1 if nulls else flags) + value[8:header] + b"".join(elements)
