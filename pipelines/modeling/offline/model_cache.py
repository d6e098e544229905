"""Prepared model folders in cardtune's cache: built once, checked on every reuse, rebuilt when damaged.

Layout (`$CARDTUNE_CACHE`, else `~/.cache/cardtune`)::

    models/<name>-<source version>/        a plain Hugging Face folder
    models/<name>-<source version>/cardtune-manifest.json   its seal: size + sha256 of every other file
    models/.<name>-<source version>.lock   flock'ed while checking or building
    models/.<name>-<source version>.tmp-*  a build in progress (renamed into place when complete)

A folder is built in a temporary sibling and renamed into place only after it is sealed
(`pipelines.sealing`: the manifest, written last, is on disk), so a folder without a manifest is always
a partial or tampered one. Checks: the file list and sizes on every reuse (stat calls only), and the
full sha256 once per process and folder (hashlib reads ~1.5 GB/s here: ~0.3 s for the 470 MB
multilingual model, small next to loading it) and again whenever a file's size, mtime or inode
changed since.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

from pipelines import filesystem, sealing

log = logging.getLogger(__name__)

# The seal's name and layout that prepared folders on users' disks carry (another name would
# rebuild every prepared model once).
MANIFEST = "cardtune-manifest.json"
MANIFEST_FORMAT = 1

# (folder, stat fingerprint) pairs whose sha256 this process has already checked
_verified: set[tuple[str, tuple]] = set()


def cache_root() -> Path:
    """`$CARDTUNE_CACHE` if set, else `~/.cache/cardtune`."""
    env = os.environ.get("CARDTUNE_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "cardtune"


def models_dir() -> Path:
    """Where prepared model folders live."""
    return cache_root() / "models"


def write_manifest(folder: Path, recipe: str) -> dict:
    """Seal a freshly built folder (`pipelines.sealing`) with the recipe that made it."""
    return sealing.write(folder, MANIFEST, {"format": MANIFEST_FORMAT, "recipe": recipe})


def _fingerprint(folder: Path, names: list[str]) -> tuple:
    stats = [(folder / n).stat() for n in names]
    return tuple((n, s.st_size, s.st_mtime_ns, s.st_ino) for n, s in zip(names, stats))


def check(folder: Path, recipe: str, full: bool | None = None) -> str | None:
    """None if `folder` is complete and intact, else why not (one line).

    Exact: a file the manifest does not list makes the folder untrusted too (loaders may pick it up).
    `full`: True always hashes, False never, None (default) hashes once per process and
    whenever a file's stat fingerprint changed.
    """
    if not folder.is_dir():
        return "not prepared yet"
    try:
        manifest = sealing.read(folder, MANIFEST)
    except sealing.Unsealed as err:
        return f"partial or damaged preparation ({err.flaw})"
    if manifest.get("recipe") != recipe:
        return f"prepared by another recipe ({manifest.get('recipe')!r}, now {recipe!r})"
    flaw = sealing.check(folder, MANIFEST, manifest, hashes=False, exact=True)
    if flaw is not None:
        return str(flaw)
    key = (str(folder), _fingerprint(folder, sorted(manifest[sealing.FILES])))
    if full is False or (full is None and key in _verified):
        return None
    log.debug("checking the sha256 of every file in %s", folder)
    flaw = sealing.check(folder, MANIFEST, manifest, exact=True)
    if flaw is not None:
        return str(flaw)
    _verified.add(key)
    return None


@contextlib.contextmanager
def _locked(lock_path: Path, what: str) -> Iterator[bool]:
    """An exclusive flock on `lock_path`; says so when another process holds it. Yields False, without
    a lock, in a cache nobody can write to (a shared read-only copy): nothing can change there."""
    try:
        fh = open(lock_path, "a+")
    except OSError as err:
        if err.errno not in (errno.EROFS, errno.EACCES, errno.EPERM):
            raise
        yield False
        return
    with fh:
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log.info("waiting for another process that is preparing %s", what)
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield True
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def _discard(path: Path) -> None:
    """Move `path` aside first (frees the name at once), then delete it."""
    trash = Path(tempfile.mkdtemp(prefix=f".{path.name}.trash-", dir=path.parent))
    os.rename(path, trash / "old")
    shutil.rmtree(trash, ignore_errors=True)


def prepare(key: str, recipe: str, build: Callable[[Path], None], root: Path | None = None) -> Path:
    """The folder `models/<key>`, built by `build(empty_folder)` if absent, partial or damaged.

    Safe across processes: the second one waits for the lock, then reuses the first's folder.
    `recipe` names how the folder is made; a folder made by another recipe is rebuilt.
    """
    root = root or models_dir()
    root.mkdir(parents=True, exist_ok=True)
    target = root / key
    with _locked(root / f".{key}.lock", key) as writable:
        problem = check(target, recipe)
        if problem is None:
            return target
        if not writable:
            raise OSError(errno.EROFS, f"the cache is read-only and its copy of {key} is not usable ({problem}); "
                                       "set CARDTUNE_CACHE to a writable folder")
        if target.exists() or target.is_symlink():
            log.warning("cached model %s: %s; preparing it again", target, problem)
            _discard(target)
        for pattern in (f".{key}.tmp-*", f".{key}.trash-*"):  # left by a process that died midway
            for stale in root.glob(pattern):
                shutil.rmtree(stale, ignore_errors=True)
        log.info("preparing %s in %s (once; later runs reuse it)", key, root)
        tmp = Path(tempfile.mkdtemp(prefix=f".{key}.tmp-", dir=root))
        try:
            build(tmp)
            manifest = write_manifest(tmp, recipe)
            os.chmod(tmp, 0o755)  # mkdtemp makes it 0700; the cache may be shared between users
            os.rename(tmp, target)
            filesystem.fsync(root)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        size = sum(f["bytes"] for f in manifest["files"].values())
        log.info("prepared %s: %d files, %.0f MB", target, len(manifest["files"]), size / 1e6)
        _verified.add((str(target), _fingerprint(target, sorted(manifest["files"]))))
    return target

