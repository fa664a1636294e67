"""The sync use case: resolves both environments, the rules and the secret, plans, checks --strict,
hands the plan to the coordinator and writes the audit log. The command line (cli/sync.py) parses
the flags into a SyncRequest and renders what this returns."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import TYPE_CHECKING

import msgspec

from . import checkpoint as ckpt
from .errors import ConfigError
from .redact import Redactor

if TYPE_CHECKING:
    from .coordinator import SyncResult
    from .plan import Plan


class DryRun(msgspec.Struct, frozen=True):
    """What --dry-run found: the plan, and how the target's triggers would be handled."""

    plan: Plan
    trigger_mode: str


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


def run_sync(req: SyncRequest, console) -> SyncResult | DryRun:
    """The whole sync, with its warnings on `console`; the audit log records how it ended."""
    from . import config, coordinator
    from .audit import AuditLog
    from .plan import Selection, build_plan
    from .progress import phase

    say = (lambda *a: None) if req.quiet else (lambda msg: console.print(msg, markup=False))
    src_env = config.resolve_environment(req.source, req.env_dir, port=req.source_port)
    dst_env = config.resolve_environment(req.target, req.env_dir)
    Redactor.add(src_env.password)
    Redactor.add(dst_env.password)
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
            Redactor.add(secret.value)
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
                                            lambda msg: console.print(Redactor.clean(f"warning: {msg}"), markup=False,
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
                audit.write("end", outcome="dry-run", tables=[t.name for t in plan.tables])
                return DryRun(plan, tgt.trigger_mode(session.dst))
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
        audit.write("end", outcome="error", error=Redactor.clean(getattr(exc, "message", None) or repr(exc)))
        raise
    audit.write("end", outcome="ok" if result.ok else ("interrupted" if result.interrupted else "failed"),
                error=Redactor.clean(result.error) if result.error else None, total_rows=result.total_rows,
                seconds=round(result.seconds, 3),
                tables=[{"table": t.table, "rows": t.rows, "status": t.status,
                         "anonymized_columns": t.anonymized_columns} for t in result.tables])
    return result


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
        Redactor.add(secret.value)
    return secret.value


def _rules_fingerprint(rules) -> str:
    """What a resumed run must anonymize the same way: every rule, but not where it sits in the file."""
    if rules is None:
        return ""
    return _fingerprint(sorted((t, [(r.column, r.strategy, r.seed, r.params, r.allow_duplicates) for r in specs])
                               for t, specs in rules.tables.items()))


