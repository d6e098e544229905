"""Report tables: per-epoch rows, CSV and Markdown tables, predictions, JSON."""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

EVAL_TIMINGS = ("eval_runtime", "eval_samples_per_second", "eval_steps_per_second")

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
            if key.startswith("eval_") and key not in EVAL_TIMINGS:
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
    return str(value)  # Path, and anything else json cannot write


def write_per_class(folder: Path, split: str, rows: list[dict[str, Any]]) -> None:
    """per_class_<split>.csv: precision, recall, F1 and support per label."""
    with open(folder / f"per_class_{split}.csv", "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)

