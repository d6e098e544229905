"""A small declarative validator for task cards: every problem is collected, none raised early.

A schema is a dict `key -> Field`. Checkers take `(value, path, problems)` and return the
cleaned value; they append `"path: message"` to `problems` instead of raising, so a card with
five mistakes gets five lines of advice in one go.
"""

from __future__ import annotations

import difflib
import enum
import types
from dataclasses import dataclass
from typing import Any, Callable, Literal, Union, get_args, get_origin

Checker = Callable[[Any, str, list], Any]
REQUIRED = object()


@dataclass(frozen=True)
class Field:
    check: Checker
    default: Any = None  # REQUIRED for mandatory keys
    doc: str = ""


def did_you_mean(word: str, choices: list[str] | tuple[str, ...]) -> str:
    """Return ' (did you mean `x`?)' when a close match exists, else ''."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean `{close[0]}`?)" if close else ""


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def section(schema: dict[str, Field]) -> Checker:
    """Check a mapping against `schema`; unknown keys and missing required keys are problems."""

    def check(value: Any, path: str, problems: list) -> dict[str, Any] | None:
        if not isinstance(value, dict):
            problems.append(f"{path or 'card'}: expected a mapping of keys, got {_show(value)}")
            return None
        out: dict[str, Any] = {}
        for key in value:
            if key not in schema:
                hint = did_you_mean(str(key), list(schema))
                problems.append(f"{_join(path, str(key))}: unknown key{hint}")
        for key, field in schema.items():
            if key in value and value[key] is not None:
                out[key] = field.check(value[key], _join(path, key), problems)
            elif field.default is REQUIRED:
                problems.append(f"{_join(path, key)}: missing (required)")
            else:
                out[key] = field.default
        return out

    return check


def _show(value: Any) -> str:
    if isinstance(value, str):
        return f"the string {value!r}"
    return f"{type(value).__name__} {value!r}"


def string(value: Any, path: str, problems: list) -> str | None:
    if isinstance(value, str) and value.strip():
        return value
    problems.append(f"{path}: expected a non-empty string, got {_show(value)}")
    return None


def boolean(value: Any, path: str, problems: list) -> bool | None:
    if isinstance(value, bool):
        return value
    problems.append(f"{path}: expected true or false, got {_show(value)}")
    return None


def integer(lo: int, hi: int) -> Checker:
    def check(value: Any, path: str, problems: list) -> int | None:
        if isinstance(value, int) and not isinstance(value, bool) and lo <= value <= hi:
            return value
        problems.append(f"{path}: expected an integer from {lo} to {hi}, got {_show(value)}")
        return None

    return check


def ratio(value: Any, path: str, problems: list) -> float | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool) and 0 <= value < 1:
        return float(value)
    problems.append(f"{path}: expected a fraction from 0 to 1 (e.g. 0.1), got {_show(value)}")
    return None


def choice(*options: str) -> Checker:
    def check(value: Any, path: str, problems: list) -> str | None:
        if value in options:
            return value
        hint = did_you_mean(str(value), options)
        problems.append(f"{path}: expected one of {list(options)}, got {_show(value)}{hint}")
        return None

    return check


def scalar(value: Any, path: str, problems: list) -> str | None:
    """A raw data value (label values, dropped values), normalized to its string form."""
    if isinstance(value, (str, int, float, bool)):
        return raw_key(value)
    problems.append(f"{path}: expected a plain value, got {_show(value)}")
    return None


def raw_key(value: Any) -> str:
    """The string form raw label values are compared by (1.0 from a float column == 1)."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def list_of(item: Checker, min_len: int = 0, max_len: int = 10_000, unique: bool = False) -> Checker:
    def check(value: Any, path: str, problems: list) -> tuple | None:
        if isinstance(value, (str, int, float)):
            value = [value]  # a single item may be written without brackets
        if not isinstance(value, list) or not min_len <= len(value) <= max_len:
            size = f"{min_len} to {max_len}" if max_len < 10_000 else f"at least {min_len}"
            problems.append(f"{path}: expected a list of {size} items, got {_show(value)}")
            return None
        out = tuple(item(v, f"{path}[{i}]", problems) for i, v in enumerate(value))
        if unique and len(set(out)) != len(out):
            dupes = sorted({v for v in out if out.count(v) > 1})
            problems.append(f"{path}: duplicate items {dupes}")
        return out

    return check


def mapping_of(key: Checker, val: Checker) -> Checker:
    def check(value: Any, path: str, problems: list) -> dict | None:
        if not isinstance(value, dict):
            problems.append(f"{path}: expected a mapping, got {_show(value)}")
            return None
        return {key(k, path, problems): val(v, _join(path, str(k)), problems) for k, v in value.items()}

    return check


def type_matches(value: Any, tp: Any) -> bool:
    """Loose isinstance for dataclass annotations (unions, enums, generics)."""
    origin = get_origin(tp)
    if tp is Any:
        return True
    if origin is Literal:
        return value in get_args(tp)
    if origin in (Union, types.UnionType):
        return any(type_matches(value, a) for a in get_args(tp))
    if tp is type(None):
        return value is None
    if tp is bool:
        return isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if tp is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if tp is str:
        return isinstance(value, str)
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return value in {m.value for m in tp}
    if origin in (list, tuple) or tp in (list, tuple):
        return isinstance(value, list)
    if origin is dict or tp is dict:
        return isinstance(value, dict)
    return True  # anything fancier is left to TrainingArguments itself


def describe_type(tp: Any) -> str:
    """'a number', 'an integer', ... for error messages."""
    if get_origin(tp) is Literal:
        return f"one of {list(get_args(tp))}"
    args = [a for a in get_args(tp) if a is not type(None)] if get_origin(tp) else [tp]
    names = {float: "a number", int: "an integer", bool: "true or false", str: "a string"}
    for a in args:
        if a in names:
            return names[a]
        if isinstance(a, type) and issubclass(a, enum.Enum):
            return f"one of {[m.value for m in a]}"
    return f"a value of type {tp}"
