"""Accuracy, MCC and F1 with scikit-learn: no network, unlike `evaluate.load`."""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
from sklearn.metrics import (
    accuracy_score,
    f1_score,
    matthews_corrcoef,
)


def compute(labels: Sequence[int], preds: Sequence[int], num_labels: int) -> dict[str, float]:
    """accuracy, mcc, and f1 (binary for two labels, macro-averaged otherwise)."""
    labels = np.asarray(labels)
    preds = np.asarray(preds)
    average = "binary" if num_labels == 2 else "macro"
    return {
        "accuracy": float(accuracy_score(labels, preds)),
        "mcc": float(matthews_corrcoef(labels, preds)),
        "f1": float(f1_score(labels, preds, average=average, labels=list(range(num_labels)), zero_division=0)),
    }


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax, stable for large logits."""
    z = logits - logits.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def for_labels(num_labels: int) -> Callable:
    """A `compute_metrics` for `Trainer` (takes an `EvalPrediction`)."""

    def compute_metrics(pred) -> dict[str, float]:
        logits = pred.predictions[0] if isinstance(pred.predictions, tuple) else pred.predictions
        return compute(pred.label_ids, np.argmax(logits, axis=-1), num_labels)

    return compute_metrics

