"""Command-line parsing shared by the scripts: one `error:` line for a bad value (not the usage
text), negative numbers taken as values, and the `--resume` command to print after Ctrl-C."""

from __future__ import annotations

import argparse
import re
import shlex
import sys
from collections.abc import Callable
from typing import NoReturn

from pipelines.cli._common import redact
from pipelines.option_fields import encoding_name  # noqa: F401 - the scripts' --encoding type

# argparse's own phrasing -> what a user can act on
_ARGUMENT = r"argument (\S+?)(?:/\S+)?: "
_REWORDED = (
    (re.compile(_ARGUMENT + r"invalid float value: (.+)"), r"\1 \2: expected a number"),
    (re.compile(_ARGUMENT + r"invalid int value: (.+)"), r"\1 \2: expected a whole number"),
    (re.compile(_ARGUMENT + r"expected one argument"), r"\1 needs a value"),
    (re.compile(_ARGUMENT + r"(.+)"), r"\1: \2"),
)


def one_line_errors(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Make `parser` report a bad command line as one `error:` line and exit 2 (no usage dump)."""

    def error(message: str) -> NoReturn:
        print(f"error: {redact(_reword(message))} (see --help)", file=sys.stderr)
        raise SystemExit(2)

    parser.error = error  # type: ignore[method-assign]
    return parser


def _reword(message: str) -> str:
    for pattern, replacement in _REWORDED:
        if pattern.fullmatch(message):
            return pattern.sub(replacement, message)
    return message


def negative_values(argv: list[str]) -> list[str]:
    """`--learning_rate -1e-5` -> `--learning_rate=-1e-5`: argparse takes `-1e-5` for an option
    (only plain `-1` and `-0.5` count as numbers to it), so a negative value would be reported
    as a missing one; joined, it reaches the value checks, which say what is wrong with it."""
    out: list[str] = []
    for arg in argv:
        if out and out[-1].startswith("--") and "=" not in out[-1] and _negative_number(arg):
            out[-1] = f"{out[-1]}={arg}"
        else:
            out.append(arg)
    return out


def _negative_number(text: str) -> bool:
    """`-1e-5`, `-3`, and lists like `-1,2` (`--seeds`): no option of ours starts with a dash and a digit."""
    return re.fullmatch(r"-\.?\d[\d.,eE+\- ]*", text) is not None


def joined_lists(argv: list[str], flags: tuple[str, ...]) -> list[str]:
    """`--report_to tensorboard trackio` -> `--report_to tensorboard,trackio`: a list option given as
    several values reaches its check as the comma list it means (not as unknown options)."""
    out: list[str] = []
    i = 0
    while i < len(argv):
        out.append(argv[i])
        i += 1
        if out[-1] in flags:
            values = []
            while i < len(argv) and not argv[i].startswith("-"):
                values.append(argv[i])
                i += 1
            out += [",".join(values)] if values else []
    return out


def whole_number(minimum: int) -> Callable[[str], int]:
    """An argparse `type` for integers of at least `minimum`, with a message that says so."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number of at least {minimum}, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected a whole number of at least {minimum}, got {text}")
        return value

    return parse


def resume_command(script: str, argv: list[str]) -> str:
    """The command that continues an interrupted run: the same arguments plus --resume."""
    args = list(argv) + ([] if "--resume" in argv else ["--resume"])
    return redact(f"python scripts/{script} {shlex.join(args)}")
