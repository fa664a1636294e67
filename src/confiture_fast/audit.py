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


class AuditLog:
    def __init__(self, path: Path | None, **context):
        self.path = path
        self.run_id = uuid.uuid4().hex[:12]
        self.context = {"run_id": self.run_id, "user": _user(), "host": socket.gethostname(), **context}

    def write(self, event: str, **fields) -> None:
        if self.path is None:
            return
        record = {"event": event, "time": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                  **self.context, **fields}
        line = msgspec.json.encode(record) + b"\n"
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, line)
        finally:
            os.close(fd)


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return str(os.getuid())
