"""Sealed folders: a folder whose files are vouched for by a manifest written last.

`write` makes every file readable like any other output (safetensors writes 0600), flushes each
to disk, then writes the manifest (the size and SHA-256 of every file, plus the caller's fields)
through a temporary file that is synced, renamed into place and followed by a sync of the folder.
The manifest therefore never precedes its files: a folder without one was cut short, and a folder
whose files do not match it was cut, changed or mixed with other files afterwards. `check` finds
that on read and says which file and how, as a `Flaw`.

One implementation for every sealed folder of cardtune: the feature cache (data/cache.py),
checkpoints (training/checkpoints.py), prepared model and graph folders (modeling/offline/model_cache.py)
and a run's or an export's output folder (reporting/run_id.py). Each keeps the manifest file name
its folders already carry on users' disks (see those modules).
"""

from __future__ import annotations

import json
import os
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from pipelines import filesystem

FILES = "files"  # the manifest's field listing {relative path: {"bytes": size, "sha256": hex digest}}


@dataclass(frozen=True)
class Flaw:
    """Why a sealed folder cannot be trusted: its manifest is missing or unreadable, or one file
    (`name`, a path relative to the folder) is missing, extra, of another size or other content."""

    kind: str  # "no manifest", "unreadable manifest", "missing", "extra", "size" or "content"
    name: str  # the file; for the first two kinds, the manifest
    manifest: str
    found: int | None = None  # "size": the file's bytes now
    expected: int | None = None  # "size": the bytes the manifest records

    def __str__(self) -> str:
        return {
            "no manifest": f"no {self.manifest}: writing it was cut short, or an older cardtune wrote it",
            "unreadable manifest": f"{self.manifest} is unreadable",
            "missing": f"{self.name} is missing",
            "extra": f"{self.name} is not listed in {self.manifest}",
            "size": f"{self.name} is cut or changed ({self.found} bytes, {self.expected} written)",
            "content": f"{self.name} was changed after it was written "
                       f"(it does not match its sha256 in {self.manifest})",
        }[self.kind]


class Unsealed(Exception):
    """A folder whose manifest is missing or unreadable (`flaw` says which)."""

    def __init__(self, flaw: Flaw) -> None:
        super().__init__(str(flaw))
        self.flaw = flaw


def files(folder: Path, manifest: str) -> list[Path]:
    """Every regular file under `folder` (subfolders too) but the manifest, sorted by relative path."""
    own = {manifest, f"{manifest}.tmp"}
    found = [p for p in folder.rglob("*") if p.is_file() and p.relative_to(folder).as_posix() not in own]
    return sorted(found, key=lambda p: p.relative_to(folder).as_posix())


def write(folder: Path, manifest: str, fields: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Seal `folder` once all its files are written: returns the record written to `folder/manifest`
    (`fields` first, then `files`; no timestamps, so the same files give the same bytes)."""
    mode = _file_mode()
    listed = {}
    for path in files(folder, manifest):
        os.chmod(path, mode)
        filesystem.fsync(path)  # data on disk before the manifest vouches for it
        listed[path.relative_to(folder).as_posix()] = {"bytes": path.stat().st_size, "sha256": filesystem.sha256(path)}
    record = {**(fields or {}), FILES: listed}
    tmp = folder / f"{manifest}.tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(json.dumps(record, indent=2) + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, folder / manifest)
    filesystem.fsync(folder)
    return record


def read(folder: Path, manifest: str) -> dict[str, Any]:
    """The record in `folder/manifest`; raises `Unsealed` when it is missing or unreadable (not JSON,
    or a file list that is not {relative path: {"bytes": int, "sha256": str}})."""
    try:
        record = json.loads((folder / manifest).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise Unsealed(Flaw("no manifest", manifest, manifest)) from None
    except (OSError, ValueError):
        raise Unsealed(Flaw("unreadable manifest", manifest, manifest)) from None
    if not (isinstance(record, dict) and isinstance(record.get(FILES), dict)
            and all(_well_formed(name, entry) for name, entry in record[FILES].items())):
        raise Unsealed(Flaw("unreadable manifest", manifest, manifest))
    return record


def check(folder: Path, manifest: str, record: Mapping[str, Any] | None = None, *, hashes: bool = True,
          exact: bool = False, skip: Collection[str] = ()) -> Flaw | None:
    """None when every file `manifest` lists is in `folder` with its size and (if `hashes`) its
    SHA-256, else the first flaw: names and sizes are checked before any file is read.

    `record`: the manifest as `read` returned it (read here when None). `exact`: a file the manifest
    does not list is a flaw too (by default others may sit beside, e.g. a library's own cache files).
    `skip`: listed files left unchecked (ones people may edit)."""
    if record is None:
        try:
            record = read(folder, manifest)
        except Unsealed as err:
            return err.flaw
    expected = {name: entry for name, entry in record[FILES].items() if name not in skip}
    if exact:
        present = {p.relative_to(folder).as_posix() for p in files(folder, manifest)}
        extra = sorted(present - set(record[FILES]))
        if extra:
            return Flaw("extra", extra[0], manifest)
    for name, entry in expected.items():
        path = folder / name
        if not path.is_file():
            return Flaw("missing", name, manifest)
        size = path.stat().st_size
        if size != entry["bytes"]:
            return Flaw("size", name, manifest, size, entry["bytes"])
    if hashes:
        for name, entry in expected.items():
            if filesystem.sha256(folder / name) != entry["sha256"]:
                return Flaw("content", name, manifest)
    return None


def _well_formed(name: Any, entry: Any) -> bool:
    """A listed file: a relative path inside the folder, with an integer size and a hex digest."""
    if not isinstance(name, str) or not name or PurePosixPath(name).is_absolute() or ".." in PurePosixPath(name).parts:
        return False
    return isinstance(entry, dict) and type(entry.get("bytes")) is int and isinstance(entry.get("sha256"), str)


def _file_mode() -> int:
    """The mode a new file gets under the current umask (0644 under the usual 022)."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask
