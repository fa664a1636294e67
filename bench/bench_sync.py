"""Anonymized sync of the users table vs a raw psql pipe of the same table, in one script.

    python bench/bench_sync.py --rows 1000000 --repeat 3 [--parallel 2] [--pg-bin /usr/lib/postgresql/15/bin]

Both runs load the same target table (PK + UNIQUE(email) kept) on the same two throwaway servers,
interleaved, and the script prints each wall time, the medians and the ratio tool / psql pipe.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psycopg

from confiture_fast import sample
from confiture_fast.embedded import ThrowawayServer


def psql_pipe(psql: str, src: str, dst: str, table: str) -> float:
    with psycopg.connect(dst, autocommit=True) as c:
        c.execute(f"TRUNCATE {table}")
    t = time.perf_counter()
    out = subprocess.Popen([psql, "-X", "-q", src, "-c", f"\\copy {table} to stdout"], stdout=subprocess.PIPE)
    subprocess.run([psql, "-X", "-q", dst, "-c", f"\\copy {table} from stdin"], stdin=out.stdout, check=True)
    out.wait()
    return time.perf_counter() - t


def tool(src: str, dst: str, table: str, rules: Path, parallel: int) -> float:
    t = time.perf_counter()
    subprocess.run([sys.executable, "-m", "confiture_fast", "sync", "--from", src, "--to", dst, "--tables", table,
                    "--anonymize-config", str(rules), "--no-progress", "--parallel", str(parallel)],
                   check=True, capture_output=True)
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--parallel", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--pg-bin", default=None, help="PostgreSQL bin folder (default: the embedded PostgreSQL 18)")
    a = ap.parse_args()
    os.environ.setdefault("ANONYMIZATION_SECRET", "bench-secret-0123456789abcdef")
    with ThrowawayServer(a.pg_bin) as s1, ThrowawayServer(a.pg_bin) as s2:
        src, dst = s1.create_database("prod"), s2.create_database("staging")
        psql = shutil.which("psql", path=str(s1.bin_dir)) or shutil.which("psql")
        sample.create_bench_tables(src, users=a.rows)
        with psycopg.connect(dst, autocommit=True) as c:
            c.execute(sample.bench_schema_sql())
        rules = Path(tempfile.mkdtemp()) / "rules.yaml"
        rules.write_text(sample.BENCH_RULES_YAML)
        print(f"# {s1.version}; users {a.rows:,} rows, 10 columns, 5 rules; target keeps PK + UNIQUE(email); "
              f"{os.cpu_count()} cores; --parallel {a.parallel}")
        pipes, ours = [], []
        for i in range(a.repeat):
            pipes.append(psql_pipe(psql, src, dst, "users"))
            ours.append(tool(src, dst, "users", rules, a.parallel))
            print(f"run {i + 1}: psql pipe {pipes[-1]:.2f} s   confiture-fast --anonymize {ours[-1]:.2f} s")
        mp, mo = statistics.median(pipes), statistics.median(ours)
        print(f"median: psql pipe {mp:.2f} s, confiture-fast anonymized {mo:.2f} s, ratio {mo / mp:.2f}x")


if __name__ == "__main__":
    main()
