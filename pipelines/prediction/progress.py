"""Progress of a long prediction run: a tqdm bar (rows/s) on a terminal, log lines otherwise."""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path

log = logging.getLogger("pipelines.prediction.stream")  # the lines belong to the prediction run's log


class Progress:
    """A tqdm bar (rows/s) on a terminal; otherwise an INFO line per chunk."""

    def __init__(self, source: Path, initial: int, bar: bool | None) -> None:
        self.start, self.initial = time.perf_counter(), initial
        self.bar = None
        if sys.stderr.isatty() if bar is None else bar:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=_count_lines(source), initial=initial, unit=" rows", desc="predict")

    def update(self, done: int) -> None:
        rate = (done - self.initial) / max(time.perf_counter() - self.start, 1e-9)
        if self.bar is not None:
            self.bar.update(done - self.bar.n)
        else:
            log.info("%s rows done (%.0f rows/s)", f"{done:,}", rate)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _count_lines(path: Path) -> int:
    """Data rows for the bar's total (lines - header; a quoted line break counts twice: close enough)."""
    with open(path, "rb") as fh:
        return max(0, sum(block.count(b"\n") for block in iter(lambda: fh.read(1 << 20), b"")) - 1)
