"""Export a saved classifier to ONNX (fp32 or dynamic int8) for deployment, verified on real rows.

The folder holds `model.onnx` (inputs named as the tokenizer names them, batch and sequence axes
dynamic, output `logits`), `config.json` with the label names, the tokenizer files, the task card
if the model has one, and `export.json`: precision, opset, versions and the verification against
the PyTorch model. `scripts/predict.py --model FOLDER` runs it with onnxruntime; the layout is
the one optimum's `ORTModelForSequenceClassification` reads.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from pipelines.errors import ModelError
from pipelines.prediction import backends
from pipelines.prediction.backends import EXPORT_INFO, ONNX_FILE
from pipelines.prediction.classifier import Classifier
from pipelines.prediction.onnx_graph import write_graph
from pipelines.prediction.partial import write_json_atomic

log = logging.getLogger(__name__)

def export_onnx(model_dir: str | Path, out_dir: str | Path, int8: bool,
                sample: tuple[list[str], list[str] | None]) -> dict[str, Any]:
    """Write the export folder (see the module docstring) and return what export.json holds.

    `sample`: real texts (and pair texts) on which the export is compared with the PyTorch model."""
    target = Path(out_dir)
    if target.exists() and any(target.iterdir()):
        raise ModelError(f"{target} exists and is not empty; export into a new folder")
    backends.import_onnxruntime()
    source = Classifier(model_dir, "cpu")
    target.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))  # renamed when complete
    try:
        info = _write(source, work, int8)
        info["verification"] = verify(source, Classifier(work), sample)
        write_json_atomic(work / EXPORT_INFO, info)
        if target.exists():
            target.rmdir()
        work.rename(target)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return info


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
