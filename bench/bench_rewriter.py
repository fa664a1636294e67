"""Micro-benchmark of the COPY rewriters alone, on in-memory buffers shaped like the guide's users table.

    PYTHONPATH=src python bench/bench_rewriter.py [--rows 200000] [--repeat 7] [--chunk 65536]

Cases, all in the same run: a plain copy of the COPY-text buffer (the baseline), the five guide rules
(email, phone, name, redact, hash) on it, pass-through (the same table, no rules), and the five rules
on the same rows in COPY binary (the binary rewriter; its MB/s are of the binary buffer, its ratio to
the baseline is per row, on the same rows).
Prints MB/s, rows/s and the ratio to the baseline; cycles per byte when `perf stat` can count cycles.
Speeds are per CPU second of the benchmarking thread (one core), so other load on the machine does not
count against them; the wall-clock speed is printed next to them.
"""

from __future__ import annotations

import argparse
import os
import datetime
import random
import shutil
import struct
import subprocess
import sys
import time

from confiture_fast import copytext
from confiture_fast.strategies import BinaryRewriter, FieldRule, Rewriter, derive_key, parse_params

COLUMNS = ["id", "email", "phone", "full_name", "ssn", "password_hash", "bio", "created_at", "is_active",
           "balance"]
RULES = [("email", "email"), ("phone", "phone"), ("full_name", "name"), ("ssn", "redact"),
         ("password_hash", "hash")]
FIRST = ["alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy"]
LAST = ["johnson", "smith", "garcia", "miller", "davis", "lopez", "wilson", "moore", "clark", "young"]
BIOS = ["Loves hiking\\tand coffee.", "Works remotely.\\nLikes cats.", "Backend dev; \\\\o/ fan",
        "Café owner — Zürich", "\\N-less bio\\twith tabs\\tand\\nnewlines"]


def users_buffer(rows: int) -> bytes:
    """COPY text of a users table: 10 columns, about 190 bytes a row, escaped tabs/newlines in bio."""
    rnd = random.Random(42)
    out = []
    for i in range(1, rows + 1):
        first, last = rnd.choice(FIRST), rnd.choice(LAST)
        out.append("\t".join([
            str(i),
            f"{first}.{last}{i}@example.com",
            f"+1-{rnd.randrange(200, 999)}-{rnd.randrange(100, 999)}-{rnd.randrange(10000):04d}",
            f"{first.title()} {last.title()}",
            f"{rnd.randrange(100, 999)}-{rnd.randrange(10, 99)}-{rnd.randrange(1000, 9999)}",
            "$2b$12$" + "".join(rnd.choice("abcdefghijklmnopqrstuvwxyz0123456789./") for _ in range(53)),
            rnd.choice(BIOS),
            f"2024-{rnd.randrange(1, 13):02d}-{rnd.randrange(1, 29):02d} 12:{rnd.randrange(60):02d}:00+00",
            rnd.choice("tf"),
            f"{rnd.randrange(100000)}.{rnd.randrange(100):02d}",
        ]) + "\n")
    return "".join(out).encode()


_EPOCH = datetime.datetime(2000, 1, 1, tzinfo=datetime.timezone.utc)  # PostgreSQL's timestamp zero


def _numeric(text: bytes) -> bytes:
    """numeric_send of a non-negative 'digits.dd': base-10000 digits, weight, sign, display scale."""
    whole, frac = text.split(b".")
    digits = f"{int(whole):d}"
    digits = digits.zfill(-(-len(digits) // 4) * 4)
    groups = [int(digits[i:i + 4]) for i in range(0, len(digits), 4)] + [int(frac.ljust(4, b"0"))]
    while len(groups) > 1 and groups[0] == 0:
        groups.pop(0)
    weight = len(groups) - 2
    while groups and groups[-1] == 0:
        groups.pop()
    return struct.pack(f">hhHH{len(groups)}h", len(groups), weight, 0, len(frac), *groups)


def binary_buffer(text: bytes) -> bytes:
    """The same rows in COPY binary, with the users table's types (bigint, text, timestamptz, boolean, numeric)."""
    out = [binary_header()]
    for line in text.splitlines():
        values = copytext.parse_row(line)
        at = datetime.datetime.fromisoformat(values[7].decode())
        fields = [struct.pack(">q", int(values[0])), *values[1:7],
                  struct.pack(">q", (at - _EPOCH) // datetime.timedelta(microseconds=1)),
                  b"\x01" if values[8] == b"t" else b"\x00", _numeric(values[9])]
        out.append(struct.pack(">h", len(fields)) + b"".join(struct.pack(">i", len(f)) + f for f in fields))
    out.append(struct.pack(">h", -1))
    return b"".join(out)


def binary_header() -> bytes:
    return b"PGCOPY\n\xff\r\n\x00" + struct.pack(">II", 0, 0)


def rules() -> list[FieldRule]:
    key = derive_key(b"bench-secret", "12345")
    return [FieldRule(index=COLUMNS.index(c), column=c, strategy=s, key=key, params=parse_params(s, {})[0])
            for c, s in RULES]


def run_case(name: str, data: bytes, chunk: int) -> tuple[float, float]:
    """One pass over the buffer; returns the thread CPU seconds and the wall seconds it took."""
    chunks = [data[i:i + chunk] for i in range(0, len(data), chunk)]
    if name == "binary, 5 rules":
        rewriter = BinaryRewriter("users", COLUMNS, rules())
    else:
        rewriter = Rewriter("users", COLUMNS, rules() if name == "users, 5 rules" else [])
    cpu, wall = time.thread_time(), time.perf_counter()
    if name == "baseline copy":
        for c in chunks:
            bytearray(c)
    else:
        for c in chunks:
            rewriter.rewrite(c)
        rewriter.finish()
    return time.thread_time() - cpu, time.perf_counter() - wall


CASES = ["baseline copy", "users, 5 rules", "pass-through", "binary, 5 rules"]


def cycles_per_byte(case: str, args, nbytes: int) -> str:
    """Counts cycles with perf for the case minus the same process doing no passes."""
    if not shutil.which("perf"):
        return "perf not installed"
    counts = []
    for repeat in (args.repeat, 0):
        cmd = ["perf", "stat", "-x,", "-e", "cycles", sys.executable, __file__, "--rows", str(args.rows),
               "--chunk", str(args.chunk), "--repeat", str(repeat), "--only", case]
        res = subprocess.run(cmd, capture_output=True, text=True, env=os.environ)
        field = res.stderr.strip().splitlines()[-1].split(",")[0] if res.stderr.strip() else ""
        if not field.isdigit():
            return f"perf cannot count cycles here ({field or res.returncode})"
        counts.append(int(field))
    return f"{(counts[0] - counts[1]) / (args.repeat * nbytes):.2f} cycles/byte"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=200_000)
    ap.add_argument("--repeat", type=int, default=7, help="passes per case; the best one is reported")
    ap.add_argument("--chunk", type=int, default=65536, help="bytes per rewrite() call")
    ap.add_argument("--only", choices=CASES, help=argparse.SUPPRESS)  # used by the perf child runs
    args = ap.parse_args()
    text = users_buffer(args.rows)
    buffers = {case: binary_buffer(text) if case.startswith("binary") else text for case in CASES}
    if args.only:
        for _ in range(args.repeat):
            run_case(args.only, buffers[args.only], args.chunk)
        return
    print(f"{args.rows} rows, {len(text) / 1e6:.1f} MB of COPY text ({len(text) / args.rows:.0f} bytes/row), "
          f"{len(buffers['binary, 5 rules']) / 1e6:.1f} MB of COPY binary, {args.chunk}-byte chunks, "
          f"best of {args.repeat}")
    runs = {case: [run_case(case, buffers[case], args.chunk) for _ in range(args.repeat)] for case in CASES}
    base = min(cpu for cpu, _ in runs["baseline copy"])
    for case in CASES:
        data = buffers[case]
        cpu = min(c for c, _ in runs[case])
        wall = min(w for _, w in runs[case])
        print(f"{case:15} {len(data) / cpu / 1e6:7.0f} MB/s {args.rows / cpu / 1e6:6.2f} M rows/s "
              f"{cpu / base:6.2f}x baseline  {cpu * 1e9 / len(data):.2f} ns/byte  "
              f"(wall {len(data) / wall / 1e6:.0f} MB/s)  {cycles_per_byte(case, args, len(data))}")


if __name__ == "__main__":
    main()
