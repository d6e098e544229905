"""Staged outputs: every artefact is written into a hidden staging folder first and moved into
place by `publish`, so an output directory never holds a half-written report. The previous run's
metrics.json and run.json go first and the new ones come last (see `run_id`), so a run killed
between two renames leaves a folder that is visibly incomplete, never one that looks complete."""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

from pipelines.reporting import run_id

ARTEFACTS = (
    "metrics.json", "epochs.csv", "epochs.md", "learning_curve.png", "validation_predictions.csv",
    "test_predictions.csv",
    "summary.md", "task_card.yaml", "run_config.json",
    *(f"{kind}_{split}.{ext}" for kind in ("confusion", "per_class") for split in ("validation", "test")
      for ext in ("csv", "png")),
)
# Reports for people that nothing reads back (not pushed, not used by predict.py or the model card): a
# note added by hand must not make the folder untrusted, so `run_id.verify` leaves them out.
NOTES = frozenset({"summary.md", "epochs.csv", "test_predictions.csv",
                   *(a for a in ARTEFACTS if a.startswith(("confusion_", "per_class_")))})


def staging_dir(output_dir: Path) -> Path:
    """A fresh hidden folder inside `output_dir` (same filesystem, so moves are renames)."""
    stage = output_dir / f".staging-{os.getpid()}"
    shutil.rmtree(stage, ignore_errors=True)
    stage.mkdir(parents=True)
    return stage


@contextlib.contextmanager
def discarded_on_failure(output_dir: str | Path) -> Iterator[None]:
    """Remove this process's staging folder if the block fails or is interrupted: no leftovers."""
    try:
        yield
    except BaseException:
        shutil.rmtree(Path(output_dir) / f".staging-{os.getpid()}", ignore_errors=True)
        raise


def publish(stage: Path, output_dir: Path) -> None:
    """Move every staged file into `output_dir`; stale artefacts of an earlier run are removed."""
    run_id.seal(stage)
    stale = {*ARTEFACTS, *run_id.listed(output_dir)}
    for marker in (run_id.METRICS, run_id.MANIFEST):  # from here until the end the folder reads as incomplete
        (output_dir / marker).unlink(missing_ok=True)
    for name in sorted(stale):
        if not (stage / name).exists() and (output_dir / name).exists():
            (output_dir / name).unlink()
    last = (run_id.MANIFEST, run_id.METRICS)
    for item in sorted(stage.iterdir(), key=lambda p: last.index(p.name) + 1 if p.name in last else 0):
        os.replace(item, output_dir / item.name)  # metrics.json last: its presence means complete
    stage.rmdir()


def move_into(stage: Path, output_dir: Path, last: str | None = None) -> None:
    """Move staged files that are not a run (a search's report: no run id, no manifest) into
    `output_dir`, `last` moved last; nothing else in the folder is touched."""
    for item in sorted(stage.iterdir(), key=lambda p: p.name == last):
        os.replace(item, output_dir / item.name)
    stage.rmdir()
