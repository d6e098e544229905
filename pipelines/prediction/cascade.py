"""Cascaded precision: every row in int8, then the rows int8 is unsure of again in fp32.

Int8 changes a label only where the model hesitates: a row whose top two probabilities are far
apart keeps its label. So `--int8` scores every row with the int8 graph and re-scores with the
fp32 model those whose int8 margin (top-1 minus top-2 probability) is below a threshold.

The threshold comes from an agreement target (`--agreement`, default 0.995) and calibration rows
(the run's validation texts): on them, each row's int8 margin and whether int8 and fp32 agree.
The threshold is the smallest one whose conformal bound on the share of rows that keep a
different label, (k + 1) / (n + 1) with k calibration rows above the threshold that disagree,
is within (1 - target) / SHIFT (conformal risk control: with SHIFT 1 the bound holds in
expectation for new rows from the same distribution as the calibration rows). docs/int8.md has
the measurements, and why SHIFT is 2.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pipelines.errors import DataError

CALIBRATION_SOURCE = "validation_predictions.csv"  # written by scripts/run.py into the run folder
DEFAULT_AGREEMENT = 0.995
# Rows predicted are rarely distributed like a validation split: with the plain bound (SHIFT 1)
# an SST-2 model calibrated on dev sentences kept fp32's label on 99.02% of held-out train phrases
# against a 99.5% target; with half the allowance, 99.5% and more on both models (docs/int8.md).
SHIFT = 2


def margins(probs: np.ndarray, sigmoid: bool) -> np.ndarray:
    """How sure each row is: top-1 minus top-2 probability (softmax), or the least sure label's
    distance from 0.5, doubled (sigmoid heads: each label is its own yes/no)."""
    if sigmoid or probs.shape[1] == 1:
        return np.abs(2 * probs - 1).min(axis=1)
    top = np.sort(probs, axis=1)
    return top[:, -1] - top[:, -2]


def agree(probs_a: np.ndarray, probs_b: np.ndarray, sigmoid: bool) -> np.ndarray:
    """Per row: whether both give the same label(s)."""
    if sigmoid or probs_a.shape[1] == 1:
        return ((probs_a > 0.5) == (probs_b > 0.5)).all(axis=1)
    return probs_a.argmax(axis=1) == probs_b.argmax(axis=1)


def calibration_texts(model_dir: Path, text_columns: tuple[str, ...] | list[str]) -> tuple[list[str], list[str] | None]:
    """The run's validation texts (`validation_predictions.csv`), empty when the folder has none."""
    path = model_dir / CALIBRATION_SOURCE
    if not path.is_file():
        return [], None
    with open(path, encoding="utf-8", newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if all((r.get(c) or "").strip() for c in text_columns)]
    first = [r[text_columns[0]] for r in rows]
    return first, [r[text_columns[1]] for r in rows] if len(text_columns) == 2 else None


@dataclass(frozen=True)
class CalibrationFile:
    """A CSV/TSV of texts to calibrate on (`predict.py --calibration`), for models whose folder has
    no validation texts; `columns`: its text column(s), default the card's."""

    path: Path
    columns: tuple[str, ...] | None = None
    encoding: str = "utf-8-sig"

    def texts(self, card: Any) -> tuple[list[str], list[str] | None]:
        from pipelines.prediction import delimited as tables

        columns = self.columns or (tuple(card.text_columns) if card is not None else None)
        if not columns:
            raise DataError(f"--calibration {self.path}: the model has no task_card.yaml; name the text column "
                            "with --text-column")
        if not self.path.is_file():
            raise DataError(f"--calibration {self.path} not found")
        sep = tables.sep_for(self.path)
        header = tables.read_columns(self.path, sep, self.encoding)
        missing = [c for c in columns if c not in header]
        if missing:
            raise DataError(f"--calibration {self.path}: no column {', '.join(map(repr, missing))}; the file has "
                            f"columns {header}")
        rows = [t for frame in tables.chunks(self.path, sep, self.encoding, 4096)
                for t in zip(*(frame[c].tolist() for c in columns)) if all(isinstance(v, str) and v.strip() for v in t)]
        return [t[0] for t in rows], [t[1] for t in rows] if len(columns) == 2 else None

    def digest(self) -> str:
        from pipelines.filesystem import sha256

        if not self.path.is_file():
            raise DataError(f"--calibration {self.path} not found")
        return sha256(self.path) + ":" + ",".join(self.columns or ())


def record(int8_margins: np.ndarray, agreeing: np.ndarray, source: str) -> dict[str, Any]:
    """What calibration.json holds: each calibration row's int8 margin and agreement with fp32."""
    return {"source": source, "rows": len(int8_margins), "margins": [round(float(m), 7) for m in int8_margins],
            "agree": [bool(a) for a in agreeing]}


@dataclass(frozen=True)
class Threshold:
    """The re-scoring threshold for an agreement target, and what the calibration rows say of it."""

    target: float
    threshold: float  # rows with an int8 margin below it are re-scored in fp32
    expected_agreement: float  # the conformal bound (k + 1) / (n + 1) turned into agreement
    calibration_rows: int
    calibration_rescored: float  # share of calibration rows re-scored
    source: str

    def as_dict(self) -> dict[str, Any]:
        return {"agreement_target": self.target, "threshold": self.threshold,
                "expected_agreement": round(self.expected_agreement, 5), "calibration_rows": self.calibration_rows,
                "calibration_rescored": round(self.calibration_rescored, 5), "calibration_source": self.source}


def threshold_for(calibration: dict[str, Any], target: float) -> Threshold:
    """The smallest threshold whose bound on disagreement is within (1 - `target`) / SHIFT (see the module
    docstring). With too few rows for the target, every disagreeing calibration row is covered
    (the bound then falls short of the target; `expected_agreement` says by how much)."""
    m = np.asarray(calibration["margins"], dtype=np.float64)
    ok = np.asarray(calibration["agree"], dtype=bool)
    n = len(m)
    # Candidate thresholds: 0 (no re-scoring) and just above each disagreeing row's margin.
    wrong = np.sort(m[~ok])[::-1]  # largest first
    allowed = math.floor((1 - target) / SHIFT * (n + 1) - 1 + 1e-9)  # disagreeing rows that may stay above it
    if allowed >= len(wrong) or not len(wrong):
        cut = 0.0
    else:
        cut = float(np.nextafter(wrong[max(allowed, 0)], np.inf))
    kept = int((~ok & (m >= cut)).sum())
    return Threshold(target=target, threshold=cut, expected_agreement=1 - (kept + 1) / (n + 1), calibration_rows=n,
                     calibration_rescored=float((m < cut).mean()) if n else 0.0, source=calibration["source"])
