"""Every task-card key, declared once: its checker, default and help text.

The validator (`schema.check_keys`), `TaskCard.to_dict` and the README's key table
(`markdown_table`) are all derived from these dataclasses; a new key is one field here.
"""

from __future__ import annotations

import dataclasses
import functools
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipelines.card import schema as s
from pipelines.card import search_space
from pipelines.card.schema import key
from pipelines.card.shipped import SAMPLES_DIR
from pipelines.data import preprocess
from pipelines.evaluation.metrics import DEFAULT_METRICS
from pipelines.training.options import (
    RUN_OPTIONS_NOT_IN_CARD,
    TOKEN_LIMIT,
    TRAINING_ARGUMENTS_NOT_IN_CARD,
    RunArgs,
)

SPLITS = ("train", "validation", "test")
FORMATS = ("csv", "tsv", "json", "jsonl", "xlsx", "parquet")
# How a text longer than `max_length` is cut: strategies for one text and for a sentence pair.
SINGLE_TRUNCATION = ("head", "tail", "head_tail")
PAIR_TRUNCATION = ("longest_first", "only_first", "only_second", "proportional")
TRUNCATION = SINGLE_TRUNCATION + PAIR_TRUNCATION
# head_tail's share of the token budget kept from the start: Sun et al. (2019) kept the first 128
# and the last 382 of BERT's 510 tokens on IMDB, a quarter at the head.
DEFAULT_HEAD_TOKENS = 0.25

_split_map = s.mapping_of(s.choice(*SPLITS), s.string)
_rename = s.mapping_of(s.string, s.string)


def _metric_names() -> tuple[str, ...]:
    # Read at check time: the registry stays out of this module's imports, and late registrations count.
    from pipelines.evaluation.metrics import METRICS

    return tuple(METRICS)


def _head_tokens(value: Any, path: str, problems: list) -> int | float | None:
    """`head_tokens`: a whole number of tokens, or a fraction of the token budget."""
    if isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= 8192:
        return value
    if isinstance(value, float) and 0 < value < 1:
        return value
    problems.append(f"{path}: expected a number of tokens from 1 to 8192 (e.g. 128) or a fraction of the "
                    f"token budget between 0 and 1 (e.g. 0.25), got {s.show(value)}")
    return None


def _step(value: Any, path: str, problems: list) -> tuple[str, dict] | None:
    """One `preprocess` item: a registered step's name, or {name: {argument: value}}."""
    if isinstance(value, dict) and len(value) == 1:
        name, kwargs = next(iter(value.items()))
    else:
        name, kwargs = value, {}
    if not isinstance(name, str) or not isinstance(kwargs, dict):
        problems.append(f"{path}: expected a step name or {{name: {{argument: value}}}}, got {value!r}")
        return None
    if name not in preprocess.REGISTRY:
        hint = s.did_you_mean(name, list(preprocess.REGISTRY))
        problems.append(f"{path}: unknown preprocessing step `{name}`{hint}; known: {sorted(preprocess.REGISTRY)}")
        return None
    problem = preprocess.check_arguments(name, kwargs)
    if problem:
        problems.append(f"{path} ({name}): {problem}")
        return None
    return name, kwargs


_step.options = lambda: tuple(preprocess.REGISTRY)  # type: ignore[attr-defined]  # documents the choices


def _settings(value: Any, path: str, problems: list) -> dict[str, Any] | None:
    """Card hyperparameters: real TrainingArguments keys with values of the right type."""
    if not isinstance(value, dict):
        problems.append(f"{path}: expected a mapping of TrainingArguments keys, got {value!r}")
        return None
    hints = setting_types()
    for name, val in value.items():
        where = f"{path}.{name}"
        if name in TRAINING_ARGUMENTS_NOT_IN_CARD or name in RUN_OPTIONS_NOT_IN_CARD:
            problems.append(f"{where}: not allowed in a card; pass it on the command line")
        elif name not in hints:
            hint = s.did_you_mean(str(name), list(hints))
            problems.append(f"{where}: not a TrainingArguments key or cardtune option{hint}")
        elif not s.type_matches(val, hints[name]):
            number = _numeric_string(val)
            tip = f" (YAML reads {val} as a string: write it as {yaml_float(number)})" if number is not None else ""
            problems.append(f"{where}: expected {s.describe_type(hints[name])}, got {s.show(val)}{tip}")
    return dict(value)


def _model_defaults(value: Any, path: str, problems: list) -> dict[str, dict[str, Any]] | None:
    """`model_defaults`: a model -> settings like `defaults`, for when that model trains. The names are
    checked against the model list when a run starts (training/option_checks.py): the card layer
    does not import the models."""
    if not isinstance(value, dict):
        problems.append(f"{path}: expected a mapping of model -> settings, e.g. "
                        f"{{mpnet-base: {{learning_rate: 2.0e-5}}}}, got {s.show(value)}")
        return None
    out = {}
    for name, settings in value.items():
        checked = _settings(settings, f"{path}.{name}", problems)
        if checked is not None:
            out[str(name)] = checked
    return out


def _numeric_string(val: Any) -> float | None:
    """1e-5 written without a dot is a string to YAML; spot it to say so."""
    if not isinstance(val, str):
        return None
    try:
        return float(val)
    except ValueError:
        return None


def yaml_float(number: float) -> str:
    """`number` spelled so that YAML reads a float: a dot in the mantissa and a signed exponent
    (2e-05 is a string to YAML's float rule; 2.0e-5 is a number)."""
    text = repr(float(number))
    if "e" not in text:
        return text
    mantissa, exponent = text.split("e")
    mantissa = mantissa if "." in mantissa else f"{mantissa}.0"
    return f"{mantissa}e{int(exponent):+d}"


def _search(value: Any, path: str, problems: list) -> dict[str, Any] | None:
    """`search`: the space of `--search N`, setting -> range or choices (see `search_space`)."""
    search_space.parse(value, path, problems, setting_types())
    return dict(value) if isinstance(value, dict) else None


@functools.lru_cache(maxsize=1)
def setting_types() -> dict[str, Any]:
    """Keys a card's `defaults` may set, with their types: TrainingArguments fields and cardtune's run options."""
    from transformers import TrainingArguments  # heavy; only needed to check `defaults`

    out: dict[str, Any] = {}
    for cls, skip in ((TrainingArguments, TRAINING_ARGUMENTS_NOT_IN_CARD), (RunArgs, RUN_OPTIONS_NOT_IN_CARD)):
        hints = typing.get_type_hints(cls)
        out.update({f.name: hints.get(f.name, Any) for f in dataclasses.fields(cls) if f.init and f.name not in skip})
    return out


@dataclass(frozen=True, kw_only=True)
class HubSource:
    """`dataset.hub`: a dataset on the Hugging Face Hub."""

    path: str = key(s.string, "dataset repository id, e.g. `nyu-mll/glue`")
    name: str | None = key(s.string, "configuration name, e.g. `cola`", None)
    revision: str | None = key(s.string, "git revision to pin", None)
    splits: dict[str, str] | None = key(_split_map, "our split → Hub split name (default: the same names)", None)
    rename: dict[str, str] | None = key(_rename, "source column → card column", None)


@dataclass(frozen=True, kw_only=True)
class LocalSource:
    """`dataset.local`: files under `--data-dir`."""

    format: str = key(s.choice(*FORMATS), "file format")
    files: dict[str, str] = key(_split_map, "split → path under `--data-dir`")
    header: bool = key(s.boolean, "`false` when the files have no header row", True)
    columns: tuple[str, ...] | None = key(
        s.list_of(s.string, 1, unique=True), "column names in order (required when `header: false`)", None)
    rename: dict[str, str] | None = key(_rename, "source column → card column", None)
    encoding: str = key(s.string, "text encoding (default: UTF-8 with or without BOM)", "utf-8-sig")
    sheet: str | None = key(s.string, "xlsx sheet name (default: the first sheet)", None)


@dataclass(frozen=True, kw_only=True)
class Dataset:
    """`dataset`: where the rows come from."""

    hub: HubSource | None = key(s.section(HubSource), "a Hub dataset, used unless `--data-dir` is given", None)
    local: LocalSource | None = key(s.section(LocalSource), "local files, used with `--data-dir`", None)
    sample: str | None = key(
        s.string, "bundled sample file in `task_cards/samples/` (default: `<task>.jsonl`)", None)


@dataclass(frozen=True, kw_only=True)
class SplitPolicy:
    """`split`: how missing splits are carved out of the others."""

    validation: float = key(s.ratio, "fraction carved out when validation is missing", 0.1)
    test: float = key(s.ratio, "fraction carved out first when test is missing (0: no test split)", 0.0)
    stratify: bool = key(s.boolean, "keep the label proportions in carved splits", True)
    seed: int = key(s.integer(0, 2**32 - 1), "seed of the carving", 42)


@dataclass(frozen=True, kw_only=True)
class TaskCard:
    """A validated task card: one field per YAML key, plus the file it came from."""

    name: str = key(s.string, "task name (default: the file name)", None, name="task")
    path: Path
    description: str = key(s.string, "one line, shown by `--list-tasks`")
    dataset: Dataset = key(s.section(Dataset), "a `hub` source, a `local` source, or both")
    text_columns: tuple[str, ...] = key(
        s.list_of(s.string, 1, 2, unique=True),
        "one column, or two for a sentence pair (after `rename` and `preprocess`)")
    label_column: str = key(s.string, "the label column (after `rename` and `preprocess`)")
    labels: tuple[str, ...] = key(s.list_of(s.string, 2, unique=True), "label names; their order defines the ids")
    split: SplitPolicy = key(
        s.section(SplitPolicy), "used only when a split is missing: `test` is carved first, then `validation`",
        SplitPolicy())
    metrics: tuple[str, ...] = key(
        s.list_of(s.choice_of(_metric_names), 1, unique=True), "computed on validation and test", DEFAULT_METRICS)
    select_by: str = key(
        s.choice_of(_metric_names), "metric that picks the best checkpoint (default: the first of `metrics`)", None)
    max_length: int = key(s.integer(*TOKEN_LIMIT.whole_bounds()), "token limit per example", 128)
    truncation: str = key(
        s.choice(*TRUNCATION),
        "how a text longer than `max_length` is cut (default: `head` for one text column, `longest_first` for a "
        "pair); one text: `head` keeps the first tokens, `tail` the last, `head_tail` both ends (see `head_tokens`); "
        "a pair: `longest_first`, `only_first`, `only_second`, or `proportional` to the two lengths", None)
    head_tokens: int | float = key(
        _head_tokens,
        "with `truncation: head_tail`, what the head keeps: a number of tokens (e.g. `128`) or a fraction of the "
        "budget (`max_length` less the special tokens); the tail keeps the rest of the budget. A number larger "
        "than the budget (a smaller `--max_length`) is cut to it: all head, no tail", DEFAULT_HEAD_TOKENS)
    model: tuple[str, ...] = key(
        s.list_of(s.string, 1, unique=True),
        "the model this task trains unless `--model` names another, or models in order of preference (the first "
        "that is installed; a local folder or Hub id counts as available): offline names, folders or Hub ids "
        "(default: the model list's default for the card's `language`)", ())
    recommended_model: str | None = key(s.string, "the model the source tutorial used (shown by `--list-tasks`)", None)
    language: tuple[str, ...] = key(s.list_of(s.string, 1), "languages of the texts, for the model card", ("en",))
    license: str | None = key(s.string, "dataset license, for the model card", None)
    label_map: dict[str, str] = key(
        s.mapping_of(s.scalar, s.string),
        "raw value → label name, for values that are neither a label name nor its position (`0`, `1`, ...)", {})
    drop_labels: tuple[str, ...] = key(s.list_of(s.scalar), "raw label values whose rows are dropped (SNLI's `-1`)", ())
    preprocess: tuple[tuple[str, dict], ...] = key(
        s.list_of(_step), "registered steps, in order, by name or as `{step: {arg: value}}`", ())
    defaults: dict[str, Any] = key(
        _settings, "`TrainingArguments` keys and cardtune options for this task, values of the right type", {})
    model_defaults: dict[str, dict[str, Any]] = key(
        _model_defaults, "settings for one model, over `defaults` when that model trains (the card's choice or "
                         "`--model`): a model name → settings like `defaults`; each model gets the recipe measured "
                         "for it", {})
    search: dict[str, Any] = key(
        _search, "space of `--search N`: a setting → `{low, high, log}` (integer bounds: whole numbers) or "
                 "`{choices: [...]}`", {})

    @property
    def is_pair(self) -> bool:
        return len(self.text_columns) == 2

    @property
    def id2label(self) -> dict[int, str]:
        return dict(enumerate(self.labels))

    @property
    def sample_path(self) -> Path | None:
        """The bundled sample used when the source cannot be reached, if there is one."""
        path = SAMPLES_DIR / (self.dataset.sample or f"{self.name}.jsonl")
        return path if path.is_file() else None

    def to_dict(self) -> dict[str, Any]:
        """The resolved card as plain YAML-able data (loads back with `load_card`)."""
        out = s.to_plain(self)
        out["preprocess"] = s.to_plain([{n: dict(kw)} if kw else n for n, kw in self.preprocess])
        if not self.label_map:
            del out["label_map"]
        if not self.model:
            del out["model"]
        if not self.model_defaults:
            del out["model_defaults"]
        if self.truncation != "head_tail":
            del out["head_tokens"]  # read only by head_tail; the card check refuses it elsewhere
        return out


def markdown_table() -> str:
    """The README's key table: one row per key, nested keys dotted, from the declarations above."""
    lines = ["| key | default | meaning |", "|---|---|---|"]
    for name, f in s.doc_rows(TaskCard):
        doc = f.metadata["doc"]
        choices = s.options(f.metadata["check"])
        if choices:
            doc += "; choices: " + ", ".join(f"`{c}`" for c in choices)
        lines.append(f"| `{name}` | {_shown_default(f.metadata['default'])} | {doc} |")
    return "\n".join(lines)


def _shown_default(value: Any) -> str:
    if value is s.REQUIRED:
        return "required"
    if value is None or dataclasses.is_dataclass(value):
        return ""
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, tuple):
        return "`[" + ", ".join(map(str, value)) + "]`"
    return f"`{value}`"
