"""The options several commands share, declared once, and the small parsers of their values."""

from __future__ import annotations

import enum
from pathlib import Path
from typing import Annotated, Optional

import typer

DEFAULT_RULES = Path("db/sync/anonymization.yaml")
DEFAULT_ENV_DIR = Path("db/environments")

SourceOpt = Annotated[str, typer.Option("--from", help="Source: environment name (db/environments/NAME.yaml) or a libpq URI/conninfo.")]
TargetOpt = Annotated[str, typer.Option("--to", help="Target: environment name or a libpq URI/conninfo.")]
TablesOpt = Annotated[Optional[list[str]], typer.Option("--tables", help="Only these tables (comma-separated; name or schema.name).")]
IncludeOpt = Annotated[Optional[list[str]], typer.Option("--include", help="Tables matching these patterns (\"user_*,crm.*\").")]
ExcludeOpt = Annotated[Optional[list[str]], typer.Option("--exclude", help="Leave out these tables or patterns (\"logs,*_archive\").")]
EnvDirOpt = Annotated[Path, typer.Option("--env-dir", help="Folder of environment files.")]
SourcePortOpt = Annotated[Optional[int], typer.Option("--source-port", help="Override the source port (SSH tunnel).")]
DebugOpt = Annotated[bool, typer.Option("--debug", help="Show tracebacks.")]


class Format(str, enum.Enum):
    text = "text"
    json = "json"


def csv(values: list[str] | None) -> tuple[str, ...]:
    """Repeated and comma-separated values alike: `--tables a,b --tables c` -> ('a', 'b', 'c')."""
    return tuple(v.strip() for item in values or () for v in item.split(",") if v.strip())


def rules_or_default(rules_path: Path | None) -> Path | None:
    """--anonymize-config when given, else the default rules file when it exists (scan, verify)."""
    if rules_path is not None:
        return rules_path
    return DEFAULT_RULES if DEFAULT_RULES.exists() else None
