"""The int8 graph of a saved model, built once and kept in cardtune's cache.

Layout (`$CARDTUNE_CACHE/graphs/`, sealed by `modeling.offline.model_cache`: a manifest with the sha256
of every file, written last; a damaged or partial entry is rebuilt with a warning)::

    graphs/int8-<hash>/model.onnx         the quantized graph ONNX Runtime runs
    graphs/int8-<hash>/fp32.onnx          the same model in fp32, which re-scores the rows int8 is unsure of
    graphs/int8-<hash>/calibration.json   int8 margins and fp32 agreement on the calibration rows

`<hash>` covers the model folder's files (weights, config, tokenizer, card, validation texts) and
the graph recipe (opset, attention, quantization, library versions) and whether the CPU has VNNI:
a retrained model, another recipe, another onnxruntime or another kind of CPU gets its own entry.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pipelines import filesystem
from pipelines.modeling.offline import model_cache
from pipelines.prediction import backends

log = logging.getLogger(__name__)

GRAPH_FILE = backends.ONNX_FILE
FP32_FILE = "fp32.onnx"
CALIBRATION_FILE = "calibration.json"
# What re-scores the cascade's unsure rows (part of the recipe: an entry without FP32_FILE is another one).
RESCORING = "fp32 ONNX graph"


def graphs_dir() -> Path:
    """Where built graphs live."""
    return model_cache.cache_root() / "graphs"


def model_digest(folder: Path) -> str:
    """sha256 over the names and contents of the model folder's top-level files (hidden ones aside:
    locks and staging), so any change to the model, its tokenizer or its card gives a new key."""
    h = hashlib.sha256()
    for path in sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")):
        h.update(path.name.encode("utf-8") + b"\0" + filesystem.sha256(path).encode("ascii") + b"\0")
    return h.hexdigest()


def recipe_of(graph_recipe: dict[str, Any]) -> str:
    """The recipe string the cache entry is sealed with: how the graph is made, and by what."""
    packages = backends.versions(["torch", "transformers", "onnx", "onnxruntime"])
    # The calibration stored with the graph was measured with this CPU's int8 kernels, and without
    # VNNI ONNX Runtime's products saturate in 16 bits (docs/int8.md): a cache shared by machines of
    # both kinds (a shared home) keeps an entry per kind.
    cpu = {"vnni": backends.int8_kernels() == "VNNI"}
    return json.dumps({"graph": graph_recipe, "versions": packages, "cpu": cpu}, sort_keys=True)


def cached_graph(model_dir: Path, graph_recipe: dict[str, Any],
                 build: Callable[[Path], dict[str, Any] | None]) -> tuple[Path, dict[str, Any] | None, float | None]:
    """(folder of the graphs, their calibration or None, build seconds or None when reused).

    `build(folder)` writes GRAPH_FILE and FP32_FILE into `folder` and returns the calibration (or
    None); it runs only when no intact entry exists for this model and recipe."""
    recipe = recipe_of(graph_recipe)
    key = "int8-" + hashlib.sha256((model_digest(model_dir) + recipe).encode("utf-8")).hexdigest()[:24]
    built: list[float] = []

    def make(folder: Path) -> None:
        log.info("building the int8 graph of %s (once: later calls load it from %s)", model_dir, graphs_dir() / key)
        start = time.perf_counter()
        calibration = build(folder)
        if calibration is not None:
            (folder / CALIBRATION_FILE).write_text(json.dumps(calibration, sort_keys=True) + "\n", encoding="utf-8")
        built.append(time.perf_counter() - start)

    with filesystem.writing(graphs_dir(), "cache the int8 graph"):
        folder = model_cache.prepare(key, recipe, make, root=graphs_dir())
    calibration_path = folder / CALIBRATION_FILE
    calibration = json.loads(calibration_path.read_text(encoding="utf-8")) if calibration_path.is_file() else None
    if built:
        log.info("built the int8 graph of %s in %.1f s", model_dir, built[0])
    else:
        log.info("int8 graph of %s loaded from the cache (%s)", model_dir, folder)
    return folder, calibration, built[0] if built else None
