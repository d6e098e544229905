"""One run per output directory: an exclusive OS lock (flock) on `OUT/.cardtune.lock`, held for
the whole run. The kernel drops it when the process ends, however it ends, so a killed run never
leaves a stale lock; the lock file itself only records which process holds it."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import shutil
import socket
import time
from collections.abc import Iterator
from pathlib import Path

from pipelines.errors import CardtuneError
from pipelines.filesystem import WriteError, check_output_dir

log = logging.getLogger(__name__)

LOCK_NAME = ".cardtune.lock"


class OutputDirBusy(CardtuneError):
    """Another live process holds the output directory."""


@contextlib.contextmanager
def hold(output_dir: str | Path, enabled: bool = True) -> Iterator[None]:
    """Lock `output_dir` (created if missing) for the duration of the block.

    A folder this call created and the run left empty is removed again, so a run that fails
    before writing anything leaves nothing behind. `enabled=False` (the non-main processes of a
    distributed run, which write nothing of their own) makes this a no-op.
    """
    if not enabled:
        yield
        return
    out = Path(output_dir)
    check_output_dir(out)
    created = not out.exists()
    fd = _acquire(out)
    try:
        _remove_leftovers(out)
        yield
    finally:
        if created and {p.name for p in out.iterdir()} == {LOCK_NAME}:
            (out / LOCK_NAME).unlink(missing_ok=True)  # still locked: a newcomer fails on the old inode
            out.rmdir()
        os.close(fd)


def holder(output_dir: str | Path) -> int | None:
    """The process id holding `output_dir`'s lock, or None when no live process holds it.

    Only reads: a folder nobody ran in is not changed (push.py and predict.py call this)."""
    path = Path(output_dir) / LOCK_NAME
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError:
        return _recorded_pid(fd) or -1
    finally:
        os.close(fd)  # closing also drops the shared lock taken just to look
    return None


def refuse_if_busy(output_dir: str | Path, what: str) -> None:
    """One line when a run is still writing `output_dir`: its files may change under `what`."""
    pid = holder(output_dir)
    if pid is not None and pid != os.getpid():  # run.py publishing its own run holds the lock itself
        shown = f"process {pid}" if pid > 0 else "another process"
        raise OutputDirBusy(f"{output_dir} is being written by a run in progress ({shown}); wait until it "
                            f"finishes before {what}")


def _acquire(out: Path) -> int:
    """Open and lock the lock file; retried if the file was replaced between open and lock."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        while True:
            fd = os.open(out / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                _lock_exclusive(fd)
            except OSError as err:
                pid = _recorded_pid(fd)
                os.close(fd)
                if err.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    raise
                shown = f"process {pid}" if pid else "another process"
                raise OutputDirBusy(f"output directory {out} is in use by another run ({shown}); wait for it to "
                                    "finish, or pass another --output-dir") from None
            if _same_file(fd, out / LOCK_NAME):
                break
            os.close(fd)  # the holder removed the file as we opened it: lock the new one
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()} {socket.gethostname()}\n".encode())
        return fd
    except OSError as err:
        raise WriteError.of(err, out, "lock the output directory") from None


def _lock_exclusive(fd: int, tries: int = 6) -> None:
    """flock(LOCK_EX) without waiting for a run; a few short retries ride out the instant shared
    lock that `holder` (push.py, predict.py) takes to look."""
    for attempt in range(tries):
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except OSError as err:
            if err.errno not in (errno.EWOULDBLOCK, errno.EAGAIN) or attempt == tries - 1:
                raise
            time.sleep(0.05)


def _same_file(fd: int, path: Path) -> bool:
    try:
        return os.path.samestat(os.fstat(fd), os.stat(path))
    except FileNotFoundError:
        return False


def _recorded_pid(fd: int) -> int | None:
    try:
        text = os.pread(fd, 200, 0).decode("ascii", "replace").split()
        return int(text[0]) if text else None
    except (OSError, ValueError):
        return None


def _remove_leftovers(out: Path) -> None:
    """Staging folders of runs that died (we hold the lock, so nobody else is writing them)."""
    for stage in [*out.glob(".staging-*"), *out.glob("seed-*/.staging-*")]:
        log.info("removing %s, left by an interrupted run", stage)
        shutil.rmtree(stage, ignore_errors=True)
