"""The one check that a local model folder is complete before anything loads it: config, weights,
tokenizer files and, for an ONNX export, its description. Training (`run.py --model DIR`),
prediction, export and push all call `check`, so a folder missing its tokenizer is one line
everywhere instead of a tokenizer transformers makes up from the config (5 special tokens: every
word `[UNK]`), and a damaged `export.json` is an error instead of a silent fp32."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from pipelines.errors import ModelError

CONFIG = "config.json"
ONNX_FILE = "model.onnx"  # the name optimum's ORTModel looks for, too
EXPORT_INFO = "export.json"
PRECISIONS = ("fp32", "int8")
# Any one of these holds a vocabulary a tokenizer can be built from (tokenizer_config.json alone does not).
VOCABULARIES = ("tokenizer.json", "vocab.txt", "vocab.json", "spiece.model", "sentencepiece.bpe.model",
                "tokenizer.model")
WEIGHTS = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json")


def is_export(folder: Path) -> bool:
    """A folder written by `scripts/export.py --onnx` (an ONNX graph beside config and tokenizer)."""
    return (folder / ONNX_FILE).is_file() or (folder / EXPORT_INFO).is_file()


def check(folder: str | Path, role: str = "model", tokenizer: bool = True) -> None:
    """Raise a one-line `ModelError` unless `folder` holds everything a model needs to load.

    `role` names the folder in the message (e.g. "--model"); `tokenizer=False` for a caller that
    loads only the network (its tokenizer is checked where it is loaded). Only local folders are
    checked; a Hub id is left to the loader."""
    path = Path(folder)
    if not path.is_dir():
        return
    fix = "copy the whole folder again from a good source, or pass the --output-dir of a finished run"
    config = path / CONFIG
    if not config.is_file():
        raise ModelError(f"{role} {path} is not a saved model folder (no {CONFIG}); {fix}")
    _json(config, role, fix)
    if is_export(path):
        export_precision(path, role)
    elif not any((path / name).is_file() for name in WEIGHTS):
        raise ModelError(f"{role} {path} has no weights file ({', '.join(WEIGHTS[::2])}); {fix}")
    if tokenizer and not any((path / name).is_file() for name in VOCABULARIES):
        raise ModelError(f"{role} {path} has no tokenizer files (one of {', '.join(VOCABULARIES)}): without them "
                         "every word would be an unknown token; copy the tokenizer files of the model it was "
                         "trained from into it (tokenizer.save_pretrained)")


def export_precision(folder: Path, role: str = "model") -> str:
    """The precision an ONNX export was written in, from its export.json (missing or damaged: an error)."""
    fix = "export again with `scripts/export.py OUT --onnx [--int8] --model MODEL --sample ROWS`"
    if not (folder / ONNX_FILE).is_file():
        raise ModelError(f"{role} {folder} has {EXPORT_INFO} but no {ONNX_FILE}; {fix}")
    if not (folder / EXPORT_INFO).is_file():
        raise ModelError(f"{role} {folder} has {ONNX_FILE} but no {EXPORT_INFO} (which says its precision); {fix}")
    info = _json(folder / EXPORT_INFO, role, fix)
    precision = info.get("precision")
    if precision not in PRECISIONS:
        raise ModelError(f"{role} {folder}: {EXPORT_INFO} names precision {precision!r}, expected one of "
                         f"{list(PRECISIONS)}; {fix}")
    return precision


def _json(path: Path, role: str, fix: str) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise ModelError(f"{role} {path.parent}: {path.name} is damaged ({type(err).__name__}); {fix}") from None
    if not isinstance(data, dict):
        raise ModelError(f"{role} {path.parent}: {path.name} is damaged (not a JSON object); {fix}")
    return data


@dataclass(frozen=True)
class SavedConfig:
    """What prediction reads of a saved model's config.json: read as JSON, because transformers'
    config code imports torch, which a prediction run by ONNX Runtime alone never needs."""

    id2label: dict[int, str]
    problem_type: str | None = None
    max_position_embeddings: int | None = None

    @property
    def num_labels(self) -> int:
        return len(self.id2label)


def saved_config(folder: Path, role: str = "--model") -> SavedConfig:
    """The label names, problem type and position table size of a checked model folder. Without
    `id2label`, transformers' default: two labels, LABEL_0 and LABEL_1."""
    fix = "copy the whole folder again from a good source, or pass the --output-dir of a finished run"
    data = _json(folder / CONFIG, role, fix)
    raw = data.get("id2label") or {0: "LABEL_0", 1: "LABEL_1"}
    try:
        id2label = {int(k): str(v) for k, v in dict(raw).items()}
    except (TypeError, ValueError):
        raise ModelError(f"{role} {folder}: {CONFIG} has an id2label that does not map numbers to names; "
                         f"{fix}") from None
    if sorted(id2label) != list(range(len(id2label))):
        raise ModelError(f"{role} {folder}: {CONFIG}'s id2label numbers {sorted(id2label)}, expected 0 to "
                         f"{len(id2label) - 1}; {fix}")
    positions = data.get("max_position_embeddings")
    return SavedConfig(id2label, data.get("problem_type"), positions if isinstance(positions, int) else None)
