"""File-system failures as one line that names the path and the fix: a folder that cannot be
created or written, a path below a regular file, a full disk. Libraries report a full disk in
their own words (torch: "unexpected pos", safetensors: "os error 28"), so free space is checked
to tell the user what actually happened."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

from pipelines.errors import CardtuneError

# Below this much free space a failed write is reported as a full disk.
NEARLY_FULL = 1 << 20


class WriteError(CardtuneError):
    """Something cardtune had to write could not be written."""

    @classmethod
    def of(cls, err: BaseException, path: str | Path, what: str, after: str = "") -> WriteError:
        """The one-line error for `err`, raised while trying to `what` at `path`."""
        return cls(f"cannot {what} in {path}: {reason(err, Path(path))}{'; ' + after if after else ''}")


def reason(err: BaseException, path: Path) -> str:
    """Why a write failed, and what to do about it."""
    code = getattr(err, "errno", None)
    if code == errno.EROFS:
        return "the file system is read-only; pass a path on a writable disk"
    if code in (errno.EACCES, errno.EPERM):
        return f"permission denied{_on(err)}; fix the folder's permissions or pass another path"
    blocker = below_file(path) if code in (errno.ENOTDIR, errno.EEXIST) else None
    if blocker is not None:
        return f"{blocker} is a file, not a folder; pass another path"
    if code in (errno.ENOSPC, errno.EDQUOT) or _short_write(err) or _nearly_full(path):
        return f"no space left on the disk ({_free(path)} free); free some space or pass a path on another disk"
    lines = str(err).strip().splitlines()
    detail = getattr(err, "strerror", None) or (lines[0] if lines else "write failed")
    return f"{type(err).__name__}: {detail}"


def _short_write(err: BaseException) -> bool:
    """How torch and the Rust libraries say that the disk took fewer bytes than they wrote."""
    text = str(err)
    return any(s in text for s in ("os error 28", "os error 122", "unexpected pos", "file write failed"))


def is_write_failure(err: BaseException) -> bool:
    """Whether `err` is how a library reports a failed write (torch and safetensors raise their own types)."""
    if isinstance(err, OSError):
        return True
    name, text = type(err).__name__, str(err)
    if "(os error " in text:  # Rust libraries (tokenizers, safetensors) pass the OS error on as text
        return True
    return name == "SafetensorError" and "serializ" in text or (
        isinstance(err, RuntimeError) and any(s in text for s in ("inline_container", "file write failed",
                                                                    "PytorchStreamWriter", "unexpected pos")))


@contextlib.contextmanager
def writing(path: str | Path, what: str, after: str = "") -> Iterator[None]:
    """Turn a failed write inside the block into a one-line `WriteError` about `path`."""
    try:
        yield
    except CardtuneError:
        raise
    except Exception as err:  # only write failures are converted, the rest re-raised
        # A library that fails on a full disk may say anything (a truncated file it reads back): judge by the disk.
        if not (is_write_failure(err) or _nearly_full(Path(path))):
            raise
        raise WriteError.of(err, path, what, after) from None


def fsync(path: Path) -> None:
    """Flush a file's or a folder's entries to disk (a folder: the renames made in it)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def sha256(path: Path) -> str:
    """Hex SHA-256 of a file's content, read in blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def below_file(path: Path) -> Path | None:
    """The regular file standing where `path` or one of its parent folders should be, if any."""
    for candidate in [path, *path.parents]:
        if candidate.exists():
            return candidate if not candidate.is_dir() else None
    return None


def check_output_dir(path: str | Path, flag: str = "--output-dir") -> None:
    """Before any work: `path` must be (or be creatable as) a folder we can write to."""
    out = Path(path)
    if out.exists() and not out.is_dir():
        raise WriteError(f"{flag} {out} is a file, not a folder; pass another {flag}")
    _check_creatable(out, f"{flag} {out}", flag)


def check_output_file(path: str | Path, flag: str) -> None:
    """Before any work: `path` must be a file we can create or replace (its folder is made if missing)."""
    target = Path(path)
    if target.is_dir():
        raise WriteError(f"{flag} {target} is a folder; pass a file name, e.g. {target / 'predictions.csv'}")
    _check_creatable(target.parent, f"{flag} {target}", flag)


def _check_creatable(folder: Path, what: str, flag: str) -> None:
    blocker = below_file(folder)
    if blocker is not None:
        raise WriteError(f"{what}: {blocker} is a file, not a folder; pass another {flag}")
    existing = next(p for p in [folder.absolute(), *folder.absolute().parents] if p.exists())
    if not os.access(existing, os.W_OK | os.X_OK):
        why = "is on a read-only file system" if _read_only(existing) else "is not writable (permission denied)"
        raise WriteError(f"{what}: {existing} {why}; pass another {flag} or fix the folder's permissions")


def _read_only(path: Path) -> bool:
    try:
        return bool(os.statvfs(path).f_flag & os.ST_RDONLY)
    except OSError:
        return False


def _on(err: BaseException) -> str:
    name = getattr(err, "filename", None)
    return f" on {name}" if name else ""


def _existing(path: Path) -> Path | None:
    return next((p for p in [path, *path.parents] if p.exists()), None)


def _nearly_full(path: Path) -> bool:
    where = _existing(path)
    try:
        return where is not None and shutil.disk_usage(where).free < NEARLY_FULL
    except OSError:
        return False


def _free(path: Path) -> str:
    where = _existing(path)
    try:
        free = shutil.disk_usage(where).free if where is not None else 0
    except OSError:
        return "unknown"
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if free < 1024 or unit == "GiB":
            return f"{free:.0f} {unit}" if unit == "bytes" else f"{free:.1f} {unit}"
        free /= 1024
    return "unknown"
