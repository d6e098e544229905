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
    values = s.check_keys(TaskCard, raw, "", problems)
    if values is not None:
        _cross_checks(values, problems)
        _set_twice(raw, values, problems)
    if problems:
        raise CardError(f"{path}: {len(problems)} problem(s): " + "; ".join(problems))
    card = TaskCard(path=path.resolve(), **values)
    # Defaults that depend on the file name or on another key.
    return dataclasses.replace(card, name=card.name or path.stem, select_by=card.select_by or card.metrics[0])


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
    texts = values["text_columns"] or ()
    if values["truncation"] in ("only_second", "proportional") and len(texts) != 2:
        problems.append(f"truncation: {values['truncation']} needs two text_columns (a sentence pair)")


def _set_twice(raw: dict[str, Any], values: dict[str, Any], problems: list[str]) -> None:
    """A card key that is also a run setting may be written at the top or in `defaults:`, not both."""
    written = [name for name in s.keys_of(TaskCard) if raw.get(name) is not None]
    for name in (values["defaults"] or {}):
        if name in written and name in keys.setting_types():
            problems.append(f"defaults.{name}: already set at the top level of the card ({name}: {raw[name]}); "
                            "keep one")
