"""Registered preprocessing steps that task cards name in `preprocess:`.

Each step is a pure function over a batch (column name -> list of values) and returns a
batch; it may return fewer rows than it got (e.g. `drop_empty`). Cards refer to steps by
name, optionally with keyword arguments: `preprocess: [strip, {join: {columns: [a, b]}}]`.
"""

from __future__ import annotations

import html
import inspect
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

Batch = dict[str, list[Any]]


@dataclass(frozen=True)
class StepContext:
    """What a step may need to know about the card besides its own arguments."""

    text_columns: tuple[str, ...]
    label_column: str


Step = Callable[..., Batch]
REGISTRY: dict[str, Step] = {}


def register(name: str) -> Callable[[Step], Step]:
    """Register `fn(batch, ctx, **kwargs) -> batch` under `name` for use in cards."""

    def deco(fn: Step) -> Step:
        REGISTRY[name] = fn
        return fn

    return deco


def check_arguments(name: str, kwargs: dict[str, Any]) -> str | None:
    """Return a problem text if `kwargs` do not fit step `name`, else None."""
    params = inspect.signature(REGISTRY[name]).parameters
    accepted = [p for p in params if p not in ("batch", "ctx")]
    try:
        inspect.signature(REGISTRY[name]).bind({}, None, **kwargs)
    except TypeError:
        unknown = sorted(set(kwargs) - set(accepted))
        if unknown:
            return f"unknown argument(s) {unknown}; `{name}` takes {accepted}"
        missing = [
            p for p in accepted if params[p].default is inspect.Parameter.empty and p not in kwargs
        ]
        return f"missing argument(s) {missing}; `{name}` takes {accepted}"
    return None


def apply(batch: Batch, ctx: StepContext, steps: tuple[tuple[str, dict[str, Any]], ...]) -> Batch:
    """Run the card's steps in order over one batch."""
    for name, kwargs in steps:
        batch = REGISTRY[name](batch, ctx, **kwargs)
    return batch


def _is_blank(value: Any) -> bool:
    # NaN is the only value not equal to itself; pandas gives it for empty cells.
    return value is None or value != value or (isinstance(value, str) and not value.strip())


def _text_or_given(ctx: StepContext, columns: list[str] | None) -> list[str]:
    return list(columns) if columns else list(ctx.text_columns)


def _map_strings(batch: Batch, columns: list[str], fn: Callable[[str], str]) -> Batch:
    out = dict(batch)
    for col in columns:
        if col in batch:
            out[col] = [fn(v) if isinstance(v, str) else v for v in batch[col]]
    return out


@register("strip")
def strip(batch: Batch, ctx: StepContext, columns: list[str] | None = None) -> Batch:
    """Strip surrounding whitespace (default: the text columns)."""
    return _map_strings(batch, _text_or_given(ctx, columns), str.strip)


@register("lowercase")
def lowercase(batch: Batch, ctx: StepContext, columns: list[str] | None = None) -> Batch:
    """Lower-case text (for cased data fed to an uncased model's statistics, or vice versa)."""
    return _map_strings(batch, _text_or_given(ctx, columns), str.lower)


_SPACES = re.compile(r"\s+")


@register("normalize_whitespace")
def normalize_whitespace(batch: Batch, ctx: StepContext, columns: list[str] | None = None) -> Batch:
    """Collapse runs of whitespace to one space and strip the ends."""
    return _map_strings(batch, _text_or_given(ctx, columns), lambda s: _SPACES.sub(" ", s).strip())


_TAGS = re.compile(r"<[^>]+>")


@register("strip_html")
def strip_html(batch: Batch, ctx: StepContext, columns: list[str] | None = None) -> Batch:
    """Replace HTML tags (IMDB's `<br />`) by a space and unescape entities."""
    return _map_strings(
        batch, _text_or_given(ctx, columns), lambda s: html.unescape(_TAGS.sub(" ", s)).strip()
    )


@register("join")
def join(batch: Batch, ctx: StepContext, columns: list[str], into: str, sep: str = " ") -> Batch:
    """Join several text columns into one (`into`); blank parts are skipped."""
    out = dict(batch)
    rows = zip(*(batch[c] for c in columns))
    out[into] = [sep.join(str(v).strip() for v in row if not _is_blank(v)) for row in rows]
    return out


@register("drop_empty")
def drop_empty(batch: Batch, ctx: StepContext, columns: list[str] | None = None) -> Batch:
    """Drop rows whose text (default: the text columns) is empty, blank or missing."""
    cols = [c for c in _text_or_given(ctx, columns) if c in batch]
    n = len(next(iter(batch.values()), []))
    keep = [i for i in range(n) if not any(_is_blank(batch[c][i]) for c in cols)]
    return {k: [v[i] for i in keep] for k, v in batch.items()}
