"""What one prediction run will do: the options a user sets, resolved against the model and the file.

`resolve` checks the columns and lengths before any row is read; `fingerprint` is what a `--resume`
must find unchanged.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from pipelines.distributed import COLLECTIVE_TIMEOUT_S
from pipelines.errors import DataError, ModelError
from pipelines.prediction import delimited as tables
from pipelines.prediction.classifier import Classifier

PREDICTED, PREDICTED_PROB, ERROR = "predicted", "predicted_prob", "error"


@dataclass
class PredictOptions:
    """Everything `scripts/predict.py` can set (README, "Batch prediction", says why these defaults)."""

    text_column: str | None = None  # default: the first text column of the saved task card
    text_pair_column: str | None = None  # default: the card's second text column, if any
    label_column: str | None = None  # gold labels -> accuracy / MCC / F1 for the file
    sep: str | None = None  # default: tab for .tsv/.tab, comma otherwise
    encoding: str = "utf-8-sig"  # UTF-8 with or without BOM
    max_length: int | None = None  # default: the card's, else the model's limit (at most 512)
    batch_size: int = 64
    chunk_size: int = 4096
    probs: bool = True  # one probability column per label
    resume: bool = False
    device: str | None = None  # default: cuda when available, else cpu (int8: cpu)
    precision: str = "fp32"  # fp32, int8 (dynamic int8 matrix products, CPU), bf16 (autocast), auto (backends)
    backend: str = "auto"  # int8 by onnxruntime unless "torch" (PyTorch's dynamic int8, for comparison)
    agreement: float = 0.995  # int8: re-score in fp32 the rows needed to agree with fp32 on this share; 0: none
    calibration: str | None = None  # int8: texts to calibrate on (default: the run's validation_predictions.csv)
    threads: int | None = None  # ONNX Runtime's threads (default: this process's share of the cores)
    progress: bool | None = None  # None: a bar when stderr is a terminal, log lines otherwise
    ddp_timeout: float = COLLECTIVE_TIMEOUT_S  # seconds a launched run's processes wait for each other
    adapt_threads: bool = False  # torch threads follow the cores other jobs leave free (hardware.ThreadGovernor)


@dataclass(frozen=True)
class Plan:
    """The settings of one run, resolved from the options, the card and the file's header."""

    text_columns: tuple[str, ...]
    label_column: str | None
    max_length: int
    truncation: str | None  # None: no saved card, features.encode's default for the texts
    head_tokens: int | float | None  # head_tail's split, else None
    batch_size: int
    chunk_size: int
    probs: bool
    sep: str
    out_sep: str
    encoding: str
    header: tuple[str, ...]


def resolve(clf: Classifier, source: Path, target: Path, opts: PredictOptions) -> Plan:
    """The run's settings: columns checked against the file's header, lengths against the model."""
    sep = tables.sep_for(source, opts.sep)
    columns = tables.read_columns(source, sep, opts.encoding)
    text_columns = text_columns_of(clf, opts)
    for names, hint in ((text_columns, "name the text column(s) with --text-column / --text-pair-column"),
                        ([opts.label_column] if opts.label_column else [], "check --label-column")):
        tables.check_columns(source, columns, list(names), hint)
    if opts.max_length and opts.max_length > clf.token_limit():
        raise ModelError(f"--max-length {opts.max_length} is more than the model in {clf.path} takes "
                         f"({clf.token_limit()} tokens); pass at most {clf.token_limit()}")
    added = [PREDICTED, PREDICTED_PROB] + ([f"prob_{n}" for n in clf.labels] if opts.probs else []) + [ERROR]
    clash = [c for c in added if c in columns]
    if clash:
        raise DataError(f"{source} already has column(s) {clash} that predictions add; rename them in the input")
    truncation, head_tokens = clf.cut()  # the training run's cut, from its saved card
    return Plan(
        text_columns=text_columns, label_column=opts.label_column,
        max_length=opts.max_length or clf.default_max_length(), truncation=truncation, head_tokens=head_tokens,
        batch_size=opts.batch_size, chunk_size=opts.chunk_size, probs=opts.probs, sep=sep,
        out_sep=tables.sep_for(target) if target.suffix.lower() in (".csv", *tables.TSV_SUFFIXES) else sep,
        encoding=opts.encoding, header=tuple(columns + added),
    )


def text_columns_of(clf: Classifier, opts: PredictOptions) -> tuple[str, ...]:
    """--text-column / --text-pair-column, else the saved card's text_columns."""
    if opts.text_column:
        return (opts.text_column,) + ((opts.text_pair_column,) if opts.text_pair_column else ())
    if clf.card is None:
        raise DataError(f"{clf.path} has no task_card.yaml (a model trained elsewhere?); name the text column "
                        "with --text-column (and --text-pair-column for sentence pairs)")
    card_columns = clf.card.text_columns
    return (card_columns[0], opts.text_pair_column) if opts.text_pair_column else tuple(card_columns)


def fingerprint(clf: Classifier, source: Path, plan: Plan) -> dict[str, Any]:
    """What must not change between an interrupted run and its --resume (batching may)."""
    settings = {k: v for k, v in asdict(plan).items() if k not in ("batch_size", "chunk_size")}
    # The input's content is checked row by row on resume (ConsumedRows): an edit of the rows already
    # predicted is refused, an appended row is simply predicted.
    fingerprint = {"precision": clf.precision, "backend": clf.backend,
                   "input": str(source.resolve()), "model": str(clf.path.resolve()),
                   "model_run": clf.run_id or (clf.path / "config.json").stat().st_mtime_ns, **settings}
    if clf.graph:
        fingerprint["graph"] = clf.graph
    return json.loads(json.dumps(fingerprint))  # tuples -> lists, as the state file will hold them
