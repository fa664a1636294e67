"""The errors a user can see: each says what went wrong and how to fix it, in one or two lines.

One hierarchy: ConfiturError > ConfigError (> ValidationError) and SyncError (> UnitFailed,
RewriteError, BenchError). Exit codes: 2 for bad usage or configuration (nothing was touched), 1 for
a failure during the sync. Which server failures are worth a new attempt is decided here, in one
table (TRANSIENT), by SQLSTATE and side.

This module imports nothing of the package: the strategies (and through them the compiled
rewriter, which raises RewriteError) may import it.
"""

from __future__ import annotations

from typing import NamedTuple


class ConfiturError(Exception):
    exit_code = 1

    def __init__(self, message: str, fix: str | None = None):
        super().__init__(message)
        self.message = message
        self.fix = fix

    def render(self) -> str:
        return self.message if not self.fix else f"{self.message}\n  fix: {self.fix}"


class ConfigError(ConfiturError):
    """Bad configuration or arguments, found before the target is touched."""

    exit_code = 2


class ValidationError(ConfigError):
    """Several problems found together during validation; all are reported at once."""

    def __init__(self, title: str, problems: list[str], fix: str | None = None):
        self.problems = problems
        body = title + "\n" + "\n".join(f"  - {p}" for p in problems)
        super().__init__(body, fix)


class SyncError(ConfiturError):
    """A failure during the sync itself."""

    exit_code = 1


class BenchError(SyncError):
    """A contender of the bench failed or loaded the wrong rows: the numbers would be meaningless."""


class RewriteError(SyncError):
    """A COPY row the rewriter cannot handle; names the table, 1-based row, column and problem.

    Raised by the compiled rewriter (given this class by the strategy registry) and the reference one."""

    def __init__(self, table: str, row: int, column: str, problem: str):
        super().__init__(f"table {table!r}, row {row}, column {column!r}: {problem}")
        self.table, self.row, self.column, self.problem = table, row, column, problem

    def __reduce__(self):
        return RewriteError, (self.table, self.row, self.column, self.problem)


class Terminated(KeyboardInterrupt):
    """SIGTERM: stopped gracefully like Ctrl-C, but exiting 143."""


# --------------------------------------------------------------------------- transient failures

SIDES = ("source", "target")


class Rule(NamedTuple):
    state: str  # a SQLSTATE, or its class (first two characters)
    sides: tuple[str, ...]
    retry: bool
    why: str


# The most specific rule (the longest state) of the failing side decides; no rule: not transient.
TRANSIENT: tuple[Rule, ...] = (
    Rule("08", SIDES, True, "connection exception: the connection was lost or could not be made; a new one may work"),
    Rule("57P01", SIDES, True, "admin_shutdown: the server shuts down or restarts, or an administrator ended the "
                               "session; it comes back or the session is not ended again"),
    Rule("57P02", SIDES, True, "crash_shutdown: another session crashed and the server restarts"),
    Rule("57P03", SIDES, True, "cannot_connect_now: the server is starting up or in recovery for a moment"),
    Rule("40001", SIDES, True, "serialization_failure: another transaction won; the same work after it passes"),
    Rule("40P01", SIDES, True, "deadlock_detected: the other transaction went on; ours passes alone"),
    Rule("53300", SIDES, True, "too_many_connections: others' sessions end, and a slot frees up"),
    Rule("53", ("target",), True, "insufficient resources on the target (memory, shared memory, locks): what other "
                                  "sessions held is freed when they end; the source is only read, and a retry "
                                  "there would load production again"),
    Rule("53100", SIDES, False, "disk_full: the same rows fill the same disk again; free space first"),
    Rule("53400", SIDES, False, "configuration_limit_exceeded: a setting's limit, reached again by the same work"),
    Rule("57014", SIDES, False, "query_canceled: a statement_timeout or pg_cancel_backend stops the same work again"),
    Rule("42501", SIDES, False, "insufficient_privilege: a grant is missing; every attempt is refused alike"),
    Rule("22", SIDES, False, "data exception: the same rows hold the same values on every attempt"),
    Rule("23", SIDES, False, "integrity constraint violation: the same rows break the same constraint again"),
    Rule("42", SIDES, False, "syntax error or undefined object: the schema differs or changed; so it stays"),
    Rule("22023", ("source",), False, "invalid snapshot identifier: the exported snapshot no longer exists (the "
                                      "transaction that exported it ended); no new session can import it"),
    Rule("42704", ("source",), False, "snapshot does not exist (PostgreSQL 16 and later), or another undefined "
                                      "object: no new session can import an ended snapshot"),
)

# libpq's own failures carry no SQLSTATE: their text says what happened. Refusals first.
NO_SQLSTATE: tuple[tuple[str, bool], ...] = (
    ("password authentication failed", False), ("no password supplied", False), ("does not exist", False),
    ("permission denied", False), ("no pg_hba.conf entry", False), ("could not translate host name", False),
    ("server closed the connection", True), ("terminat", True), ("Connection refused", True),
    ("timeout expired", True), ("starting up", True), ("shutting down", True), ("connection", True),
)


def rule(state: str, side: str) -> Rule | None:
    """The rule of TRANSIENT that decides about `state` on `side`, if any."""
    found = [r for r in TRANSIENT if state.startswith(r.state) and side in r.sides]
    return max(found, key=lambda r: len(r.state), default=None)


def transient(state: str | None, side: str, message: str = "") -> bool:
    """Whether a failure with SQLSTATE `state` on `side` ("source", "target") may pass on a new attempt;
    without a SQLSTATE (libpq's own failure) its `message` tells."""
    if state is None:
        return side in SIDES and next((retry for needle, retry in NO_SQLSTATE if needle in message), False)
    found = rule(state, side)
    return found is not None and found.retry


class UnitFailed(SyncError):
    """A unit failed; the message names the table and the cause. Picklable for the process pool.

    `detail` is the cause (prefixed by the side), `column` the target column the server's CONTEXT
    named, if any."""

    def __init__(self, table: str, detail: str, side: str = "", sqlstate: str | None = None,
                 column: str | None = None):
        super().__init__(f"{table}: {detail}")
        self.table, self.detail, self.side, self.sqlstate, self.column = table, detail, side, sqlstate, column

    def __reduce__(self):
        return UnitFailed, (self.table, self.detail, self.side, self.sqlstate, self.column)

    @property
    def transient(self) -> bool:
        return transient(self.sqlstate, self.side, self.detail)

    def fix_for(self, checkpoint: str | None) -> str:
        """What to do: for a transient failure, the same command again (resume_fix); for one that a rerun
        would only repeat, the cause to remove first (a rule whose output does not fit, drift, the encoding)."""
        state, side = self.sqlstate or "", self.side or "the"
        if self.transient and not state.startswith("53"):  # a resource: say which, whether retried or not
            return resume_fix(checkpoint)
        col = f" {self.column}" if self.column else ""
        then = f"; then resume with --resume --checkpoint {checkpoint}" if checkpoint else "; then sync again"
        if state in ("22023", "42704") and self.side == "source" and "snapshot" in self.detail:
            return ("the source snapshot of this sync ended (the session that exported it was closed, or the source "
                    f"restarted): {resume_fix(checkpoint)}")
        if state == "22001":
            cause = (f"a value is longer than the target column{col} allows: a rule whose output does not fit it, or "
                     "a target column narrower than the source's (drift): use a rule with a shorter output, or widen "
                     "the target column (--dry-run shows the types)")
        elif state in ("22021", "22P05") and self.side == "source":
            cause = ("the source holds text that is not valid in its own encoding or cannot be read as UTF-8 (e.g. "
                     "bytes above 127 in a SQL_ASCII database): repair or convert those values on the source")
        elif state in ("22021", "22P05"):
            cause = ("the source holds text that the target database's encoding cannot take: create the target with "
                     "the source's encoding (createdb -E ENCODING -T template0), or repair those values on the source")
        elif state == "23514":
            cause = (f"a row breaks a CHECK constraint{' of' + col if col else ''} on the target (named above), which "
                     "the source does not have (drift) or a rule's output does not satisfy: align the target's "
                     "schema with the source's, or change the rule")
        elif state == "23502":
            cause = (f"a NULL arrives in the NOT NULL target column{col}: a rule that writes NULL on it, or the column "
                     "is nullable on the source (drift): change the rule or align the target's schema")
        elif state == "23505":
            cause = ("duplicates in a unique target column: a rule that is not unique on it (allow_duplicates), or "
                     "the target has a unique constraint the source lacks (drift)")
        elif state.startswith(("22", "23")):
            cause = (f"a value does not fit the target column{col}: a rule's output, or a type or constraint that "
                     "differs from the source's (drift): compare the column on both sides (--dry-run shows the types)")
        elif state == "42501":
            cause = f"grant the {side} role the privilege named above"
        elif state.startswith("42"):
            cause = (f"the {side} schema changed while the sync ran, or this is a bug: compare both schemas "
                     "(--dry-run), and report it with --debug if they agree")
        elif state.startswith("53"):
            cause = f"free the {side} server's resource named above (disk space, memory, connections)"
        elif state == "57014":
            cause = f"a statement_timeout or pg_cancel_backend on the {side} server stopped it: lift it"
        elif self.side:
            cause = f"remove the cause named above on the {side} server"
        else:
            cause = "fix the rule or value named above"
        return cause + then


def resume_fix(checkpoint: str | None) -> str:
    """The fix of a transient failure: the same command again, resuming when there is a checkpoint."""
    if checkpoint:
        return f"resume with the same command plus --resume --checkpoint {checkpoint}"
    return "rerun the same command (with --checkpoint FILE, a rerun can --resume)"
