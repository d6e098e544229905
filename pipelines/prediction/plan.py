"""What one prediction run will do: the options a user sets, resolved against the model and the file.

`resolve` checks the columns and lengths before any row is read; `fingerprint` is what a `--resume`
must find unchanged.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from pipelines.distributed import COLLECTIVE_TIMEOUT_S
from pipelines.errors import DataError, ModelError
from pipelines.option_fields import Range, encoding_name, option
from pipelines.prediction import delimited as tables
from pipelines.prediction.classifier import Classifier
from pipelines.training.options import THREADS, TOKEN_LIMIT

PREDICTED, PREDICTED_PROB, ERROR = "predicted", "predicted_prob", "error"


@dataclass
class PredictOptions:
    """Everything a prediction run can set, declared once: `cardtune-predict`'s flags are generated from
    these fields (pipelines/cli/predict.py), and library callers get the same defaults
    (docs/prediction.md says why these)."""

    text_column: str | None = option(None, "Text column (default: the saved task card's).")
    text_pair_column: str | None = option(None, "Second text column, for sentence-pair models (default: the card's "
                                                "second text column, if any).")
    label_column: str | None = option(None, "Gold labels in the input: also report accuracy / MCC / F1.")
    sep: str | None = option(None, "Input delimiter (default: tab for .tsv/.tab, comma otherwise; '\\t' for tab).")
    encoding: str = option("utf-8-sig", "Input encoding (default: UTF-8 with or without BOM).", parse=encoding_name)
    max_length: int | None = option(None, "Token limit (default: the card's, else the model's, at most 512).",
                                    range=TOKEN_LIMIT)
    batch_size: int = option(64, "Rows per forward pass.", range=Range(1))
    chunk_size: int = option(4096, "Rows read, sorted and written at a time.", range=Range(1))
    probs: bool = option(True, "One probability column per label; --no-probs leaves them out.")
    resume: bool = option(False, "Continue an interrupted run from the rows already written.")
    device: str | None = option(None, "Torch device (default: cuda when available, else cpu; int8: cpu).")
    precision: Literal["auto", "fp32", "bf16", "int8"] = option(
        "auto", "auto: bf16 on CPUs with AMX; int8 with fp32 re-scoring on other CPUs with VNNI or AVX2, for a model "
                "folder with validation texts when onnxruntime is installed; else fp32 (an ONNX export: the "
                "precision it was exported in); fp32; bf16 (autocast); int8 (ONNX Runtime on the CPU, unsure rows "
                "re-scored in fp32).",
        flags={"--fp32": ("fp32", "--precision fp32: fp32 everywhere (default: bf16 on CPUs with AMX, int8 with "
                                  "fp32 re-scoring on CPUs with VNNI or AVX2)."),
               "--bf16": ("bf16", "--precision bf16: bf16 autocast (the default on CPUs with AMX)."),
               "--int8": ("int8", "--precision int8: int8 in ONNX Runtime on the CPU (needs cardtune[onnx]); rows "
                                  "int8 is unsure of are re-scored in fp32 to meet --agreement (docs/int8.md).")})
    # int8 by onnxruntime unless "torch" (PyTorch's dynamic int8, kept for comparison by the benchmarks)
    backend: str = option("auto", "int8 backend: auto (onnxruntime) or torch.", cli=False)
    agreement: float = option(
        0.995, "With --int8: re-score in fp32 enough rows to keep the fp32 label on this share of rows, as "
               "calibrated on the run's validation texts (0: int8 alone).",
        range=Range(0, 1, expects="a share between 0 and 1 (e.g. 0.995)"))
    calibration: str | None = option(None, "With --int8: a CSV/TSV of texts (same text columns) to calibrate the "
                                           "re-scoring on, for a model folder without validation_predictions.csv.")
    threads: int | None = option(None, "CPU threads (default: the cores other jobs leave free, checked every chunk).",
                                 range=THREADS)
    progress: bool | None = option(None, "A bar (True), log lines (False); None: a bar when stderr is a terminal.",
                                   cli=False)
    ddp_timeout: float = option(COLLECTIVE_TIMEOUT_S, "Launched runs: seconds a process waits for the others before "
                                                      "it stops (raise it when one chunk takes a process longer).",
                                range=Range(0, None, False))
    # torch threads follow the cores other jobs leave free (hardware.ThreadGovernor); the command line sets it
    # when --threads is not given
    adapt_threads: bool = option(False, "Torch threads follow the cores other jobs leave free.", cli=False)


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
    """What must not change between an interrupted run and its --resume (batching may, except in int8:
    dynamic quantization takes its activation ranges from each batch, so the batches set the bytes)."""
    batching = () if clf.precision == "int8" else ("batch_size", "chunk_size")
    settings = {k: v for k, v in asdict(plan).items() if k not in batching}
    # The input's content is checked row by row on resume (ConsumedRows): an edit of the rows already
    # predicted is refused, an appended row is simply predicted.
    fingerprint = {"precision": clf.precision, "backend": clf.backend,
                   "input": str(source.resolve()), "model": str(clf.path.resolve()),
                   "model_run": clf.run_id or (clf.path / "config.json").stat().st_mtime_ns, **settings}
    if clf.graph:
        fingerprint["graph"] = clf.graph
    return json.loads(json.dumps(fingerprint))  # tuples -> lists, as the state file will hold them
