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
    # (server, database) fingerprints: the same databases under another name ('localhost' vs '127.0.0.1',
    # a URI vs an environment file) are still the same
    source_identity: str = ""
    target_identity: str = ""

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


def new(source: str, target: str, rules_fp: str, selection_fp: str, secret_fp: str, *,
        source_identity: str = "", target_identity: str = "") -> Checkpoint:
    return Checkpoint(VERSION, _now(), source, target, {}, rules_fp, selection_fp, secret_fp,
                      source_identity=source_identity, target_identity=target_identity)


def check_writable(path: Path) -> None:
    """Proves, before the target is touched, that write() will work there: a temporary file is created and
    removed in the folder (write() renames one over the path), and an existing file must open for writing."""
    path = Path(path)
    folder = path.parent
    fix = "pass --checkpoint a file path in an existing, writable folder"
    if path.is_dir():
        raise ConfigError(f"--checkpoint {path} is a folder, not a file", f"name a file in it, e.g. {path / 'sync.json'}")
    if not folder.is_dir():
        raise ConfigError(f"--checkpoint {path}: the folder {folder} does not exist", f"create it (mkdir -p {folder}), or {fix}")
    if path.exists() or path.is_symlink():
        if not path.is_file():
            raise ConfigError(f"--checkpoint {path} is not a regular file", fix)
        try:
            os.close(os.open(path, os.O_WRONLY | os.O_APPEND))
        except OSError as exc:
            raise ConfigError(f"--checkpoint {path} cannot be written: {exc.strerror or exc}", fix) from None
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=folder)
        os.close(fd)
        os.unlink(tmp)
    except OSError as exc:
        raise ConfigError(f"--checkpoint {path}: cannot create files in {folder}: {exc.strerror or exc}", fix) from None


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


_REFUSE_FIX = "resume with the same settings, or delete the checkpoint to start over"


def check_matches(cp: Checkpoint, expected: Checkpoint, path: Path) -> None:
    """Refuses a checkpoint made for another source, target, rule set or secret (the selection is checked
    once planned: check_selection). A database is the same when its name or its identity agrees."""
    for field, ident, what in (("source_database", "source_identity", "source"),
                               ("target_database", "target_identity", "target")):
        if getattr(cp, field) != getattr(expected, field) and \
                not (getattr(cp, ident) and getattr(cp, ident) == getattr(expected, ident)):
            raise ConfigError(f"checkpoint {path} was made for another {what} database ({getattr(cp, field)}, "
                              f"now {getattr(expected, field)}: another server or database)", _REFUSE_FIX)
    for field, what in (("rules_fingerprint", "anonymization rules"), ("secret_fingerprint", "anonymization secret")):
        if getattr(cp, field) != getattr(expected, field):
            raise ConfigError(f"checkpoint {path} was made for another {what}", _REFUSE_FIX)


def check_selection(cp: Checkpoint, selection_fp: str, path: Path) -> None:
    """Refuses a checkpoint made for another set of tables (in whatever order or spelling they were given)."""
    if cp.selection_fingerprint != selection_fp:
        raise ConfigError(f"checkpoint {path} was made for another table selection", _REFUSE_FIX)
