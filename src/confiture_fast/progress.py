"""What the user watches during a sync: rich bars on a terminal, plain log lines elsewhere.

The coordinator feeds it from the counters the workers already publish in shared memory, a few
times a second; nothing here is on the per-row path.
"""

from __future__ import annotations

import sys
import time

from rich.console import Console
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TaskProgressColumn, TextColumn,
                           TimeElapsedColumn, TimeRemainingColumn)


class ProgressView:
    def __init__(self, console: Console, live: bool, totals: dict[str, int], log_every: float = 10.0):
        self.console = console
        self.live = live
        self.totals = totals
        self.log_every = log_every
        self._last_log: dict[str, float] = {}
        self._tasks: dict[str, int] = {}
        self._progress = None
        if live:
            self._progress = Progress(
                TextColumn("Syncing {task.description:<20}"), BarColumn(), TaskProgressColumn(),
                TextColumn("•"), MofNCompleteColumn(), TextColumn("rows •"), TimeElapsedColumn(),
                TextColumn("• ETA"), TimeRemainingColumn(), console=console, transient=False)

    def __enter__(self) -> "ProgressView":
        if self._progress is not None:
            self._progress.start()
        return self

    def __exit__(self, *exc) -> None:
        if self._progress is not None:
            self._progress.stop()

    def started(self, table: str) -> None:
        if self._progress is not None:
            self._tasks[table] = self._progress.add_task(table, total=max(self.totals.get(table, 0), 1))
        else:
            self.console.print(f"{_ts()} start  {table} (~{self.totals.get(table, 0):,} rows, estimated)")
            self._last_log[table] = time.monotonic()

    def update(self, table: str, rows: int) -> None:
        if self._progress is not None and table in self._tasks:
            task = self._tasks[table]
            total = max(self.totals.get(table, 0), rows, 1)
            self._progress.update(task, completed=rows, total=total)
        elif self._progress is None and time.monotonic() - self._last_log.get(table, 0) >= self.log_every:
            self.console.print(f"{_ts()} ...    {table}: {rows:,} rows")
            self._last_log[table] = time.monotonic()

    def finished(self, table: str, rows: int, seconds: float) -> None:
        if self._progress is not None and table in self._tasks:
            self._progress.update(self._tasks[table], completed=rows, total=max(rows, 1))
        else:
            self.console.print(f"{_ts()} done   {table}: {rows:,} rows in {seconds:.1f}s")


def _ts() -> str:
    return time.strftime("%H:%M:%S")


def stderr_console() -> Console:
    return Console(file=sys.stderr, highlight=False)
