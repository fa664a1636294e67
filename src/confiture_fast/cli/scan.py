"""`confiture-fast scan`: its flags, parsed into a ScanRequest; the scan itself is confiture_fast.scan."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import psycopg
import typer

from ..pg import read_failed
from ..scan import DEFAULT_SAMPLE_ROWS, DEFAULT_TIMEOUT_S, ScanRequest, run_scan
from . import guard
from .options import (DEFAULT_ENV_DIR, DebugOpt, EnvDirOpt, ExcludeOpt, Format, IncludeOpt, SourceOpt, SourcePortOpt,
                      TablesOpt, rules_or_default, scope)

HELP = """Find PII in the source and print the anonymization rules it calls for.

\b
  confiture-fast scan --from production                          # rules on stdout
  confiture-fast scan --from production -o anonymization.yaml    # into a new file (--force: replace it)
  confiture-fast scan --from prod --anonymize-config db/sync/anonymization.yaml  # mark covered columns
  confiture-fast scan --from prod --tables users,orders --format json
"""


def command(
    source: SourceOpt,
    tables: TablesOpt = None,
    include: IncludeOpt = None,
    exclude: ExcludeOpt = None,
    rules_path: Annotated[Optional[Path], typer.Option("--anonymize-config", "--anonymization-config", help="Existing rules: covered columns are marked (default: db/sync/anonymization.yaml when it exists).")] = None,
    env_dir: EnvDirOpt = DEFAULT_ENV_DIR,
    source_port: SourcePortOpt = None,
    output: Annotated[Optional[Path], typer.Option("-o", "--output", help="Write the rules to this file instead of stdout (never over an existing file without --force).")] = None,
    force: Annotated[bool, typer.Option("--force", help="Let -o replace an existing file.")] = False,
    rows: Annotated[int, typer.Option("--sample-rows", min=0, help="Rows sampled per table (0: names only).")] = DEFAULT_SAMPLE_ROWS,
    timeout: Annotated[float, typer.Option("--statement-timeout", min=0.1, help="Seconds any one query may run on the source.")] = DEFAULT_TIMEOUT_S,
    fmt: Annotated[Format, typer.Option("--format", help="text: a rules YAML; json: the findings.")] = Format.text,
    debug: DebugOpt = False,
) -> None:
    req = ScanRequest(scope=scope(source, env_dir, source_port, tables, include, exclude, rules_or_default(rules_path)),
                      output=output, force=force, sample_rows=rows, timeout=timeout, json=fmt is Format.json)
    guard.run(lambda: _scan(req), debug)


def _scan(req: ScanRequest) -> int:
    try:
        return run_scan(req)
    except psycopg.Error as exc:  # a server error no check above named: one line, a fix by its cause
        raise read_failed("scan", "", exc) from None
