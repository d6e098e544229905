"""Export a saved classifier to ONNX (fp32 or dynamic int8) for deployment, verified on real rows.

The folder holds `model.onnx` (inputs named as the tokenizer names them, batch and sequence axes
dynamic, output `logits`), `config.json` with the label names, the tokenizer files, the task card
if the model has one, and `export.json`: precision, opset, versions and the verification against
the PyTorch model. `scripts/predict.py --model FOLDER` runs it with onnxruntime; the layout is
the one optimum's `ORTModelForSequenceClassification` reads.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from pipelines import filesystem
from pipelines.errors import ModelError
from pipelines.prediction import backends
from pipelines.prediction.backends import EXPORT_INFO, ONNX_FILE
from pipelines.prediction.classifier import Classifier
from pipelines.prediction.onnx_graph import write_graph
from pipelines.prediction.partial import write_json_atomic
from pipelines.reporting import run_id

log = logging.getLogger(__name__)

WORK = ".export-"  # the hidden working folder of an export in progress: `.export-PID` (+ `.NAME` beside OUT)


def check_target(out_dir: str | Path) -> Path:
    """Before any work: OUT must be new (or an empty folder) on a disk we can write to."""
    target = Path(out_dir)
    filesystem.check_output_dir(target, "OUT")
    if target.is_dir() and any(p for p in target.iterdir() if not _stale_work(p)):
        raise ModelError(f"{target} exists and is not empty; export into a new folder")
    return target


def export_onnx(model_dir: str | Path, out_dir: str | Path, int8: bool,
                sample: tuple[list[str], list[str] | None]) -> dict[str, Any]:
    """Write the export folder (see the module docstring) and return what export.json holds.

    `sample`: real texts (and pair texts) on which the export is compared with the PyTorch model.
    The folder is built in a hidden working folder and appears complete or not at all; a working
    folder left by a killed export is removed by the next one."""
    target = check_target(out_dir)
    backends.import_onnxruntime()
    source = Classifier(model_dir, "cpu")
    with filesystem.writing(target, "write the export", "nothing was exported"):
        _remove_stale(target)
        work = _work_folder(target)
        try:
            info = _write(source, work, int8)
            run_id.seal(work, source.run_id, kind="export")  # the copied card and config name the source's run
            info["verification"] = verify(source, Classifier(work), sample)
            write_json_atomic(work / EXPORT_INFO, info)
            run_id.seal(work, source.run_id, kind="export")
            _move_into_place(work, target)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    return info


def _work_folder(target: Path) -> Path:
    """`.NAME.export-PID` beside a new OUT (renamed into place); inside an existing empty OUT (it may
    be a mount point, where a rename from outside cannot land), `OUT/.export-PID`. Made with the
    permissions a new folder gets (the umask), not mkdtemp's 0700."""
    if target.is_dir():
        work = target / f"{WORK}{os.getpid()}"
    else:
        target.parent.mkdir(parents=True, exist_ok=True)
        work = target.parent / f".{target.name}{WORK}{os.getpid()}"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    return work


def _move_into_place(work: Path, target: Path) -> None:
    if work.parent != target:
        work.rename(target)
        filesystem.fsync(target.parent)
        return
    last = run_id.MANIFEST  # until it is in, the folder reads as incomplete (or as a damaged export)
    for item in sorted(work.iterdir(), key=lambda p: p.name == last):
        os.replace(item, target / item.name)
    work.rmdir()


def _stale_work(path: Path) -> bool:
    """A working folder of an export whose process is gone."""
    match = re.search(re.escape(WORK) + r"(\d+)$", path.name)
    if not (match and path.is_dir() and path.name.startswith(".")):
        return False
    pid = int(match.group(1))
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def _remove_stale(target: Path) -> None:
    """Working folders of killed exports into `target` (beside it and inside it)."""
    places = [(target.parent, f".{target.name}{WORK}*"), (target, f"{WORK}*")]
    for folder, pattern in places:
        with contextlib.suppress(OSError):
            for stale in folder.glob(pattern):
                if _stale_work(stale):
                    log.info("removing %s, left by an export that was killed", stale)
                    shutil.rmtree(stale, ignore_errors=True)


def _write(source: Classifier, folder: Path, int8: bool) -> dict[str, Any]:
    """model.onnx, config, tokenizer, card and a first export.json (precision) into `folder`."""
    graph = write_graph(source.runner.model, source.tokenizer, folder / ONNX_FILE, int8)
    source.config.save_pretrained(folder)
    source.tokenizer.save_pretrained(folder)
    if (source.path / "task_card.yaml").is_file():
        shutil.copy2(source.path / "task_card.yaml", folder / "task_card.yaml")
    info = {"format": "onnx", "file": ONNX_FILE, "precision": "int8" if int8 else "fp32", **graph,
            "labels": source.labels, "source_model": str(source.path.resolve()),
            "versions": backends.versions(["torch", "transformers", "onnx", "onnxruntime"])}
    write_json_atomic(folder / EXPORT_INFO, info)  # Classifier(folder) reads the precision from it
    return info


def verify(reference: Classifier, exported: Classifier, sample: tuple[list[str], list[str] | None],
           max_length: int | None = None, batch_size: int = 64) -> dict[str, Any]:
    """Label agreement and the largest probability difference of `exported` against `reference`."""
    first, second = sample
    if not first:
        raise ModelError("the verification sample has no row with text; pass --sample with real rows")
    length = max_length or reference.default_max_length()
    truncation, head_tokens = reference.cut()
    expected, _ = reference.score(first, second, length, truncation, batch_size, head_tokens)
    got, _ = exported.score(first, second, length, truncation, batch_size, head_tokens)
    same = int((expected.argmax(axis=1) == got.argmax(axis=1)).sum())
    return {"rows": len(first), "label_agreement": same / len(first), "labels_identical": same,
            "max_prob_diff": float(np.abs(expected - got).max()), "max_length": length}
