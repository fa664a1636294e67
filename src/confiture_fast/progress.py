"""What the user watches during a sync: rich bars on a terminal, plain log lines elsewhere.

The coordinator feeds it from the counters the workers already publish in shared memory, a few
times a second; nothing here is on the per-row path. Totals come from the catalog (reltuples), so
they are estimates, and the display says so with a '~'.
"""

from __future__ import annotations

import sys
import threading
import time

from rich.console import Console
from rich.progress import BarColumn, Progress, ProgressColumn, TaskProgressColumn, TextColumn, TimeRemainingColumn
from rich.text import Text


class _Counts(ProgressColumn):
    """'654,321/~1,000,000 rows • 12,345 rows/s • 2.4 MB/s • 00:05'; rows and rate alone when narrow."""

    def __init__(self, wide: bool):
        super().__init__()
        self.wide = wide

    def render(self, task) -> Text:
        f = task.fields
        elapsed = f.get("seconds") or task.elapsed or 0.0  # a finished table: its own load time
        rate = task.completed / elapsed if elapsed > 0 else 0.0
        mbs = f.get("bytes", 0) / elapsed / 1e6 if elapsed > 0 else 0.0
        total = f"~{int(task.total):,}" if f.get("estimate", True) else f"{int(task.total):,}"
        if not self.wide:
            return Text(f"{int(task.completed):,}/{total} rows • {rate:,.0f}/s")
        return Text(f"{int(task.completed):,}/{total} rows • {rate:,.0f} rows/s • {mbs:,.1f} MB/s • "
                    f"{int(elapsed) // 60:02d}:{int(elapsed) % 60:02d}")


class ProgressView:
    def __init__(self, console: Console, live: bool, totals: dict[str, int], log_every: float = 10.0,
                 quiet: bool = False):
        self.console = console
        self.live = live and not quiet
        self.quiet = quiet
        self.totals = totals
        self.log_every = log_every
        self._last_log: dict[str, float] = {}
        self._tasks: dict[str, int] = {}
        self._done: dict[str, int] = {}
        self._progress = None
        self._overall = None
        if self.live:
            self._progress = Progress(
                TextColumn("{task.description:<20}"), BarColumn(bar_width=24 if console.width >= 130 else 12),
                TaskProgressColumn(), TextColumn("•"), _Counts(console.width >= 130), TextColumn("• ETA"),
                TimeRemainingColumn(),
                console=console, transient=False, refresh_per_second=4)

    def __enter__(self) -> "ProgressView":
        if self._progress is not None:
            self._progress.start()
            total = max(sum(self.totals.values()), 1)
            self._overall = self._progress.add_task("[bold]Overall", total=total, bytes=0)
        return self

    def __exit__(self, *exc) -> None:
        if self._progress is not None:
            self._progress.stop()

    def started(self, table: str) -> None:
        if self._progress is not None:
            self._tasks[table] = self._progress.add_task(f"Syncing {table}", total=max(self.totals.get(table, 0), 1),
                                                         bytes=0)
        elif not self.quiet:
            self.console.print(f"{_ts()} start  {table} (~{self.totals.get(table, 0):,} rows, estimated)",
                               markup=False)
            self._last_log[table] = time.monotonic()

    def update(self, table: str, rows: int, size: int = 0) -> None:
        if self._progress is not None and table in self._tasks:
            task = self._tasks[table]
            self._progress.update(task, completed=rows, total=max(self.totals.get(table, 0), rows, 1), bytes=size)
            self._update_overall({table: rows})
        elif self._progress is None and not self.quiet and time.monotonic() - self._last_log.get(table, 0) >= self.log_every:
            self.console.print(f"{_ts()} ...    {table}: {rows:,} rows, {size / 1e6:,.1f} MB", markup=False)
            self._last_log[table] = time.monotonic()

    def finished(self, table: str, rows: int, seconds: float, size: int = 0) -> None:
        self._done[table] = rows
        if self._progress is not None and table in self._tasks:
            self._progress.update(self._tasks[table], description=f"[green]✓[/] {table}", completed=rows,
                                  total=max(rows, 1), bytes=size, estimate=False, seconds=seconds)
            self._progress.stop_task(self._tasks[table])
            self._update_overall({})
        elif not self.quiet:
            self.console.print(f"{_ts()} done   {table}: {rows:,} rows, {size / 1e6:,.1f} MB in {seconds:.1f}s",
                               markup=False)

    def _update_overall(self, running: dict[str, int]) -> None:
        if self._overall is None:
            return
        current = {**{t: self._progress.tasks[i].completed for t, i in self._tasks.items()
                      if t not in self._done}, **running, **self._done}
        total = sum(max(self.totals.get(t, 0), current.get(t, 0)) for t in set(self.totals) | set(current))
        self._progress.update(self._overall, completed=sum(current.values()), total=max(total, 1),
                              bytes=sum(self._progress.tasks[i].fields.get("bytes", 0) for i in self._tasks.values()))


class step:
    """With -v, says each phase of a run as a numbered step when it starts ("[3/9] plan: read both
    catalogs and plan"), and how long it took when it ends; a skipped step says why."""

    def __init__(self, console: Console, verbose: bool, index: int, total: int, name: str, title: str,
                 skipped: str | None = None):
        self.console, self.verbose, self.skipped = console, verbose, skipped
        self.tag, self.title = f"[{index}/{total}] {name}", title

    def __enter__(self) -> None:
        self.start = time.perf_counter()
        if self.verbose:
            what = f"skipped ({self.skipped})" if self.skipped is not None else self.title
            self.console.print(f"{_ts()} {self.tag}: {what}", markup=False)

    def __exit__(self, exc_type, *_) -> None:
        if self.verbose and exc_type is None and self.skipped is None:
            self.console.print(f"{_ts()} {self.tag}: done in {time.perf_counter() - self.start:.2f}s", markup=False)


class notice_if_slow:
    """Prints `message` if the block is still running after `after` seconds: a long wait is
    explained, a short one stays silent. `timer` makes the clock injectable (tests fire it by hand)."""

    def __init__(self, console: Console, message: str, after: float = 2.0, quiet: bool = False,
                 timer=threading.Timer):
        self.timer = timer(after, lambda: console.print(message, markup=False))
        self.quiet = quiet

    def __enter__(self) -> None:
        if not self.quiet:
            self.timer.start()

    def __exit__(self, *_) -> None:
        self.timer.cancel()


def _ts() -> str:
    return time.strftime("%H:%M:%S")


def stderr_console() -> Console:
    """stderr only: stdout stays clean for --format json. rich honours NO_COLOR by itself."""
    return Console(file=sys.stderr, highlight=False)
