"""Staged outputs: every artefact is written into a hidden staging folder first and moved into
place by `publish`, so an output directory never holds a half-written report."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

ARTEFACTS = (
    "metrics.json", "epochs.csv", "epochs.md", "learning_curve.png", "test_predictions.csv",
    "summary.md", "task_card.yaml", "run_config.json",
    *(f"{kind}_{split}.{ext}" for kind in ("confusion", "per_class") for split in ("validation", "test")
      for ext in ("csv", "png")),
)


def staging_dir(output_dir: Path) -> Path:
    """A fresh hidden folder inside `output_dir` (same filesystem, so moves are renames)."""
    stage = output_dir / f".staging-{os.getpid()}"
    shutil.rmtree(stage, ignore_errors=True)
    stage.mkdir(parents=True)
    return stage


def publish(stage: Path, output_dir: Path) -> None:
    """Move every staged file into `output_dir`; stale artefacts of an earlier run are removed."""
    for name in ARTEFACTS:
        if not (stage / name).exists() and (output_dir / name).exists():
            (output_dir / name).unlink()
    for item in sorted(stage.iterdir(), key=lambda p: p.name == "metrics.json"):
        os.replace(item, output_dir / item.name)  # metrics.json last: its presence means complete
    stage.rmdir()

