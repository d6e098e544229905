"""Delimited files for prediction: read in chunks with every cell kept as written, write back.

Unlike `readers.read_table` (whole training files, empty cells -> None), prediction streams and
must give each input cell back unchanged: "NA" stays "NA", "007" stays "007", empty stays empty.
"""

from __future__ import annotations

import csv
import io
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import pandas as pd

from pipelines.data import bad_bytes
from pipelines.errors import DataError

TSV_SUFFIXES = (".tsv", ".tab")


def sep_for(path: Path, sep: str | None = None) -> str:
    """The delimiter: `sep` if given (`\\t` and `tab` mean a tab), else tab for .tsv/.tab, comma for
    .csv, and for any other name (NSMC's `ratings_test.txt`) what the header line is separated by."""
    if sep:
        return "\t" if sep in ("\\t", "tab", "\t") else sep
    suffix = path.suffix.lower()
    if suffix in TSV_SUFFIXES or suffix == ".csv":
        return "\t" if suffix in TSV_SUFFIXES else ","
    try:
        with open(path, "rb") as fh:
            header = fh.readline(1 << 16)
    except OSError:
        return ","
    return "\t" if header.count(b"\t") > header.count(b",") else ","


# A delimiter that `sep_for` may have missed, as --sep spells it
_OTHER_SEPS = {"\t": "'\\t'", ";": "';'", "|": "'|'"}


def check_columns(path: Path, header: list[str], wanted: list[str], hint: str) -> None:
    """A one-line `DataError` naming the columns of `wanted` that `header` lacks; when the header
    reads as one column holding another delimiter, the `--sep` that reads it."""
    missing = [c for c in wanted if c not in header]
    if not missing:
        return
    found = [sep for sep in _OTHER_SEPS if len(header) == 1 and sep in header[0]]
    if found:
        hint = f"the header is separated by {_OTHER_SEPS[found[0]]!s}: pass --sep {_OTHER_SEPS[found[0]]}"
    names = ", ".join(map(repr, missing))
    raise DataError(f"{path}: no column {names}; the file has columns {header}; {hint}")


def describe_encoding(encoding: str) -> str:
    return "UTF-8 (with or without BOM)" if encoding.lower().replace("_", "-") == "utf-8-sig" else encoding


def _options(sep: str, encoding: str) -> dict:
    return dict(
        sep=sep,
        dtype=object,  # plain Python strings: pandas' Arrow-backed str columns let RSS creep chunk by chunk
        keep_default_na=False,  # only a truly missing cell is NaN; the text "NA" is text
        # TSV corpora (SST-2, CoLA) use bare quotes inside sentences: never treat them as quoting.
        quoting=csv.QUOTE_NONE if sep == "\t" else csv.QUOTE_MINIMAL,
        index_col=False,  # a row with an extra field must not silently become the index
        skip_blank_lines=False,  # a blank line is a row (empty text -> an `error`), so rows match lines
        encoding=encoding,
        encoding_errors="strict",
    )


def read_columns(path: Path, sep: str, encoding: str) -> list[str]:
    """The header row's column names, exactly as written."""
    try:
        header = _guarded(path, encoding, 0, lambda: pd.read_csv(path, nrows=0, **_options(sep, encoding)), sep)
        return list(header.columns)
    except pd.errors.EmptyDataError:
        raise DataError(f"{path} is empty; expected a header row naming the columns") from None


def chunks(path: Path, sep: str, encoding: str, size: int, skip: int = 0,
           skipped: Callable[[pd.DataFrame], None] | None = None) -> Iterator[pd.DataFrame]:
    """Data rows in chunks of `size`, the first `skip` rows left out (for --resume) and handed to
    `skipped`, if given, so that --resume can check they are the rows it read before."""
    reader = _guarded(path, encoding, 0, lambda: pd.read_csv(path, chunksize=size, **_options(sep, encoding)), sep)
    seen = 0
    with reader:
        while True:
            try:
                frame = _guarded(path, encoding, seen, lambda: next(reader), sep)
            except StopIteration:
                return
            start = max(0, skip - seen)
            seen += len(frame)
            if start and skipped is not None:
                skipped(frame.iloc[:start])
            if start < len(frame):
                yield frame.iloc[start:] if start else frame


def _guarded(path: Path, encoding: str, seen: int, read, sep: str = ","):
    """Run one pandas read, turning its failures into one-line DataErrors."""
    try:
        with warnings.catch_warnings():
            # pandas only warns (and drops data) when the first row has more fields than the header
            warnings.simplefilter("error", pd.errors.ParserWarning)
            return read()
    except UnicodeDecodeError as err:
        bad = bad_bytes.locate(path, encoding, sep)
        where = f"{bad.where()} " if bad else f"after data row {seen} "
        value = bad.value if bad else err.object[err.start]
        raise DataError(
            f"{path}: cannot decode byte 0x{value:02x} {where}as {describe_encoding(encoding)}; "
            "pass the file's encoding with --encoding (e.g. cp949, latin-1)"
        ) from None
    except (pd.errors.ParserError, pd.errors.ParserWarning) as err:
        first = str(err).strip().splitlines()[0]
        raise DataError(f"{path}: not a well-formed delimited file ({first}); check --sep and quoting") from None


def to_text(rows: list[list[str]], sep: str, first_row: int = 1, columns: tuple[str, ...] = (),
            where: Path | None = None) -> str:
    """Rows as delimited text; TSV is written without quoting, the way it was read. `first_row`,
    `columns` and `where` (the input file) only name the culprit when a cell cannot be written."""
    buf = io.StringIO()
    if sep == "\t":
        writer = csv.writer(buf, delimiter=sep, quoting=csv.QUOTE_NONE, quotechar=None, lineterminator="\n")
    else:
        writer = csv.writer(buf, delimiter=sep, lineterminator="\n")
    try:
        writer.writerows(rows)
    except csv.Error:
        row, col = _unwritable(rows, sep)
        name = f" `{columns[col]}`" if col < len(columns) else ""
        file = f"{where}: " if where else ""
        raise DataError(f"{file}data row {first_row + row}: column{name} holds a tab or a line break, which TSV output "
                        "cannot keep; write a .csv output instead, or remove it from the input") from None
    return buf.getvalue()


def _unwritable(rows: list[list[str]], sep: str) -> tuple[int, int]:
    """(row, column) index of the first cell unquoted TSV cannot hold."""
    for i, row in enumerate(rows):
        for j, cell in enumerate(row):
            if any(c in str(cell) for c in (sep, "\n", "\r")):
                return i, j
    return 0, len(rows[0]) if rows else 0
