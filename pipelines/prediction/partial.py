"""Crash-safe output: rows go to `OUT.partial`, `OUT.partial.json` records how much is complete.

The state file is rewritten (atomically) only after a chunk has been written, flushed and synced,
so it never claims rows that are not on disk. `--resume` truncates the partial file to the
recorded size (dropping a half-written chunk) and skips exactly the recorded rows of the input.
The final name appears only after the last chunk, by a rename on the same filesystem.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

from pipelines.errors import DataError

log = logging.getLogger(__name__)

STATE_VERSION = 3  # 2: the state records a digest of the input rows consumed; 3: precision and backend


class PartialOutput:
    """The output file while it is being written, and what `--resume` needs to continue it."""

    def __init__(self, output: Path, fingerprint: dict[str, Any]) -> None:
        self.output = output
        self.partial = output.with_name(output.name + ".partial")
        self.state_path = output.with_name(output.name + ".partial.json")
        self.fingerprint = fingerprint
        self._fh = None

    def open(self, resume: bool) -> dict[str, Any] | None:
        """Start a fresh partial file (returns None) or reopen one after its last complete chunk
        (returns the saved state: `rows_done`, `counters`)."""
        self.output.parent.mkdir(parents=True, exist_ok=True)
        state = self._saved_state() if resume else None
        if resume and state is None:
            log.info("--resume: no interrupted run to continue for %s; starting from the first row", self.output)
        if state is None:
            self.state_path.unlink(missing_ok=True)  # an older partial is replaced, never mixed in
            self._fh = open(self.partial, "wb")
            return None
        self._fh = open(self.partial, "r+b")
        self._fh.truncate(state["bytes"])  # drop a chunk that was written but not recorded
        self._fh.seek(state["bytes"])
        log.info("resuming %s after %d rows already written", self.output, state["rows_done"])
        return state

    def write(self, text: str) -> None:
        self._fh.write(text.encode("utf-8"))

    def commit(self, rows_done: int, counters: dict[str, Any], consumed: str | None = None) -> None:
        """Record that every row up to `rows_done` is on disk (call after each complete chunk);
        `consumed` is the digest of the input rows read so far."""
        self._fh.flush()
        os.fsync(self._fh.fileno())
        state = {"version": STATE_VERSION, "fingerprint": self.fingerprint, "rows_done": rows_done,
                 "bytes": self._fh.tell(), "counters": counters, "consumed": consumed}
        write_json_atomic(self.state_path, state)

    def close(self) -> None:
        """Close the partial file (kept on disk, so an interrupted run can be resumed)."""
        if self._fh is not None:
            self._fh.close()
            self._fh = None

    def salvage(self) -> int:
        """After a failed write (a full disk): keep only what --resume can use, and free the rest.
        Returns the rows kept; with none, the partial and state files are removed."""
        try:
            self.close()
        except OSError:  # flushing the buffer hits the same full disk: the state never counted it
            self._fh = None
        try:
            state = json.loads(self.state_path.read_text(encoding="utf-8"))
            kept, size = int(state["rows_done"]), int(state["bytes"])
        except (OSError, ValueError, KeyError, TypeError):
            kept, size = 0, 0
        if kept:
            os.truncate(self.partial, size)
        else:
            self.partial.unlink(missing_ok=True)
            self.state_path.unlink(missing_ok=True)
        self.state_path.with_name(self.state_path.name + ".tmp").unlink(missing_ok=True)
        return kept

    def finish(self) -> None:
        """All rows written: move the partial file to its final name and drop the state."""
        self.close()
        os.replace(self.partial, self.output)
        self.state_path.unlink(missing_ok=True)

    def _saved_state(self) -> dict[str, Any] | None:
        if not (self.state_path.is_file() and self.partial.is_file()):
            return None
        try:
            state = json.loads(self.state_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            raise DataError(f"{self.state_path} is unreadable; rerun without --resume to start over") from None
        if state.get("version") != STATE_VERSION:
            raise DataError(f"{self.state_path} was written by another cardtune version; rerun without --resume")
        saved = state.get("fingerprint", {})
        changed = sorted(k for k in set(saved) | set(self.fingerprint) if saved.get(k) != self.fingerprint.get(k))
        if "precision" in changed:  # the one users hit by forgetting a flag: say which way round
            raise DataError(
                f"cannot resume {self.output}: the interrupted run wrote {saved.get('precision', 'fp32')} predictions "
                f"and this one would write {self.fingerprint['precision']}; one file never mixes them: rerun "
                f"with the same precision flag, or without --resume to start over"
            )
        if changed:
            raise DataError(
                f"cannot resume {self.output}: the interrupted run used other settings or inputs "
                f"(changed: {', '.join(changed)}); use the same ones, or rerun without --resume to start over"
            )
        if self.partial.stat().st_size < state["bytes"]:
            raise DataError(f"{self.partial} is shorter than its state file records; rerun without --resume")
        return state


def write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    """Write JSON so that readers see the old file or the new one, never half of one."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=1), encoding="utf-8")
    os.replace(tmp, path)


def meta_path(output: Path) -> Path:
    return output.with_name(output.name + ".meta.json")


def write_meta(output: Path, meta: dict[str, Any]) -> None:
    """`OUT.meta.json`: how the finished output was made (precision, backend, model, versions)."""
    write_json_atomic(meta_path(output), meta)
