"""Checksums for feature-cache entries: written last, when an entry is complete, and checked on
every read, so a cut or overwritten Arrow file is rebuilt instead of trained on (or crashed on)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from pipelines.filesystem import sha256

SEAL = "cardtune_checksum.json"


def seal(folder: Path) -> None:
    """Record every file of a freshly written entry (size and SHA-256), atomically, last."""
    files = {str(p.relative_to(folder)): {"bytes": p.stat().st_size, "sha256": sha256(p)}
             for p in sorted(folder.rglob("*")) if p.is_file() and not p.name.startswith(SEAL)}
    tmp = folder / f"{SEAL}.tmp"
    tmp.write_text(json.dumps(files, indent=1), encoding="utf-8")
    os.replace(tmp, folder / SEAL)


def problem(folder: Path) -> str | None:
    """Why the entry in `folder` cannot be trusted (None when every recorded file matches).

    Only recorded files are checked: `datasets` may add its own cache files beside them later."""
    try:
        files = json.loads((folder / SEAL).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return "no checksum: an older cardtune wrote it, or writing it was cut short"
    except (OSError, ValueError):
        return "its checksum file is unreadable"
    if not isinstance(files, dict) or not files:
        return "its checksum file is unreadable"
    for name, expected in files.items():
        path = folder / name
        if not path.is_file():
            return f"{name} is missing"
        if path.stat().st_size != expected.get("bytes"):
            return f"{name} is cut or changed ({path.stat().st_size} bytes, {expected.get('bytes')} written)"
        if sha256(path) != expected.get("sha256"):
            return f"{name} was changed after it was written"
    return None


def discard(folder: Path) -> None:
    """Move a damaged entry aside and delete it (a reader that has it open keeps its files)."""
    aside = folder.with_name(f"{folder.name}.damaged-{os.getpid()}")
    try:
        os.replace(folder, aside)
    except OSError:
        aside = folder
    shutil.rmtree(aside, ignore_errors=True)
