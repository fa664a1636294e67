"""Whether a value of the source column's type keeps its value in the target column's type.

Types are compared after resolving domains (catalog.Column: base type, typmod, array-ness), so a
domain and its base type compare as the base type; a target domain may not add CHECK constraints
to a copied column (values the source allows could be refused mid-load).

A difference is accepted only when it is one of these lossless widenings (the same for arrays of
them; an array and a non-array never match):
  - int2 -> int4, int8; int4 -> int8;
  - int2, int4, int8 -> numeric without typmod, or numeric(p,s) with at least 5, 10, 19 integer digits (p - s);
  - numeric(p,s) -> numeric without typmod, or numeric(p',s') with s' >= s and p' - s' >= p - s;
  - float4 -> float8: the source prints the shortest decimal that identifies the float4 (at most 9
    significant digits; PostgreSQL 12+, extra_float_digits > 0 as the workers set it), float8 holds
    every decimal of up to 15 digits exactly, so the target prints the same number;
  - varchar(n) -> varchar(m >= n), varchar, text; text, varchar and the other string types except
    char(n) -> text or varchar without length; char(n) -> char(m >= n) or bpchar;
  - bit(n), varbit(n) -> varbit(m >= n) or varbit;
  - timestamp, timestamptz, time, timetz (p) -> the same type with precision >= p (none is 6);
  - interval (fields, p) -> interval, or the same fields with precision >= p.
Everything else that differs (narrowing, another family, a typmod of an unknown type) is refused."""

from __future__ import annotations

from .catalog import Column

_INT_DIGITS = {"int2": 5, "int4": 10, "int8": 19}
_INT_ORDER = ("int2", "int4", "int8")
_PRECISION_TYPES = ("timestamp", "timestamptz", "time", "timetz")
_INTERVAL_FULL_RANGE = 0x7FFF
_INTERVAL_FULL_PRECISION = 0xFFFF


def _numeric(typmod: int) -> tuple[int, int] | None:
    """(precision, scale) of a numeric typmod; the scale is 11-bit signed since PostgreSQL 15."""
    if typmod < 4:
        return None
    v = typmod - 4
    scale = v & 0x7FF
    return (v >> 16) & 0xFFFF, scale - 0x800 if scale & 0x400 else scale


def _seconds_precision(typmod: int) -> int:
    return 6 if typmod < 0 else typmod


def _length(col: Column) -> int | None:
    """n of varchar(n), char(n), bit(n), varbit(n); None without a length."""
    if col.base_type in ("varchar", "bpchar"):
        return col.typmod - 4 if col.typmod >= 4 else None
    return col.typmod if col.typmod >= 0 else None


def _longer_or_unbounded(src: Column, dst: Column) -> bool:
    n, m = _length(src), _length(dst)
    return m is None or (n is not None and n <= m)


def widening(src: Column, dst: Column) -> str | None:
    """Why src -> dst is a lossless widening ('lossless widening', plus what changes in the printed
    text), or None when it is not one. Both must differ in base type or typmod."""
    a, b = src.base_type, dst.base_type
    if a == b:
        if a in ("varchar", "varbit"):
            return "lossless widening" if _longer_or_unbounded(src, dst) else None
        if a == "bpchar":
            if not _longer_or_unbounded(src, dst):
                return None
            m = _length(dst)
            return "lossless widening" + (f" (padded with spaces to {m})" if m is not None else "")
        if a == "numeric":
            ps, pd = _numeric(src.typmod), _numeric(dst.typmod)
            if pd is None:
                return "lossless widening"
            if ps is None:
                return None
            (p, s), (p2, s2) = ps, pd
            if s2 >= s and p2 - s2 >= p - s:
                return "lossless widening" + (f" (printed with {s2} decimals)" if s2 > s else "")
            return None
        if a in _PRECISION_TYPES:
            return "lossless widening" if _seconds_precision(dst.typmod) >= _seconds_precision(src.typmod) else None
        if a == "interval":
            if dst.typmod < 0:
                return "lossless widening"
            if src.typmod < 0:
                return None
            fields_ok = (dst.typmod >> 16) & 0x7FFF in (_INTERVAL_FULL_RANGE, (src.typmod >> 16) & 0x7FFF)

            def precision(t: int) -> int:
                return 6 if t & 0xFFFF == _INTERVAL_FULL_PRECISION else t & 0xFFFF
            return "lossless widening" if fields_ok and precision(dst.typmod) >= precision(src.typmod) else None
        return None
    if a in _INT_ORDER and b in _INT_ORDER:
        return "lossless widening" if _INT_ORDER.index(a) < _INT_ORDER.index(b) else None
    if a in _INT_DIGITS and b == "numeric":
        pd = _numeric(dst.typmod)
        if pd is None:
            return "lossless widening"
        p, s = pd
        if p - s >= _INT_DIGITS[a]:
            return "lossless widening" + (f" (printed with {s} decimals)" if s > 0 else "")
        return None
    if a == "float4" and b == "float8":
        return "lossless widening (the same decimal value)"
    if src.category == "S" and a != "bpchar" and b in ("text", "varchar") and _length(dst) is None:
        return "lossless widening"
    if a == "bit" and b == "varbit":
        return "lossless widening" if _longer_or_unbounded(src, dst) else None
    return None


def compare(src: Column, dst: Column, ruled: bool) -> tuple[str | None, str | None]:
    """(problem, note) for copying src's values into dst. `ruled`: a strategy writes the column's
    values, so the target domain's CHECKs judge the strategy's output (a warning of the planner),
    not the source's values. The note says what an accepted difference is, for --dry-run."""
    shown = f"{src.described} on the source, {dst.described} on the target"
    if src.is_array != dst.is_array:
        return f"type {shown}: an array and a non-array", None
    same = (src.resolved_type or src.type) == (dst.resolved_type or dst.type)
    if same and src.base_type == dst.base_type and src.typmod == dst.typmod:
        how = None if src.type == dst.type else "same base type"
    else:
        how = widening(src, dst)
        if how is None:
            return (f"type {shown}: values could change or be refused (a narrower or different type): "
                    "make the target's type the same or wider"), None
    mine = {c.definition for c in src.domain_checks}
    added = [c for c in dst.domain_checks if c.definition not in mine]
    if added and not ruled:
        c = added[0]
        return (f"type {shown}: the target's domain {c.on} adds {c.name} {c.definition}, which values the source "
                "allows may not satisfy: give the target the source's type (or the same domain)"), None
    if how is None:
        return None, None
    return None, f"{src.described} -> {dst.described}, {how}"
