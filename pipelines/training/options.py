"""cardtune's run options (TrainingArguments covers the rest), each declared once with its facts.

A `RunArgs` field carries its help text, its range, whether a card's `defaults:` may set it and
whether it changes the result (`pipelines.option_fields`); `TRAINING_ARGUMENTS` holds the same
facts for the TrainingArguments fields cardtune checks or sets apart. The value checks, the card
validator, the resume fingerprint and `--help` are derived from here (`ranges`, `not_in_card`,
`result_neutral`). Kept free of heavy imports so cards can be validated against it cheaply.

The precedence is TrainingArguments default < cardtune default < card `defaults` < command line.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Any, Literal

from pipelines.modeling.freezing import STRATEGIES
from pipelines.modeling.heads import HEADS
from pipelines.option_fields import Facts, Range, declared
from pipelines.option_fields import option as _opt

# The token limit per example: a card's top-level `max_length`, `--max_length` and predict.py's `--max-length`.
TOKEN_LIMIT = Range(8, 8192)
THREADS = Range(1)  # CPU threads per process, for training and prediction
_AT_LEAST_1 = Range(1)
_SHARE_BELOW_1 = Range(0, 1, True, False)

# Facts of an option that says where a run reads or writes, or what it may download: command line only,
# and no part of the result.
_WHERE = {"card": False, "result": False}


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

    task: str | None = _opt(None, "Shipped card name (see --list-tasks) or path to a card .yaml.", **_WHERE)
    list_tasks: bool = _opt(False, "List the shipped cards and exit.", **_WHERE)
    list_models: bool = _opt(False, "List the named offline models (languages, size, install command) and exit.",
                             **_WHERE)
    data_dir: str | None = _opt(None, "Folder with the card's local files (dataset.local).", **_WHERE)
    # The model's weights are in the fingerprint by their digest, whatever name reached them.
    model: str | None = _opt(None, "A named offline model (see --list-models), a Hub id (with --online) or a local "
                                   "path (default: chosen by the card's language: minilm for English, "
                                   "multilingual-e5-small otherwise).", **_WHERE)
    online: bool = _opt(False, "Allow downloading models and Hub datasets (off by default).", **_WHERE)
    max_length: int | None = _opt(None, "Token limit per example (default: the card's).", range=TOKEN_LIMIT)
    keep_checkpoints: bool = _opt(False, "Keep checkpoint-* folders after a successful run.", **_WHERE)
    hub_dry_run: str | None = _opt(
        None, "With --hub-model-id: write the folder a push would upload here, upload nothing.", **_WHERE)
    # Speed switches: all on by default, each can be turned off to compare or to debug.
    pad_to_max_length: bool = _opt(False, "Pad every example to max_length instead of per batch (slow).")
    sort_eval: bool = _opt(True, "Evaluate/predict in length-sorted batches (less padding).", result=False)
    cache_features: bool = _opt(True, "Reuse tokenized features between runs (CARDTUNE_CACHE).", result=False)
    threads: int | None = _opt(None, "CPU threads per process (default: available cores / local processes, less "
                                     "the cores other jobs keep busy).", range=THREADS, result=False)
    attn_implementation: Literal["sdpa", "eager"] = _opt("sdpa", "Attention kernel: sdpa (fused) or eager.")
    # Fine-tuning recipes.
    head: HeadName | None = _opt(None, "Classifier head (default: the one that reads the encoder as it was "
                                       "trained: mean for the named offline models, linear otherwise): "
                                       + _choices_help(HEADS))
    head_hidden: int | None = _opt(None, "Hidden size of the mlp head (default: the encoder's).", range=_AT_LEAST_1)
    classifier_dropout: float | None = _opt(None, "Dropout before the head (default: the model config's).",
                                            range=_SHARE_BELOW_1)
    freeze: FreezeName = _opt("none", "What to freeze: " + _choices_help(STRATEGIES))
    trainable_layers: int = _opt(1, "With --freeze all_but_last: how many top encoder blocks train.",
                                 range=_AT_LEAST_1)
    freeze_word_embeddings: bool | None = _opt(
        None, "Freeze the word-embedding table (default: the named model's advice: yes for multilingual-e5-small, "
              "whose 250k-row table is 80% of its parameters; no otherwise).")
    warm_start: bool = _opt(True, "Fit the head on frozen features (a logistic regression) before fine-tuning "
                                  "(LP-FT); --warm_start false starts from a random head.")
    baseline: Literal["probe", "none"] = _opt(
        "probe", "Also fit a logistic regression on the frozen encoder's embeddings of the same splits and report "
                 "it beside the fine-tuned scores (probe), or not (none).")
    layerwise_lr_decay: float = _opt(1.0, "Learning rate x decay**depth from the top block down (1.0: off).",
                                     range=Range(0, 1, False, True))
    class_weights: str | None = _opt(None, "Loss weights per class: 'balanced' or a list like '1.0,3.0'.")
    early_stopping_patience: int | None = _opt(
        None, "Stop after this many evaluations without improvement of the card's select_by metric.",
        range=_AT_LEAST_1)
    # Each seed's run has its own fingerprint (its own --seed); the list itself changes no checkpoint.
    seeds: str | None = _opt(None, "Repeat the run for each seed, e.g. '1,2,3'; reports mean and std.",
                             result=False)
    resume: bool = _opt(False, "Continue an interrupted run from the last checkpoint in --output-dir.", **_WHERE)
    # Hyperparameter search (pipelines/training/search.py).
    search: int | None = _opt(
        None, "Run a hyperparameter search of N trials over the card's `search:` space (Optuna, study kept in "
              "OUT/search.db: the same command continues an interrupted search).", card=False)
    search_space: str | None = _opt(
        None, "Search space as JSON or YAML, applied over the card's `search:` (a setting set to null is dropped), "
              "e.g. '{\"learning_rate\": {\"low\": 1e-5, \"high\": 2e-4, \"log\": true}}'.", card=False)
    search_final: bool = _opt(False, "After --search, train the final model with the best settings into OUT/final "
                                     "(once per seed with --seeds).", card=False)


def _args(names: str, **facts: Any) -> dict[str, Facts]:
    return {name: Facts(**facts) for name in names.split()}


# The TrainingArguments fields cardtune knows more about than their type: a range, command line only,
# or no part of the result. TrainingArguments is the library's dataclass, so its facts are listed here
# rather than in field metadata; every other field may be set in a card and changes the result.
TRAINING_ARGUMENTS: dict[str, Facts] = {
    **_args("num_train_epochs learning_rate weight_decay warmup_steps max_grad_norm", range=Range(0)),
    **_args("per_device_train_batch_size gradient_accumulation_steps", range=_AT_LEAST_1),
    **_args("label_smoothing_factor adam_beta1 adam_beta2", range=_SHARE_BELOW_1),
    "adam_epsilon": Facts(range=Range(0, None, False)),
    "seed": Facts(range=Range(0, 2**32 - 1)),
    "eval_steps": Facts(range=Range(0, None, False)),
    "save_steps": Facts(range=Range(0, None, False)),
    # Where the run writes and where it publishes: the command line's or the user's.
    **_args("output_dir hub_model_id resume_from_checkpoint", card=False, result=False),
    **_args("hub_token push_to_hub local_rank", card=False, result=False),
    # How a run is shown, logged, saved and scheduled: the same model either way.
    "logging_steps": Facts(range=Range(0, None, False), result=False),
    "per_device_eval_batch_size": Facts(range=_AT_LEAST_1, result=False),
    **_args("run_name project report_to disable_tqdm log_level log_level_replica log_on_each_node "
            "logging_first_step logging_nan_inf_filter logging_strategy save_total_limit save_on_each_node "
            "dataloader_num_workers dataloader_persistent_workers dataloader_pin_memory dataloader_prefetch_factor "
            "dataloader_multiprocessing_context eval_accumulation_steps eval_do_concat_batches "
            "eval_use_gather_object batch_eval_metrics skip_memory_metrics ddp_timeout ddp_bucket_cap_mb debug "
            "include_num_input_tokens_seen torch_empty_cache_steps use_cpu do_train do_eval do_predict "
            "restore_callback_states_from_checkpoint", result=False),
}

RUN_OPTIONS = declared(RunArgs)


def ranges() -> dict[str, Range]:
    """Option -> accepted range, for the run options and the TrainingArguments fields that have one."""
    return {name: facts.range for name, facts in {**RUN_OPTIONS, **TRAINING_ARGUMENTS}.items() if facts.range}


# The two kinds of option a card's `defaults:` may not set (the card validator refuses both).
RUN_OPTIONS_NOT_IN_CARD = frozenset(name for name, facts in RUN_OPTIONS.items() if not facts.card)
TRAINING_ARGUMENTS_NOT_IN_CARD = frozenset(name for name, facts in TRAINING_ARGUMENTS.items() if not facts.card)
# The options that change no result: the resume fingerprint leaves them out.
RUN_OPTIONS_RESULT_NEUTRAL = frozenset(name for name, facts in RUN_OPTIONS.items() if not facts.result)
TRAINING_ARGUMENTS_RESULT_NEUTRAL = frozenset(name for name, facts in TRAINING_ARGUMENTS.items() if not facts.result)
