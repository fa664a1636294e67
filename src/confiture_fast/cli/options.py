"""The options several commands share, declared once, and the small parsers of their values."""

from __future__ import annotations

import enum
import os
from pathlib import Path
from typing import Annotated, Optional

import typer

from ..errors import ConfigError
from ..request import LoadOptions, Scope, Selection, Subset

DEFAULT_RULES = Path("db/sync/anonymization.yaml")
DEFAULT_ENV_DIR = Path("db/environments")

SourceOpt = Annotated[str, typer.Option("--from", help="Source: environment name (db/environments/NAME.yaml) or a libpq URI/conninfo.")]
TargetOpt = Annotated[str, typer.Option("--to", help="Target: environment name or a libpq URI/conninfo.")]
TablesOpt = Annotated[Optional[list[str]], typer.Option("--tables", help="Only these tables (comma-separated; name or schema.name).")]
IncludeOpt = Annotated[Optional[list[str]], typer.Option("--include", help="Tables matching these patterns (\"user_*,crm.*\").")]
ExcludeOpt = Annotated[Optional[list[str]], typer.Option("--exclude", help="Leave out these tables or patterns (\"logs,*_archive\").")]
EnvDirOpt = Annotated[Path, typer.Option("--env-dir", help="Folder of environment files.")]
SourcePortOpt = Annotated[Optional[int], typer.Option("--source-port", help="Override the source port (SSH tunnel).")]
WhereOpt = Annotated[Optional[list[str]], typer.Option("--where", help="Subset: \"TABLE: CONDITION\" (repeatable), the seed rows; what they reference and what references them (recursively) comes along.")]
SampleOpt = Annotated[Optional[list[str]], typer.Option("--sample", help="Subset: \"TABLE: P%\" (repeatable), about P% of its rows by a keyed hash of the primary key.")]
SubsetConfigOpt = Annotated[Optional[Path], typer.Option("--subset-config", help="Subset from a YAML file: TABLE: {where: \"...\", sample: \"1%\"}.")]
DebugOpt = Annotated[bool, typer.Option("--debug", help="Show tracebacks.")]
# How a sync loads: taken as text and checked by load_options, not by typer, so that a bad value (out of range,
# or not a number at all) is one of our one-line errors.
ParallelOpt = Annotated[Optional[str], typer.Option("--parallel", metavar="N", help="Worker processes, 1 to 64 (default: number of cores).")]
BatchSizeOpt = Annotated[str, typer.Option("--batch-size", metavar="ROWS", help="Rows gathered before each write to the target (also capped at 8 MiB).")]
SliceSizeOpt = Annotated[str, typer.Option("--slice-size", metavar="MIB", help="Tables larger than this many MiB are split into slices loaded in parallel.")]
RetriesOpt = Annotated[str, typer.Option("--retries", metavar="N", help="Retries, 0 to 10, of a table or slice after a transient connection error.")]

_LIMITS = {"parallel": (1, 64), "batch_size": (1, None), "slice_size": (1, None), "retries": (0, 10)}


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


def load_options(parallel: int | str | None = None, **given: int | str) -> LoadOptions:
    """The load flags, checked once: a value that is not a whole number, or out of range, is a ConfigError
    naming the flag and its range. --parallel left out is the number of cores."""
    given["parallel"] = parallel if parallel is not None else os.cpu_count() or 1
    default = LoadOptions()
    values = {}
    for name, text in given.items():
        low, high = _LIMITS[name]
        flag = "--" + name.replace("_", "-")
        allowed = f"{low} to {high}" if high is not None else f"{low} or more"
        unit = " (MiB)" if name == "slice_size" else ""
        fix = (f"pass {flag} {allowed}, or leave it out (default: "
               f"{'the number of cores' if name == 'parallel' else getattr(default, name)})")
        try:
            value = values[name] = int(text)
        except ValueError:
            raise ConfigError(f"{flag} {text!r} is not a whole number: it takes {allowed}{unit}", fix) from None
        if value < low or (high is not None and value > high):
            raise ConfigError(f"{flag} {value} is out of range: it takes {allowed}{unit}", fix)
    return LoadOptions(**values)


def scope(source: str, env_dir: Path, source_port: int | None, tables: list[str] | None, include: list[str] | None,
          exclude: list[str] | None, rules_path: Path | None, subset: Subset = Subset()) -> Scope:
    """The source and table flags sync, scan and verify share, parsed into one Scope."""
    return Scope(source=source, env_dir=env_dir, source_port=source_port,
                 selection=Selection(csv(tables), csv(include), csv(exclude)), rules_path=rules_path, subset=subset)


def subset(where: list[str] | None, sample: list[str] | None, config: Path | None) -> Subset:
    """--where, --sample and --subset-config (each entry whole: a condition may hold commas)."""
    from ..subset import parse

    return parse(where or (), sample or (), config)
