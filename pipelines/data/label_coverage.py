"""Labels a split lacks, found before training: a train split without some of the card's labels
cannot teach them, and would otherwise train for nothing and end in the degenerate-run alarm."""

from __future__ import annotations

import logging

import datasets
import numpy as np

from pipelines.card.cards import TaskCard
from pipelines.data.readers import column
from pipelines.errors import DataError

log = logging.getLogger(__name__)


def missing_labels(ds: datasets.Dataset, labels: tuple[str, ...] | list[str]) -> list[str]:
    """The label names with no row in `ds` (its `label` column holds ids)."""
    counts = np.bincount(np.asarray(column(ds, "label"), dtype=np.int64), minlength=len(labels))
    return [name for name, n in zip(labels, counts) if n == 0]


def check(splits: datasets.DatasetDict, card: TaskCard, where: str) -> None:
    """Raise if train lacks a label; warn when validation or test does (its scores then leave it out)."""
    gaps = {split: missing_labels(ds, card.labels) for split, ds in splits.items() if "label" in ds.column_names}
    if gaps.get("train"):
        others = "; ".join(f"{s} lacks {_names(m)}" for s, m in gaps.items() if m and s != "train")
        raise DataError(
            f"split 'train' of {where} has no row labelled {_names(gaps['train'])} (card {card.path.name} lists "
            f"{list(card.labels)}){'; ' + others if others else ''}: the model could never learn "
            f"{'them' if len(gaps['train']) > 1 else 'it'}; check the data, `label_map` and `drop_labels`, or remove "
            "the label from `labels`"
        )
    for split, missing in gaps.items():
        if missing:
            log.warning("split '%s' of %s has no row labelled %s: its scores cannot judge %s", split, where,
                        _names(missing), "them" if len(missing) > 1 else "it")


def _names(labels: list[str]) -> str:
    return ", ".join(f"'{name}'" for name in labels)
