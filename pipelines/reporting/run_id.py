"""Which run wrote an output directory, and whether every file in it is from that run.

Each run gets a run id, written into metrics.json, run_config.json, config.json
(`cardtune_run_id`) and the header of task_card.yaml, and its folder is sealed (`pipelines.sealing`)
with the manifest `run.json` (the name users' output folders carry), listing every file of the run
with its size and SHA-256. Publishing removes the previous run's metrics.json and run.json first
and moves the new ones in last, so at any moment the folder is the previous complete run, the new
complete run, or visibly incomplete (no metrics.json). `verify` is what
push.py, predict.py and the model card check before trusting a folder; it covers the files that
are published or used, not the reports for people (`staging.NOTES`) a user may annotate. An export
folder (scripts/export.py) carries a manifest of its own kind, with the run id of its source.
"""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import Any

from pipelines import sealing
from pipelines.errors import CardtuneError

MANIFEST = "run.json"
METRICS = "metrics.json"
CONFIG_KEY = "cardtune_run_id"
CARD_HEADER = "# run_id: "
# Files every cardtune run writes besides the model; one of them without a run.json means a
# cardtune folder whose publish did not complete.
RUN_FILES = ("run_config.json", "task_card.yaml")


class MixedRunError(CardtuneError):
    """An output directory that is incomplete or holds files of more than one run."""


def new_run_id() -> str:
    """Sortable and unique: UTC time and a random suffix."""
    return f"{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}-{uuid.uuid4().hex[:8]}"


def card_header(run_id: str) -> str:
    """The task_card.yaml line that carries the run id (a YAML comment: the card loads unchanged)."""
    return f"{CARD_HEADER}{run_id}\n"


def seal(stage: Path, run_id: str | None = None, kind: str = "run") -> str | None:
    """Seal the files staged in `stage` (`pipelines.sealing`) with `run.json`: the run id (of the
    staged metrics.json unless given), each file's size and SHA-256. `kind`: "run", or "export" for
    a folder of scripts/export.py (which carries the run id of the run it was exported from, or None)."""
    if kind == "run":
        run_id = json.loads((stage / METRICS).read_text(encoding="utf-8")).get("run_id") or new_run_id()
    sealing.write(stage, MANIFEST, {"run_id": run_id} if kind == "run" else {"run_id": run_id, "kind": kind})
    return run_id


def listed(out: Path) -> set[str]:
    """The files the run in `out` published, by its manifest (empty without one)."""
    try:
        return set(sealing.read(out, MANIFEST)[sealing.FILES])
    except sealing.Unsealed:
        return set()


def verify(out: Path, hashes: bool = True) -> str | None:
    """Raise `MixedRunError` unless `out` holds one complete run; returns its run id (None for a
    folder written before run ids, or a model folder cardtune did not write)."""
    try:
        manifest = sealing.read(out, MANIFEST)
    except sealing.Unsealed as err:
        if err.flaw.kind != "no manifest":
            raise _mixed(out, str(err.flaw)) from None
        metrics = _read_json(out / METRICS)
        stamped = metrics is not None and "run_id" in metrics
        if stamped or (metrics is None and _has_run_files(out)):
            raise MixedRunError(f"{out} holds an incomplete run (no {MANIFEST}: the run that wrote it stopped before "
                                "it finished publishing); rerun it, or pass the folder of a finished run") from None
        return None
    run_id = manifest.get("run_id")
    files = manifest[sealing.FILES]
    from pipelines.reporting.staging import NOTES

    flaw = sealing.check(out, MANIFEST, manifest, hashes=hashes, skip=NOTES)
    if flaw and manifest.get("kind") == "export":
        raise MixedRunError(f"{out} is a damaged export ({flaw.name} {_said(flaw, 'the export')}): "
                            "copy it again, or export again with scripts/export.py")
    if flaw:
        raise _mixed(out, f"{flaw.name} {_said(flaw, 'the run')}")
    stray = [n for n in _run_artefacts(out) if n not in files]
    if stray:
        raise _mixed(out, f"{', '.join(stray)} {'is' if len(stray) == 1 else 'are'} not part of run {run_id}")
    for name, found in stamped_ids(out).items():
        if found != run_id:
            raise _mixed(out, f"{name} names run {found}, {MANIFEST} names run {run_id}")
    return run_id


def finished(out: str | Path) -> dict[str, Any] | None:
    """metrics.json of the complete, verified run in `out`; None when there is none."""
    folder = Path(out)
    if not (folder / MANIFEST).is_file():
        return None
    try:
        verify(folder)
    except MixedRunError:
        return None
    return _read_json(folder / METRICS)


def stamped_ids(out: Path) -> dict[str, str | None]:
    """The run id each stamped file of `out` carries (files that are absent are left out)."""
    ids: dict[str, str | None] = {}
    for name, key in ((METRICS, "run_id"), ("run_config.json", "run_id"), ("config.json", CONFIG_KEY)):
        data = _read_json(out / name)
        if data is not None:
            ids[name] = data.get(key)
    card = out / "task_card.yaml"
    if card.is_file():
        with open(card, encoding="utf-8", errors="replace") as fh:
            head = [fh.readline() for _ in range(3)]
        ids[card.name] = next((line[len(CARD_HEADER):].strip() for line in head if line.startswith(CARD_HEADER)), None)
    return ids


def _mixed(out: Path, detail: str) -> MixedRunError:
    return MixedRunError(f"{out} mixes files of different runs ({detail}): a run stopped while publishing, "
                         "or files were changed afterwards; rerun training into this folder, or pass the "
                         "folder of a finished run")


def _said(flaw: sealing.Flaw, writer: str) -> str:
    """A file's flaw as a run's messages put it: by who wrote the file (the run, or the export)."""
    if flaw.kind == "size":
        return f"has {flaw.found} bytes, {writer} wrote {flaw.expected}"
    if flaw.kind == "content":
        return f"differs from the file {writer} wrote (SHA-256)"
    return "is missing"  # the only other flaw of a file when extra files are allowed


def _run_artefacts(out: Path) -> list[str]:
    """Files in `out` that a run publishes (so a stale one is noticed), checkpoints and hidden files aside."""
    from pipelines.reporting.staging import ARTEFACTS, NOTES

    known = {*ARTEFACTS, "config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"} - NOTES
    return sorted(p.name for p in out.iterdir() if p.is_file() and p.name in known)


def _has_run_files(out: Path) -> bool:
    if (out / "run_config.json").is_file():
        return True
    return "task_card.yaml" in stamped_ids(out) and stamped_ids(out)["task_card.yaml"] is not None


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {}  # present but unreadable: compared as "no run id", so it counts as a mismatch
    return data if isinstance(data, dict) else {}
