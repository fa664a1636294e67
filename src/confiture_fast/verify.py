"""confiture-fast verify: prove that a synced copy is complete where it should be and anonymized
where it should be, the user guide's "Verify Anonymization" made into one command.

Both sides are streamed once with `COPY (SELECT ... ORDER BY key) TO STDOUT` in read-only
repeatable-read sessions and compared field by field in this process: nothing is loaded whole.
Untouched columns get an xxh3 fingerprint per side; anonymized columns are checked against a bounded
set of xxh3 hashes of the source values (which thins itself to a deterministic share of the value
space, and says so, when a column has more distinct values than the bound).
"""

import itertools
import json
import operator
import re
import sys
from pathlib import Path
from typing import Any, Iterator

import msgspec
import psycopg
import xxhash

from . import copytext, pg, strategies
from .catalog import Column, Table, quote_ident, read_catalog
from .errors import ConfigError, ValidationError
from .pii import KIND_LABELS, LEAK_KINDS, content_kinds, name_kind, pii_kind, review_reason, sampled
from .redact import Redactor
from .request import Scope

DEFAULT_MAX_VALUES = 5_000_000
DEFAULT_PII_ROWS = 100_000
BATCH_ROWS = 5_000  # rows read from each side before the column-wise checks
NULL = copytext.NULL

# What a reviewed-but-unchanged column looks like in the rules: compared like any untouched column.
_UNCHANGED = strategies.IDENTITY


# --------------------------------------------------------------------------- expected outputs

# The shape every non-empty output of a strategy has (docs/strategies.md) as its COPY text, or None
# when the output has no fixed shape (pool draws, shifted dates, moved numbers, masks): declared by its module.
output_format = strategies.output_format

# Strategies whose output may equal a real value by design, so that "equal to a source value" is no
# evidence of a leak (name -> why), and those for which even the same row keeping its value can be
# by design: declared by each strategy's module (equal_by_design, same_row_by_design).
_NO_SET_CHECK = strategies.EQUAL_BY_DESIGN
_NO_ROW_CHECK = strategies.SAME_ROW_BY_DESIGN


def array_elements(field: bytes) -> list[bytes]:
    """The non-NULL, non-empty elements of an array field, whatever its dimensions and bounds; none
    for a value that is not an array literal (left unchecked rather than misjudged)."""
    try:
        _, items = copytext.parse_array(copytext.unescape(field))
    except copytext.NotAnArray:
        return []
    return [v for v in copytext.array_values(items) if v]


def _text(field: bytes) -> str:
    return copytext.unescape(field).decode("utf-8", "replace")


def json_checks(params) -> list[tuple[list, str, re.Pattern[str] | None]]:
    """(path steps, strategy, output format) of each path of a json rule, in rule order."""
    return [(steps, name, output_format(name, p)) for steps, name, p in strategies.json_rules(params)]


def json_scalars(doc: Any, rules: list) -> dict[tuple, tuple[Any, Any]]:
    """location -> (the rule that applies there or None, value) for every scalar of a document. As in
    the rewriter, the first matching path wins and a rule on a container covers everything inside."""
    out: dict[tuple, tuple[Any, Any]] = {}

    def walk(node: Any, loc: tuple, active) -> None:
        rule = active or next((r for r in rules if copytext.json_path_matches(r[0], loc)), None)
        if isinstance(node, dict):
            for k, v in node.items():
                walk(v, loc + ((True, k),), rule)
        elif isinstance(node, list):
            for n, v in enumerate(node):
                walk(v, loc + ((False, n),), rule)
        else:
            out[loc] = (rule, node)

    walk(doc, (), None)
    return out


def _load_json(field: bytes) -> Any:
    if field == NULL or field == b"":
        return None
    text = copytext.unescape(field)
    try:
        return json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError):  # not JSON (the server's text of a json column is)
        return None


# --------------------------------------------------------------------------- per-column state


class ColumnReport(msgspec.Struct, kw_only=True):
    column: str
    mode: str  # untouched, keep, anonymized
    strategy: str | None = None
    fingerprint_source: str | None = None
    fingerprint_target: str | None = None
    differing_rows: int = 0
    unchanged_rows: int = 0  # anonymized: rows whose target value is the source value
    equal_to_a_source_value: int = 0  # anonymized: target values found among the column's source values
    value_check: str | None = None  # exact, or the share of the value space the equality check covered
    null_mismatches: int = 0
    format_errors: int = 0
    format_check: str | None = None
    duplicates: int | None = None  # anonymized unique columns: extra copies of a value on the target
    leaks: dict[str, int] = {}
    leak_rows_checked: int = 0
    name_suggests: str | None = None  # --pii-patterns: an untouched column whose name reads as PII
    review: str | None = None  # --pii-patterns: an untouched column that needs a review (pii.review_reason)
    problems: list[str] = []


class _HashSet:
    """Hashes of source values, at most `bound` of them. Past the bound, only hashes with
    h % share == 0 are kept (share doubling each time): a deterministic slice of the value space,
    so a target value equal to a source value in that slice is still always found."""

    def __init__(self, bound: int):
        self.bound = max(1, bound)
        self.share = 1
        self.hashes: set[int] = set()

    def add_values(self, values) -> None:
        """Adds the hashes of a batch of values; the bound is enforced after each batch."""
        hashes = map(xxhash.xxh3_64_intdigest, values)
        if self.share == 1:
            self.hashes.update(hashes)
        else:
            self.hashes.update(h for h in hashes if h % self.share == 0)
        while len(self.hashes) > self.bound:
            self.share *= 2
            self.hashes = {x for x in self.hashes if x % self.share == 0}

    def __contains__(self, h: int) -> bool:
        return h % self.share == 0 and h in self.hashes


def _first(found: list[int], start: int) -> int | None:
    return start + found[0] if found else None


class _Anonymized:
    """Checks of one anonymized column, fed a batch of aligned rows at a time (column-wise, so that
    the per-value work is list comprehensions over bytes rather than calls)."""

    def __init__(self, report: ColumnReport, params, is_array: bool, seen: _HashSet, aligned: bool = True,
                 leak_rows: int = 0):
        self.r, self.is_array, self.seen = report, is_array, seen
        self.leak_rows = leak_rows  # json: rows whose unruled leaves get the --pii-patterns look
        self.json_rules = json_checks(params) if report.strategy in strategies.DOCUMENTS and params is not None else None
        self.aligned = aligned  # rows of both sides in the same order: per-row checks make sense
        self.nulls = [0, 0]  # NULLs on each side, compared when rows are not aligned
        pattern = output_format(report.strategy, params) if params is not None else None
        # Matched against the raw COPY fields: the formats hold no byte COPY escapes, so a raw field
        # matches exactly when its value does, and a whole batch joined by tabs is one regex call.
        self.pattern = re.compile(pattern.pattern.encode()) if pattern is not None else None
        self.batch_pattern = (re.compile(b"(?:(?:%s)\t)*(?:%s)" % (self.pattern.pattern, self.pattern.pattern))
                              if pattern is not None else None)
        self.nullable = report.strategy not in strategies.NULLING
        self.row_check = report.strategy not in _NO_ROW_CHECK
        self.set_check = report.strategy not in _NO_SET_CHECK
        self.first: dict[str, int] = {}

    def _count(self, what: str, field: str, rows: list[int], start: int) -> None:
        if rows:
            setattr(self.r, field, getattr(self.r, field) + len(rows))
            self.first.setdefault(what, start + rows[0])

    def check(self, start: int, src: tuple[bytes, ...], dst: tuple[bytes, ...]) -> None:
        n = len(dst)
        is_null = NULL.__eq__
        if self.nullable and not self.aligned:
            self.nulls[0] += src.count(NULL)
            self.nulls[1] += dst.count(NULL)
        elif self.nullable:
            a, b = list(map(is_null, src)), list(map(is_null, dst))
            if a != b:
                self._count("null", "null_mismatches", [i for i in range(n) if a[i] != b[i]], start)
        if not self.nullable:
            self._count("format", "format_errors", [i for i in range(n) if dst[i] != NULL], start)
            return
        if self.json_rules is not None:
            self._check_json(start, src, dst)
            return
        if NULL in dst or b"" in dst:
            live = [i for i in range(n) if dst[i] != NULL and dst[i] != b""]
            fields = [dst[i] for i in live]
        else:
            live, fields = range(n), dst
        same = list(map(operator.eq, src, dst)) if self.row_check and self.aligned else ()
        if any(same):
            self._count("unchanged", "unchanged_rows", [i for i in live if same[i]], start)
        if self.is_array:
            self._check_arrays(start, live, fields)
            return
        if self.pattern is not None and fields and not self.batch_pattern.fullmatch(b"\t".join(fields)):
            ok = list(map(self.pattern.fullmatch, fields))
            self._count("format", "format_errors", [live[k] for k in range(len(ok)) if ok[k] is None], start)
        if not self.set_check:
            return
        if b"\\" in b"".join(fields):
            fields = list(map(copytext.unescape, fields))
        seen = self.seen
        hashes = map(xxhash.xxh3_64_intdigest, fields)
        if seen.share == 1:
            hit = list(map(seen.hashes.__contains__, hashes))
        else:
            hit = [h % seen.share == 0 and h in seen.hashes for h in hashes]
        if any(hit):
            self._count("equal", "equal_to_a_source_value", [live[k] for k in range(len(hit)) if hit[k]], start)

    def _check_json(self, start: int, src: tuple[bytes, ...], dst: tuple[bytes, ...]) -> None:
        """Inside each document: the values at the ruled paths changed and in format, and no email,
        phone or card number left in the leaves no path rules (a path that misses leaks silently)."""
        unchanged, bad, leaky = [], [], []
        for i, field in enumerate(dst):
            target = _load_json(field)
            if target is None:
                continue
            theirs = _load_json(src[i]) if self.aligned else None
            before = json_scalars(theirs, self.json_rules) if theirs is not None else {}
            check_leaks = start + i <= self.leak_rows
            for loc, (rule, value) in json_scalars(target, self.json_rules).items():
                if rule is None:
                    if check_leaks and isinstance(value, str) and value:
                        for kind in content_kinds(value):
                            if kind in LEAK_KINDS:
                                self.r.leaks[kind] = self.r.leaks.get(kind, 0) + 1
                                leaky.append(i)
                    continue
                name, pattern = rule[1], rule[2]
                if name in strategies.IDENTITY:
                    continue
                if name in strategies.NULLING:
                    if value is not None:
                        bad.append(i)
                    continue
                if pattern is not None and isinstance(value, str) and value and not pattern.fullmatch(value):
                    bad.append(i)
                if (name not in _NO_ROW_CHECK and value not in (None, "") and not isinstance(value, bool)
                        and loc in before and before[loc][1] == value):
                    unchanged.append(i)
        if self.leak_rows:
            self.r.leak_rows_checked = min(self.leak_rows, start - 1 + len(dst))
        self._count("unchanged", "unchanged_rows", sorted(set(unchanged)), start)
        self._count("format", "format_errors", sorted(set(bad)), start)
        if leaky:
            self.first.setdefault("leak", start + leaky[0])

    def _check_arrays(self, start: int, live, fields) -> None:
        values = list(map(array_elements, fields))
        seen = self.seen
        if self.set_check:
            equal = [i for i, vs in zip(live, values) if any(xxhash.xxh3_64_intdigest(v) in seen for v in vs)]
            self._count("equal", "equal_to_a_source_value", equal, start)
        if self.pattern is not None:
            fm = self.pattern.fullmatch
            self._count("format", "format_errors", [i for i, vs in zip(live, values) if not all(fm(v) for v in vs)],
                        start)


# Cheap first look for --pii-patterns: an @, or nine digits close together (a phone or card number).
_LEAK_HINT = re.compile(rb"@|\d(?:[\s().+-]{0,3}\d){8}")


class _Untouched:
    """Fingerprints of one untouched column on both sides, the rows where they differ, and the
    --pii-patterns look at its target values."""

    def __init__(self, report: ColumnReport, leak_rows: int):
        self.r = report
        self.hs, self.ht = xxhash.xxh3_64(), xxhash.xxh3_64()
        self.leak_rows = leak_rows
        self.first_diff: int | None = None
        self.first_leak: int | None = None

    def feed(self, src: tuple[bytes, ...] | None, dst: tuple[bytes, ...] | None) -> tuple[bytes, bytes]:
        ja = b"\t".join(src) + b"\t" if src else b""
        jb = b"\t".join(dst) + b"\t" if dst else b""
        self.hs.update(ja)
        self.ht.update(jb)
        return ja, jb

    def check(self, start: int, src: tuple[bytes, ...], dst: tuple[bytes, ...]) -> None:
        ja, jb = self.feed(src, dst)
        if ja != jb:
            diff = [i for i in range(len(dst)) if src[i] != dst[i]]
            self.r.differing_rows += len(diff)
            if self.first_diff is None:
                self.first_diff = _first(diff, start)
        room = self.leak_rows - (start - 1)
        if room <= 0:
            return
        rows = dst[:room]
        self.r.leak_rows_checked = start - 1 + len(rows)
        if not _LEAK_HINT.search(jb if len(rows) == len(dst) else b"\t".join(rows)):
            return
        for i, field in enumerate(rows):
            if field == NULL or not _LEAK_HINT.search(field):
                continue
            found = [k for k in content_kinds(_text(field)) if k in LEAK_KINDS]
            for k in found:
                self.r.leaks[k] = self.r.leaks.get(k, 0) + 1
            if found and self.first_leak is None:
                self.first_leak = start + i


# --------------------------------------------------------------------------- per table


class TableReport(msgspec.Struct, kw_only=True):
    table: str
    rows_source: int = 0
    rows_target: int = 0
    order_by: str = ""
    columns: list[ColumnReport] = []
    problems: list[str] = []
    notes: list[str] = []

    @property
    def ok(self) -> bool:
        return not self.problems and not any(c.problems for c in self.columns)


def constraint_columns(definition: str) -> list[str]:
    """Column names of `PRIMARY KEY (a, "B c")` as pg_get_constraintdef() writes it."""
    inside = definition[definition.index("(") + 1:definition.rindex(")")]
    return [m.group(1).replace('""', '"') if m.group(1) is not None else m.group(2)
            for m in re.finditer(r'\s*(?:"((?:[^"]|"")*)"|([^,\s]+))\s*(?:,|$)', inside)]


def _order_key(src: Table, dst: Table, columns: list[Column], touched: set[str]) -> tuple[str, str]:
    """ORDER BY clause and its description: the primary key, else a unique NOT NULL column, else every
    untouched column; never an anonymized column (its values differ between the sides). Text sorts
    with the C collation so that both servers agree on the order whatever their locale."""
    def expr(c: Column) -> str:
        return f"{quote_ident(c.name)} COLLATE \"C\"" if c.category == "S" and not c.is_array else quote_ident(c.name)

    by_name = {c.name: c for c in columns}
    for ix in src.indexes:
        if ix.constraint_def and ix.constraint_def.startswith("PRIMARY KEY"):
            key = constraint_columns(ix.constraint_def)
            if key and all(k in by_name and k not in touched for k in key):
                return ", ".join(expr(by_name[k]) for k in key), f"primary key ({', '.join(key)})"
    for c in columns:
        if c.unique and c.not_null and c.name not in touched:
            return expr(c), f"unique column {c.name}"
    plain = [c for c in columns if c.name not in touched]
    if not plain:
        return "", "none: no untouched column to align rows on (NULLs compared by count, no per-row checks)"
    # Each value's text through its type's output function (format), never `::text`: a role that owns
    # a type on the target may give it a cast to text, which would run with verify's rights.
    return (", ".join(f"{quote_ident(c.name)} IS NULL, pg_catalog.format('%s', {quote_ident(c.name)}) COLLATE \"C\""
                      for c in plain), "every untouched column (no usable key)")


def _copy_rows(conn: psycopg.Connection, sql: str) -> Iterator[list[bytes]]:
    """Rows of a COPY TO STDOUT in text format, split into raw (still escaped) fields."""
    with conn.cursor().copy(sql) as copy:
        yield from copytext.copy_rows(copy)


def _rows_of(table: Table) -> str:
    """The rows a sync copies for `table`: its own, not its inheritance children's (tables of their own,
    verified on their own); a partitioned table's are all in its partitions."""
    return table.qualified if table.kind == "p" else f"ONLY {table.qualified}"


def verify_table(src_conn, dst_conn, src: Table, dst: Table | None, rules: dict[str, Any],
                 max_values: int, pii_rows: int, source_rows: str | None = None) -> TableReport:
    """All the checks for one table; `rules` maps column -> its resolved rule (rules.Rule). With
    `source_rows` (a FROM item: the subset's rows, subset.source_rows), the target is compared with those."""
    rep = TableReport(table=src.display)
    source_rows = source_rows or _rows_of(src)
    if dst is None:
        rep.problems.append("missing on the target")
        return rep
    columns = [c for c in src.columns if not c.generated and dst.column(c.name) is not None
               and not dst.column(c.name).generated]
    skipped = [c.name for c in src.columns if c not in columns]
    if skipped:
        rep.notes.append(f"not compared (generated, or missing on the target): {', '.join(skipped)}")
    anonymized = {c.name for c in columns if c.name in rules and rules[c.name].strategy not in _UNCHANGED}
    order, rep.order_by = _order_key(src, dst, columns, anonymized)
    cols_sql = ", ".join(quote_ident(c.name) for c in columns) or "NULL"
    order_sql = f" ORDER BY {order}" if order else ""

    seen: dict[str, _HashSet] = {}
    anon_cols = [c for c in columns if c.name in anonymized and rules[c.name].strategy not in _NO_SET_CHECK]
    if anon_cols:
        per_column = max(1, max_values // len(anon_cols))  # the bound holds for the whole table
        seen = {c.name: _HashSet(per_column) for c in anon_cols}
        sql = f"COPY (SELECT {', '.join(quote_ident(c.name) for c in anon_cols)} FROM {source_rows}) TO STDOUT"
        rows = _copy_rows(src_conn, sql)
        while batch := list(itertools.islice(rows, BATCH_ROWS)):
            for c, fields in zip(anon_cols, zip(*batch)):
                if c.is_array:
                    values = [v for f in fields if f != NULL for v in array_elements(f)]
                else:
                    values = [copytext.unescape(f) for f in fields if f != NULL and f != b""]
                seen[c.name].add_values(values)

    checkers: list[_Anonymized | _Untouched] = []
    for c in columns:
        rule = rules.get(c.name)
        if c.name in anonymized:
            report = ColumnReport(column=c.name, mode="anonymized", strategy=rule.strategy)
            values = seen.get(c.name) or _HashSet(1)
            checker = _Anonymized(report, rule.params, c.is_array, values, aligned=bool(order), leak_rows=pii_rows)
            if rule.strategy in strategies.DOCUMENTS:
                report.value_check = "per ruled path, against the same place in the row's source document"
            elif rule.strategy in _NO_SET_CHECK:
                report.value_check = f"not applicable: {_NO_SET_CHECK[rule.strategy]}"
            elif values.share == 1:
                report.value_check = "exact"
            else:
                report.value_check = (f"sampled: 1/{values.share} of the value space "
                                      f"(more than {values.bound:,} distinct source values)")
            if checker.json_rules is not None:
                report.format_check = "checked at the ruled paths"
            else:
                report.format_check = ("checked" if checker.pattern is not None or rule.strategy in strategies.NULLING
                                       else f"not checked: {rule.strategy} has no fixed output format")
            checkers.append(checker)
        else:
            # Containers too: their COPY text holds the strings inside (hstore values, xml, lexemes).
            checks_leaks = pii_rows if sampled(c) and rule is None else 0
            # a rule here writes its input back (an identity strategy): the mode is its name
            report = ColumnReport(column=c.name, mode=rule.strategy if rule is not None else "untouched",
                                  strategy=rule.strategy if rule is not None else None)
            if pii_rows and rule is None and (kind := name_kind(src.display, c)) is not None:
                report.name_suggests = KIND_LABELS[kind]
            checkers.append(_Untouched(report, checks_leaks))

    sql = f"COPY (SELECT {cols_sql} FROM {{}}{order_sql}) TO STDOUT"
    src_rows = _copy_rows(src_conn, sql.format(source_rows))
    dst_rows = _copy_rows(dst_conn, sql.format(_rows_of(dst)))
    start = 1
    while True:
        batch_a = list(itertools.islice(src_rows, BATCH_ROWS))
        batch_b = list(itertools.islice(dst_rows, BATCH_ROWS))
        if not batch_a and not batch_b:
            break
        rep.rows_source += len(batch_a)
        rep.rows_target += len(batch_b)
        n = min(len(batch_a), len(batch_b))
        cols_a = list(zip(*batch_a[:n])) or [()] * len(columns)
        cols_b = list(zip(*batch_b[:n])) or [()] * len(columns)
        for checker, ca, cb in zip(checkers, cols_a, cols_b):
            checker.check(start, ca, cb)
        if len(batch_a) != len(batch_b):  # past the shorter side: fingerprints only
            rest_a = list(zip(*batch_a[n:])) or [()] * len(columns)
            rest_b = list(zip(*batch_b[n:])) or [()] * len(columns)
            for checker, ca, cb in zip(checkers, rest_a, rest_b):
                if isinstance(checker, _Untouched):
                    checker.feed(ca, cb)
        start += max(len(batch_a), len(batch_b))

    if pii_rows:  # the same judgement as scan's: columns that need a review whatever their values
        known = anonymized | {c.name for ch, c in zip(checkers, columns) if isinstance(ch, _Untouched)
                              and ch.r.mode == "untouched" and (ch.r.leaks or pii_kind(src.display, c))}
        for ch, c in zip(checkers, columns):
            if isinstance(ch, _Untouched) and ch.r.mode == "untouched":
                ch.r.review = review_reason(src, c, known)
    if rep.rows_source != rep.rows_target:
        rep.problems.append(f"row counts differ: {rep.rows_source:,} on the source, {rep.rows_target:,} on the target")
    for checker, c in zip(checkers, columns):
        _conclude(checker, c, src, dst, dst_conn, rep)
    rep.columns = [ch.r for ch in checkers]
    return rep


def _conclude(checker, col: Column, src: Table, dst: Table, dst_conn, rep: TableReport) -> None:
    r = checker.r
    if isinstance(checker, _Untouched):
        r.fingerprint_source = checker.hs.hexdigest()
        r.fingerprint_target = checker.ht.hexdigest()
        # With unequal row counts the extra rows alone change the fingerprint: that is reported once, per table.
        if r.differing_rows or (r.fingerprint_source != r.fingerprint_target and rep.rows_source == rep.rows_target):
            where = f" (first at row {checker.first_diff})" if checker.first_diff else ""
            r.problems.append(f"differs from the source in {r.differing_rows:,} row(s){where}")
        if r.leaks:
            kinds = ", ".join(f"{n:,} value(s) with {k_article(k)}" for k, n in sorted(r.leaks.items()))
            r.problems.append(f"not anonymized, and {kinds} (first at row {checker.first_leak}): "
                              "add a rule, or 'strategy: keep' once reviewed")
        elif r.name_suggests:
            r.problems.append(f"not anonymized, and its name suggests {r.name_suggests}: "
                              "add a rule, or 'strategy: keep' once reviewed")
        if r.review:
            r.problems.append(f"not anonymized, and {r.review}: add a rule, or 'strategy: keep' once reviewed")
        return
    first = checker.first
    if r.leaks:
        kinds = ", ".join(f"{n:,} value(s) with {k_article(k)}" for k, n in sorted(r.leaks.items()))
        r.problems.append(f"outside the ruled paths, {kinds} (first at row {first['leak']}): "
                          "add their paths to the json rule")
    if r.unchanged_rows:
        r.problems.append(f"{r.unchanged_rows:,} row(s) still hold their source value (first at row {first['unchanged']})")
    if r.equal_to_a_source_value:
        r.problems.append(f"{r.equal_to_a_source_value:,} value(s) equal a source value of the column "
                          f"(first at row {first['equal']})")
    if not checker.aligned and checker.nulls[0] != checker.nulls[1]:
        r.null_mismatches = abs(checker.nulls[0] - checker.nulls[1])
        r.problems.append(f"NULLs: {checker.nulls[0]:,} on the source, {checker.nulls[1]:,} on the target")
    elif r.null_mismatches:
        r.problems.append(f"NULLs moved: {r.null_mismatches:,} row(s) NULL on one side only (first at row {first['null']})")
    if r.format_errors:
        r.problems.append(f"{r.format_errors:,} value(s) do not have the {r.strategy} format (first at row {first['format']})")
    if (col.unique or (dst.column(col.name) and dst.column(col.name).unique)) and not col.is_array:
        q = quote_ident(col.name)
        r.duplicates = dst_conn.execute(f"SELECT count({q}) - count(DISTINCT {q}) FROM {_rows_of(dst)}").fetchone()[0]
        if r.duplicates:
            r.problems.append(f"unique on the source, but {r.duplicates:,} duplicate value(s) on the target")


def k_article(kind: str) -> str:
    return {"email": "an email", "phone": "a phone number", "card": "a card number"}.get(kind, kind)


# --------------------------------------------------------------------------- command


def _open(what: str, env) -> psycopg.Connection:
    from .scan import connect_read_only

    conn = connect_read_only(what, env, purpose="verify")  # values in the worker's forms (pg.SESSION_SETTINGS)
    # Both sides must print equal values identically, whatever each server's defaults.
    conn.execute("SET TimeZone = 'UTC'")
    conn.execute("SET lc_monetary = 'C'")
    conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
    return conn


class VerifyRequest(msgspec.Struct, frozen=True, kw_only=True):
    """The verify's flags, parsed and typed once."""

    scope: Scope  # its rules_path: --anonymize-config, or the default file when it exists
    target: str
    pii: bool
    max_values: int
    pii_rows: int
    json: bool
    quiet: bool
    secret_file: Path | None = None  # the secret a --sample's hash is keyed with (default: $ANONYMIZATION_SECRET)


def _secret(secret_file: Path | None) -> bytes | None:
    """The sync's secret for the sample's key; none given: the fixed key, as sync would use."""
    from . import config

    try:
        secret = config.load_secret(secret_file)
    except ConfigError:
        if secret_file is not None:
            raise
        return None
    Redactor.add(secret.value)
    return secret.value


def run_verify(req: VerifyRequest) -> int:
    """Compares the selected tables of both sides; 0 when every check passed, else 1."""
    from . import config
    from .plan import select_tables
    from .progress import stderr_console
    from .rules import resolve
    from .scan import load_rules_option, unreadable_problems

    console = stderr_console()
    scope = req.scope
    src_env = config.resolve_environment(scope.source, scope.env_dir, port=scope.source_port)
    dst_env = config.resolve_environment(req.target, scope.env_dir)
    Redactor.add(src_env.password)
    Redactor.add(dst_env.password)
    if (w := src_env.ssl_warning()):
        console.print(f"warning: {w}", markup=False)
    rules = load_rules_option(scope.rules_path)
    if rules is None and not req.quiet:
        console.print("no anonymization rules: checking that every column is an identical copy", markup=False)
    src_conn = _open("source", src_env)
    try:
        dst_conn = _open("target", dst_env)
    except BaseException:
        src_conn.close()
        raise
    with src_conn, dst_conn:
        src_cat, dst_cat = read_catalog(src_conn), read_catalog(dst_conn)
        problems: list[str] = []
        chosen = select_tables(src_cat, scope.selection, problems)
        problems += unreadable_problems(chosen, src_cat.role, "source")
        problems += unreadable_problems([d for t in chosen if (d := dst_cat.tables.get(t.key)) is not None],
                                        dst_cat.role, "target")
        # The rules are checked against the source alone: how the target's columns hold their output is
        # what verify finds out, and reports as a failed check rather than refuses.
        resolution = resolve(src_cat, rules)
        problems += resolution.problems
        sub = None
        if scope.subset.roots:  # the same subset of the source as the sync's (the same secret for a sample)
            from . import subset

            sub = subset.check(src_conn, subset.plan(src_cat, chosen, scope.subset, _secret(req.secret_file)),
                               count=False)
            problems += sub.problems
        if problems:
            raise ValidationError(f"{len(problems)} problem(s) found before verifying:", problems,
                                  "fix the table selection, the rules or the subset")
        by_table = resolution.by_table()
        reports = []
        for t in sorted(chosen, key=lambda t: t.display):
            try:
                place = sub.place(t.display) if sub is not None else None
                reports.append(verify_table(src_conn, dst_conn, t, dst_cat.tables.get(t.key), by_table.get(t.key, {}),
                                            req.max_values, req.pii_rows if req.pii else 0,
                                            subset.source_rows(*place) if place else None))
            except psycopg.errors.InsufficientPrivilege as exc:
                raise ConfigError(f"cannot read {t.display}: {pg.first_line(exc)}",
                                  "grant SELECT on it to the role verify connects as (on both sides), "
                                  "or leave it out with --exclude") from None
            except psycopg.Error as exc:
                raise pg.read_failed("verify", f" at {t.display}", exc) from None
    ok = all(r.ok for r in reports)
    if req.json:
        sys.stdout.write(msgspec.json.encode({"source": src_env.display(), "target": dst_env.display(), "ok": ok,
                                              "tables": [{**msgspec.structs.asdict(r), "ok": r.ok} for r in reports]}
                                             ).decode() + "\n")
    else:
        _render(reports, console, req.pii, req.quiet)
    return 0 if ok else 1


def _print_problems(r: TableReport, console) -> None:
    for p in r.problems:
        console.print(f"{r.table}: {p}", markup=False)
    for c in r.columns:
        for p in c.problems:
            console.print(f"{r.table}.{c.column}: {p}", markup=False)


def _render(reports: list[TableReport], console, pii: bool, quiet: bool = False) -> None:
    """The summary grid, every problem, and the notes; with `quiet`, only the problems and the verdict
    of a failed run."""
    from rich.table import Table as RichTable

    if quiet:
        for r in reports:
            _print_problems(r, console)
        failed = [r.table for r in reports if not r.ok]
        if failed:
            console.print(f"verify: FAILED: {', '.join(failed)}", markup=False)
        return
    grid = RichTable(title="verify", title_justify="left")
    for head in ("table", "rows (source / target)", "untouched identical", "anonymized ok", "leaks", "status"):
        grid.add_column(head, justify="right" if head.startswith(("rows", "untouched", "anonymized", "leaks")) else "left")
    for r in reports:
        plain = [c for c in r.columns if c.mode != "anonymized"]
        anon = [c for c in r.columns if c.mode == "anonymized"]
        leaks = sum(sum(c.leaks.values()) for c in r.columns)
        grid.add_row(r.table, f"{r.rows_source:,} / {r.rows_target:,}",
                     f"{sum(not c.differing_rows and c.fingerprint_source == c.fingerprint_target for c in plain)}/{len(plain)}",
                     f"{sum(not c.problems for c in anon)}/{len(anon)}", f"{leaks:,}" if pii else "-",
                     "ok" if r.ok else "FAILED")
    console.print(grid)
    for r in reports:
        _print_problems(r, console)
        for c in r.columns:
            if c.value_check and c.value_check.startswith("sampled"):
                console.print(f"{r.table}.{c.column}: equality with source values {c.value_check}", markup=False)
        for n in r.notes:
            console.print(f"{r.table}: {n}", markup=False)
        truncated = [c.column for c in r.columns if c.leak_rows_checked and c.leak_rows_checked < r.rows_target]
        if truncated:
            console.print(f"{r.table}: PII patterns checked on the first {max(c.leak_rows_checked for c in r.columns):,}"
                          f" rows of {', '.join(truncated)}", markup=False)
    failed = [r.table for r in reports if not r.ok]
    console.print(f"verify: {len(reports) - len(failed)}/{len(reports)} table(s) ok"
                  + (f"; FAILED: {', '.join(failed)}" if failed else ""), markup=False)
