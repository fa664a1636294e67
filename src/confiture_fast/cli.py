"""The command line: parses flags, resolves configuration, builds the plan, hands it to the coordinator.

Exit codes: 0 success, 1 failure during the sync, 2 bad usage or configuration (target untouched),
130 / 143 interrupted by SIGINT / SIGTERM.
"""

from __future__ import annotations

import enum
import hashlib
import os
import sys
import traceback
from pathlib import Path
from typing import Annotated, Optional

import msgspec
import typer

from . import __version__
from . import checkpoint as ckpt
from .errors import ConfigError, ConfiturError, Terminated

app = typer.Typer(add_completion=True, no_args_is_help=True, rich_markup_mode=None,
                  help="Copy a production PostgreSQL database into a local or staging one, "
                       "anonymizing PII on the way.")

DEFAULT_RULES = Path("db/sync/anonymization.yaml")
DEFAULT_ENV_DIR = Path("db/environments")


# The options sync, scan and verify share, declared once.
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


def _csv(values: list[str] | None) -> tuple[str, ...]:
    return tuple(v.strip() for item in values or () for v in item.split(",") if v.strip())


class _Redactor:
    """Every message leaves through here: known passwords and the secret are masked."""

    secrets: list[str] = []

    @classmethod
    def add(cls, value: str | bytes | None) -> None:
        if value:
            cls.secrets.append(value.decode(errors="replace") if isinstance(value, bytes) else value)

    @classmethod
    def clean(cls, text: str) -> str:
        for s in cls.secrets:
            if len(s) >= 3:
                text = text.replace(s, "***")
        return text


def _fail(exc: BaseException, debug: bool) -> "typer.Exit":
    from .progress import stderr_console

    console = stderr_console()
    if debug:
        console.print(_Redactor.clean("".join(traceback.format_exception(exc))), markup=False)
    if isinstance(exc, ConfiturError):
        console.print(_Redactor.clean("error: " + exc.render()), markup=False, soft_wrap=True)
        return typer.Exit(exc.exit_code)
    console.print(_Redactor.clean(f"error: internal error: {type(exc).__name__}: {exc}"), markup=False)
    console.print("  fix: rerun with --debug and report the traceback", markup=False)
    return typer.Exit(1)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"confiture-fast {__version__}")
        raise typer.Exit()


@app.callback()
def _main(version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                                help="Print the version and exit.")] = False) -> None:
    pass


@app.command(help="""Sync tables from --from to --to, anonymizing the columns that the rules name.

\b
  confiture-fast sync --from production --to local                    # Basic sync
  confiture-fast sync --from prod --to local --anonymize              # With anonymization
  confiture-fast sync --from prod --to staging --show-progress        # Progress bar
  confiture-fast sync --from prod --to local --tables users,posts     # Specific tables
  confiture-fast sync --from prod --to local --exclude logs,metrics   # Exclude tables
  confiture-fast sync --from prod --to staging --checkpoint sync.json # Save checkpoint
  confiture-fast sync --from prod --to staging --resume --checkpoint sync.json  # Resume sync
""")
def sync(
    source: SourceOpt,
    target: TargetOpt,
    tables: TablesOpt = None,
    include: IncludeOpt = None,
    exclude: ExcludeOpt = None,
    anonymize: Annotated[bool, typer.Option("--anonymize", help=f"Anonymize with {DEFAULT_RULES}.")] = False,
    anonymize_config: Annotated[Optional[Path], typer.Option("--anonymize-config", "--anonymization-config", help="Anonymization rules file (implies --anonymize).")] = None,
    secret_file: Annotated[Optional[Path], typer.Option("--secret-file", help="File holding the anonymization secret (default: $ANONYMIZATION_SECRET).")] = None,
    env_dir: EnvDirOpt = DEFAULT_ENV_DIR,
    source_port: SourcePortOpt = None,
    cascade: Annotated[bool, typer.Option("--cascade", help="Also empty unselected tables whose foreign keys reference selected ones.")] = False,
    checkpoint: Annotated[Optional[Path], typer.Option("--checkpoint", help="Write progress here after every table, for --resume.")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Skip the tables the --checkpoint file lists as completed.")] = False,
    show_progress: Annotated[Optional[bool], typer.Option("--show-progress/--no-progress", help="Progress bars (default: on a terminal).")] = None,
    parallel: Annotated[Optional[int], typer.Option("--parallel", min=1, max=64, help="Worker processes (default: number of cores).")] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="Rows gathered before each write to the target (also capped at 8 MiB).")] = 5000,
    slice_mb: Annotated[int, typer.Option("--slice-size", min=1, help="Tables larger than this many MB are split into slices loaded in parallel.")] = 512,
    retries: Annotated[int, typer.Option("--retries", min=0, max=10, help="Retries of a table or slice after a transient connection error.")] = 2,
    strict: Annotated[Optional[bool], typer.Option("--strict/--no-strict", help="Refuse to start while a column that `scan` flags as PII has no rule (default: the source environment's strict:).")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the plan and exit without writing anything.")] = False,
    no_wait: Annotated[bool, typer.Option("--no-wait", help="Fail at once if another sync into the target is running (default: wait for it).")] = False,
    log_file: Annotated[Optional[Path], typer.Option("--log-file", help="Append a JSON-lines audit record of the run to this file.")] = None,
    fmt: Annotated[Format, typer.Option("--format", help="text, or json: one JSON object on stdout.")] = Format.text,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Also print each phase and its duration.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Only warnings and errors.")] = False,
    debug: DebugOpt = False,
) -> None:
    req = SyncRequest(source=source, target=target, tables=_csv(tables), include=_csv(include), exclude=_csv(exclude),
                      rules_path=anonymize_config or (DEFAULT_RULES if anonymize else None), secret_file=secret_file,
                      env_dir=env_dir, source_port=source_port, cascade=cascade, checkpoint=checkpoint, resume=resume,
                      show_progress=show_progress, parallel=parallel or os.cpu_count() or 1, batch_size=batch_size,
                      slice_bytes=slice_mb << 20, retries=retries, strict=strict, dry_run=dry_run, wait=not no_wait, log_file=log_file,
                      json=fmt is Format.json, verbose=verbose, quiet=quiet)
    try:
        code = _sync(req)
    except KeyboardInterrupt as exc:
        from .progress import stderr_console

        stderr_console().print("interrupted before the load started: the target was not changed", markup=False)
        raise typer.Exit(143 if isinstance(exc, Terminated) else 130)
    except typer.Exit:
        raise
    except BaseException as exc:  # noqa: BLE001 - every error leaves as one clean message
        raise _fail(exc, debug) from None
    raise typer.Exit(code)


def _fingerprint(*parts: object) -> str:
    return hashlib.blake2b(msgspec.json.encode(parts), digest_size=8).hexdigest()


class SyncRequest(msgspec.Struct, frozen=True, kw_only=True):
    """The sync's flags, parsed and typed once."""

    source: str
    target: str
    tables: tuple[str, ...]
    include: tuple[str, ...]
    exclude: tuple[str, ...]
    rules_path: Path | None
    secret_file: Path | None
    env_dir: Path
    source_port: int | None
    cascade: bool
    checkpoint: Path | None
    resume: bool
    show_progress: bool | None
    parallel: int
    batch_size: int
    slice_bytes: int
    retries: int
    strict: bool | None
    dry_run: bool
    wait: bool  # for another sync into the same target to end (else fail at once)
    log_file: Path | None
    json: bool
    verbose: bool
    quiet: bool


def _sync(req: SyncRequest) -> int:
    from . import config, coordinator
    from .audit import AuditLog
    from .plan import Selection, build_plan
    from .progress import phase, stderr_console

    console = stderr_console()
    say = (lambda *a: None) if req.quiet else (lambda msg: console.print(msg, markup=False))
    src_env = config.resolve_environment(req.source, req.env_dir, port=req.source_port)
    dst_env = config.resolve_environment(req.target, req.env_dir)
    _Redactor.add(src_env.password)
    _Redactor.add(dst_env.password)
    if dst_env.protected:
        raise ConfigError(f"the target {dst_env.name} is protected: confiture-fast never writes into it",
                          f"choose another --to, or set protected: false in {dst_env.file}" if dst_env.file
                          else "choose another --to")
    if req.resume and req.checkpoint is None:
        raise ConfigError("--resume needs --checkpoint FILE", "pass the checkpoint file of the interrupted sync")
    if req.checkpoint is not None:
        ckpt.check_writable(req.checkpoint)

    rules = None
    if req.rules_path is not None:
        if not req.rules_path.exists():
            raise ConfigError(f"anonymization rules file {req.rules_path} does not exist",
                              "create it (see the user guide) or pass --anonymize-config PATH")
        rules = config.load_rules(req.rules_path)
    secret = None
    if rules is not None:
        try:
            secret = config.load_secret(req.secret_file)
        except ConfigError:
            if req.secret_file is not None:
                raise  # the file asked for is missing or unreadable: say which, whatever the rules need
            secret = None  # the planner reports it only when a keyed strategy needs it
        if secret is not None:
            _Redactor.add(secret.value)
            if (w := secret.warning()):
                console.print(f"warning: {w}", markup=False)
    if (w := src_env.ssl_warning()):
        console.print(f"warning: {w}", markup=False)

    selection = Selection(req.tables, req.include, req.exclude)
    rules_fp = _rules_fingerprint(rules)
    audit = AuditLog(req.log_file, source=src_env.display(), target=dst_env.display(), anonymize=rules is not None,
                     rules_fingerprint=rules_fp, secret_fingerprint=secret.fingerprint() if secret else None,
                     dry_run=req.dry_run)
    audit.write("start", tables=list(req.tables), include=list(req.include), exclude=list(req.exclude))
    result = None
    try:
        resumed = ckpt.read(req.checkpoint) if req.resume else None
        with coordinator.Session(src_env.conninfo(), dst_env.conninfo(), src_env.display(),
                                 dst_env.display()) as session:
            session.refuse_protected_target(src_env, dst_env, req.env_dir,
                                            lambda msg: console.print(_Redactor.clean(f"warning: {msg}"), markup=False,
                                                                       soft_wrap=True))
            expected = ckpt.new(src_env.display(), dst_env.display(), rules_fp, "",
                                secret.fingerprint() if secret else "",
                                source_identity=_identity_fingerprint(session.src_identity),
                                target_identity=_identity_fingerprint(session.dst_identity))
            if resumed is not None:
                ckpt.check_matches(resumed, expected, req.checkpoint)
            state = resumed or expected
            from . import target as tgt

            keys = tgt.StateKeys(_state_secret(secret, req.secret_file))
            if not req.dry_run:
                tgt.lock_target(session.dst, req.wait, say)
            with phase(console, req.verbose, "read both catalogs and plan"):
                src_cat, dst_cat = session.catalogs(selection)
                plan = build_plan(src_cat, dst_cat, selection, rules, secret.value if secret else None,
                                  cascade=req.cascade, completed=frozenset(state.completed_tables),
                                  slice_bytes=req.slice_bytes)
            selected = _selection_fingerprint(plan)
            if resumed is not None:
                ckpt.check_selection(resumed, selected, req.checkpoint)
            else:
                state = msgspec.structs.replace(state, selection_fingerprint=selected)
            for w in plan.warnings:
                console.print(f"warning: {w}", markup=False, soft_wrap=True)
            if req.strict if req.strict is not None else src_env.strict:
                from . import scan

                with phase(console, req.verbose, "--strict: scan the selected tables for unruled PII"):
                    problems = scan.strict_problems(session.src, src_cat,
                                                    [src_cat.tables[t.key] for t in plan.tables], rules)
                if problems:
                    raise scan.strict_error(problems, rules)
            plan = tgt.preflight(session.dst, plan, keys, lambda msg: console.print(f"warning: {msg}", markup=False))
            if req.dry_run:
                from .summary import plan_json, render_plan

                render_plan(plan, tgt.trigger_mode(session.dst), console)
                if req.json:
                    sys.stdout.write(plan_json(plan) + "\n")
                audit.write("end", outcome="dry-run", tables=[t.name for t in plan.tables])
                return 0
            if rules is None:
                console.print("warning: syncing WITHOUT anonymization: every value is copied as it is in the "
                              "source (use --anonymize or --anonymize-config to mask PII)", markup=False)
            if plan.cascade:
                say(f"--cascade: also emptying {', '.join(plan.cascade)}")
            for k in plan.kept:
                say(f"kept in place during the load (maintained row by row): {k.table}: {k.name} ({k.why})")
            if plan.completed:
                say(f"resuming: skipping {', '.join(plan.completed)} (completed in {req.checkpoint})")
            live = req.show_progress if req.show_progress is not None else console.is_terminal
            opts = coordinator.RunOptions(parallel=req.parallel, flush_rows=req.batch_size, retries=req.retries,
                                          checkpoint=req.checkpoint,
                                          checkpoint_state=state if req.checkpoint else None,
                                          live_progress=live and not req.quiet, quiet=req.quiet,
                                          verbose=req.verbose)
            result = coordinator.run(session, plan, opts, console, keys)
    except BaseException as exc:
        audit.write("end", outcome="error", error=_Redactor.clean(getattr(exc, "message", None) or repr(exc)))
        raise
    audit.write("end", outcome="ok" if result.ok else ("interrupted" if result.interrupted else "failed"),
                error=_Redactor.clean(result.error) if result.error else None, total_rows=result.total_rows,
                seconds=round(result.seconds, 3),
                tables=[{"table": t.table, "rows": t.rows, "status": t.status,
                         "anonymized_columns": t.anonymized_columns} for t in result.tables])
    _report(result, req.json, console, req.checkpoint, req.quiet)
    if result.interrupted:
        return 143 if result.interrupted == "SIGTERM" else 130
    return 0 if result.ok else 1


def _identity_fingerprint(ident) -> str:
    """A database as a checkpoint remembers it: its name on its running server (not the system identifier,
    which clones restored from one backup share). After a server restart, the address still matches."""
    return _fingerprint(ident.database, ident.instance)


def _selection_fingerprint(plan) -> str:
    """The tables a run covers, whatever flags, order or spelling selected them."""
    return _fingerprint(sorted(t.relation for t in plan.tables), sorted(plan.cascade_relations))


def _state_secret(secret, secret_file: Path | None) -> bytes | None:
    """The anonymization secret, also when not anonymizing: a key derived from it signs the target's
    pending_ddl records, so that any machine holding the secret can finish an interrupted run."""
    from . import config

    if secret is None:
        try:
            secret = config.load_secret(secret_file)
        except ConfigError:
            return None
        _Redactor.add(secret.value)
    return secret.value


def _rules_fingerprint(rules) -> str:
    """What a resumed run must anonymize the same way: every rule, but not where it sits in the file."""
    if rules is None:
        return ""
    return _fingerprint(sorted((t, [(r.column, r.strategy, r.seed, r.params, r.allow_duplicates) for r in specs])
                               for t, specs in rules.tables.items()))


def _report(result, as_json: bool, console, checkpoint: Path | None, quiet: bool = False) -> None:
    if as_json:
        sys.stdout.write(msgspec.json.encode(result).decode() + "\n")
    elif not quiet:
        from .summary import render

        render(result, console, checkpoint)
    for c in result.constraints:
        if c.rebuilt and not c.valid:
            console.print(f"warning: {c.table}: foreign key {c.name} is violated by the loaded rows "
                          f"({c.error}); it was recreated NOT VALID", markup=False)
    if result.error:
        console.print(_Redactor.clean(f"error: {result.error}"), markup=False, soft_wrap=True)
        if any(not c.rebuilt for c in result.constraints) and not any(t.status == "failed" for t in result.tables):
            console.print("  fix: make the rows fit them (a rule with allow_duplicates on a UNIQUE column makes "
                          "duplicates: use a unique strategy), then rerun; a rerun rebuilds what is recorded",
                          markup=False)
        elif result.fix:
            console.print(_Redactor.clean(f"  fix: {result.fix}"), markup=False, soft_wrap=True)


@app.command(help="Run the whole thing on a throwaway PostgreSQL: a sample production database full of fake "
                  "PII, an anonymized sync into a local one, and a look at the result.")
def demo(
    users: Annotated[int, typer.Option("--users", min=10, help="Users in the sample shop (orders: 2x).")] = 30_000,
    keep: Annotated[bool, typer.Option("--keep", help="Leave the server running and print the connection strings.")] = False,
    debug: DebugOpt = False,
) -> None:
    from .demo import run_demo

    try:
        run_demo(users=users, keep=keep)
    except BaseException as exc:  # noqa: BLE001
        if isinstance(exc, (typer.Exit, KeyboardInterrupt)):
            raise
        raise _fail(exc, debug) from None


def main() -> None:
    import signal
    import warnings

    if not sys.warnoptions and "PYTHONWARNINGS" not in os.environ:
        # A library's Python warning is not for the user's screen (ours are printed as "warning: ...");
        # worker processes inherit the setting through the environment.
        warnings.simplefilter("ignore")
        os.environ["PYTHONWARNINGS"] = "ignore"

    def _term(signum, frame):
        raise Terminated

    signal.signal(signal.SIGTERM, _term)
    app()


# The other commands live in their own modules and join the app here.
from . import bench, scan, verify  # noqa: E402

for _module in (bench, scan, verify):
    _module.register(app)
