"""Task cards: YAML -> validated, frozen `TaskCard`; the registry of shipped cards.

The keys themselves are declared in `pipelines.card.keys`; this module reads files, runs the
checks that tie several keys together, and builds the card.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import yaml

from pipelines.card import keys
from pipelines.card import schema as s
from pipelines.card.keys import TaskCard
from pipelines.card.shipped import CARDS_DIR
from pipelines.errors import CardError


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


SETTINGS_KEYS = ("defaults", "model_defaults", "search")  # a card's run settings (typed by TrainingArguments)


def load_card(task: str | Path, *, saved: bool = False) -> TaskCard:
    """Load and validate a card by name or path; all problems are reported in one CardError.

    `saved`: the card a run wrote into its output folder (see `saved_card`), read as that run used it.
    """
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
    settings = {}
    if saved and isinstance(raw, dict):
        # Checked when its run started; checking again needs TrainingArguments, whose import takes torch,
        # which a prediction run by ONNX Runtime alone never loads. Read as the run wrote them.
        settings = {k: raw.pop(k) for k in SETTINGS_KEYS if isinstance(raw.get(k), dict)}
    values = s.check_keys(TaskCard, raw, "", problems)
    if values is not None:
        values.update(settings)
        if saved:
            _as_trained(values)
        _cross_checks(values, problems)
        _truncation_checks(raw, values, problems, saved)
        _set_twice(raw, values, problems)
    if problems:
        raise CardError(f"{path}: {len(problems)} problem(s): " + "; ".join(problems))
    card = TaskCard(path=path.resolve(), **values)
    # Defaults that depend on the file name or on another key.
    truncation = card.truncation or ("longest_first" if card.is_pair else "head")
    return dataclasses.replace(card, name=card.name or path.stem, select_by=card.select_by or card.metrics[0],
                               truncation=truncation)


def saved_card(model_dir: str | Path) -> TaskCard | None:
    """The task card a training run saved with its model (`task_card.yaml`), None when there is none."""
    path = Path(model_dir) / "task_card.yaml"
    return load_card(path, saved=True) if path.is_file() else None


def _as_trained(values: dict[str, Any]) -> None:
    """Cards saved before single texts had their own strategies carry the pair default `longest_first`
    (or `only_first`) on one text column: both cut that text at its end, which is `head`."""
    if len(values["text_columns"] or ()) == 1 and values["truncation"] in ("longest_first", "only_first"):
        values["truncation"] = "head"


def _cross_checks(values: dict[str, Any], problems: list[str]) -> None:
    """Rules that tie several keys together (`values` holds what the declared checks made of each key)."""
    dataset = values["dataset"]
    if dataset is None or (not dataset.hub and not dataset.local):
        problems.append("dataset: needs a `hub` source, a `local` source, or both")
    local = dataset.local if dataset else None
    if local and local.header is False and not local.columns:
        problems.append("dataset.local.columns: required when header: false (name every column in order)")
    if local and local.files == {}:
        problems.append("dataset.local.files: list at least one file (split: path)")
    labels = values["labels"] or ()
    for raw, name in (values["label_map"] or {}).items():
        if name is not None and labels and name not in labels:
            hint = s.did_you_mean(name, labels)
            problems.append(f"label_map.{raw}: '{name}' is not one of labels {list(labels)}{hint}")
    metrics, select_by = values["metrics"] or (), values["select_by"]
    if select_by and metrics and select_by not in metrics:
        problems.append(f"select_by: '{select_by}' is not one of metrics {list(metrics)}")


def _truncation_checks(raw: dict[str, Any], values: dict[str, Any], problems: list[str], saved: bool) -> None:
    """A strategy of the right kind for the number of text columns; `head_tokens` only with `head_tail`,
    and a count that leaves room for the tail (a saved card holds a run's --max_length, where the
    count was cut to the budget, as prediction cuts it again)."""
    texts, truncation = values["text_columns"], values["truncation"]
    if texts and truncation:
        if len(texts) == 1 and truncation in keys.PAIR_TRUNCATION:
            # longest_first and only_first used to cut a single text at its end
            hint = " (did you mean `head`?)" if truncation in ("longest_first", "only_first") else ""
            problems.append(f"truncation: `{truncation}` cuts sentence pairs, but text_columns has one column"
                            f"{hint}; for one text use {_listed(keys.SINGLE_TRUNCATION)}")
        elif len(texts) == 2 and truncation in keys.SINGLE_TRUNCATION:
            problems.append(f"truncation: `{truncation}` cuts a single text, but text_columns is a sentence pair; "
                            f"for pairs use {_listed(keys.PAIR_TRUNCATION)}")
    head, limit = values["head_tokens"], values["max_length"]
    if raw.get("head_tokens") is not None and truncation != "head_tail":
        used = truncation or ("longest_first" if texts and len(texts) == 2 else "head")
        problems.append(f"head_tokens: read only by `truncation: head_tail`, and this card cuts with `{used}`; "
                        "set truncation: head_tail or remove head_tokens")
    elif isinstance(head, int) and limit and head >= limit and not saved:
        problems.append(f"head_tokens: {head} leaves no room for the tail within max_length {limit}; "
                        "keep fewer tokens or give a fraction such as 0.25")


def _listed(names: tuple[str, ...]) -> str:
    return ", ".join(f"`{n}`" for n in names[:-1]) + f" or `{names[-1]}`"


def _set_twice(raw: dict[str, Any], values: dict[str, Any], problems: list[str]) -> None:
    """A card key that is also a run setting may be written at the top or in `defaults:`, not both."""
    written = [name for name in s.keys_of(TaskCard) if raw.get(name) is not None]
    for name in (values["defaults"] or {}):
        if name in written and name in keys.setting_types():
            problems.append(f"defaults.{name}: already set at the top level of the card ({name}: {raw[name]}); "
                            "keep one")
