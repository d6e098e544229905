"""TrainingArguments defaults and the settings precedence: library < cardtune < card < command line."""

from __future__ import annotations

import logging
from typing import Any

from pipelines import distributed, hardware
from pipelines.card.cards import TaskCard
from pipelines.evaluation.metrics import METRICS
from pipelines.modeling import offline

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
        "greater_is_better": METRICS[card.select_by].higher_is_better,
        "save_total_limit": 1,
        "report_to": "none",
        "project": "cardtune",  # trackio's project (the library's default is "huggingface")
        "train_sampling_strategy": "group_by_length",
        "per_device_eval_batch_size": 128,
        "warmup_steps": 0.1,  # below 1: a fraction of the training steps
        "weight_decay": 0.01,
        "seed": 42,
        "ddp_find_unused_parameters": False,  # every parameter takes part in the loss
        "ddp_timeout": distributed.COLLECTIVE_TIMEOUT_S,  # a silent peer ends the run in minutes, not 30
        **hardware.training_defaults(),
    }


def card_settings(card: TaskCard, model: str | None = None) -> dict[str, Any]:
    """Every default a run of `card` with `model` starts from: cardtune's, overridden by the card's
    `defaults:`, overridden by the card's `model_defaults:` for that model. `model`: the name from
    `--model` as given; None: the model a run without `--model` trains.

    The one place the precedence is written: TrainingArguments default < cardtune < card < card for
    the model < command line (the command line is applied on top, by the parser these values become
    defaults of)."""
    chosen = offline.choose(model, card.language, card.model).name
    return {**base_defaults(card), **card_defaults(card, chosen)}


def card_defaults(card: TaskCard, model: str) -> dict[str, Any]:
    """The card's settings for a run of `model` (its canonical name, Hub id or folder): `defaults:`,
    with that model's `model_defaults:` entry over them."""
    entry = model_entry(card, model)
    return {**card.defaults, **(entry[1] if entry else {})}


def model_entry(card: TaskCard, model: str) -> tuple[str, dict[str, Any]] | None:
    """(the key as the card wrote it, its settings) of the `model_defaults:` entry for `model`; a key
    may be any of the model's names."""
    for key, values in card.model_defaults.items():
        entry = offline.find(key)
        if (entry.name if entry else key) == model:
            return key, values
    return None
