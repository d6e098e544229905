"""Run reports: per-epoch tables, learning curves, metrics.json, predictions, a summary.

Everything is written into a staging folder first and moved into place by `publish`, so an
output directory never holds a half-written report.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
from pathlib import Path
from typing import Any, Sequence

import numpy as np

ARTEFACTS = (
    "metrics.json", "epochs.csv", "epochs.md", "learning_curve.png", "test_predictions.csv",
    "summary.md", "task_card.yaml", "run_config.json",
    *(f"{kind}_{split}.{ext}" for kind in ("confusion", "per_class") for split in ("validation", "test")
      for ext in ("csv", "png")),
)


def epoch_rows(log_history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per epoch: train loss, validation loss and metrics, epoch time."""
    rows: dict[int, dict[str, Any]] = {}
    for entry in log_history:
        if "epoch" not in entry or "train_runtime" in entry:
            continue
        epoch = int(round(entry["epoch"]))
        row = rows.setdefault(epoch, {"epoch": epoch})
        if "loss" in entry:
            row["train_loss"] = entry["loss"]
        if "epoch_time_s" in entry:
            row["epoch_time_s"] = entry["epoch_time_s"]
        for key, value in entry.items():
            if key.startswith("eval_") and key not in ("eval_runtime", "eval_samples_per_second", "eval_steps_per_second"):
                row["validation_" + key[5:]] = value
    order = ["epoch", "train_loss"]
    out = []
    for e in sorted(rows):
        row = rows[e]
        rest = [k for k in row if k not in order and k != "epoch_time_s"]
        out.append({k: row[k] for k in [*order, *rest, "epoch_time_s"] if k in row})
    return out


def write_tables(rows: list[dict[str, Any]], folder: Path) -> None:
    """epochs.csv and epochs.md."""
    columns = _columns(rows)
    with open(folder / "epochs.csv", "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    (folder / "epochs.md").write_text(markdown_table(rows, columns) + "\n", encoding="utf-8")


def _columns(rows: list[dict[str, Any]]) -> list[str]:
    columns: list[str] = []
    for row in rows:
        columns += [k for k in row if k not in columns]
    return columns


def markdown_table(rows: list[dict[str, Any]], columns: list[str] | None = None) -> str:
    """A GitHub-flavoured Markdown table; floats to 4 decimals."""
    columns = columns or _columns(rows)
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        lines.append("| " + " | ".join(_fmt(row.get(c, ""), c) for c in columns) + " |")
    return "\n".join(lines)


def _fmt(value: Any, column: str = "") -> str:
    if not isinstance(value, float):
        return str(value)
    return f"{value:.2f}" if column.endswith("_s") else f"{value:.4f}"


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


def write_predictions(
    path: Path,
    texts: dict[str, list[str]],
    labels: Sequence[str],
    probs: np.ndarray,
    gold: Sequence[int] | None,
) -> None:
    """CSV: text column(s), gold label (if any), predicted label, one probability per class."""
    pred = probs.argmax(axis=1)
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        header = list(texts) + (["gold"] if gold is not None else []) + ["predicted"]
        writer.writerow(header + [f"prob_{name}" for name in labels])
        for i in range(len(pred)):
            row = [texts[c][i] for c in texts] + ([labels[gold[i]]] if gold is not None else [])
            writer.writerow(row + [labels[pred[i]]] + [f"{p:.6f}" for p in probs[i]])


def write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False, default=_jsonable) + "\n", encoding="utf-8")


def _jsonable(value: Any) -> Any:
    if isinstance(value, (np.integer, np.floating)):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    return str(value)


def staging_dir(output_dir: Path) -> Path:
    """A fresh hidden folder inside `output_dir` (same filesystem, so moves are renames)."""
    stage = output_dir / f".staging-{os.getpid()}"
    shutil.rmtree(stage, ignore_errors=True)
    stage.mkdir(parents=True)
    return stage


def publish(stage: Path, output_dir: Path) -> None:
    """Move every staged file into `output_dir`; stale artefacts of an earlier run are removed."""
    for name in ARTEFACTS:
        if not (stage / name).exists() and (output_dir / name).exists():
            (output_dir / name).unlink()
    for item in sorted(stage.iterdir(), key=lambda p: p.name == "metrics.json"):
        os.replace(item, output_dir / item.name)  # metrics.json last: its presence means complete
    stage.rmdir()


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


def write_per_class(folder: Path, split: str, rows: list[dict[str, Any]]) -> None:
    """per_class_<split>.csv: precision, recall, F1 and support per label."""
    with open(folder / f"per_class_{split}.csv", "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
