"""The effective settings of a run, resolved once from the card, the run options and the machine.

`resolve` is the one place where `--max_length` meets the card's `max_length`, `--model` the card's
language, `--head` the model's pooling, `--threads` the cores, and the TrainingArguments' mixed
precision becomes a name; every stage (features, model, Trainer, checkpoints, reports, trackers)
reads the `Settings` it returns instead of working a value out again.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from pipelines import hardware
from pipelines.card.cards import TaskCard
from pipelines.modeling import offline
from pipelines.modeling.heads import DEFAULT_HEAD as HEADS_BY_POOLING
from pipelines.option_fields import facts_of
from pipelines.option_fields import option as _setting
from pipelines.training.options import RunArgs


@dataclass(frozen=True)
class Settings:
    """What a run actually uses (the options say what was asked; None there means "work it out")."""

    # The model's weights are in the resume fingerprint by their digest, whatever name reached them.
    model: str = _setting(None, "--model, else the card's `model`, else the default for its language (a named "
                                "model: its canonical name)", result=False)
    model_reason: str = _setting(None, "why this model", result=False)
    models_passed_over: tuple[str, ...] = _setting((), "the card's earlier `model` choices that are not installed",
                                                   result=False)
    max_length: int = _setting(None, "--max_length, else the card's `max_length`")
    head: str = _setting(None, "--head, else the head that reads the encoder as it was trained (its pooling)")
    freeze_word_embeddings: bool = _setting(None, "--freeze_word_embeddings, else the named model's advice")
    threads: int = _setting(None, "CPU threads per process at the start: --threads, else this process's share of "
                                  "the cores", result=False)
    threads_follow_load: bool = _setting(None, "without --threads: the count follows the cores other jobs leave "
                                               "free (hardware.ThreadGovernor)", result=False)
    precision: str = _setting(None, "the Trainer's arithmetic: bf16, fp16 (mixed precision) or fp32")

    def result_changing(self) -> dict[str, Any]:
        """The settings that can change the trained model (for the resume fingerprint)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if facts_of(f).result}


def resolve(card: TaskCard, run: RunArgs, args: Any = None) -> Settings:
    """The effective settings of a run of `card` with the options `run` and the TrainingArguments `args`.

    Reads files only to find a local model's pooling; sets nothing (`hardware.configure_threads` applies
    the thread count when the run starts)."""
    choice = offline.choose(run.model, card.language, card.model)
    return Settings(
        model=choice.name,
        model_reason=choice.reason,
        models_passed_over=choice.passed_over,
        max_length=run.max_length or card.max_length,
        head=run.head or default_head(choice, run.online),
        freeze_word_embeddings=(run.freeze_word_embeddings if run.freeze_word_embeddings is not None
                                else bool(choice.offline and choice.offline.freeze_word_embeddings)),
        threads=run.threads or hardware.cpu_share(),
        threads_follow_load=not run.threads,
        precision="bf16" if getattr(args, "bf16", False) else "fp16" if getattr(args, "fp16", False) else "fp32",
    )


def default_head(choice: offline.ModelChoice, online: bool) -> str:
    """The head that reads the encoder the way it was trained (its declared or configured pooling)."""
    path = None if choice.offline or online else choice.name
    return HEADS_BY_POOLING[offline.pooling_of(choice, path)]
