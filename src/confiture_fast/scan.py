"""confiture-fast scan: find the PII of a source database, and write the rules it calls for.

Read-only and light on production: a read-only session with a statement timeout, column names from
the catalog, and a bounded page sample (`TABLESAMPLE SYSTEM` + `LIMIT`) of the text-like columns.
The output is a ready-to-edit anonymization.yaml where every suggestion says why it was made.
`strict_problems` is the same detection used by `sync --strict` to refuse unreviewed columns.
"""


import datetime as _dt
import json
import re
import sys
from pathlib import Path
from typing import Any

import msgspec
import psycopg

from . import pg
from .catalog import Catalog, Table, read_catalog
from .errors import ConfigError, ValidationError
from .pii import TableScan, restore_statement_timeout, scan_table, set_statement_timeout
from .redact import Redactor
from .request import Scope
from .rules import Resolution, resolve

DEFAULT_SAMPLE_ROWS = 200
DEFAULT_TIMEOUT_S = 10.0


# --------------------------------------------------------------------------- coverage


def scan_tables(conn: psycopg.Connection, tables: list[Table], rows: int, timeout_ms: int,
                resolution: Resolution) -> list[TableScan]:
    """Findings of every table, each sample under `timeout_ms`; marks the ones the rules cover, as a
    sync resolves them (inheritance children, foreign keys). A rule the planner refuses still marks its
    column reviewed: the planner says what is wrong with it."""
    covered = resolution.covering()
    ruled: dict[tuple[str, str], dict[str, str]] = {}
    for (table, column), c in covered.items():
        ruled.setdefault(table, {})[column] = c.strategy
    old = set_statement_timeout(conn, timeout_ms)
    try:
        scans = [scan_table(conn, t, rows, ruled.get(t.key, {})) for t in tables]
    finally:
        restore_statement_timeout(conn, old)
    for t, s in zip(tables, scans):
        for f in s.findings:
            if (c := covered.get((t.key, f.column))) is not None:
                f.covered = f"{c.origin.describe()} ({c.strategy})"
    return scans


def strict_problems(src_conn: psycopg.Connection, catalog: Catalog, tables: list[Table], rules) -> list[str]:
    """For `sync --strict`: every column scan flags (by name or content, or as needing a review) that
    no rule covers.

    Each problem names table.column, why it was flagged and the rule scan suggests. Any rule counts,
    `keep` included: it records that someone looked at the column. Safe inside the caller's snapshot
    transaction: each sample runs in a savepoint and the statement timeout is put back afterwards."""
    scans = scan_tables(src_conn, tables, DEFAULT_SAMPLE_ROWS, int(DEFAULT_TIMEOUT_S * 1000),
                        resolve(catalog, rules))
    problems = []
    for s in scans:
        for f in s.findings:
            if f.covered is None:
                problems.append(f"{f.table}.{f.column}: {'; '.join(f.reasons)} (confidence {f.confidence}); "
                                f"suggested rule: {f.rule_text()}")
        if s.note and any(f.covered is None for f in s.findings):
            problems.append(f"{s.table}: {s.note}")
    return problems


def strict_error(problems: list[str], rules) -> ValidationError:
    """The refusal `sync --strict` raises: every unruled column at once, and how to proceed."""
    if rules is None:
        fix = ("write the rules with confiture-fast scan --from SOURCE -o db/sync/anonymization.yaml, review them, "
               "and sync with --anonymize-config db/sync/anonymization.yaml")
    else:
        fix = (f"add a rule for each to {rules.path} (confiture-fast scan --from SOURCE --anonymize-config "
               f"{rules.path} prints them); 'strategy: keep' marks a column reviewed and safe to copy")
    return ValidationError(f"--strict: {len(problems)} column(s) look like PII or need a review, and have no rule:",
                           problems, fix)


# --------------------------------------------------------------------------- output

_PLAIN = re.compile(r"^[A-Za-z_][A-Za-z0-9_.]*$")
_YAML_WORDS = frozenset({"yes", "no", "true", "false", "on", "off", "null", "y", "n", "~"})


def _scalar(value: Any) -> str:
    if isinstance(value, str):
        if _PLAIN.match(value) and value.lower() not in _YAML_WORDS:
            return value
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False)  # JSON is YAML flow style
    return json.dumps(value)


def _rule_lines(column: str, strategy: str, params: dict[str, Any], seed: str = "",
                allow_duplicates: bool = False, prefix: str = "") -> list[str]:
    lines = [f"{prefix}  - column: {_scalar(column)}", f"{prefix}    strategy: {_scalar(strategy)}"]
    if seed:
        lines.append(f"{prefix}    seed: {_scalar(seed)}")
    if allow_duplicates:
        lines.append(f"{prefix}    allow_duplicates: true")
    for k, v in params.items():
        lines.append(f"{prefix}    {_scalar(k)}: {_scalar(v)}")
    return lines


def render_yaml(scans: list[TableScan], rules, catalog: Catalog, source: str, rows: int) -> str:
    """A rules file: the existing rules (marked), then a commented suggestion per uncovered finding."""
    existing: dict[tuple[str, str], list] = {}
    unmatched: list[tuple[str, tuple]] = []
    for key, specs in (rules.tables.items() if rules is not None else ()):
        hits = catalog.find(key)
        if len(hits) == 1:
            existing.setdefault(hits[0].key, []).extend(specs)
        else:
            unmatched.append((key, specs))
    when = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    out = [f"# Anonymization rules suggested by confiture-fast scan of {source} ({when}),",
           f"# from column names and a sample of up to {rows} rows per table.",
           "# Review every rule. A column that is safe to copy as it is gets 'strategy: keep',",
           "# which tells sync --strict that it was reviewed.", ""]
    key_of = {t.display: t.key for t in catalog.tables.values()}
    by_table = {key_of[s.table]: s for s in scans}
    for key in dict.fromkeys([key_of[s.table] for s in scans] + list(existing)):
        s = by_table.get(key)
        specs = existing.get(key, [])
        todo = [f for f in (s.findings if s else []) if f.covered is None]
        if not specs and not todo:
            continue
        active = specs or any(f.strategy is not None and f.kind != "review" for f in todo)
        # A table key with no rule under it would not load: it stays commented until a rule is chosen.
        name = _scalar(catalog.spelling(catalog.tables[key]))
        out.append(f"{name}:" if active else f"# {name}:")
        if s is not None and s.note:
            out.append(f"  # {s.note}")
        for spec in specs:
            out.append(f"  # already in {rules.path}:{spec.line}")
            out += _rule_lines(spec.column, spec.strategy, dict(spec.params), spec.seed, spec.allow_duplicates)
        for f in todo:
            out.append(f"  # {f.column}: {'; '.join(f.reasons)} (confidence {f.confidence})")
            if f.strategy is None:
                out.append(f"  # not suggested yet: {f.no_fit}; use another rule until it fits")
                out += _rule_lines(f.column, f.wanted, f.params, prefix="  #")
            elif f.kind == "review":
                out.append("  # scan cannot tell what it holds: uncomment this rule, or write 'strategy: keep' once reviewed")
                out += _rule_lines(f.column, f.strategy, f.params, prefix="  #")
            else:
                out += _rule_lines(f.column, f.strategy, f.params)
        out.append("")
    for key, specs in unmatched:
        out.append(f"{_scalar(key)}:  # not a single table on the source")
        for spec in specs:
            out += _rule_lines(spec.column, spec.strategy, dict(spec.params), spec.seed, spec.allow_duplicates)
        out.append("")
    return "\n".join(out)


def render_json(scans: list[TableScan], source: str, rows: int) -> str:
    return msgspec.json.encode({"source": source, "sample_rows": rows, "tables": scans}).decode()


def summary(scans: list[TableScan]) -> str:
    findings = [f for s in scans for f in s.findings]
    uncovered = [f for f in findings if f.covered is None]
    notes = [s for s in scans if s.note]
    review = [f for f in uncovered if f.review]
    text = (f"scan: {len(scans)} table(s), {len(findings)} column(s) look like PII or need a review, "
            f"{len(findings) - len(uncovered)} already covered, {len(uncovered)} without a rule")
    if review:
        text += f" ({len(review)} need a review: {', '.join(f'{f.table}.{f.column}' for f in review)})"
    if notes:
        text += f"; {len(notes)} table(s) checked by name only (see the comments)"
    return text


# --------------------------------------------------------------------------- command


def connect_read_only(what: str, env, timeout_ms: int | None = None, purpose: str = "scan") -> psycopg.Connection:
    """A source session (pg.source: read-only, row_security off), optionally with a statement timeout;
    a connection that fails is a ConfigError with its fix."""
    try:
        return pg.source(env.conninfo(), purpose, statement_timeout_ms=timeout_ms)
    except psycopg.OperationalError as exc:
        raise pg.connect_failed(what, env.display(), exc, env.conninfo()) from None


def unreadable_problems(tables: list[Table], role: str, side: str) -> list[str]:
    """The selected tables our role cannot read in full (no SELECT, or rows hidden by row-level
    security), each with its fix: found in the catalog, before any row is read."""
    from .plan import row_security_problem

    out = []
    for t in sorted(tables, key=lambda t: (t.schema, t.name)):
        if not t.can_read:
            out.append(f"{t.display}: permission denied on the {side}: GRANT SELECT ON {t.qualified} "
                       f"to {role}, or --exclude it")
        elif t.row_security:
            out.append(row_security_problem(t, role, side))
    return out


def load_rules_option(rules_path: Path | None):
    """The rules of --anonymize-config (or of the default file the command line found), else None."""
    from . import config

    if rules_path is None:
        return None
    if not Path(rules_path).exists():
        raise ConfigError(f"anonymization rules file {rules_path} does not exist",
                          "check the path, or leave --anonymize-config out")
    return config.load_rules(rules_path)


def check_output(output: Path, force: bool) -> None:
    """Refuses, before anything is read, an -o path that would overwrite a file (without --force) or
    cannot be written at all."""
    if output.is_dir():
        raise ConfigError(f"-o {output} is a directory", "give the path of a file to write, e.g. "
                          f"{output / 'anonymization.yaml'}")
    if output.exists() and not force:
        raise ConfigError(f"-o {output} already exists (scan never overwrites a file unasked)",
                          "choose another path, or add --force to replace it")
    if not output.parent.is_dir():
        raise ConfigError(f"-o {output}: the folder {output.parent} does not exist", "create it, or choose another path")


class ScanRequest(msgspec.Struct, frozen=True, kw_only=True):
    """The scan's flags, parsed and typed once."""

    scope: Scope  # its rules_path: --anonymize-config, or the default file when it exists
    output: Path | None
    force: bool
    sample_rows: int
    timeout: float  # seconds
    json: bool


def run_scan(req: ScanRequest) -> int:
    """Scans the selected tables and writes the rules (or the findings) to -o or stdout."""
    from . import config
    from .plan import select_tables
    from .progress import stderr_console

    console = stderr_console()
    if req.output is not None:
        check_output(req.output, req.force)
    env = config.resolve_environment(req.scope.source, req.scope.env_dir, port=req.scope.source_port)
    Redactor.add(env.password)
    if (w := env.ssl_warning()):
        console.print(f"warning: {w}", markup=False)
    rules = load_rules_option(req.scope.rules_path)
    timeout_ms, rows = int(req.timeout * 1000), req.sample_rows
    with connect_read_only("source", env, timeout_ms) as conn:
        catalog = read_catalog(conn)
        problems: list[str] = []
        chosen = select_tables(catalog, req.scope.selection, problems)
        problems += unreadable_problems(chosen, catalog.role, "source")
        if problems:
            raise ValidationError("the table selection does not match the source:", problems,
                                  "fix --tables / --include / --exclude")
        scans = scan_tables(conn, chosen, rows, timeout_ms, resolve(catalog, rules))
    text = (render_json(scans, env.display(), rows) if req.json
            else render_yaml(scans, rules, catalog, env.display(), rows))
    if req.output is not None:
        req.output.write_text(text + "\n", encoding="utf-8")
        console.print(f"wrote {req.output}", markup=False)
    else:
        sys.stdout.write(text + "\n")
    console.print(summary(scans), markup=False)
    return 0
