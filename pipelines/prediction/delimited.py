"""Delimited files for prediction: read in chunks with every cell kept as written, write back.

Unlike `readers.read_table` (whole training files, empty cells -> None), prediction streams and
must give each input cell back unchanged: "NA" stays "NA", "007" stays "007", empty stays empty.
"""

from __future__ import annotations

import csv
import io
import warnings
from collections.abc import Iterator
from pathlib import Path

import pandas as pd

from pipelines.errors import DataError

TSV_SUFFIXES = (".tsv", ".tab")


def sep_for(path: Path, sep: str | None = None) -> str:
    """The delimiter: `sep` if given (`\\t` and `tab` mean a tab), else tab for .tsv/.tab, else comma."""
    if sep:
        return "\t" if sep in ("\\t", "tab", "\t") else sep
    return "\t" if path.suffix.lower() in TSV_SUFFIXES else ","


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
        return list(_guarded(path, encoding, 0, lambda: pd.read_csv(path, nrows=0, **_options(sep, encoding))).columns)
    except pd.errors.EmptyDataError:
        raise DataError(f"{path} is empty; expected a header row naming the columns") from None


def chunks(path: Path, sep: str, encoding: str, size: int, skip: int = 0) -> Iterator[pd.DataFrame]:
    """Data rows in chunks of `size`, the first `skip` rows left out (for --resume)."""
    reader = _guarded(path, encoding, 0, lambda: pd.read_csv(path, chunksize=size, **_options(sep, encoding)))
    seen = 0
    with reader:
        while True:
            try:
                frame = _guarded(path, encoding, seen, lambda: next(reader))
            except StopIteration:
                return
            start = max(0, skip - seen)
            seen += len(frame)
            if start < len(frame):
                yield frame.iloc[start:] if start else frame


def _guarded(path: Path, encoding: str, seen: int, read):
    """Run one pandas read, turning its failures into one-line DataErrors."""
    try:
        with warnings.catch_warnings():
            # pandas only warns (and drops data) when the first row has more fields than the header
            warnings.simplefilter("error", pd.errors.ParserWarning)
            return read()
    except UnicodeDecodeError as err:
        raise DataError(
            f"{path}: cannot decode byte 0x{err.object[err.start]:02x} as {describe_encoding(encoding)} "
            f"(after data row {seen}); pass the file's encoding with --encoding (e.g. cp949, latin-1)"
        ) from None
    except (pd.errors.ParserError, pd.errors.ParserWarning) as err:
        first = str(err).strip().splitlines()[0]
        raise DataError(f"{path}: not a well-formed delimited file ({first}); check --sep and quoting") from None


def to_text(rows: list[list[str]], sep: str) -> str:
    """Rows as delimited text; TSV is written without quoting, the way it was read."""
    buf = io.StringIO()
    if sep == "\t":
        writer = csv.writer(buf, delimiter=sep, quoting=csv.QUOTE_NONE, quotechar=None, lineterminator="\n")
    else:
        writer = csv.writer(buf, delimiter=sep, lineterminator="\n")
    try:
        writer.writerows(rows)
    except csv.Error:
        raise DataError(
            "a cell holds a tab or a line break, which TSV output cannot keep; write a .csv instead") from None
    return buf.getvalue()
