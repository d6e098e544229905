"""Progress lines for long work that has no progress bar (a log file, a batch job): when the next
line is due, and how elapsed and remaining time read. Shared by training, evaluation, search trials
and model preparation so that every stage's lines look alike."""

from __future__ import annotations

import time
from collections.abc import Callable

Clock = Callable[[], float]


class Pace:
    """A progress line is due every `interval` seconds or every `fraction` of `total`, whichever comes
    first, but never more often than every `floor` seconds (a 2-second evaluation gets no 20 lines)."""

    def __init__(self, total: int | None, interval: float = 30.0, fraction: float = 0.05, floor: float = 5.0,
                 clock: Clock = time.monotonic) -> None:
        self.total, self.interval, self.fraction, self.floor = total, interval, fraction, floor
        self.clock = clock
        self.started = self.last_time = clock()
        self.last_done = 0

    @property
    def elapsed(self) -> float:
        return self.clock() - self.started

    def due(self, done: int) -> bool:
        """True (and the line counted as written) when a line for `done` units is due."""
        now = self.clock()
        since = now - self.last_time
        share = (done - self.last_done) / self.total if self.total else 0.0
        if since < self.floor or (since < self.interval and share < self.fraction):
            return False
        self.last_time, self.last_done = now, done
        return True

    def timing(self, done: int) -> str:
        """'elapsed 1m05s, remaining ~12m40s' (remaining from the average rate so far)."""
        return timing(done, self.total, self.elapsed)


def timing(done: float, total: float | None, elapsed: float) -> str:
    """'elapsed 1m05s, remaining ~12m40s'; without a total or any progress, the elapsed time only."""
    text = f"elapsed {duration(elapsed)}"
    if total and done > 0:
        text += f", remaining ~{duration(elapsed / done * max(0.0, total - done))}"
    return text


def duration(seconds: float) -> str:
    """4.2s, 3m07s, 1h02m03s."""
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(round(seconds)), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m{secs:02d}s"
