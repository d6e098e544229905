"""A small declarative validator: card keys are dataclass fields, every problem is collected.

A key is declared once, with `key(checker, doc, default)`; its checker, help text and default
live in the field's metadata, and the validator (`section`), `to_plain` and the README's key
table all read them from there. Checkers take `(value, path, problems)` and return the cleaned
value; they append `"path: message"` to `problems` instead of raising, so a card with five
mistakes gets five lines of advice in one go.
"""

from __future__ import annotations

import dataclasses
import difflib
import enum
import types
from collections.abc import Callable, Iterator
from typing import Any, Literal, Union, get_args, get_origin

Checker = Callable[[Any, str, list], Any]
REQUIRED = object()


def key(check: Checker, doc: str, default: Any = REQUIRED, *, name: str | None = None) -> Any:
    """A card key as a dataclass field; `name` is its YAML spelling when it differs from the attribute."""
    meta = {"check": check, "doc": doc, "default": default, "key": name}
    if default is REQUIRED:
        return dataclasses.field(metadata=meta)
    if isinstance(default, dict):
        return dataclasses.field(default_factory=dict, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def keys_of(cls: type) -> dict[str, dataclasses.Field]:
    """YAML key -> field, for the fields of `cls` declared with `key()`."""
    return {f.metadata["key"] or f.name: f for f in dataclasses.fields(cls) if "check" in f.metadata}


def did_you_mean(word: str, choices: list[str] | tuple[str, ...]) -> str:
    """Return ' (did you mean `x`?)' when a close match exists, else ''."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean `{close[0]}`?)" if close else ""


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def check_keys(cls: type, value: Any, path: str, problems: list) -> dict[str, Any] | None:
    """Attribute -> cleaned value for a mapping checked against `cls`'s keys (None if not a mapping).

    Unknown keys and missing required keys are problems; an absent or null key takes its default.
    """
    if not isinstance(value, dict):
        problems.append(f"{path or 'card'}: expected a mapping of keys, got {show(value)}")
        return None
    fields = keys_of(cls)
    for name in value:
        if name not in fields:
            problems.append(f"{_join(path, str(name))}: unknown key{did_you_mean(str(name), list(fields))}")
    out: dict[str, Any] = {}
    for name, f in fields.items():
        if name in value and value[name] is not None:
            out[f.name] = f.metadata["check"](value[name], _join(path, name), problems)
        elif f.metadata["default"] is REQUIRED:
            problems.append(f"{_join(path, name)}: missing (required)")
            out[f.name] = None
        else:
            default = f.metadata["default"]
            out[f.name] = dict(default) if isinstance(default, dict) else default
    return out


def section(cls: type) -> Checker:
    """A checker for a nested mapping that builds a `cls` instance."""

    def check(value: Any, path: str, problems: list) -> Any:
        values = check_keys(cls, value, path, problems)
        return None if values is None else cls(**values)

    check.section = cls  # type: ignore[attr-defined]  # read by `doc_rows`
    return check


def to_plain(obj: Any) -> Any:
    """A declared dataclass as YAML-able data under its YAML keys; None values are left out."""
    if dataclasses.is_dataclass(obj):
        items = ((name, getattr(obj, f.name)) for name, f in keys_of(type(obj)).items())
        return {name: to_plain(v) for name, v in items if v is not None}
    if isinstance(obj, dict):
        return {k: to_plain(v) for k, v in obj.items() if v is not None}
    if isinstance(obj, (list, tuple)):
        return [to_plain(v) for v in obj]
    return obj


def doc_rows(cls: type, prefix: str = "") -> Iterator[tuple[str, dataclasses.Field]]:
    """(dotted key, field) for every key of `cls`, each section followed by its own keys."""
    for name, f in keys_of(cls).items():
        yield _join(prefix, name), f
        nested = getattr(f.metadata["check"], "section", None)
        if nested is not None:
            yield from doc_rows(nested, _join(prefix, name))


def options(check: Checker) -> tuple[str, ...]:
    """The allowed values of a `choice` checker (or of a list of them), else ()."""
    return tuple(getattr(check, "options", tuple)())


def show(value: Any) -> str:
    """How a bad value is quoted in a problem line."""
    if isinstance(value, str):
        return f"the string {value!r}"
    return f"{type(value).__name__} {value!r}"


def string(value: Any, path: str, problems: list) -> str | None:
    if isinstance(value, str) and value.strip():
        return value
    problems.append(f"{path}: expected a non-empty string, got {show(value)}")
    return None


def boolean(value: Any, path: str, problems: list) -> bool | None:
    if isinstance(value, bool):
        return value
    problems.append(f"{path}: expected true or false, got {show(value)}")
    return None


def integer(lo: int, hi: int) -> Checker:
    def check(value: Any, path: str, problems: list) -> int | None:
        if isinstance(value, int) and not isinstance(value, bool) and lo <= value <= hi:
            return value
        problems.append(f"{path}: expected an integer from {lo} to {hi}, got {show(value)}")
        return None

    return check


def ratio(value: Any, path: str, problems: list) -> float | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool) and 0 <= value < 1:
        return float(value)
    problems.append(f"{path}: expected a fraction from 0 to 1 (e.g. 0.1), got {show(value)}")
    return None


def choice(*names: str) -> Checker:
    """One of `names`."""
    return choice_of(lambda: names)


def choice_of(names: Callable[[], tuple[str, ...]]) -> Checker:
    """One of `names()`, read at check time so a registry with heavy imports can supply them."""

    def check(value: Any, path: str, problems: list) -> str | None:
        allowed = tuple(names())
        if value in allowed:
            return value
        hint = did_you_mean(str(value), allowed)
        problems.append(f"{path}: expected one of {list(allowed)}, got {show(value)}{hint}")
        return None

    check.options = names  # type: ignore[attr-defined]  # read by `options`
    return check


def scalar(value: Any, path: str, problems: list) -> str | None:
    """A raw data value (label values, dropped values), normalized to its string form."""
    if isinstance(value, (str, int, float, bool)):
        return raw_key(value)
    problems.append(f"{path}: expected a plain value, got {show(value)}")
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
            problems.append(f"{path}: expected a list of {size} items, got {show(value)}")
            return None
        out = tuple(item(v, f"{path}[{i}]", problems) for i, v in enumerate(value))
        if unique and len(set(out)) != len(out):
            dupes = sorted({v for v in out if out.count(v) > 1})
            problems.append(f"{path}: duplicate items {dupes}")
        return out

    if hasattr(item, "options"):
        check.options = item.options  # type: ignore[attr-defined]  # a list of choices documents them
    return check


def mapping_of(key: Checker, val: Checker) -> Checker:
    def check(value: Any, path: str, problems: list) -> dict | None:
        if not isinstance(value, dict):
            problems.append(f"{path}: expected a mapping, got {show(value)}")
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
