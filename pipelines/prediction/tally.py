"""Running counts of a prediction run: rows, errors, truncation and the confusion with gold labels."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class Tally:
    """Running counts; saved with each chunk so a resumed run reports the whole file."""

    rows: int = 0
    predicted: int = 0
    truncated: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    no_gold: int = 0  # rows whose gold label is empty or not one of the model's labels
    confusion: list[list[int]] = field(default_factory=list)  # [gold][predicted]
    rescored: int = 0  # int8 rows re-scored in fp32 (the cascade, prediction/cascade.py)

    def add(self, other: Tally) -> None:
        """Count another chunk's rows in (chunks may come from other processes)."""
        self.rows += other.rows
        self.predicted += other.predicted
        self.truncated += other.truncated
        self.no_gold += other.no_gold
        self.rescored += other.rescored
        for why, n in other.errors.items():
            self.errors[why] = self.errors.get(why, 0) + n
        for mine, theirs in zip(self.confusion, other.confusion):
            mine[:] = [a + b for a, b in zip(mine, theirs)]


def count_gold(gold: list, ok: list[int], best: np.ndarray, labels: list[str], tally: Tally) -> None:
    """Add the chunk's predicted rows to the confusion counts; gold may be a name or an id."""
    index = {str(i): i for i in range(len(labels))} | {name: i for i, name in enumerate(labels)}  # names first
    for j, i in enumerate(ok):
        g = index.get(gold[i].strip()) if isinstance(gold[i], str) else None
        if g is None:
            tally.no_gold += 1
        else:
            tally.confusion[g][int(best[j])] += 1
