"""TrainingArguments defaults and the settings precedence: library < cardtune < card < command line."""

from __future__ import annotations

import logging
from typing import Any

from pipelines import hardware
from pipelines.card.cards import TaskCard
from pipelines.card.options import RunArgs  # noqa: F401  (re-exported: scripts import it from here)

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

