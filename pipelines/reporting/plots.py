"""Report plots (matplotlib, Agg backend): learning curves and confusion matrices."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np


def plot_curves(rows: list[dict[str, Any]], select_by: str, path: Path) -> None:
    """Train vs validation loss, and the selection metric, per epoch."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [r["epoch"] for r in rows]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    for key, label in (("train_loss", "train loss"), ("validation_loss", "validation loss")):
        points = [(e, r[key]) for e, r in zip(epochs, rows) if key in r]
        if points:
            ax1.plot(*zip(*points), marker="o", label=label)
    ax1.set(xlabel="epoch", ylabel="loss", title="Loss")
    ax1.legend()
    points = [(e, r[f"validation_{select_by}"]) for e, r in zip(epochs, rows) if f"validation_{select_by}" in r]
    if points:
        ax2.plot(*zip(*points), marker="o", color="tab:green")
    ax2.set(xlabel="epoch", ylabel=select_by, title=f"Validation {select_by}")
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write_confusion(folder: Path, split: str, matrix: np.ndarray, labels: Sequence[str]) -> None:
    """confusion_<split>.csv (rows: gold, columns: predicted) and a heat-map PNG."""
    with open(folder / f"confusion_{split}.csv", "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["gold \\ predicted", *labels])
        for name, counts in zip(labels, matrix):
            writer.writerow([name, *counts.tolist()])
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    size = 2.5 + 0.6 * len(labels)
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(matrix, cmap="Blues")
    ticks = range(len(labels))
    ax.set_xticks(ticks, labels, rotation=45, ha="right")
    ax.set_yticks(ticks, labels)
    for (i, j), count in np.ndenumerate(matrix):
        ax.text(j, i, str(count), ha="center", va="center", color="black")
    ax.set(xlabel="predicted", ylabel="gold", title=f"Confusion matrix ({split})")
    fig.tight_layout()
    fig.savefig(folder / f"confusion_{split}.png", dpi=100)
    plt.close(fig)

