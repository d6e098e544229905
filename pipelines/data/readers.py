"""Read one local table (csv/tsv/json/jsonl/xlsx/parquet) into a `datasets.Dataset` of strings; a column of
such a Dataset as a plain list (how every stage reads one)."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from pipelines.card.keys import LocalSource
from pipelines.data import bad_bytes
from pipelines.errors import DataError

if TYPE_CHECKING:  # imported where a table is read: prediction imports this module and needs no datasets
    import datasets

_SEPS = {"csv": ",", "tsv": "\t"}


def read_table(path: Path, spec: LocalSource) -> datasets.Dataset:
    """Read `path` as described by a card's `dataset.local` section; every cell becomes str or None."""
    fmt = spec.format
    try:
        frame = _READERS[fmt](path, spec)
    except UnicodeDecodeError as err:
        bad = bad_bytes.locate(path, spec.encoding, _SEPS[fmt], spec.header) if fmt in _SEPS else None
        where = bad.where(spec.header) if bad else f"at position {err.start}"
        raise DataError(
            f"{path}: cannot decode byte 0x{bad.value if bad else err.object[err.start]:02x} {where} as "
            f"{spec.encoding}; set `encoding` in the card's dataset.local (e.g. cp949 or latin-1)"
        ) from None
    except (OSError, ValueError, json.JSONDecodeError, pd.errors.ParserError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise DataError(f"{path}: cannot read as {fmt} ({first}); check dataset.local.format and the file") from None
    frame = _as_strings(frame)
    frame = frame.rename(columns=dict(spec.rename or {}))
    import datasets

    return datasets.Dataset.from_pandas(frame, preserve_index=False)




def column(ds: datasets.Dataset, name: str) -> list[Any]:
    """A column as a list, read in one batch (iterating a datasets `Column` formats row by row)."""
    return ds[name][:]


def rename_columns(ds: datasets.Dataset, mapping: dict[str, str]) -> datasets.Dataset:
    """Apply a card's `rename` to a Hub dataset (only the columns that are there)."""
    present = {k: v for k, v in mapping.items() if k in ds.column_names and k != v}
    return ds.rename_columns(present) if present else ds


def _names(spec: LocalSource) -> dict[str, Any]:
    if spec.header:
        return {"header": 0}
    return {"header": None, "names": list(spec.columns)}


def _read_delimited(path: Path, spec: LocalSource, sep: str) -> pd.DataFrame:
    # TSV corpora (CoLA, SST-2, MNLI) use bare quotes inside sentences: never treat them as quoting.
    quoting = csv.QUOTE_NONE if sep == "\t" else csv.QUOTE_MINIMAL
    return pd.read_csv(
        path,
        sep=sep,
        dtype=str,
        keep_default_na=False,
        na_values=[""],
        quoting=quoting,
        encoding=spec.encoding,
        encoding_errors="strict",
        **_names(spec),
    )


def _read_json(path: Path, spec: LocalSource) -> pd.DataFrame:
    text = path.read_text(encoding=spec.encoding)
    data = json.loads(text)
    if isinstance(data, dict):  # {"data": [...]} style: take the one list inside
        lists = [v for v in data.values() if isinstance(v, list)]
        if len(lists) != 1:
            raise ValueError("expected a list of records, or an object holding exactly one such list")
        data = lists[0]
    return pd.DataFrame.from_records(data)


def _read_jsonl(path: Path, spec: LocalSource) -> pd.DataFrame:
    rows = []
    with open(path, encoding=spec.encoding) as fh:
        for n, line in enumerate(fh, 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as err:
                    raise ValueError(f"line {n}: {err.msg}") from None
    return pd.DataFrame.from_records(rows)


def _read_xlsx(path: Path, spec: LocalSource) -> pd.DataFrame:
    return pd.read_excel(path, sheet_name=spec.sheet or 0, dtype=str, engine="openpyxl", **_names(spec))


def _read_parquet(path: Path, spec: LocalSource) -> pd.DataFrame:
    return pd.read_parquet(path)


_READERS = {
    "csv": lambda p, s: _read_delimited(p, s, ","),
    "tsv": lambda p, s: _read_delimited(p, s, "\t"),
    "json": _read_json,
    "jsonl": _read_jsonl,
    "xlsx": _read_xlsx,
    "parquet": _read_parquet,
}


def _as_strings(frame: pd.DataFrame) -> pd.DataFrame:
    """One type per column (str or None) so mixed cells never trip Arrow's type inference."""
    frame.columns = [str(c).strip() for c in frame.columns]
    out = {}
    for col in frame.columns:
        values = frame[col].tolist()
        out[col] = [None if _missing(v) else _cell(v) for v in values]
    return pd.DataFrame(out, columns=frame.columns, dtype=object)


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and value != value)


def _cell(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)
