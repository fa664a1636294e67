"""What the user is told while waiting: the 'finishing: ...' notices, on an injected timer."""

import io

from rich.console import Console

from confiture_fast.progress import notice_if_slow


def test_notice_if_slow_speaks_only_for_long_waits():
    """The 'finishing: ...' lines after the load: silent when the wait ends before the timer fires, said
    when it fires first, never when quiet. The timer is driven by hand: no wall-clock thresholds."""
    class HandTimer:
        made: list["HandTimer"] = []

        def __init__(self, after, fn):
            self.after, self.fn, self.started, self.cancelled = after, fn, False, False
            HandTimer.made.append(self)

        def start(self):
            self.started = True

        def cancel(self):
            self.cancelled = True

        def fire(self):
            if self.started and not self.cancelled:
                self.fn()

    out = io.StringIO()
    console = Console(file=out, width=120)
    with notice_if_slow(console, "finishing: quick", after=5.0, timer=HandTimer):
        pass
    HandTimer.made[-1].fire()  # too late: the block ended first
    with notice_if_slow(console, "finishing: slow", after=5.0, timer=HandTimer):
        HandTimer.made[-1].fire()
    with notice_if_slow(console, "finishing: quiet", after=5.0, quiet=True, timer=HandTimer):
        HandTimer.made[-1].fire()
    assert [t.after for t in HandTimer.made] == [5.0, 5.0, 5.0]
    assert out.getvalue() == "finishing: slow\n"
