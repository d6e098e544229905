"""The metric registry: each metric is one registered function, computed with scikit-learn (no network,
unlike `evaluate.load`). The registry drives what is computed, checkpoint selection, summaries and
the model card's metadata.

To add a metric, register a function `(labels, preds, num_labels) -> float` with `@register_metric`.
Card validation reads `METRICS`, so numpy and scikit-learn (1.5 s to import) are imported where used.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

MetricFn = Callable[["np.ndarray", "np.ndarray", int], float]


@dataclass(frozen=True)
class Metric:
    """A registered metric: its card name, function, direction, and how the Hub and people call it."""

    name: str
    fn: MetricFn
    higher_is_better: bool
    hub_type: str  # model-index metric type known to the Hub
    display: str  # its name in the model card metadata


METRICS: dict[str, Metric] = {}


def register_metric(
    name: str, higher_is_better: bool = True, hub_type: str | None = None, display: str | None = None
) -> Callable[[MetricFn], MetricFn]:
    """Register `fn(labels, preds, num_labels) -> float` as the metric a card names `name`."""

    def register(fn: MetricFn) -> MetricFn:
        if name in METRICS:
            raise ValueError(f"metric '{name}' is registered twice")
        METRICS[name] = Metric(name, fn, higher_is_better, hub_type or name, display or name)
        return fn

    return register


@register_metric("accuracy", display="Accuracy")
def accuracy(labels: np.ndarray, preds: np.ndarray, num_labels: int) -> float:
    """Share of exact matches."""
    from sklearn.metrics import accuracy_score

    return float(accuracy_score(labels, preds))


@register_metric("mcc", hub_type="matthews_correlation", display="MCC")
def mcc(labels: np.ndarray, preds: np.ndarray, num_labels: int) -> float:
    """Matthews correlation coefficient (0 for constant predictions)."""
    from sklearn.metrics import matthews_corrcoef

    return float(matthews_corrcoef(labels, preds))


@register_metric("f1", display="F1")
def f1(labels: np.ndarray, preds: np.ndarray, num_labels: int) -> float:
    """F1: binary (of label 1) for two labels, macro-averaged otherwise."""
    from sklearn.metrics import f1_score

    average = "binary" if num_labels == 2 else "macro"
    return float(f1_score(labels, preds, average=average, labels=list(range(num_labels)), zero_division=0))


@register_metric("balanced_accuracy", display="Balanced accuracy")
def balanced_accuracy(labels: np.ndarray, preds: np.ndarray, num_labels: int) -> float:
    """Mean recall over the classes present in `labels` (as scikit-learn's, without its warnings)."""
    import numpy as np
    from sklearn.metrics import recall_score

    return float(recall_score(labels, preds, labels=np.unique(labels), average="macro", zero_division=0))


# What a card without `metrics:` computes, and what prediction files with gold labels are scored by.
DEFAULT_METRICS = ("accuracy", "mcc", "f1")


def compute(
    labels: Sequence[int], preds: Sequence[int], num_labels: int, names: Sequence[str] = DEFAULT_METRICS
) -> dict[str, float]:
    """The named metrics, in the order given."""
    import numpy as np

    labels, preds = np.asarray(labels), np.asarray(preds)
    return {name: METRICS[name].fn(labels, preds, num_labels) for name in names}


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax, stable for large logits."""
    import numpy as np

    z = logits - logits.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def for_labels(num_labels: int, names: Sequence[str] = DEFAULT_METRICS) -> Callable:
    """A `compute_metrics` for `Trainer` (takes an `EvalPrediction`) computing the named metrics."""

    def compute_metrics(pred) -> dict[str, float]:
        import numpy as np

        logits = pred.predictions[0] if isinstance(pred.predictions, tuple) else pred.predictions
        return compute(pred.label_ids, np.argmax(logits, axis=-1), num_labels, names)

    return compute_metrics
