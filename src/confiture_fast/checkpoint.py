"""The checkpoint file: the user guide's JSON layout, plus what a safe resume needs.

Written atomically (temporary file, fsync, rename) after every table commits, so a crash never
leaves an unreadable file. It names databases as host:port/dbname only and carries keyed
fingerprints, never a password or the secret.
"""

from __future__ import annotations

import datetime as dt
import os
import tempfile
from pathlib import Path

import msgspec

from .errors import ConfigError

VERSION = "1.0"


class CompletedTable(msgspec.Struct, frozen=True):
    rows_synced: int
    synced_at: str


class PartialTable(msgspec.Struct, frozen=True):
    """A table loaded in slices, some of them committed. Resume reloads it whole (see how-it-works)."""

    slices_total: int
    slices_committed: list[int]
    rows_committed: int


class Checkpoint(msgspec.Struct, frozen=True):
    version: str
    timestamp: str
    source_database: str
    target_database: str
    completed_tables: dict[str, CompletedTable]
    rules_fingerprint: str = ""
    selection_fingerprint: str = ""
    secret_fingerprint: str = ""
    partial_tables: dict[str, PartialTable] = {}

    def with_table(self, name: str, rows: int) -> "Checkpoint":
        now = _now()
        partial = {k: v for k, v in self.partial_tables.items() if k != name}
        return msgspec.structs.replace(self, timestamp=now, partial_tables=partial,
                                       completed_tables={**self.completed_tables, name: CompletedTable(rows, now)})

    def with_slice(self, name: str, total: int, index: int, rows: int) -> "Checkpoint":
        old = self.partial_tables.get(name, PartialTable(total, [], 0))
        new = PartialTable(total, sorted({*old.slices_committed, index}), old.rows_committed + rows)
        return msgspec.structs.replace(self, timestamp=_now(), partial_tables={**self.partial_tables, name: new})


def _now() -> str:
    return dt.datetime.now().replace(microsecond=0).isoformat()


def new(source: str, target: str, rules_fp: str, selection_fp: str, secret_fp: str) -> Checkpoint:
    return Checkpoint(VERSION, _now(), source, target, {}, rules_fp, selection_fp, secret_fp)


def write(path: Path, cp: Checkpoint) -> None:
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent or Path("."))
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(msgspec.json.format(msgspec.json.encode(cp), indent=2))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        dirfd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dirfd)
        finally:
            os.close(dirfd)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read(path: Path) -> Checkpoint:
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"--resume: checkpoint file {path} does not exist",
                          "run without --resume to start a new sync that writes it")
    try:
        raw = msgspec.json.decode(path.read_bytes())
    except msgspec.DecodeError as exc:
        raise ConfigError(f"checkpoint {path} is not valid JSON ({exc})", "delete it and start a new sync") from None
    version = raw.get("version") if isinstance(raw, dict) else None
    if version != VERSION:
        raise ConfigError(f"checkpoint {path} was written by an incompatible version ({version!r}, expected {VERSION})",
                          "delete it and start a new sync")
    try:
        return msgspec.convert(raw, Checkpoint)
    except msgspec.ValidationError as exc:
        raise ConfigError(f"checkpoint {path} is malformed: {exc}", "delete it and start a new sync") from None


def check_matches(cp: Checkpoint, expected: Checkpoint, path: Path) -> None:
    """Refuses a checkpoint made for another source, target, rule set, selection or secret."""
    for field, what in (("source_database", "source"), ("target_database", "target"),
                        ("rules_fingerprint", "anonymization rules"), ("selection_fingerprint", "table selection"),
                        ("secret_fingerprint", "anonymization secret")):
        if getattr(cp, field) != getattr(expected, field):
            shown = "" if "fingerprint" in field else f" ({getattr(cp, field)} vs {getattr(expected, field)})"
            raise ConfigError(f"checkpoint {path} was made for another {what}{shown}",
                              "resume with the same settings, or delete the checkpoint to start over")
