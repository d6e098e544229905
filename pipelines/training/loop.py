"""Trainer assembly, training, and inference on evaluation splits."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import datasets
import numpy as np
import torch
from transformers import EarlyStoppingCallback, PreTrainedTokenizerBase, Trainer, TrainingArguments
from transformers.trainer_callback import PrinterCallback

from pipelines.card.cards import TaskCard
from pipelines.data import features
from pipelines.data.readers import column
from pipelines.evaluation import metrics
from pipelines.modeling import loading
from pipelines.training import checkpoints, tracking
from pipelines.training.callbacks import EpochTimer, LogCallback, ThreadCallback, WatchdogCallback
from pipelines.training.options import RunArgs
from pipelines.training.progress import ProgressLog
from pipelines.training.settings import Settings, resolve
from pipelines.training.trainer import CardtuneTrainer, class_weights

log = logging.getLogger(__name__)


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
    settings: Settings | None = None,
) -> CardtuneTrainer:
    """A Trainer over tokenized splits, with dynamic padding and the card's metrics (`settings`: the
    run's, resolved from `card`, `run` and `args` when not given)."""
    run = run or RunArgs()
    settings = settings or resolve(card, run, args)
    validation = features.sort_by_length(splits["validation"]) if run.sort_eval else splits["validation"]
    callbacks = list(callbacks or [])
    if run.early_stopping_patience:
        callbacks.append(EarlyStoppingCallback(early_stopping_patience=run.early_stopping_patience))
    if settings.threads_follow_load and not torch.cuda.is_available():
        callbacks.append(ThreadCallback())
    if args.world_size > 1:  # a silent peer ends the run within --ddp_timeout (distributed.Watchdog)
        callbacks.append(WatchdogCallback(args.ddp_timeout))
    train_labels = column(splits["train"], "label")
    trainer = CardtuneTrainer(
        model=model,
        args=args,
        train_dataset=splits["train"],
        eval_dataset=validation,
        processing_class=tokenizer,
        data_collator=features.collator(tokenizer, 8 if torch.cuda.is_available() else None),
        compute_metrics=metrics.for_labels(len(card.labels), card.metrics),
        callbacks=callbacks,
        train_lengths=column(splits["train"], "length"),
        class_weights=class_weights(run.class_weights, train_labels, len(card.labels)),
        layerwise_lr_decay=run.layerwise_lr_decay,
    )
    trainer.remove_callback(PrinterCallback)
    trainer.add_callback(LogCallback())
    trainer.add_callback(ProgressLog())
    tracking.configure(trainer)
    return trainer


def train(
    card: TaskCard,
    args: TrainingArguments,
    splits: datasets.DatasetDict,
    model: torch.nn.Module,
    tokenizer: PreTrainedTokenizerBase,
    run: RunArgs | None = None,
    settings: Settings | None = None,
) -> TrainResult:
    """Train, restore the best checkpoint, and predict validation (and test, if any) with it."""
    run = run or RunArgs()
    settings = settings or resolve(card, run, args)
    trainer = build_trainer(card, args, splits, model, tokenizer, run, [EpochTimer()], settings)
    trainer.cardtune_fingerprint = checkpoints.fingerprint(card, run, settings, args, splits,
                                                           loading.resolve(settings.model))
    resume_from = _checkpoint(args, trainer) if run.resume else None
    if resume_from:
        tracking.resume(trainer, checkpoints.session(resume_from), int(resume_from.rsplit("-", 1)[1]))
    try:
        output = trainer.train(resume_from_checkpoint=resume_from)
    except KeyboardInterrupt:
        raise checkpoints.interrupted(trainer) from None
    history = list(trainer.state.log_history)
    output.metrics["train_loss"] = checkpoints.whole_train_loss(  # the Trainer's covers this session only
        history, trainer._initial_global_step, output.metrics.get("train_loss"), trainer.state.global_step)
    validation = predict_split(trainer, splits["validation"], run.sort_eval, "eval")
    test = predict_split(trainer, splits["test"], run.sort_eval, "test") if "test" in splits else None
    return TrainResult(trainer, history, validation, test, dict(output.metrics))


def _checkpoint(args: TrainingArguments, trainer: Trainer) -> str:
    return checkpoints.pick(args.output_dir, trainer.cardtune_fingerprint, remove_damaged=args.should_save)


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

