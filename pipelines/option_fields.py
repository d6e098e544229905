"""Options declared once, as dataclass fields that carry their facts: help text, accepted range,
whether a card's `defaults:` may set them, whether they change a run's result, shorthand flags.

The value checks (`training/option_checks.py`), the card validator (`card/keys.py`), the resume
fingerprint (`training/checkpoints.py`) and the command lines (`cli/_parser.py`: `--help`, choices,
shorthand flags) all read these facts; none of them keeps its own list. Free of heavy imports, so
cards can be checked against it cheaply.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

FACTS = "cardtune"  # the metadata key of an option's facts (HfArgumentParser reads the rest as add_argument kwargs)


@dataclass(frozen=True)
class Range:
    """The values an option accepts: bounds (None: none) and whether each bound is included."""

    low: float | None = None
    high: float | None = None
    low_in: bool = True
    high_in: bool = True
    expects: str | None = None  # the wording of a problem when "a number of at least ..." says it badly

    def problem(self, value: Any) -> str | None:
        """'expected a whole number of at least 1' when `value` is outside, else None."""
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
            return f"expected {self.expects}" if self.expects else "expected a finite number"
        too_low = self.low is not None and (value < self.low or (value == self.low and not self.low_in))
        too_high = self.high is not None and (value > self.high or (value == self.high and not self.high_in))
        if not (too_low or too_high):
            return None
        return f"expected {self.describe(isinstance(value, int))}"

    def describe(self, whole: bool) -> str:
        """'a whole number of at least 8 and at most 8192' (or the `expects` wording)."""
        if self.expects:
            return self.expects
        return f"{'a whole number' if whole else 'a number'} of {self.bounds_text()}"

    def bounds_text(self) -> str:
        parts = []
        if self.low is not None:
            parts.append(f"{'at least' if self.low_in else 'above'} {_show(self.low)}")
        if self.high is not None:
            parts.append(f"{'at most' if self.high_in else 'below'} {_show(self.high)}")
        return " and ".join(parts)

    def whole_bounds(self) -> tuple[int, int]:
        """(lowest, highest) whole number inside, for a closed integer range such as a card key's."""
        if self.low is None or self.high is None:
            raise ValueError("an open range has no whole-number bounds")
        return math.ceil(self.low) + (0 if self.low_in else 1), math.floor(self.high) - (0 if self.high_in else 1)


@dataclass(frozen=True)
class Facts:
    """What cardtune knows about one option besides its type and default."""

    range: Range | None = None
    card: bool = True  # a card's `defaults:` may set it (False: it says where a run reads/writes, or it is per run)
    result: bool = True  # it can change the trained model or its scores (False: left out of the resume fingerprint)
    cli: bool = True  # a command-line flag (False: set by the library's callers only)
    flags: dict[str, tuple[Any, str]] = field(default_factory=dict)  # shorthand flag -> (value it sets, help)
    parse: Callable[[str], Any] | None = None  # how the command line reads the value, when its type says too little


def option(default: Any, help_text: str, **facts: Any) -> Any:
    """A dataclass field for an option: its default, its `--help` text and its `Facts`."""
    # argparse %-formats help strings: a bare "80%" would crash --help.
    metadata = {"help": help_text.replace("%", "%%"), FACTS: Facts(**facts)}
    if isinstance(default, (dict, list)):
        return field(default_factory=lambda: type(default)(default), metadata=metadata)
    return field(default=default, metadata=metadata)


def facts_of(f: dataclasses.Field) -> Facts:
    """The facts of a field declared with `option` (a plain field: the defaults)."""
    return f.metadata.get(FACTS) or Facts()


def declared(cls: type) -> dict[str, Facts]:
    """Name -> facts of every option field of the dataclass `cls`."""
    return {f.name: facts_of(f) for f in dataclasses.fields(cls) if f.init}


def encoding_name(text: str) -> str:
    """A `parse` (and argparse `type`) for a text encoding Python knows."""
    import argparse
    import codecs

    try:
        codecs.lookup(text)
    except LookupError:
        raise argparse.ArgumentTypeError(f"unknown encoding {text!r} (e.g. utf-8, cp949, latin-1)") from None
    return text


def _show(bound: float) -> str:
    return str(int(bound)) if float(bound).is_integer() else str(bound)
