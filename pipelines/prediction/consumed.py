"""A fingerprint of the input rows a prediction run has consumed, so `--resume` notices an input
edited in place (same size, same modification time or not) before it appends to the old rows.

Each row is hashed on its own (pandas' stable row hash) and the row hashes are fed in order to
SHA-256, so the digest does not depend on how the file was cut into chunks: a resume may use
another --chunk-size.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pandas as pd

from pipelines.errors import DataError


class ConsumedRows:
    """The running digest of consumed rows; on resume, the check of the rows skipped."""

    def __init__(self, source: Path, expected: str | None = None, skip: int = 0) -> None:
        self.source = source
        self._hash = hashlib.sha256()
        self._expected, self._skip, self._seen = expected, skip, 0

    def add(self, frame: pd.DataFrame) -> None:
        """Count rows read in this run (or skipped by a resume) into the digest."""
        if len(frame):
            self._hash.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
        self._seen += len(frame)
        if self._skip and self._seen >= self._skip:
            self.check()

    def digest(self) -> str:
        return self._hash.hexdigest()

    def check(self, at_end: bool = False) -> None:
        """Once the skipped rows are all read (or the file ended first): are they the rows read before?"""
        if self._expected is None or not self._skip:
            return
        if self._seen < self._skip and not at_end:
            return
        if self._seen < self._skip or self.digest() != self._expected:
            lost = f" (it now has {self._seen} rows, {self._skip} were already predicted)" if at_end else ""
            raise DataError(f"cannot resume: {self.source} changed since the interrupted run read its first "
                            f"{self._skip} rows{lost}; rerun without --resume to predict the file afresh")
        self._skip = 0  # verified once; later rows only extend the digest
