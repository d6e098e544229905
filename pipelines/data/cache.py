"""Tokenized features cached on disk, keyed by everything that changes them: the loaded texts
and labels, the tokenizer, max length, truncation (with head_tail's split) and padding. A second run of the same card
and model memory-maps the Arrow files instead of tokenizing again.

Each entry is written in a temporary sibling, sealed (`pipelines.sealing`: a manifest of every file's
size and SHA-256, written last) and renamed into place; every read checks the seal, so a cut or
overwritten Arrow file is rebuilt instead of trained on (or crashed on)."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from pathlib import Path

import datasets
from transformers import PreTrainedTokenizerBase

import pipelines
from pipelines import sealing
from pipelines.card.cards import TaskCard
from pipelines.data import features
from pipelines.data.readers import column

log = logging.getLogger(__name__)

# The manifest of an entry; the name entries on users' disks already carry.
SEAL = "cardtune_checksum.json"
# Part of the key: entries sealed in an older manifest layout (a bare file list) are not looked up.
SEAL_LAYOUT = 2


def cache_root() -> Path:
    """`$CARDTUNE_CACHE/features`, by default `~/.cache/cardtune/features`."""
    return Path(os.environ.get("CARDTUNE_CACHE", "~/.cache/cardtune")).expanduser() / "features"


def fingerprint(
    card: TaskCard, splits: datasets.DatasetDict, tokenizer: PreTrainedTokenizerBase, max_length: int, padded: bool
) -> str:
    """A content hash: the same data and tokenizer give the same key on any machine."""
    h = hashlib.sha256()
    settings = {"v": pipelines.__version__, "seal": SEAL_LAYOUT, "text": card.text_columns,
                "truncation": card.truncation,
                "head_tokens": card.head_tokens if card.truncation == "head_tail" else None,
                "max_length": max_length, "padded": padded}
    h.update(json.dumps(settings, sort_keys=True).encode())
    h.update(hashlib.sha256(tokenizer.backend_tokenizer.to_str().encode()).digest())
    for name in sorted(splits):
        ds = splits[name]
        h.update(name.encode())
        for col in [*card.text_columns, "label"]:
            if col in ds.column_names:
                h.update(json.dumps(column(ds, col), ensure_ascii=False).encode())
    return h.hexdigest()[:32]


def cached_tokenize(
    card: TaskCard,
    splits: datasets.DatasetDict,
    tokenizer: PreTrainedTokenizerBase,
    max_length: int,
    padded: bool = False,
    enabled: bool = True,
) -> datasets.DatasetDict:
    """`features.tokenize`, through the on-disk cache when `enabled`."""
    features.log_cut(card, tokenizer, max_length)
    if not enabled:
        return features.tokenize(splits, tokenizer, card, max_length, padded)
    path = cache_root() / fingerprint(card, splits, tokenizer, max_length, padded)
    if path.exists():
        reused = _reuse(path)
        if reused is not None:
            return reused
    feats = features.tokenize(splits, tokenizer, card, max_length, padded)
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    try:
        feats.save_to_disk(str(tmp))
        sealing.write(tmp, SEAL)  # last: an entry without a matching manifest is never read
        os.replace(tmp, path)  # another process may have won the race: either copy is the same
    except OSError as err:
        log.warning("could not cache tokenized features in %s (%s); continuing without", path, err)
        shutil.rmtree(tmp, ignore_errors=True)
        return feats
    return datasets.load_from_disk(str(path))


def _reuse(path: Path) -> datasets.DatasetDict | None:
    """The cached entry if it is intact; a damaged one is removed (and rebuilt by the caller)."""
    # Only the listed files are checked: `datasets` may add its own cache files beside them later.
    why = sealing.check(path, SEAL)
    if why is None:
        try:
            feats = datasets.load_from_disk(str(path))
            log.info("reusing tokenized features from %s", path)
            return feats
        except Exception as err:  # noqa: BLE001 - pyarrow and datasets raise many types for a bad file
            why = f"unreadable: {type(err).__name__}"
    log.warning("tokenized features in %s are damaged (%s): tokenizing again", path, why)
    _discard(path)
    return None


def _discard(folder: Path) -> None:
    """Move a damaged entry aside and delete it (a reader that has it open keeps its files)."""
    aside = folder.with_name(f"{folder.name}.damaged-{os.getpid()}")
    try:
        os.replace(folder, aside)
    except OSError:
        aside = folder
    shutil.rmtree(aside, ignore_errors=True)
