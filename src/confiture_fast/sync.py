"""The sync use case, as an ordered table of phases (PHASES): resolve, connect, plan, strict, schema
(--create-schema), prepare, load, finish, report. Each phase is a small function here that hands the
SyncRun to the module that does the work (config, coordinator.Session, plan, scan, schema, prepare,
coordinator.load, finish); one loop
runs them in order and, with -v, prints them as numbered, timed steps. The command line
(cli/sync.py) parses the flags into a SyncRequest and renders what run_sync returns.

To add a phase: write its function (taking the SyncRun), add a Phase to PHASES where it runs
(writes=True when --dry-run must skip it), and its step is numbered and timed like the others."""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING

import msgspec

from . import checkpoint as ckpt
from .errors import ConfigError
from .redact import Redactor
from .request import LoadOptions, Scope

if TYPE_CHECKING:
    from .audit import AuditLog
    from .coordinator import SyncResult
    from .incremental import Choice, Increment
    from .plan import Plan
    from .schema import SchemaPlan


class DryRun(msgspec.Struct, frozen=True):
    """What --dry-run found: the plan, and how the target's triggers would be handled."""

    plan: Plan
    trigger_mode: str
    schema: SchemaPlan | None = None  # --create-schema: what would be created
    incremental: list[Choice] = []  # --incremental: each table's mode, why, and the survey's counts


def _fingerprint(*parts: object) -> str:
    return hashlib.blake2b(msgspec.json.encode(parts), digest_size=8).hexdigest()


class SyncRequest(msgspec.Struct, frozen=True, kw_only=True):
    """The sync's flags, parsed and typed once."""

    scope: Scope  # --from, --env-dir, --source-port, the tables, --anonymize-config
    target: str
    load: LoadOptions = LoadOptions()
    secret_file: Path | None = None
    cascade: bool = False
    checkpoint: Path | None = None
    resume: bool = False
    show_progress: bool | None = None
    strict: bool | None = None
    dry_run: bool = False
    create_schema: bool = False  # create on the target what the selected tables need and it lacks
    incremental: bool = False  # copy only the rows changed since the last sync (incremental.py)
    wait: bool = True  # for another sync into the same target to end (else fail at once)
    log_file: Path | None = None
    json: bool = False
    verbose: bool = False
    quiet: bool = False


class Phase(msgspec.Struct, frozen=True):
    """One step of a sync: `run` does it on the SyncRun; `writes` phases are skipped by --dry-run;
    `skip`, when given, returns why the step is skipped this time (else None)."""

    name: str
    title: str
    run: Callable[[SyncRun], None]
    writes: bool = False
    skip: Callable[[SyncRun], str | None] | None = None


class SyncRun:
    """What the phases of one sync hand each other, filled in as they run."""

    def __init__(self, req: SyncRequest, console, stack: ExitStack):
        self.req, self.console, self.stack = req, console, stack
        self.say = (lambda msg: None) if req.quiet else (lambda msg: console.print(msg, markup=False))
        self.audit: AuditLog | None = None
        self.outcome: SyncResult | DryRun | None = None
        self.increment: Increment | None = None  # the plan phase's choices (incremental.choose)
        self.incremental_tables: list = []  # the TablePlans refreshed incrementally

    def warn(self, msg: str) -> None:
        self.console.print(Redactor.clean(f"warning: {msg}"), markup=False, soft_wrap=True)


def _resolve(r: SyncRun) -> None:
    """The first worker process, started now so that its start-up overlaps everything until the load
    (coordinator.Workers); both environments, the rules and the secret; then the audit log's start record."""
    from . import config, coordinator
    from .audit import AuditLog

    req, scope = r.req, r.req.scope
    if not req.dry_run:
        r.workers = r.stack.enter_context(coordinator.Workers(req.load.parallel))
    r.src_env = config.resolve_environment(scope.source, scope.env_dir, port=scope.source_port)
    r.dst_env = config.resolve_environment(req.target, scope.env_dir)
    Redactor.add(r.src_env.password)
    Redactor.add(r.dst_env.password)
    if r.dst_env.protected:
        raise ConfigError(f"the target {r.dst_env.name} is protected: confiture-fast never writes into it",
                          f"choose another --to, or set protected: false in {r.dst_env.file}" if r.dst_env.file
                          else "choose another --to")
    if req.resume and req.checkpoint is None:
        raise ConfigError("--resume needs --checkpoint FILE", "pass the checkpoint file of the interrupted sync")
    if req.checkpoint is not None:
        ckpt.check_writable(req.checkpoint)
    r.rules = None
    if scope.rules_path is not None:
        if not scope.rules_path.exists():
            raise ConfigError(f"anonymization rules file {scope.rules_path} does not exist",
                              "create it (see the user guide) or pass --anonymize-config PATH")
        r.rules = config.load_rules(scope.rules_path)
    r.secret = None
    if r.rules is not None:
        try:
            r.secret = config.load_secret(req.secret_file)
        except ConfigError:
            if req.secret_file is not None:
                raise  # the file asked for is missing or unreadable: say which, whatever the rules need
            r.secret = None  # the planner reports it only when a keyed strategy needs it
        if r.secret is not None:
            Redactor.add(r.secret.value)
            if (w := r.secret.warning()):
                r.console.print(f"warning: {w}", markup=False)
    if (w := r.src_env.ssl_warning()):
        r.console.print(f"warning: {w}", markup=False)
    r.rules_fp = _rules_fingerprint(r.rules)
    r.audit = AuditLog(req.log_file, source=r.src_env.display(), target=r.dst_env.display(),
                       anonymize=r.rules is not None, rules_fingerprint=r.rules_fp,
                       secret_fingerprint=r.secret.fingerprint() if r.secret else None, dry_run=req.dry_run)
    sel = scope.selection
    r.audit.write("start", tables=list(sel.tables), include=list(sel.include), exclude=list(sel.exclude))


def _connect(r: SyncRun) -> None:
    """The Session (refused when --to is a protected environment's database), the checkpoint being
    resumed checked against it, and the target's run lock."""
    from . import coordinator, target

    req = r.req
    resumed = ckpt.read(req.checkpoint) if req.resume else None
    r.session = r.stack.enter_context(coordinator.Session(r.src_env.conninfo(), r.dst_env.conninfo(),
                                                          r.src_env.display(), r.dst_env.display()))
    r.session.refuse_protected_target(r.src_env, r.dst_env, req.scope.env_dir, r.warn)
    expected = ckpt.new(r.src_env.display(), r.dst_env.display(), r.rules_fp, "",
                        r.secret.fingerprint() if r.secret else "",
                        source_identity=_identity_fingerprint(r.session.src_identity),
                        target_identity=_identity_fingerprint(r.session.dst_identity))
    if resumed is not None:
        ckpt.check_matches(resumed, expected, req.checkpoint)
    r.resumed, r.state = resumed, resumed or expected
    r.state_secret = _state_secret(r.secret, req.secret_file)
    r.keys = target.StateKeys(r.state_secret)
    if not req.dry_run:
        target.lock_target(r.session.dst, req.wait, r.say)


def _plan(r: SyncRun) -> None:
    """The plan from both catalogs (the source's under the snapshot), checked against the checkpoint
    being resumed, then against the target's state and triggers (prepare.preflight). With
    --create-schema, against the target as it will be: the tables it lacks as the source has them."""
    from . import prepare
    from .plan import select_tables

    req = r.req
    r.selection = req.scope.selection
    r.src_cat, dst_cat = r.session.catalogs(r.selection)
    r.schema = None
    if req.create_schema:
        from . import schema

        selected = [t.key for t in select_tables(r.src_cat, r.selection, [])]
        r.schema = schema.plan_schema(schema.read_source(r.session.src, selected),
                                      schema.read_existing(r.session.dst, r.keys))
        dst_cat = schema.as_planned(dst_cat, r.src_cat, r.schema)
    r.subset = None
    if req.scope.subset.roots:
        from . import subset

        chosen = select_tables(r.src_cat, r.selection, [])
        r.subset = subset.check(r.session.src, subset.plan(r.src_cat, chosen, req.scope.subset, r.state_secret),
                                count=req.dry_run)  # counting runs each closure once more: --dry-run only
    plan = _build(r, dst_cat)
    selected = _selection_fingerprint(plan)
    if r.resumed is not None:
        ckpt.check_selection(r.resumed, selected, req.checkpoint)
    else:
        r.state = msgspec.structs.replace(r.state, selection_fingerprint=selected)
    for w in plan.warnings:
        r.console.print(f"warning: {w}", markup=False, soft_wrap=True)
    r.mode = prepare.trigger_mode(r.session.dst)
    plan = _choose(r, plan, dst_cat)
    warn = lambda msg: r.console.print(f"warning: {msg}", markup=False)  # noqa: E731
    if r.schema is not None:  # the tables still to create are not there to check
        made = set(r.schema.tables)
        checked = prepare.preflight(r.session.dst, msgspec.structs.replace(
            plan, tables=tuple(t for t in plan.tables if t.key not in made)), r.keys, warn)
        r.plan = msgspec.structs.replace(plan, deferred=checked.deferred)
    else:
        r.plan = prepare.preflight(r.session.dst, plan, r.keys, warn)


def _choose(r: SyncRun, plan, dst_cat):
    """Which tables go incremental (with --incremental) and what state to record for the others; the
    plan of the rest, planned again with the incremental ones left alone (neither emptied nor deferred)."""
    from . import incremental

    made = {t.name for t in plan.tables if r.schema is not None and t.key in r.schema.tables}
    r.increment = incremental.choose(r.session, r.src_cat, dst_cat, plan, r.keys, r.mode,
                                     r.secret.fingerprint() if r.secret else "", r.req.incremental,
                                     skip=frozenset(made | set(plan.completed)))
    r.incremental_tables = [t for t in plan.tables if t.name in r.increment.applied]
    return _build(r, dst_cat) if r.incremental_tables else plan


def _build(r: SyncRun, dst_cat):
    """The plan; under --incremental, that of the tables reloaded in full, the incremental ones left
    alone (neither emptied nor their indexes deferred; their sequences are reset like the others')."""
    from .plan import build_plan, streams

    inc = frozenset(r.increment.applied) if r.increment is not None else frozenset()
    plan = build_plan(r.src_cat, dst_cat, r.selection, r.rules, r.secret.value if r.secret else None,
                      cascade=r.req.cascade, completed=frozenset(r.state.completed_tables) | inc,
                      slice_size=r.req.load.slice_size, subset=r.subset,
                      streams=streams(r.req.load.parallel, os.cpu_count() or 1))
    if not inc:
        return plan
    return msgspec.structs.replace(plan, tables=tuple(t for t in plan.tables if t.name not in inc),
                                   completed=tuple(n for n in plan.completed if n not in inc))


def _no_schema(r: SyncRun) -> str | None:
    if not r.req.create_schema:
        return "no --create-schema"
    return None if r.schema.count else "the target has everything the selected tables need"


def _create_schema(r: SyncRun) -> None:
    """Creates what the plan phase found missing (schema.apply: one transaction), then plans again
    against the target as it now is, and checks it as the plan phase does."""
    from . import prepare, schema
    from .catalog import read_catalog

    schema.apply(r.session.dst, r.schema, r.keys)
    r.plan = prepare.preflight(r.session.dst, _build(r, read_catalog(r.session.dst)), r.keys,
                               lambda msg: r.console.print(f"warning: {msg}", markup=False))


def _strict_off(r: SyncRun) -> str | None:
    return None if (r.req.strict if r.req.strict is not None else r.src_env.strict) else "--strict is off"


def _strict(r: SyncRun) -> None:
    from . import scan

    problems = scan.strict_problems(r.session.src, r.src_cat, [r.src_cat.tables[t.key] for t in r.plan.tables],
                                    r.rules)
    if problems:
        raise scan.strict_error(problems, r.rules)


def _prepare(r: SyncRun) -> None:
    """Says what the run will do to the target, writes the checkpoint (a checkpoint that cannot be
    written stops nothing half-way), forgets the incremental state of the tables to reload, then
    defers and empties (prepare.prepare). From here until the run ends, a lock wait on the target is
    explained after a few seconds (target.LockWatch)."""
    from . import incremental, prepare, target

    req, plan = r.req, r.plan
    if r.rules is None:
        r.console.print("warning: syncing WITHOUT anonymization: every value is copied as it is in the "
                        "source (use --anonymize or --anonymize-config to mask PII)", markup=False)
    if plan.cascade:
        r.say(f"--cascade: also emptying {', '.join(plan.cascade)}")
    for k in plan.kept:
        r.say(f"kept in place during the load (maintained row by row): {k.table}: {k.name} ({k.why})")
    if plan.completed:
        r.say(f"resuming: skipping {', '.join(plan.completed)} (completed in {req.checkpoint})")
    r.started = time.perf_counter()
    if req.checkpoint is not None:
        try:
            ckpt.write(req.checkpoint, r.state)
        except OSError as exc:
            raise ConfigError(f"--checkpoint {req.checkpoint} cannot be written: {exc.strerror or exc}",
                              "pass --checkpoint a file path in an existing, writable folder") from None
    r.stack.enter_context(target.LockWatch(r.session.target_conninfo, r.say))
    incremental.forget(r.session.dst, [t.name for t in plan.tables if t.name not in plan.completed] + list(plan.cascade))
    prepare.prepare(r.session.dst, plan, r.keys, r.mode)


def _load(r: SyncRun) -> None:
    """The incremental tables first (incremental.apply), then the others in worker processes."""
    from . import coordinator, incremental
    from .finish import Finisher

    req = r.req
    r.applied = incremental.apply(r.session, r.incremental_tables, r.src_cat, r.increment, r.keys, r.mode,
                                  req.load.batch_size, r.say)
    if req.checkpoint is not None and r.applied.applied:
        for name, done in r.applied.applied.items():
            r.state = r.state.with_table(name, done.inserted + done.updated)
        ckpt.write(req.checkpoint, r.state)
    live = req.show_progress if req.show_progress is not None else r.console.is_terminal
    opts = coordinator.RunOptions(load=req.load, checkpoint=req.checkpoint,
                                  checkpoint_state=r.state if req.checkpoint else None, live_progress=live and not req.quiet, quiet=req.quiet)
    unrecorded: list[str] = []

    def loaded(name: str) -> None:  # its state, for the next --incremental, recorded as soon as it commits
        why = incremental.record(r.session.dst, r.keys, r.increment, [name])
        if why is not None and not unrecorded:
            unrecorded.append(why)
            r.warn(f"the state a later --incremental run starts from was not recorded on the target: {why}")

    r.finisher = Finisher(r.session.dst, r.session.target_conninfo, req.load.parallel, r.keys, loaded)
    r.load = coordinator.load(r.session, r.plan, opts, r.console, r.finisher, r.mode, r.workers)


def _finish(r: SyncRun) -> None:
    """finish.finish, the incremental tables' sequences too."""
    from . import finish

    r.finished = finish.finish(r.session.src, r.session.dst, r.session.target_conninfo, r.plan, r.finisher,
                               r.load.loaded() | set(r.applied.applied), r.keys, r.req.load.parallel,
                               r.load.error or r.applied.error, r.console, r.req.quiet)


def _report(r: SyncRun) -> None:
    """The outcome, and the audit log's end record."""
    from . import coordinator, incremental

    if r.req.dry_run:
        r.audit.write("end", outcome="dry-run", tables=[t.name for t in r.plan.tables])
        r.outcome = DryRun(r.plan, r.mode, r.schema, list(r.increment.choices.values()))
        return
    result = incremental.annotate(coordinator.report(r.load, r.finished, time.perf_counter() - r.started),
                                  r.increment, r.applied, r.incremental_tables)
    if r.schema is not None:
        result = msgspec.structs.replace(result, created=r.schema.listing(), not_created=list(r.schema.not_created))
    r.audit.write("end", outcome="ok" if result.ok else ("interrupted" if result.interrupted else "failed"),
                  error=Redactor.clean(result.error) if result.error else None, total_rows=result.total_rows,
                  seconds=round(result.seconds, 3),
                  tables=[{"table": t.table, "rows": t.rows, "status": t.status,
                           "anonymized_columns": t.anonymized_columns} for t in result.tables])
    r.outcome = result


PHASES: tuple[Phase, ...] = (
    Phase("resolve", "resolve both environments, the rules and the secret", _resolve),
    Phase("connect", "connect to both databases, check them, take the target's run lock", _connect),
    Phase("plan", "read both catalogs and plan", _plan),
    Phase("strict", "scan the selected tables for unruled PII", _strict, skip=_strict_off),
    Phase("schema", "--create-schema: create what the selected tables need and the target lacks", _create_schema,
          writes=True, skip=_no_schema),
    Phase("prepare", "prepare the target: defer indexes and constraints, empty tables", _prepare, writes=True),
    Phase("load", "load the rows in worker processes", _load, writes=True),
    Phase("finish", "rebuild indexes and constraints, reset sequences and ANALYZE", _finish, writes=True),
    Phase("report", "the result and the audit log's end record", _report),
)


def run_sync(req: SyncRequest, console) -> SyncResult | DryRun:
    """The whole sync: PHASES in order, then what the report phase made of it."""
    with ExitStack() as stack:
        r = SyncRun(req, console, stack)
        run_phases(PHASES, r, console, verbose=req.verbose, dry_run=req.dry_run)
    return r.outcome


def run_phases(phases: tuple[Phase, ...], r: SyncRun, console, *, verbose: bool, dry_run: bool) -> None:
    """Runs each phase in order, numbered and timed with -v; --dry-run skips the phases that write. An
    error ends the run; once the audit log has its start record, it gets the end record of the error."""
    from .progress import step

    writing = None  # the first phase that began to change the target
    try:
        for i, p in enumerate(phases, 1):
            skipped = "--dry-run" if dry_run and p.writes else (p.skip(r) if p.skip else None)
            with step(console, verbose, i, len(phases), p.name, p.title, skipped):
                if skipped is None:
                    writing = writing or (p.name if p.writes else None)
                    p.run(r)
    except KeyboardInterrupt as exc:
        if writing is not None:
            exc.message = (f"interrupted after the {writing} phase began changing the target: what it deferred is "
                           f"recorded there, and the next sync into it rebuilds that first; run the sync again")
        if r.audit is not None:
            r.audit.write("end", outcome="error", error=getattr(exc, "message", None) or repr(exc))
        raise
    except BaseException as exc:
        if r.audit is not None:
            r.audit.write("end", outcome="error", error=Redactor.clean(getattr(exc, "message", None) or repr(exc)))
        raise


def _identity_fingerprint(ident) -> str:
    """A database as a checkpoint remembers it: its name on its running server (not the system identifier,
    which clones restored from one backup share). After a server restart, the address still matches."""
    return _fingerprint(ident.database, ident.instance)


def _selection_fingerprint(plan) -> str:
    """The tables a run covers, whatever flags, order or spelling selected them, and the subset of their
    rows (each root's predicate, which holds the sample's key, and the closure's steps)."""
    subset = [] if plan.subset is None else sorted(
        (g.tables, [(s.table, s.predicate) for s in g.seeds], [e.describe for e in g.edges]) for g in plan.subset.groups)
    return _fingerprint(sorted(t.relation for t in plan.tables), sorted(plan.cascade_relations),
                        *([subset] if subset else []))


def _state_secret(secret, secret_file: Path | None) -> bytes | None:
    """The anonymization secret, also when not anonymizing: a key derived from it signs the target's
    pending_ddl records, so that any machine holding the secret can finish an interrupted run."""
    from . import config

    if secret is None:
        try:
            secret = config.load_secret(secret_file)
        except ConfigError:
            return None
        Redactor.add(secret.value)
    return secret.value


def _rules_fingerprint(rules) -> str:
    """What a resumed run must anonymize the same way: every rule, but not where it sits in the file."""
    if rules is None:
        return ""
    return _fingerprint(sorted((t, [(r.column, r.strategy, r.seed, r.params, r.allow_duplicates) for r in specs])
                               for t, specs in rules.tables.items()))


