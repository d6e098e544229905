"""Diagnostics of predictions: confusion matrices, per-class scores, the degenerate-run alarm."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sklearn.metrics import (
    confusion_matrix,
    precision_recall_fscore_support,
)

from pipelines.evaluation import metrics


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


def validation_alarm(
    labels: Sequence[int], preds: Sequence[int], names: Sequence[str], train_labels: Sequence[int],
    first_causes: Sequence[str] = (),
) -> str | None:
    """`degenerate` on validation predictions; MCC is computed here, whatever metrics the card lists."""
    mcc = metrics.mcc(np.asarray(labels), np.asarray(preds), len(names))
    return degenerate(preds, mcc, names, train_labels, first_causes)


def degenerate(
    preds: Sequence[int], mcc: float, names: Sequence[str], train_labels: Sequence[int],
    first_causes: Sequence[str] = (),
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
    causes = [*first_causes, "a learning rate too high (diverged) or too low",
              "too few epochs or no warmup for this model"]
    if share > 1.2 / len(names):  # clearly more than an even share
        causes.append(f"label imbalance ('{names[majority]}' is {share:.0%} of train: try class_weights: balanced)")
    return f"DEGENERATE RUN: {what}. Likely causes: {'; '.join(causes)}. Do not report this number as a result."

