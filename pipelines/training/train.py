"""TrainingArguments defaults, Trainer assembly, training, and inference on evaluation splits."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import torch
from transformers import EarlyStoppingCallback, PreTrainedTokenizerBase, Trainer, TrainingArguments
from transformers.trainer_callback import PrinterCallback

from pipelines.data import features
from pipelines import hardware
from pipelines.evaluation import metrics
from pipelines.card.cards import TaskCard
from pipelines.errors import CardtuneError
from pipelines.card.options import RunArgs  # noqa: F401  (re-exported: scripts import it from here)
from pipelines.data.readers import column
from pipelines.training.trainer import CardtuneTrainer, EpochTimer, LogCallback

log = logging.getLogger(__name__)


def base_defaults(card: TaskCard) -> dict[str, Any]:
    """cardtune's defaults: above the library's, below the card's and the command line's."""
    return {
        "output_dir": f"outputs/{card.name}",
        "eval_strategy": "epoch",
        "save_strategy": "epoch",
        "logging_strategy": "epoch",
        "load_best_model_at_end": True,
        "metric_for_best_model": card.select_by,
        "greater_is_better": True,
        "save_total_limit": 1,
        "report_to": "none",
        "train_sampling_strategy": "group_by_length",
        "per_device_eval_batch_size": 128,
        "seed": 42,
        "ddp_find_unused_parameters": False,  # every parameter takes part in the loss
        **hardware.training_defaults(),
    }


def class_weights(spec: str | None, labels: list[int], num_labels: int) -> torch.Tensor | None:
    """`balanced` (n / (k * count), as scikit-learn) or an explicit comma-separated list."""
    if not spec:
        return None
    if spec == "balanced":
        counts = np.bincount(np.asarray(labels), minlength=num_labels).astype(float)
        if (counts == 0).any():
            raise CardtuneError(f"class_weights: balanced needs every class in train; counts are {counts.tolist()}")
        return torch.tensor(counts.sum() / (num_labels * counts), dtype=torch.float32)
    try:
        values = [float(v) for v in spec.split(",")]
    except ValueError:
        values = []
    if len(values) != num_labels or min(values, default=0) <= 0:
        raise CardtuneError(f"class_weights '{spec}': expected 'balanced' or {num_labels} positive numbers like '1.0,3.0'")
    return torch.tensor(values, dtype=torch.float32)


@dataclass
class Predictions:
    """Outputs on one split, in the split's original row order."""

    probs: np.ndarray
    labels: np.ndarray | None
    metrics: dict[str, float] | None

    @property
    def preds(self) -> np.ndarray:
        return self.probs.argmax(axis=1)


@dataclass
class TrainResult:
    trainer: Trainer
    history: list[dict[str, Any]]
    validation: Predictions
    test: Predictions | None
    train_metrics: dict[str, float]


def build_trainer(
    card: TaskCard,
    args: TrainingArguments,
    splits: datasets.DatasetDict,
    model: torch.nn.Module,
    tokenizer: PreTrainedTokenizerBase,
    run: RunArgs | None = None,
    callbacks: list | None = None,
) -> CardtuneTrainer:
    """A Trainer over tokenized splits, with dynamic padding and the card's metrics."""
    run = run or RunArgs()
    validation = features.sort_by_length(splits["validation"]) if run.sort_eval else splits["validation"]
    callbacks = list(callbacks or [])
    if run.early_stopping_patience:
        callbacks.append(EarlyStoppingCallback(early_stopping_patience=run.early_stopping_patience))
    train_labels = column(splits["train"], "label")
    trainer = CardtuneTrainer(
        model=model,
        args=args,
        train_dataset=splits["train"],
        eval_dataset=validation,
        processing_class=tokenizer,
        data_collator=features.collator(tokenizer, 8 if torch.cuda.is_available() else None),
        compute_metrics=metrics.for_labels(len(card.labels)),
        callbacks=callbacks,
        train_lengths=column(splits["train"], "length"),
        class_weights=class_weights(run.class_weights, train_labels, len(card.labels)),
        layerwise_lr_decay=run.layerwise_lr_decay,
    )
    trainer.remove_callback(PrinterCallback)
    trainer.add_callback(LogCallback())
    return trainer


def train(
    card: TaskCard,
    args: TrainingArguments,
    splits: datasets.DatasetDict,
    model: torch.nn.Module,
    tokenizer: PreTrainedTokenizerBase,
    run: RunArgs | None = None,
) -> TrainResult:
    """Train, restore the best checkpoint, and predict validation (and test, if any) with it."""
    run = run or RunArgs()
    trainer = build_trainer(card, args, splits, model, tokenizer, run, [EpochTimer()])
    output = trainer.train(resume_from_checkpoint=_checkpoint(args) if run.resume else None)
    history = list(trainer.state.log_history)
    validation = predict_split(trainer, splits["validation"], run.sort_eval, "eval")
    test = predict_split(trainer, splits["test"], run.sort_eval, "test") if "test" in splits else None
    return TrainResult(trainer, history, validation, test, dict(output.metrics))


def _checkpoint(args: TrainingArguments) -> str:
    from transformers.trainer_utils import get_last_checkpoint

    folder = Path(args.output_dir)
    last = get_last_checkpoint(str(folder)) if folder.is_dir() else None
    if last is None:
        raise CardtuneError(f"--resume: no checkpoint-* folder in {folder}; run without --resume to start afresh")
    log.info("resuming from %s", last)
    return last


def predict_split(trainer: Trainer, ds: datasets.Dataset, sort: bool = True, prefix: str = "test") -> Predictions:
    """`trainer.predict` over a length-sorted copy, then back to input order via `row`."""
    ordered = features.sort_by_length(ds) if sort else ds
    out = trainer.predict(ordered, metric_key_prefix=prefix)
    logits = out.predictions[0] if isinstance(out.predictions, tuple) else out.predictions
    inverse = np.argsort(np.asarray(column(ordered, "row")))
    probs = metrics.softmax(np.asarray(logits, dtype=np.float64))[inverse]
    labelled = "label" in ds.column_names
    labels = np.asarray(column(ds, "label")) if labelled else None
    scores = _strip_prefix(out.metrics, f"{prefix}_") if labelled else None
    return Predictions(probs, labels, scores)


def _strip_prefix(values: dict[str, float], prefix: str) -> dict[str, float]:
    return {k[len(prefix):] if k.startswith(prefix) else k: v for k, v in values.items()}
