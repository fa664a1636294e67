"""`confiture-fast sync`: its flags, parsed into a SyncRequest; the run itself is confiture_fast.sync."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import msgspec
import typer

from ..redact import Redactor
from ..request import LoadOptions
from ..sync import DryRun, SyncRequest, run_sync
from . import guard
from .options import (DEFAULT_ENV_DIR, DEFAULT_RULES, BatchSizeOpt, DebugOpt, EnvDirOpt, ExcludeOpt, Format, IncludeOpt,
                      ParallelOpt, RetriesOpt, SampleOpt, SliceSizeOpt, SourceOpt, SourcePortOpt, SubsetConfigOpt, TablesOpt,
                      TargetOpt, WhereOpt, load_options, scope, subset)

HELP = """Sync tables from --from to --to, anonymizing the columns that the rules name.

\b
  confiture-fast sync --from production --to local                    # Basic sync
  confiture-fast sync --from prod --to local --anonymize              # With anonymization
  confiture-fast sync --from prod --to staging --show-progress        # Progress bar
  confiture-fast sync --from prod --to local --tables users,posts     # Specific tables
  confiture-fast sync --from prod --to local --exclude logs,metrics   # Exclude tables
  confiture-fast sync --from prod --to local --where "users: id = 42" # One user and their rows
  confiture-fast sync --from prod --to local --sample "users: 1%"     # 1% of users, keys intact
  confiture-fast sync --from prod --to staging --checkpoint sync.json # Save checkpoint
  confiture-fast sync --from prod --to staging --resume --checkpoint sync.json  # Resume sync
  confiture-fast sync --from prod --to staging --anonymize --incremental  # Only what changed
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
    anonymize: Annotated[bool, typer.Option("--anonymize", help=f"Anonymize with {DEFAULT_RULES}.")] = False,
    anonymize_config: Annotated[Optional[Path], typer.Option("--anonymize-config", "--anonymization-config", help="Anonymization rules file (implies --anonymize).")] = None,
    secret_file: Annotated[Optional[Path], typer.Option("--secret-file", help="File holding the anonymization secret (default: $ANONYMIZATION_SECRET).")] = None,
    env_dir: EnvDirOpt = DEFAULT_ENV_DIR,
    source_port: SourcePortOpt = None,
    cascade: Annotated[bool, typer.Option("--cascade", help="Also empty unselected tables whose foreign keys reference selected ones (or tables so emptied), and say which.")] = False,
    checkpoint: Annotated[Optional[Path], typer.Option("--checkpoint", help="Write progress here after every table, for --resume.")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Skip the tables the --checkpoint file lists as completed.")] = False,
    show_progress: Annotated[Optional[bool], typer.Option("--show-progress/--no-progress", help="Progress bars (default: on a terminal).")] = None,
    parallel: ParallelOpt = None,
    batch_size: BatchSizeOpt = str(LoadOptions().batch_size),
    slice_size: SliceSizeOpt = str(LoadOptions().slice_size),
    retries: RetriesOpt = str(LoadOptions().retries),
    strict: Annotated[Optional[bool], typer.Option("--strict/--no-strict", help="Refuse to start while a column that `scan` flags as PII has no rule (default: the source environment's strict:).")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the plan and exit without writing anything.")] = False,
    incremental: Annotated[bool, typer.Option("--incremental", help="Copy only the rows changed on the source since the last sync into this target (tables that cannot be refreshed so are reloaded in full, saying why).")] = False,
    create_schema: Annotated[bool, typer.Option("--create-schema", help="Create on the target, from the source's catalog, the tables (and their types, sequences, keys, indexes, triggers, views) it lacks; grants and roles are not copied.")] = False,
    no_wait: Annotated[bool, typer.Option("--no-wait", help="Fail at once if another sync into the target is running (default: wait for it).")] = False,
    log_file: Annotated[Optional[Path], typer.Option("--log-file", help="Append a JSON-lines audit record of the run to this file.")] = None,
    fmt: Annotated[Format, typer.Option("--format", help="text, or json: one JSON object on stdout.")] = Format.text,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Also print each phase and its duration.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Only warnings and errors.")] = False,
    debug: DebugOpt = False,
) -> None:
    flags = dict(locals())
    guard.run(lambda: _sync(_request(flags)), debug,
              interrupted="interrupted before the load started: the target was not changed")


def _request(flags: dict) -> SyncRequest:
    """A flag named like a SyncRequest field lands in it as it is (adding a flag: a parameter above and a
    field of that name); the others are parsed here, inside the error wrapper, checked once."""
    derived = dict(
        scope=scope(flags["source"], flags["env_dir"], flags["source_port"], flags["tables"], flags["include"],
                    flags["exclude"], flags["anonymize_config"] or (DEFAULT_RULES if flags["anonymize"] else None),
                    subset(flags["where"], flags["sample"], flags["subset_config"])),
        load=load_options(flags["parallel"], batch_size=flags["batch_size"], slice_size=flags["slice_size"],
                          retries=flags["retries"]),
        json=flags["fmt"] is Format.json, wait=not flags["no_wait"])
    same = {name: flags[name] for name in SyncRequest.__struct_fields__ if name in flags and name not in derived}
    return SyncRequest(**same, **derived)


def _sync(req: SyncRequest) -> int:
    from ..progress import stderr_console

    console = stderr_console()
    outcome = run_sync(req, console)
    if isinstance(outcome, DryRun):
        from ..summary import plan_json, render_plan

        render_plan(outcome.plan, outcome.trigger_mode, console, outcome.schema, outcome.incremental)
        if req.json:
            sys.stdout.write(plan_json(outcome.plan, outcome.schema, outcome.incremental) + "\n")
        return 0
    _report(outcome, req.json, console, req.checkpoint, req.quiet)
    if outcome.interrupted:
        return 143 if outcome.interrupted == "SIGTERM" else 130
    return 0 if outcome.ok else 1


def _report(result, as_json: bool, console, checkpoint: Path | None, quiet: bool = False) -> None:
    if as_json:
        sys.stdout.write(msgspec.json.encode(result).decode() + "\n")
    elif not quiet:
        from ..summary import render

        render(result, console, checkpoint)
    for c in result.constraints:
        if c.rebuilt and not c.valid:
            console.print(f"warning: {c.table}: foreign key {c.name} is violated by the loaded rows "
                          f"({c.error}); it was recreated NOT VALID", markup=False)
    if result.error:
        console.print(Redactor.clean(f"error: {result.error}"), markup=False, soft_wrap=True)
        if any(not c.rebuilt for c in result.constraints) and not any(t.status == "failed" for t in result.tables):
            console.print("  fix: make the rows fit them (a rule with allow_duplicates on a UNIQUE column makes "
                          "duplicates: use a unique strategy), then rerun; a rerun rebuilds what is recorded",
                          markup=False)
        elif result.fix:
            console.print(Redactor.clean(f"  fix: {result.fix}"), markup=False, soft_wrap=True)
