"""`confiture-fast verify`: its flags, parsed into a VerifyRequest; the checks are confiture_fast.verify."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import psycopg
import typer

from ..pg import read_failed
from ..verify import DEFAULT_MAX_VALUES, DEFAULT_PII_ROWS, VerifyRequest, run_verify
from . import guard
from .options import (DEFAULT_ENV_DIR, DebugOpt, EnvDirOpt, ExcludeOpt, Format, IncludeOpt, SampleOpt, SourceOpt,
                      SourcePortOpt, SubsetConfigOpt, TablesOpt, TargetOpt, WhereOpt, rules_or_default, scope, subset)

HELP = """Check a synced copy: row counts, untouched columns identical, anonymized
columns changed, in format, with their NULLs and uniqueness, and no PII left in the other text columns.

\b
  confiture-fast verify --from production --to staging --anonymize-config db/sync/anonymization.yaml
  confiture-fast verify --from prod --to local --tables users,orders --format json
  confiture-fast verify --from prod --to local --where "users: id = 42"   # against the sync's subset
"""


def command(
    source: SourceOpt,
    target: TargetOpt,
    tables: TablesOpt = None,
    include: IncludeOpt = None,
    exclude: ExcludeOpt = None,
    where: WhereOpt = None,
    sample: SampleOpt = None,
    subset_config: SubsetConfigOpt = None,
    secret_file: Annotated[Optional[Path], typer.Option("--secret-file", help="The secret the sync's --sample was keyed with (default: $ANONYMIZATION_SECRET).")] = None,
    rules_path: Annotated[Optional[Path], typer.Option("--anonymize-config", "--anonymization-config", help="The rules the sync used (default: db/sync/anonymization.yaml when it exists).")] = None,
    env_dir: EnvDirOpt = DEFAULT_ENV_DIR,
    source_port: SourcePortOpt = None,
    pii: Annotated[bool, typer.Option("--pii-patterns/--no-pii-patterns", help="Flag columns without a rule that hold emails, phone or card numbers, whose name reads as PII, or that need a review (a type scan cannot read inside; a text search vector in a table with PII).")] = True,
    max_values: Annotated[int, typer.Option("--max-values", min=1, help="Source value hashes kept in memory per table (about 70 bytes each), shared by its anonymized columns; past it, a fixed share of each column's values is checked.")] = DEFAULT_MAX_VALUES,
    pii_rows: Annotated[int, typer.Option("--pii-rows", min=1, help="Rows per table checked by --pii-patterns.")] = DEFAULT_PII_ROWS,
    fmt: Annotated[Format, typer.Option("--format", help="text: a summary table on stderr; json: one JSON object on stdout.")] = Format.text,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Only warnings and errors (the problems found); the exit code is the same.")] = False,
    debug: DebugOpt = False,
) -> None:
    guard.run(lambda: _verify(VerifyRequest(
        scope=scope(source, env_dir, source_port, tables, include, exclude, rules_or_default(rules_path),
                    subset(where, sample, subset_config)),
        target=target, pii=pii, max_values=max_values, pii_rows=pii_rows, json=fmt is Format.json, quiet=quiet,
        secret_file=secret_file)), debug)


def _verify(req: VerifyRequest) -> int:
    try:
        return run_verify(req)
    except psycopg.Error as exc:  # a server error no check above named: one line, a fix by its cause
        raise read_failed("verify", "", exc) from None
