"""Where in a delimited file the first undecodable byte is, as a data row a user can open.

pandas decodes in blocks, so its error knows neither the row nor the line; after it fails, the
file is read again with undecodable bytes kept as surrogates (`surrogateescape`) by the csv
module under the same quoting, and the first row holding one is the answer.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from pathlib import Path

_ESCAPED = re.compile("[\udc80-\udcff]")


@dataclass(frozen=True)
class BadByte:
    """The first undecodable byte: its value, its data row (0: the header) and physical line."""

    value: int
    row: int
    line: int

    def where(self, header: bool = True) -> str:
        if header and self.row == 0:
            return f"in the header row (line {self.line})"
        return f"in data row {self.row if header else self.row + 1} (line {self.line})"


def locate(path: Path, encoding: str, sep: str, header: bool = True) -> BadByte | None:
    """The first undecodable byte of `path` read as `encoding`, or None if it cannot be placed."""
    quoting = csv.QUOTE_NONE if sep == "\t" else csv.QUOTE_MINIMAL
    try:
        with open(path, encoding=encoding, errors="surrogateescape", newline="") as fh:
            reader = csv.reader(fh, delimiter=sep, quoting=quoting)
            for n, row in enumerate(reader):
                for cell in row:
                    found = _ESCAPED.search(cell)
                    if found:
                        return BadByte(ord(found.group()) - 0xDC00, n, reader.line_num)
    except (OSError, LookupError, csv.Error, UnicodeError):
        return None
    return None
