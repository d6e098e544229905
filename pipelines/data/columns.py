"""Column access shared by every stage: a split's column as a plain Python list."""

from __future__ import annotations

from typing import Any

import datasets


def column(ds: datasets.Dataset, name: str) -> list[Any]:
    """A column as a list, read in one batch (iterating a datasets `Column` formats row by row)."""
    return ds[name][:]
