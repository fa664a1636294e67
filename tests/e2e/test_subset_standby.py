"""A subset read from a hot standby: a primary and a `pg_basebackup -R` standby started here (Debian's
PostgreSQL 15 when installed, so the closure's query is also run on that version). A standby refuses
every write, so a sync that succeeds from it wrote nothing to its source."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import psycopg
import pytest

from confiture_fast.embedded import ThrowawayServer, _free_port

from conftest import PG15_BIN, Pair
from test_subset import _fill, _ok, closure, target_rows


class Standby:
    """A hot standby of `primary`, from pg_basebackup -R (streaming from it), on a port of its own."""

    def __init__(self, primary: ThrowawayServer):
        self.primary, self.bin = primary, primary.bin_dir
        self.root = Path(tempfile.mkdtemp(prefix="confiture-fast-standby-"))
        self.root.chmod(0o755)
        self.port = _free_port()

    def _run(self, *cmd: str) -> None:
        res = subprocess.run(list(cmd), user=self.primary._run_as, capture_output=True, text=True, cwd=self.root)
        assert res.returncode == 0, res.stderr

    def __enter__(self) -> "Standby":
        if self.primary._run_as is not None:
            shutil.chown(self.root, self.primary._run_as)
        data = self.root / "data"
        self._run(str(self.bin / "pg_basebackup"), "-D", str(data), "-R", "-X", "stream", "-c", "fast", "-h", "127.0.0.1",
                  "-p", str(self.primary.port), "-U", "postgres")
        self._run(str(self.bin / "pg_ctl"), "-D", str(data), "-w", "-t", "60", "-l", str(self.root / "log"), "-o",
                  f"-h 127.0.0.1 -p {self.port} -k {self.root} -c hot_standby=on", "start")
        return self

    def __exit__(self, *exc) -> None:
        subprocess.run([str(self.bin / "pg_ctl"), "-D", str(self.root / "data"), "-m", "immediate", "-w", "stop"],
                       user=self.primary._run_as, capture_output=True)
        shutil.rmtree(self.root, ignore_errors=True)

    def uri(self, dbname: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{dbname}"

    def caught_up(self, dbname: str) -> None:
        with psycopg.connect(self.primary.uri(), autocommit=True) as p:
            lsn = p.execute("SELECT pg_current_wal_lsn()").fetchone()[0]
        with psycopg.connect(self.uri(dbname), autocommit=True) as s:
            for _ in range(600):
                if s.execute("SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn", (lsn,)).fetchone()[0]:
                    return
                time.sleep(0.1)
        raise AssertionError("the standby did not catch up")


@pytest.fixture(scope="module")
def primary():
    with ThrowawayServer(PG15_BIN if (PG15_BIN / "postgres").exists() else None) as s:
        yield s


def test_a_subset_from_a_hot_standby(primary, target_server, tmp_path):
    pair = Pair(primary, target_server, tmp_path)
    _fill(pair)
    with Standby(primary) as standby:
        dbname = pair.src.rsplit("/", 1)[1]
        standby.caught_up(dbname)
        pair.src = standby.uri(dbname)
        assert pair.qs("SELECT pg_is_in_recovery()") == [(True,)]
        seeds = {"customers": "id IN (5, 42)", "categories": "id = 3"}
        _ok(pair.sync(*[a for t, c in seeds.items() for a in ("--where", f"{t}: {c}")], "--sample", "reviews: 10%"))
        from confiture_fast.subset import sample_key

        sampled = (f"(hashtextextended(id::text, {sample_key(b'test-secret-0123456789abcdef')}) "
                   "& 9223372036854775807) % 1000000 < 100000")
        assert target_rows(pair) == closure(pair, {**seeds, "reviews": sampled})
