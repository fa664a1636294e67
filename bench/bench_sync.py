"""The old sync-vs-psql-pipe script, now a thin wrapper: `confiture-fast bench` measures the same
(and more) in one run. Kept so that the command line people know still works.

    python bench/bench_sync.py --rows 1000000 --repeat 3 [--parallel 2] [--pg-bin /usr/lib/postgresql/15/bin]
"""

import argparse
import os
import subprocess
import sys


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--parallel", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--pg-bin", default=None, help="PostgreSQL bin folder (default: the embedded PostgreSQL 18)")
    a = ap.parse_args()
    cmd = [sys.executable, "-m", "confiture_fast", "bench", "--shape", "users", "--rows", str(a.rows),
           "--repeat", str(a.repeat), "--parallel", str(a.parallel)]
    if a.pg_bin:
        cmd += ["--pg-bin", a.pg_bin]
    return subprocess.call(cmd)


if __name__ == "__main__":
    sys.exit(main())
