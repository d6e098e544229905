"""Accuracy, MCC and F1 with scikit-learn: no network, unlike `evaluate.load`."""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
from sklearn.metrics import (
    accuracy_score,
    confusion_matrix,
    f1_score,
    matthews_corrcoef,
    precision_recall_fscore_support,
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


def confusion(labels: Sequence[int], preds: Sequence[int], num_labels: int) -> np.ndarray:
    """Counts with gold labels as rows and predictions as columns."""
    return confusion_matrix(labels, preds, labels=list(range(num_labels)))


def per_class(labels: Sequence[int], preds: Sequence[int], names: Sequence[str]) -> list[dict]:
    """Precision, recall, F1 and support for each label."""
    p, r, f, support = precision_recall_fscore_support(
        labels, preds, labels=list(range(len(names))), zero_division=0
    )
    return [
        {"label": name, "precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]), "support": int(support[i])}
        for i, name in enumerate(names)
    ]


# |MCC| below this is "no better than chance" for the alarm: far under any useful classifier.
CHANCE_MCC = 0.05


def degenerate(
    preds: Sequence[int], mcc: float, names: Sequence[str], train_labels: Sequence[int], first_causes: Sequence[str] = ()
) -> str | None:
    """A plain-words alarm when a run ended predicting one class, or at chance level; else None.

    `first_causes` are known reasons listed before the generic ones (e.g. a model of another language).
    """
    counts = np.bincount(np.asarray(train_labels), minlength=len(names))
    majority = counts.argmax()
    share = counts[majority] / max(1, counts.sum())
    predicted = np.unique(np.asarray(preds))
    if len(predicted) == 1:
        what = f"the model predicts '{names[predicted[0]]}' for every validation example"
    elif abs(mcc) < CHANCE_MCC:
        what = f"validation MCC is {mcc:.3f}, i.e. no better than chance"
    else:
        return None
    causes = [*first_causes, "a learning rate too high (diverged) or too low", "too few epochs or no warmup for this model"]
    if share > 1.2 / len(names):  # clearly more than an even share
        causes.append(f"label imbalance ('{names[majority]}' is {share:.0%} of train: try class_weights: balanced)")
    return f"DEGENERATE RUN: {what}. Likely causes: {'; '.join(causes)}. Do not report this number as a result."
