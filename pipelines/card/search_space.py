"""The hyperparameter search space: a card's `search:` key, which `--search_space` can extend or
override. One entry per setting (any key a card's `defaults:` may set):

    search:
      learning_rate: {low: 1.0e-5, high: 2.0e-4, log: true}   # a float range (log-uniform)
      num_train_epochs: {low: 3, high: 10}                     # integer bounds: whole numbers
      per_device_train_batch_size: {choices: [16, 32]}         # a list of values

Checked like every other card key (all problems at once); turned into Optuna suggestions at run
time. Kept free of heavy imports: card validation reads it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import yaml

from pipelines.card import schema as s
from pipelines.errors import CardError

RANGE_KEYS = ("low", "high", "log", "step")


@dataclass(frozen=True)
class Param:
    """One searched setting: a range (`low`..`high`, optionally log-scaled or stepped) or `choices`."""

    name: str
    low: int | float | None = None
    high: int | float | None = None
    log: bool = False
    step: int | float | None = None
    choices: tuple[Any, ...] | None = None

    @property
    def is_int(self) -> bool:
        """Integer bounds search whole numbers (write `0.0` for a continuous range)."""
        return self.choices is None and all(_is_int(v) for v in (self.low, self.high))

    def suggest(self, trial: Any) -> Any:
        """This parameter's value in an Optuna trial (or FixedTrial)."""
        if self.choices is not None:
            return trial.suggest_categorical(self.name, list(self.choices))
        if self.is_int:
            return trial.suggest_int(self.name, self.low, self.high, step=self.step or 1, log=self.log)
        return trial.suggest_float(self.name, self.low, self.high, step=self.step, log=self.log)

    def describe(self) -> str:
        if self.choices is not None:
            return f"{self.name} in {list(self.choices)}"
        scale = " (log)" if self.log else f" (step {self.step})" if self.step else ""
        return f"{self.name} {self.low:g}..{self.high:g}{scale}"


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def parse(value: Any, path: str, problems: list[str], types: dict[str, Any]) -> dict[str, Param]:
    """Setting name -> Param for a `search:` mapping; problems are appended, bad entries left out.
    `types`: the settings a card may set, with their types (`keys.setting_types()`)."""
    if not isinstance(value, dict):
        problems.append(f"{path}: expected a mapping of settings to {{low, high}} or {{choices}}, got {s.show(value)}")
        return {}
    out = {}
    for name, spec in value.items():
        where = f"{path}.{name}"
        if name not in types:
            problems.append(f"{where}: not a setting a card may set{s.did_you_mean(str(name), list(types))}")
            continue
        param = _param(str(name), spec, where, problems, types[name])
        if param is not None:
            out[str(name)] = param
    return out


def _param(name: str, spec: Any, where: str, problems: list[str], tp: Any) -> Param | None:
    if not isinstance(spec, dict) or not ({"low", "high"} <= set(spec) or "choices" in spec):
        problems.append(f"{where}: expected {{low: A, high: B}} (optionally log: true, step: S) "
                        f"or {{choices: [...]}}, got {s.show(spec)}")
        return None
    allowed = ("choices",) if "choices" in spec else RANGE_KEYS
    unknown = [k for k in spec if k not in allowed]
    if unknown:
        problems.append(f"{where}: unknown key(s) {unknown}; a {'list' if 'choices' in spec else 'range'} "
                        f"takes {list(allowed)}")
        return None
    if "choices" in spec:
        choices = spec["choices"]
        if not isinstance(choices, list) or not choices or not all(s.type_matches(c, tp) for c in choices):
            problems.append(f"{where}.choices: expected a non-empty list of {s.describe_type(tp)}, "
                            f"got {s.show(choices)}")
            return None
        return Param(name, choices=tuple(choices))
    return _range(name, spec, where, problems, tp)


def _range(name: str, spec: dict, where: str, problems: list[str], tp: Any) -> Param | None:
    low, high, log, step = spec["low"], spec["high"], spec.get("log", False), spec.get("step")
    before = len(problems)
    if not (_is_number(low) and _is_number(high) and low < high):
        problems.append(f"{where}: expected numbers with low < high, got low {s.show(low)}, high {s.show(high)}")
    elif not (s.type_matches(low, tp) and s.type_matches(high, tp)):
        problems.append(f"{where}: expected {s.describe_type(tp)} bounds, got {low!r} and {high!r}")
    if not isinstance(log, bool):
        problems.append(f"{where}.log: expected true or false, got {s.show(log)}")
    elif log and _is_number(low) and low <= 0:
        problems.append(f"{where}: log: true needs low > 0, got {low!r}")
    if step is not None and (not _is_number(step) or step <= 0 or log):
        problems.append(f"{where}.step: expected a positive number, and no step with log: true")
    return Param(name, low, high, bool(log), step) if len(problems) == before else None


def read_text(text: str) -> Any:
    """`--search_space` as JSON (1e-5 reads as a number there) or, failing that, YAML."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        try:
            return yaml.safe_load(text)
        except yaml.YAMLError as err:
            raise CardError(f"--search_space: neither JSON nor YAML ({err.__class__.__name__})") from None


def resolve(card_space: dict[str, Any], override: str | None, types: dict[str, Any]) -> dict[str, Param]:
    """The card's `search:` with `--search_space` applied on top (a setting mapped to null is dropped)."""
    merged = dict(card_space)
    if override:
        extra = read_text(override)
        if not isinstance(extra, dict):
            raise CardError("--search_space: expected a mapping like '{\"learning_rate\": {\"low\": 1e-5, "
                            f"\"high\": 2e-4, \"log\": true}}}}', got {override!r}")
        merged.update(extra)
    merged = {k: v for k, v in merged.items() if v is not None}
    if not merged:
        raise CardError("--search needs a search space: add `search:` to the card (e.g. `learning_rate: "
                        "{low: 1.0e-5, high: 2.0e-4, log: true}`) or pass --search_space")
    problems: list[str] = []
    space = parse(merged, "search", problems, types)
    if problems:
        raise CardError(f"{len(problems)} problem(s) in the search space: " + "; ".join(problems))
    return space
