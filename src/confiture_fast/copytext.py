"""PostgreSQL's text forms, read and written in one place: COPY text rows and field escapes, array
literals, and the JSON paths of our rules.

The only Python implementation of these (tests/unit/test_copytext_codec.py checks that no other module
defines them); the compiled rewriter (_anon.pyx) has its own C twin, and the property tests hold both to
the same bytes. Everything here works on bytes, one byte per character position, so that offsets are
byte offsets and invalid UTF-8 is the caller's to judge. Pure and database-free.
"""

from __future__ import annotations

import functools
import json
import re
from typing import Iterable, Iterator, Union

NULL = b"\\N"  # a NULL field
FIELD_SEP = b"\t"
ROW_END = b"\n"

# -- field escapes -------------------------------------------------------------------------------
# What COPY TO writes for each byte it escapes; COPY FROM reads these back, plus octal and hex escapes,
# and any other escaped character as itself.
ESCAPES = {8: b"\\b", 9: b"\\t", 10: b"\\n", 11: b"\\v", 12: b"\\f", 13: b"\\r", 92: b"\\\\"}
_ESCAPE_RE = re.compile(b"[" + re.escape(bytes(ESCAPES)) + b"]")
_ESCAPE_OUT = {bytes([b]): out for b, out in ESCAPES.items()}
_UNESCAPE_RE = re.compile(rb"\\(?:([0-7]{1,3})|x([0-9a-fA-F]{1,2})|(.))", re.DOTALL)
_UNESCAPE_IN = {out[1:]: bytes([b]) for b, out in ESCAPES.items()}


class EndOfCopyMarker(ValueError):
    """A backslash-period inside a field: PostgreSQL reads it as the end of the data, not as '.'."""


def escape(value: bytes) -> bytes:
    """Value bytes -> one COPY text field, exactly as PostgreSQL's COPY TO writes it."""
    return _ESCAPE_RE.sub(lambda m: _ESCAPE_OUT[m.group()], value)


def _unescaped(m: re.Match[bytes]) -> bytes:
    octal, hexa, other = m.groups()
    if octal is not None:
        return bytes([int(octal, 8) & 0xFF])
    if hexa is not None:
        return bytes([int(hexa, 16)])
    if other == b".":
        raise EndOfCopyMarker("the field contains \\. (the end-of-copy marker)")
    return _UNESCAPE_IN.get(other, other)


def ends_with_lone_backslash(field: bytes) -> bool:
    """The field's last backslash escapes nothing (COPY FROM would read the next byte, a tab or the
    newline, as data)."""
    return (len(field) - len(field.rstrip(b"\\"))) % 2 == 1


def unescape(field: bytes) -> bytes:
    """One COPY text field (not `\\N`) -> its value bytes, as COPY FROM reads it.

    Raises EndOfCopyMarker for `\\.`, ValueError for a field that ends with a lone backslash."""
    if b"\\" not in field:
        return field
    if ends_with_lone_backslash(field):
        raise ValueError("the field ends with a lone backslash")
    return _UNESCAPE_RE.sub(_unescaped, field)


def decode_field(field: bytes) -> bytes | None:
    """One COPY text field -> its value, None for NULL."""
    return None if field == NULL else unescape(field)


def encode_field(value: bytes | None) -> bytes:
    """A value (None for NULL) -> one COPY text field."""
    return NULL if value is None else escape(value)


# -- rows ----------------------------------------------------------------------------------------
def split_row(line: bytes) -> list[bytes]:
    """One row without its newline -> its raw (still escaped) fields. COPY TO escapes every tab inside
    a value, so each tab separates two fields."""
    return line.split(FIELD_SEP)


def parse_row(line: bytes) -> list[bytes | None]:
    """One row without its newline -> its values (None for NULL)."""
    return [decode_field(f) for f in split_row(line)]


def format_row(values: Iterable[bytes | None]) -> bytes:
    """Values (None for NULL) -> one row of COPY text, newline included."""
    return FIELD_SEP.join(map(encode_field, values)) + ROW_END


class RowSplitter:
    """Cuts COPY text arriving in chunks of any size into whole rows; keeps the partial last one."""

    def __init__(self) -> None:
        self.pending = b""  # after the last newline seen: a partial row, or b""

    def feed(self, data: bytes) -> list[bytes]:
        """The rows completed by `data`, each without its newline."""
        lines = (self.pending + bytes(data)).split(ROW_END)
        self.pending = lines.pop()
        return lines


def copy_rows(chunks: Iterable[bytes]) -> Iterator[list[bytes]]:
    """Rows of a COPY TO in text format, from its chunks, each split into raw (still escaped) fields."""
    rows = RowSplitter()
    for chunk in chunks:
        for line in rows.feed(chunk):
            yield split_row(line)


# -- array literals ------------------------------------------------------------------------------
# An array literal's elements: bytes, None for NULL, or a list for an inner dimension.
Elements = list[Union[bytes, None, "Elements"]]

_ARRAY_SPACE = b" \t\n\r\v\f"  # what array_in skips and array_out quotes
MAX_ARRAY_DEPTH = 64
_BOUNDS = frozenset(b"0123456789[]:-")
_QUOTED_BACKSLASH = re.compile(rb"\\(.)", re.DOTALL)


class NotAnArray(ValueError):
    def __init__(self) -> None:
        super().__init__("not an array literal in PostgreSQL's output form")


class _ArraySyntax:
    """The patterns of array literals with one element delimiter."""

    def __init__(self, delimiter: bytes):
        if len(delimiter) != 1:
            raise ValueError(f"an array element delimiter is one byte, not {delimiter!r}")
        special = re.escape(b'{}"\\' + delimiter + _ARRAY_SPACE)
        quoted, bare = rb'"([^"\\]*(?:\\.[^"\\]*)*)"', rb"([^%s]+)" % special
        # At a position where an element may stand: a quoted element, a bare one, or one other byte.
        self.token = re.compile(rb"%s|%s|(.)" % (quoted, bare), re.DOTALL)
        self.element = re.compile(rb"%s|%s" % (quoted, bare), re.DOTALL)
        item = rb"(?:%s|%s)" % (quoted, bare)
        self.flat = re.compile(rb"\{(?:%s(?:%s%s)*)?\}" % (item, re.escape(delimiter), item), re.DOTALL)
        self.needs_quotes = re.compile(rb"[%s]" % special)


@functools.cache
def _array_syntax(delimiter: bytes) -> _ArraySyntax:
    return _ArraySyntax(delimiter)


def _element(quoted: bytes, bare: bytes) -> bytes | None:
    if bare:
        return None if bare.lower() == b"null" else bare
    return _QUOTED_BACKSLASH.sub(rb"\1", quoted) if b"\\" in quoted else quoted


def parse_array(text: bytes, delimiter: bytes = b",") -> tuple[bytes, Elements]:
    """An array literal as array_out writes it -> (its bounds decoration such as `[0:1]=`, or b"";
    its elements). `delimiter` is the element type's typdelim (`;` for box, `,` for nearly every
    other type). Raises NotAnArray for anything array_out does not write."""
    syntax = _array_syntax(delimiter)
    if syntax.flat.fullmatch(text):  # one dimension, no bounds: the common case, in two passes of re
        return b"", [_element(q, b) for q, b in syntax.element.findall(text, 1)]
    bounds = b""
    pos = 0
    if text.startswith(b"["):
        eq = text.find(b"=")
        if eq < 0 or not _BOUNDS.issuperset(text[:eq]):
            raise NotAnArray()
        bounds, pos = text[:eq + 1], eq + 1
    if not text.startswith(b"{", pos):
        raise NotAnArray()
    items: Elements = []
    stack = [items]  # the arrays open at pos, outermost first
    pos += 1
    if text.startswith(b"}", pos):
        stack, pos = [], pos + 1
    while stack:
        m = syntax.token.match(text, pos)  # an element, or an inner array
        if m is None:
            raise NotAnArray()
        quoted, bare, other = m.groups()
        pos = m.end()
        if other == b"{":
            if len(stack) == MAX_ARRAY_DEPTH:
                raise NotAnArray()
            inner: Elements = []
            stack[-1].append(inner)
            stack.append(inner)
            if not text.startswith(b"}", pos):
                continue
            stack.pop()
            pos += 1
        elif other is None:
            stack[-1].append(_element(quoted or b"", bare or b""))
        else:
            raise NotAnArray()
        while stack:  # what follows: the delimiter, or the end of one or more arrays
            if text.startswith(delimiter, pos):
                pos += 1
                break
            if not text.startswith(b"}", pos):
                raise NotAnArray()
            stack.pop()
            pos += 1
    if pos != len(text):
        raise NotAnArray()
    return bounds, items


def quote_element(value: bytes, delimiter: bytes = b",") -> bytes:
    """One array element as array_out writes it: quoted when empty, NULL-like or holding a special byte."""
    if value and value.lower() != b"null" and not _array_syntax(delimiter).needs_quotes.search(value):
        return value
    return b'"' + value.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'


def format_array(items: Elements, bounds: bytes = b"", delimiter: bytes = b",") -> bytes:
    """Elements (and a bounds decoration) -> the array literal array_out writes."""
    def inner(items: Elements) -> bytes:
        return b"{" + delimiter.join(inner(x) if isinstance(x, list) else b"NULL" if x is None
                                     else quote_element(x, delimiter) for x in items) + b"}"

    return bounds + inner(items)


def array_values(items: Elements) -> Iterator[bytes | None]:
    """The elements of every dimension, in storage order."""
    for item in items:
        if isinstance(item, list):
            yield from array_values(item)
        else:
            yield item


def map_array(items: Elements, fn) -> Elements:
    """The same dimensions with `fn` applied to each element (NULL elements included)."""
    return [map_array(x, fn) if isinstance(x, list) else fn(x) for x in items]


# -- JSON paths of our rules ---------------------------------------------------------------------
# A path is a list of steps: ("key", name), ("index", n), ("any_key", None), ("any_index", None).
# A location inside a document is a tuple of (is_key, key or index) pairs.
JsonStep = tuple[str, Union[str, int, None]]
_PATH_STEP = re.compile(r"""\.([A-Za-z_][A-Za-z0-9_$-]*|\*)|\[(\*|[0-9]+|"(?:[^"\\]|\\.)*")\]""")
_PLAIN_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def parse_json_path(path: str) -> list[JsonStep]:
    """`$.a.b[0][*]["odd key"].*` -> [("key", "a"), ("key", "b"), ("index", 0), ("any_index", None),
    ("key", "odd key"), ("any_key", None)]; ValueError when it is not that form."""
    if not path.startswith("$"):
        raise ValueError(f"JSON path {path!r} must start with $")
    steps: list[JsonStep] = []
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


def json_path_step(key: str | None) -> str:
    """The path text of one step: `.name` or `["odd name"]` for a key, `[*]` for any array item (None)."""
    if key is None:
        return "[*]"
    return f".{key}" if _PLAIN_KEY.fullmatch(key) else f"[{json.dumps(key)}]"


def json_path_matches(steps: list[JsonStep], location: tuple | list) -> bool:
    """The path names exactly this location (no step matches more than one level)."""
    if len(steps) != len(location):
        return False
    for (kind, arg), (is_key, at) in zip(steps, location):
        if is_key and not (kind == "any_key" or kind == "key" and at == arg):
            return False
        if not is_key and not (kind == "any_index" or kind == "index" and at == arg):
            return False
    return True
