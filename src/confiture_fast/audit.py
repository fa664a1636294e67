"""The audit log (--log-file): JSON lines, one when a run starts and one when it ends.

Each record is a single O_APPEND write, so several runs may append to the same file. Databases are
named host:port/dbname, the rules and the secret by keyed fingerprints: nothing secret is logged.
"""

from __future__ import annotations

import datetime as dt
import getpass
import os
import socket
import uuid
from pathlib import Path

import msgspec

from .errors import ConfigError


class AuditLog:
    """Opening the log proves it can be appended to (a bad --log-file is a configuration error, found
    before the target is touched); a record that cannot be written later is a warning, not a crash."""

    def __init__(self, path: Path | None, **context):
        self.path = path
        self.run_id = uuid.uuid4().hex[:12]
        self.context = {"run_id": self.run_id, "user": _user(), "host": socket.gethostname(), **context}
        if path is not None:
            try:
                os.close(self._open())
            except OSError as exc:
                folder = Path(path).parent
                fix = (f"create the folder (mkdir -p {folder}), or choose another --log-file" if not folder.is_dir()
                       else "pass --log-file a file path in a writable folder")
                raise ConfigError(f"--log-file {path} cannot be appended to: {exc.strerror or exc}", fix) from None

    def _open(self) -> int:
        return os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)

    def write(self, event: str, **fields) -> None:
        if self.path is None:
            return
        record = {"event": event, "time": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                  **self.context, **fields}
        line = msgspec.json.encode(record) + b"\n"
        try:
            fd = self._open()
            try:
                os.write(fd, line)
            finally:
                os.close(fd)
        except OSError as exc:
            from .progress import stderr_console

            stderr_console().print(f"warning: the {event} record could not be appended to --log-file {self.path}: "
                                   f"{exc.strerror or exc}", markup=False)


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return str(os.getuid())
