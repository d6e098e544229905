"""The command lines generated from options dataclasses: HfArgumentParser, reading cardtune's option
facts (`pipelines.option_fields`) for what a type alone cannot say.

Each field becomes `--snake_case` and `--kebab-case`; its `--help` ends with the accepted range;
shorthand flags (`--int8` for `--precision int8`) are added beside it, mutually exclusive; with
`check_ranges`, a value outside its range is refused by the parser as one line (predict.py, whose
options have no card to come from). Imports transformers: load it after the offline switches.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import types
from collections.abc import Callable, Iterable
from typing import Any

from transformers import HfArgumentParser

from pipelines.option_fields import FACTS, Facts, Range, facts_of


class OptionParser(HfArgumentParser):
    """HfArgumentParser over `dataclass_types`, with the facts of their fields (or of `facts`, for a
    library's dataclass that cannot carry them) in `--help` and, with `check_ranges`, in the parsing."""

    def __init__(self, dataclass_types: Iterable[type], *, facts: dict[str, Facts] | None = None,
                 check_ranges: bool = False, kebab_first: bool = False, **kwargs: Any) -> None:
        # HfArgumentParser adds the fields inside __init__: what they read is set first
        self._extra_facts = dict(facts or {})
        self._check_ranges = check_ranges
        self._kebab_first = kebab_first
        super().__init__(dataclass_types, **kwargs)

    def _parse_dataclass_field(self, parser: argparse.ArgumentParser, field: dataclasses.Field) -> None:
        facts = field.metadata.get(FACTS) or self._extra_facts.get(field.name) or facts_of(field)
        if not facts.cli:
            return
        field = copy.copy(field)  # the class's own Field stays as declared
        metadata = {k: v for k, v in field.metadata.items() if k != FACTS}
        if facts.range and "help" in metadata:
            metadata["help"] = f"{metadata['help'].rstrip()} Accepted: {_accepted(facts.range, field)}."
        field.metadata = types.MappingProxyType(metadata)
        known = len(parser._actions)
        HfArgumentParser._parse_dataclass_field(parser, field)
        if self._kebab_first:  # the spelling errors and --help show first (--no-probs: its complement too)
            for added in parser._actions[known:]:
                added.option_strings.sort(key=lambda flag: "_" in flag)
        action = next(a for a in reversed(parser._actions) if f"--{field.name}" in a.option_strings)
        if facts.parse is not None:
            action.type = facts.parse
        if self._check_ranges and facts.range is not None and callable(action.type):
            action.type = _ranged(action.type, facts.range)
        if facts.flags:
            group = parser.add_mutually_exclusive_group()
            for flag, (value, help_text) in facts.flags.items():
                group.add_argument(flag, dest=field.name, action="store_const", const=value,
                                   default=argparse.SUPPRESS, help=help_text)


def _accepted(accepted: Range, field: dataclasses.Field) -> str:
    whole = field.type in (int, int | None, "int", "int | None")
    return accepted.describe(whole)


def _ranged(convert: Callable[[str], Any], accepted: Range) -> Callable[[str], Any]:
    """An argparse `type` that also refuses values outside `accepted`, saying what is accepted."""

    def parse(text: str) -> Any:
        try:
            value = convert(text)
        except (TypeError, ValueError):
            raise argparse.ArgumentTypeError(
                f"expected {accepted.describe(convert is int)}, got {text!r}") from None
        problem = accepted.problem(value)
        if problem:
            raise argparse.ArgumentTypeError(f"{problem}, got {text if accepted.expects is None else repr(text)}")
        return value

    return parse
