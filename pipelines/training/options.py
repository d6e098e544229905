"""cardtune's own run options (TrainingArguments covers the rest). Kept free of heavy imports so
cards can be validated against it cheaply.

Every field not in `NOT_IN_CARD` may also be set in a card's `defaults:`; the precedence is
TrainingArguments default < cardtune default < card `defaults` < command line.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Literal

from pipelines.modeling.freezing import STRATEGIES
from pipelines.modeling.heads import HEADS

# Options that describe where a run reads/writes or what it may download: command line only.
NOT_IN_CARD = frozenset(
    {"task", "list_tasks", "list_models", "data_dir", "model", "online", "keep_checkpoints", "hub_dry_run", "resume"}
    | {"search", "search_space", "search_final"}
)


def _opt(default, help_text: str):
    # argparse %-formats help strings: a bare "80%" would crash --help.
    return field(default=default, metadata={"help": help_text.replace("%", "%%")})


# The choices of --head and --freeze come from their registries. A str Enum, because HfArgumentParser
# turns it into argparse choices (parsed values stay plain strings) and card checks accept its values.
def _names(name: str, registry: dict[str, Any]) -> type[Enum]:
    return Enum(name, {key: key for key in registry}, type=str)


def _choices_help(registry: dict[str, Any]) -> str:
    return ", ".join(f"{key} ({entry.help})" for key, entry in registry.items()) + "."


HeadName = _names("HeadName", HEADS)
FreezeName = _names("FreezeName", STRATEGIES)


@dataclass
class RunArgs:
    """Options of scripts/run.py besides TrainingArguments."""

    task: str | None = _opt(None, "Shipped card name (see --list-tasks) or path to a card .yaml.")
    list_tasks: bool = _opt(False, "List the shipped cards and exit.")
    list_models: bool = _opt(False, "List the named offline models (languages, size, install command) and exit.")
    data_dir: str | None = _opt(None, "Folder with the card's local files (dataset.local).")
    model: str | None = _opt(None, "A named offline model (see --list-models), a Hub id (with --online) or a local "
                                   "path (default: chosen by the card's language: minilm for English, "
                                   "multilingual-e5-small otherwise).")
    online: bool = _opt(False, "Allow downloading models and Hub datasets (off by default).")
    max_length: int | None = _opt(None, "Token limit per example (default: the card's).")
    keep_checkpoints: bool = _opt(False, "Keep checkpoint-* folders after a successful run.")
    hub_dry_run: str | None = _opt(
        None, "With --hub-model-id: write the folder a push would upload here, upload nothing.")
    # Speed switches: all on by default, each can be turned off to compare or to debug.
    pad_to_max_length: bool = _opt(False, "Pad every example to max_length instead of per batch (slow).")
    sort_eval: bool = _opt(True, "Evaluate/predict in length-sorted batches (less padding).")
    cache_features: bool = _opt(True, "Reuse tokenized features between runs (CARDTUNE_CACHE).")
    threads: int | None = _opt(None, "CPU threads per process (default: available cores / local processes).")
    attn_implementation: Literal["sdpa", "eager"] = _opt("sdpa", "Attention kernel: sdpa (fused) or eager.")
    # Fine-tuning recipes.
    head: HeadName | None = _opt(None, "Classifier head (default: the one that reads the encoder as it was "
                                       "trained: mean for the named offline models, linear otherwise): "
                                       + _choices_help(HEADS))
    head_hidden: int | None = _opt(None, "Hidden size of the mlp head (default: the encoder's).")
    classifier_dropout: float | None = _opt(None, "Dropout before the head (default: the model config's).")
    freeze: FreezeName = _opt("none", "What to freeze: " + _choices_help(STRATEGIES))
    trainable_layers: int = _opt(1, "With --freeze all_but_last: how many top encoder blocks train.")
    freeze_word_embeddings: bool | None = _opt(
        None, "Freeze the word-embedding table (default: the named model's advice: yes for multilingual-e5-small, "
              "whose 250k-row table is 80% of its parameters; no otherwise).")
    warm_start: bool = _opt(True, "Fit the head on frozen features (a logistic regression) before fine-tuning "
                                  "(LP-FT); --warm_start false starts from a random head.")
    baseline: Literal["probe", "none"] = _opt(
        "probe", "Also fit a logistic regression on the frozen encoder's embeddings of the same splits and report "
                 "it beside the fine-tuned scores (probe), or not (none).")
    layerwise_lr_decay: float = _opt(1.0, "Learning rate x decay**depth from the top block down (1.0: off).")
    class_weights: str | None = _opt(None, "Loss weights per class: 'balanced' or a list like '1.0,3.0'.")
    early_stopping_patience: int | None = _opt(
        None, "Stop after this many evaluations without improvement of the card's select_by metric.")
    seeds: str | None = _opt(None, "Repeat the run for each seed, e.g. '1,2,3'; reports mean and std.")
    resume: bool = _opt(False, "Continue an interrupted run from the last checkpoint in --output-dir.")
    # Hyperparameter search (pipelines/training/search.py).
    search: int | None = _opt(
        None, "Run a hyperparameter search of N trials over the card's `search:` space (Optuna, study kept in "
              "OUT/search.db: the same command continues an interrupted search).")
    search_space: str | None = _opt(
        None, "Search space as JSON or YAML, applied over the card's `search:` (a setting set to null is dropped), "
              "e.g. '{\"learning_rate\": {\"low\": 1e-5, \"high\": 2e-4, \"log\": true}}'.")
    search_final: bool = _opt(False, "After --search, train the final model with the best settings into OUT/final "
                                     "(once per seed with --seeds).")
