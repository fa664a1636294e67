"""Two code trees against each other: anonymized syncs of the benchmark tables on the same two throwaway
servers (production-like settings, as `confiture-fast bench`), the trees alternating round by round
(ABBA...), each sync's wall time and the CPU seconds of each server's processes. For a change to the
engine, where `confiture-fast bench` of each tree would be two runs on a machine whose load moves.

    python bench/bench_paired.py --before /tmp/old/src --after src [--rows 1000000] [--shape users] [--rounds 5]

The servers' CPU is read from /proc: the postmaster's own and its reaped children's times (every
backend of a sync has exited when it is read), plus its live children's.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from confiture_fast import sample
from confiture_fast.bench import ROW_FACTOR, parse_server_settings
from confiture_fast.embedded import ThrowawayServer

TICK = os.sysconf("SC_CLK_TCK")


def server_cpu(server: ThrowawayServer) -> float:
    pid = int(next(Path(server.root).rglob("postmaster.pid")).read_text().split()[0])
    children = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
    total = 0
    for p in [pid, *map(int, children)]:
        try:
            f = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except FileNotFoundError:  # exited meanwhile: counted in the postmaster's children's times
            continue
        total += int(f[11]) + int(f[12]) + (int(f[13]) + int(f[14]) if p == pid else 0)
    return total / TICK


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--before", required=True, help="the src folder of the tree to compare against")
    ap.add_argument("--after", required=True, help="the src folder of the tree being measured")
    ap.add_argument("--rows", type=int, default=1_000_000, help="users rows; orders get 2x, events 5x")
    ap.add_argument("--shape", default="users", help="users, or a list of tables: users,orders,events")
    ap.add_argument("--rounds", type=int, default=5)
    a = ap.parse_args()
    tables = a.shape.split(",")
    counts = {t: a.rows * ROW_FACTOR[t] if t in tables else 0 for t in ("users", "orders", "events")}
    trees = {"before": a.before, "after": a.after}
    settings = parse_server_settings("production", [])
    with ThrowawayServer(settings=settings) as s, ThrowawayServer(settings=settings) as d, \
            tempfile.TemporaryDirectory() as tmp:
        src, dst = s.create_database("paired_src"), d.create_database("paired_dst")
        sample.create_bench_tables(src, **counts)
        sample.create_bench_tables(dst, users=0, orders=0, events=0)
        rules = Path(tmp) / "rules.yaml"
        rules.write_text(yaml.safe_dump({k: v for k, v in yaml.safe_load(sample.bench_rules_yaml()).items()
                                         if k in tables}))
        env = {**os.environ, "ANONYMIZATION_SECRET": "bench-secret-0123456789abcdef"}
        runs: dict[str, list[tuple[float, float, float]]] = {name: [] for name in trees}
        for r in range(a.rounds):
            for name in (list(trees) if r % 2 == 0 else list(trees)[::-1]):
                cs, cd, t = server_cpu(s), server_cpu(d), time.perf_counter()
                res = subprocess.run([sys.executable, "-m", "confiture_fast", "sync", "--from", src, "--to", dst,
                                      "--tables", ",".join(tables), "--anonymize-config", str(rules), "--no-progress"],
                                     env={**env, "PYTHONPATH": trees[name]}, capture_output=True, text=True)
                wall = time.perf_counter() - t
                if res.returncode != 0:
                    raise SystemExit(f"{name}: the sync failed: {res.stderr.strip()[-500:]}")
                time.sleep(1)  # the last backends exit and are reaped
                runs[name].append((wall, server_cpu(s) - cs, server_cpu(d) - cd))
                print(f"round {r + 1} {name:6} wall {wall:6.2f} s  source CPU {runs[name][-1][1]:6.2f} s  "
                      f"target CPU {runs[name][-1][2]:6.2f} s  load {os.getloadavg()[0]:.1f}", flush=True)
    for i, what in enumerate(("wall", "source CPU", "target CPU")):
        ratios = sorted(x[i] / y[i] for x, y in zip(runs["after"], runs["before"]))
        print(f"after/before {what}: {', '.join(f'{x:.2f}' for x in ratios)}; median {ratios[len(ratios) // 2]:.2f}")


if __name__ == "__main__":
    main()
