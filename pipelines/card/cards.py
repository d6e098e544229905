"""Task cards: YAML -> validated, frozen `TaskCard`; the registry of shipped cards."""

from __future__ import annotations

import dataclasses
import functools
import typing
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from pipelines.card import preprocess
from pipelines.card import schema as s
from pipelines.errors import CardError
from task_cards import CARDS_DIR, SAMPLES_DIR

SPLITS = ("train", "validation", "test")
FORMATS = ("csv", "tsv", "json", "jsonl", "xlsx", "parquet")
METRICS = ("accuracy", "mcc", "f1")
TRUNCATION = ("longest_first", "only_first", "only_second", "proportional")
# TrainingArguments keys a card may not set: they belong to the command line or the user.
NOT_IN_CARD = {"output_dir", "hub_token", "push_to_hub", "hub_model_id", "local_rank", "resume_from_checkpoint"}

_split_map = s.mapping_of(s.choice(*SPLITS), s.string)
_rename = s.mapping_of(s.string, s.string)

HUB = {
    "path": s.Field(s.string, s.REQUIRED, "dataset repository id, e.g. nyu-mll/glue"),
    "name": s.Field(s.string, None, "configuration name, e.g. cola"),
    "revision": s.Field(s.string, None, "git revision to pin"),
    "splits": s.Field(_split_map, None, "our split -> Hub split name (default: same names)"),
    "rename": s.Field(_rename, None, "source column -> card column"),
}
LOCAL = {
    "format": s.Field(s.choice(*FORMATS), s.REQUIRED),
    "files": s.Field(_split_map, s.REQUIRED, "split -> path relative to --data-dir"),
    "header": s.Field(s.boolean, True, "false when the file has no header row"),
    "columns": s.Field(s.list_of(s.string, 1, unique=True), None, "column names when header: false"),
    "rename": s.Field(_rename, None, "source column -> card column"),
    "encoding": s.Field(s.string, "utf-8-sig", "text encoding (utf-8 with or without BOM by default)"),
    "sheet": s.Field(s.string, None, "xlsx sheet name (default: the first sheet)"),
}
DATASET = {
    "hub": s.Field(s.section(HUB), None),
    "local": s.Field(s.section(LOCAL), None),
    "sample": s.Field(s.string, None, "bundled sample file in task_cards/samples/"),
}
SPLIT = {
    "validation": s.Field(s.ratio, 0.1, "fraction carved out when validation is missing"),
    "test": s.Field(s.ratio, 0.0, "fraction carved out first when test is missing"),
    "stratify": s.Field(s.boolean, True),
    "seed": s.Field(s.integer(0, 2**32 - 1), 42),
}


def _preprocess_step(value: Any, path: str, problems: list) -> tuple[str, dict] | None:
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


def _defaults(value: Any, path: str, problems: list) -> dict[str, Any] | None:
    """Card hyperparameters: real TrainingArguments keys with values of the right type."""
    if not isinstance(value, dict):
        problems.append(f"{path}: expected a mapping of TrainingArguments keys, got {value!r}")
        return None
    hints = _training_argument_types()
    for key, val in value.items():
        where = f"{path}.{key}"
        if key in NOT_IN_CARD or key in _run_only():
            problems.append(f"{where}: not allowed in a card; pass it on the command line")
        elif key not in hints:
            hint = s.did_you_mean(str(key), list(hints))
            problems.append(f"{where}: not a TrainingArguments key or cardtune option{hint}")
        elif not s.type_matches(val, hints[key]):
            number = _numeric_string(val)
            tip = f" (YAML reads {val} as a string: write it as {yaml_float(number)})" if number is not None else ""
            problems.append(f"{where}: expected {s.describe_type(hints[key])}, got {s._show(val)}{tip}")
    return dict(value)


def _run_only() -> frozenset[str]:
    from pipelines.card.options import NOT_IN_CARD as RUN_ONLY

    return RUN_ONLY


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


@functools.lru_cache(maxsize=1)
def _training_argument_types() -> dict[str, Any]:
    """Keys a card's `defaults` may set: TrainingArguments fields and cardtune's run options."""
    from transformers import TrainingArguments  # heavy; only needed to check `defaults`

    from pipelines.card.options import NOT_IN_CARD as RUN_ONLY
    from pipelines.card.options import RunArgs

    out: dict[str, Any] = {}
    for cls, skip in ((TrainingArguments, NOT_IN_CARD), (RunArgs, RUN_ONLY)):
        hints = typing.get_type_hints(cls)
        out.update({f.name: hints.get(f.name, Any) for f in dataclasses.fields(cls) if f.init and f.name not in skip})
    return out


CARD = {
    "task": s.Field(s.string, None, "task name (default: the file name)"),
    "description": s.Field(s.string, s.REQUIRED, "one line shown by --list-tasks"),
    "recommended_model": s.Field(s.string, None, "the model the source tutorial used"),
    "language": s.Field(s.list_of(s.string, 1), ("en",)),
    "license": s.Field(s.string, None, "dataset license, for model cards"),
    "dataset": s.Field(s.section(DATASET), s.REQUIRED),
    "text_columns": s.Field(s.list_of(s.string, 1, 2, unique=True), s.REQUIRED),
    "label_column": s.Field(s.string, s.REQUIRED),
    "labels": s.Field(s.list_of(s.string, 2, unique=True), s.REQUIRED, "order defines ids"),
    "label_map": s.Field(s.mapping_of(s.scalar, s.string), None, "raw value -> label name"),
    "drop_labels": s.Field(s.list_of(s.scalar), (), "raw label values whose rows are dropped"),
    "preprocess": s.Field(s.list_of(_preprocess_step), ()),
    "split": s.Field(s.section(SPLIT), None),
    "metrics": s.Field(s.list_of(s.choice(*METRICS), 1, unique=True), METRICS),
    "select_by": s.Field(s.choice(*METRICS), None, "metric that picks the best checkpoint"),
    "max_length": s.Field(s.integer(8, 8192), 128),
    "truncation": s.Field(s.choice(*TRUNCATION), "longest_first", "how sentence pairs are cut"),
    "defaults": s.Field(_defaults, None, "TrainingArguments / cardtune option defaults for this task"),
}


@dataclass(frozen=True)
class TaskCard:
    """A validated task card. Fields mirror the YAML keys (see `CARD`)."""

    name: str
    path: Path
    description: str
    dataset: dict[str, Any]
    text_columns: tuple[str, ...]
    label_column: str
    labels: tuple[str, ...]
    split: dict[str, Any]
    metrics: tuple[str, ...]
    select_by: str
    max_length: int
    truncation: str
    recommended_model: str | None = None
    language: tuple[str, ...] = ("en",)
    license: str | None = None
    label_map: dict[str, str] = field(default_factory=dict)
    drop_labels: tuple[str, ...] = ()
    preprocess: tuple[tuple[str, dict], ...] = ()
    defaults: dict[str, Any] = field(default_factory=dict)

    @property
    def is_pair(self) -> bool:
        return len(self.text_columns) == 2

    @property
    def id2label(self) -> dict[int, str]:
        return dict(enumerate(self.labels))

    @property
    def sample_path(self) -> Path | None:
        """The bundled sample used when the source cannot be reached, if there is one."""
        name = self.dataset.get("sample") or f"{self.name}.jsonl"
        path = SAMPLES_DIR / name
        return path if path.is_file() else None

    def to_dict(self) -> dict[str, Any]:
        """The resolved card as plain YAML-able data (loads back with `load_card`)."""
        out = asdict(self)
        out.pop("path")
        out = {"task": out.pop("name"), **out}
        out["preprocess"] = [{n: dict(kw)} if kw else n for n, kw in self.preprocess]
        out["label_map"] = dict(self.label_map) or None
        return _plain(out)


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items() if v is not None}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def shipped_cards() -> dict[str, Path]:
    """Name -> path of every card shipped in `task_cards/`."""
    return {p.stem: p for p in sorted(CARDS_DIR.glob("*.yaml"))}


def resolve_card_path(task: str) -> Path:
    """`--task` takes a shipped card's name or the path of a card file."""
    path = Path(task).expanduser()
    if path.suffix in (".yaml", ".yml") or path.is_file():
        if not path.is_file():
            raise CardError(f"card file {path} not found; pass an existing .yaml file or a shipped task name")
        return path
    shipped = shipped_cards()
    if task in shipped:
        return shipped[task]
    hint = s.did_you_mean(task, list(shipped))
    raise CardError(
        f"unknown task '{task}'{hint}; shipped tasks: {', '.join(shipped)} (or pass the path of a card .yaml file)"
    )


def load_card(task: str | Path) -> TaskCard:
    """Load and validate a card by name or path; all problems are reported in one CardError."""
    path = resolve_card_path(str(task))
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as err:
        raise CardError(f"{path}: cannot read the card ({err}); save it as UTF-8 text") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise CardError(f"{path}:{where}: not valid YAML ({getattr(err, 'problem', err)})") from None
    problems: list[str] = []
    data = s.section(CARD)(raw, "", problems)
    if data is not None:
        _cross_checks(data, problems)
    if problems:
        raise CardError(f"{path}: {len(problems)} problem(s): " + "; ".join(problems))
    return _build(path, data)


def _cross_checks(data: dict[str, Any], problems: list[str]) -> None:
    """Rules that tie several keys together."""
    dataset = data.get("dataset") or {}
    if not dataset.get("hub") and not dataset.get("local"):
        problems.append("dataset: needs a `hub` source, a `local` source, or both")
    local = dataset.get("local") or {}
    if local and local.get("header") is False and not local.get("columns"):
        problems.append("dataset.local.columns: required when header: false (name every column in order)")
    if local and local.get("files") == {}:
        problems.append("dataset.local.files: list at least one file (split: path)")
    labels = data.get("labels") or ()
    for raw, name in (data.get("label_map") or {}).items():
        if name is not None and labels and name not in labels:
            problems.append(f"label_map.{raw}: '{name}' is not one of labels {list(labels)}{s.did_you_mean(name, labels)}")
    metrics = data.get("metrics") or ()
    if data.get("select_by") and metrics and data["select_by"] not in metrics:
        problems.append(f"select_by: '{data['select_by']}' is not one of metrics {list(metrics)}")
    texts = data.get("text_columns") or ()
    if data.get("truncation") in ("only_second", "proportional") and len(texts) != 2:
        problems.append(f"truncation: {data['truncation']} needs two text_columns (a sentence pair)")


def _build(path: Path, data: dict[str, Any]) -> TaskCard:
    split = s.section(SPLIT)(data.get("split") or {}, "split", [])
    return TaskCard(
        name=data["task"] or path.stem,
        path=path.resolve(),
        description=data["description"],
        dataset=data["dataset"],
        text_columns=tuple(data["text_columns"]),
        label_column=data["label_column"],
        labels=tuple(data["labels"]),
        split=split,
        metrics=tuple(data["metrics"]),
        select_by=data["select_by"] or data["metrics"][0],
        max_length=data["max_length"],
        truncation=data["truncation"],
        recommended_model=data["recommended_model"],
        language=tuple(data["language"]),
        license=data["license"],
        label_map=dict(data["label_map"] or {}),
        drop_labels=tuple(data["drop_labels"]),
        preprocess=tuple(data["preprocess"]),
        defaults=dict(data["defaults"] or {}),
    )
