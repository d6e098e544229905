"""Streaming batch prediction: a saved classifier over a CSV/TSV file, written chunk by chunk.

Each chunk is tokenized in one call (fast tokenizer), its rows sorted by token length and run in
batches padded only to their own longest row, then written back in input order. Only one chunk
is in memory at a time, so memory stays flat however long the file is.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from pipelines import filesystem
from pipelines.card.cards import load_card
from pipelines.data import features
from pipelines.errors import DataError, ModelError
from pipelines.evaluation import metrics
from pipelines.modeling.loading import load_trained
from pipelines.prediction import delimited as tables
from pipelines.prediction.consumed import ConsumedRows
from pipelines.prediction.partial import PartialOutput
from pipelines.prediction.progress import Progress
from pipelines.reporting import run_id, run_lock

log = logging.getLogger(__name__)

PREDICTED, PREDICTED_PROB, ERROR = "predicted", "predicted_prob", "error"
TOKEN_CAP = 512  # default limit for a model saved without a card (BERT-family position tables)


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
    device: str | None = None  # default: cuda when available, else cpu
    progress: bool | None = None  # None: a bar when stderr is a terminal, log lines otherwise


@dataclass
class Tally:
    """Running counts; saved with each chunk so a resumed run reports the whole file."""

    rows: int = 0
    predicted: int = 0
    truncated: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    no_gold: int = 0  # rows whose gold label is empty or not one of the model's labels
    confusion: list[list[int]] = field(default_factory=list)  # [gold][predicted]


@dataclass
class PredictSummary:
    """What a prediction run did, for the script's report."""

    output: Path
    device: str
    max_length: int
    tally: Tally
    resumed_from: int
    seconds: float
    metrics: dict[str, float] | None

    @property
    def rows_per_s(self) -> float:
        """Rows predicted per second by this run (rows skipped by --resume not counted)."""
        return (self.tally.rows - self.resumed_from) / self.seconds if self.seconds > 0 else 0.0


class Classifier:
    """A saved sequence classifier, its tokenizer and label names, and the card saved with it."""

    def __init__(self, model_dir: str | Path, device: str | None = None) -> None:
        self.path = Path(model_dir)
        run_lock.refuse_if_busy(self.path, "predicting with it")
        self.run_id = run_id.verify(self.path)  # a folder mixing two runs' files (a publish cut short) is refused
        self.model, self.tokenizer = load_trained(self.path)
        features.check_fast(self.tokenizer, str(self.path))
        config = self.model.config
        if config.problem_type == "regression":
            raise ModelError(f"{self.path} holds a regression model; predict.py handles classifiers only")
        self.labels = [str(config.id2label[i]) for i in range(config.num_labels)]
        # The text-classification pipeline's rule: sigmoid for multi-label or single-logit heads.
        self.sigmoid = config.problem_type == "multi_label_classification" or config.num_labels == 1
        card = self.path / "task_card.yaml"
        self.card = load_card(card) if card.is_file() else None
        try:
            self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
            self.model.to(self.device)
        except (RuntimeError, AssertionError) as err:
            raise ModelError(f"cannot run the model on device '{device}' ({err}); try --device cpu") from None

    def token_limit(self) -> int:
        """The longest input the model takes: its tokenizer's limit or position table, whichever is less."""
        limits = (self.tokenizer.model_max_length, getattr(self.model.config, "max_position_embeddings", 0))
        sane = [int(x) for x in limits if x and x < 1_000_000]  # an unset tokenizer limit reads as 1e30
        return min(sane) if sane else TOKEN_CAP

    def default_max_length(self) -> int:
        """The card's max_length, else the model's token limit, at most 512."""
        return self.card.max_length if self.card is not None else min(TOKEN_CAP, self.token_limit())

    def score(
        self, first: list[str], second: list[str] | None, max_length: int, truncation: str, batch_size: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """Probabilities (rows x labels) and a truncated flag per row, in the order given."""
        probs = np.zeros((len(first), len(self.labels)))
        if not first:
            return probs, np.zeros(0, dtype=bool)
        enc = features.encode(self.tokenizer, first, second, max_length, truncation)
        inputs = {k: enc[k] for k in self.tokenizer.model_input_names if k in enc}
        order = np.argsort(-np.asarray(enc["length"]), kind="stable")  # similar lengths share a batch
        with torch.inference_mode():
            for start in range(0, len(order), batch_size):
                rows = order[start : start + batch_size]
                batch = self.tokenizer.pad({k: [v[i] for i in rows] for k, v in inputs.items()}, return_tensors="pt")
                logits = self.model(**batch.to(self.device)).logits.float().cpu().numpy().astype(np.float64)
                probs[rows] = 1 / (1 + np.exp(-logits)) if self.sigmoid else metrics.softmax(logits)
        return probs, np.asarray(enc["truncated"], dtype=bool)


@dataclass(frozen=True)
class _Plan:
    """The settings of one run, resolved from the options, the card and the file's header."""

    text_columns: tuple[str, ...]
    label_column: str | None
    max_length: int
    truncation: str
    batch_size: int
    chunk_size: int
    probs: bool
    sep: str
    out_sep: str
    encoding: str
    header: tuple[str, ...]


def predict_file(
    model_dir: str | Path, input_path: str | Path, output_path: str | Path, options: PredictOptions | None = None
) -> PredictSummary:
    """Predict every row of a CSV/TSV file with a saved classifier; see the module docstring."""
    opts = options or PredictOptions()
    source, target = Path(input_path), Path(output_path)
    if not source.is_file():
        raise DataError(f"input file {source} not found")
    if target.resolve() == source.resolve():
        raise DataError(f"--output {target} is the input file; write the predictions to another file")
    clf = Classifier(model_dir, opts.device)
    plan = _plan(clf, source, target, opts)
    out = PartialOutput(target, _fingerprint(clf, source, plan))
    with filesystem.writing(target.parent, f"write {out.partial.name}"):
        state = out.open(opts.resume)
    tally = Tally(**state["counters"]) if state else Tally(confusion=[[0] * len(clf.labels) for _ in clf.labels])
    resumed_from, clock = tally.rows, time.perf_counter()
    consumed = ConsumedRows(source, state and state.get("consumed"), resumed_from)
    log.info("predicting %s with %s on %s: text %s, max_length %d, batch size %d", source, clf.path,
             clf.device, list(plan.text_columns), plan.max_length, plan.batch_size)
    progress = Progress(source, resumed_from, opts.progress)
    try:
        if state is None:
            out.write(tables.to_text([list(plan.header)], plan.out_sep))
            out.commit(0, asdict(tally), consumed.digest())
        for frame in tables.chunks(source, plan.sep, plan.encoding, plan.chunk_size, resumed_from, consumed.add):
            consumed.add(frame)
            rows = _chunk_rows(clf, frame, plan, tally)
            out.write(tables.to_text(rows, plan.out_sep, tally.rows - len(rows) + 1, plan.header))
            out.commit(tally.rows, asdict(tally), consumed.digest())  # only now do these rows count as done
            progress.update(tally.rows)
        consumed.check(at_end=True)
    except Exception as err:
        if not filesystem.is_write_failure(err):
            raise
        kept = out.salvage()
        after = (f"the first {kept} rows are kept: free some space, then rerun with --resume" if kept
                 else "nothing was kept")
        raise filesystem.WriteError.of(err, target.parent, f"write {out.partial.name}", after) from None
    finally:
        progress.close()
        out.close()
    out.finish()
    summary = PredictSummary(target, str(clf.device), plan.max_length, tally, resumed_from,
                             time.perf_counter() - clock, _file_metrics(tally, len(clf.labels), plan))
    _log_summary(summary)
    return summary


def _plan(clf: Classifier, source: Path, target: Path, opts: PredictOptions) -> _Plan:
    sep = tables.sep_for(source, opts.sep)
    columns = tables.read_columns(source, sep, opts.encoding)
    text_columns = _text_columns(clf, opts)
    for names, hint in ((text_columns, "name the text column(s) with --text-column / --text-pair-column"),
                        ([opts.label_column] if opts.label_column else [], "check --label-column")):
        missing = [c for c in names if c not in columns]
        if missing:
            names = ", ".join(map(repr, missing))
            raise DataError(f"{source}: no column {names}; the file has columns {columns}; {hint}")
    if opts.max_length and opts.max_length > clf.token_limit():
        raise ModelError(f"--max-length {opts.max_length} is more than the model in {clf.path} takes "
                         f"({clf.token_limit()} tokens); pass at most {clf.token_limit()}")
    added = [PREDICTED, PREDICTED_PROB] + ([f"prob_{n}" for n in clf.labels] if opts.probs else []) + [ERROR]
    clash = [c for c in added if c in columns]
    if clash:
        raise DataError(f"{source} already has column(s) {clash} that predictions add; rename them in the input")
    return _Plan(
        text_columns=text_columns, label_column=opts.label_column,
        max_length=opts.max_length or clf.default_max_length(),
        truncation=clf.card.truncation if clf.card else "longest_first",
        batch_size=opts.batch_size, chunk_size=opts.chunk_size, probs=opts.probs, sep=sep,
        out_sep=tables.sep_for(target) if target.suffix.lower() in (".csv", *tables.TSV_SUFFIXES) else sep,
        encoding=opts.encoding, header=tuple(columns + added),
    )


def _text_columns(clf: Classifier, opts: PredictOptions) -> tuple[str, ...]:
    """--text-column / --text-pair-column, else the saved card's text_columns."""
    if opts.text_column:
        return (opts.text_column,) + ((opts.text_pair_column,) if opts.text_pair_column else ())
    if clf.card is None:
        raise DataError(f"{clf.path} has no task_card.yaml (a model trained elsewhere?); name the text column "
                        "with --text-column (and --text-pair-column for sentence pairs)")
    card_columns = clf.card.text_columns
    return (card_columns[0], opts.text_pair_column) if opts.text_pair_column else tuple(card_columns)


def _fingerprint(clf: Classifier, source: Path, plan: _Plan) -> dict[str, Any]:
    """What must not change between an interrupted run and its --resume (batching may)."""
    settings = {k: v for k, v in asdict(plan).items() if k not in ("batch_size", "chunk_size")}
    # The input's content is checked row by row on resume (ConsumedRows): an edit of the rows already
    # predicted is refused, an appended row is simply predicted.
    fingerprint = {"input": str(source.resolve()), "model": str(clf.path.resolve()),
                   "model_run": clf.run_id or (clf.path / "config.json").stat().st_mtime_ns, **settings}
    return json.loads(json.dumps(fingerprint))  # tuples -> lists, as the state file will hold them


def _text_problem(values: tuple, columns: tuple[str, ...]) -> str:
    """Why a row cannot be predicted ('' when it can)."""
    for value, column in zip(values, columns):
        if not isinstance(value, str):
            return f"missing text in column `{column}`"
        if not value.strip():
            return f"empty text in column `{column}`"
    return ""


def _chunk_rows(clf: Classifier, frame: pd.DataFrame, plan: _Plan, tally: Tally) -> list[list[str]]:
    """Output rows of one chunk, in input order: the input cells, then the prediction columns."""
    texts = list(zip(*(frame[c].tolist() for c in plan.text_columns)))
    problems = [_text_problem(t, plan.text_columns) for t in texts]
    ok = [i for i, p in enumerate(problems) if not p]
    pair = len(plan.text_columns) == 2
    probs, truncated = clf.score([texts[i][0] for i in ok], [texts[i][1] for i in ok] if pair else None,
                                 plan.max_length, plan.truncation, plan.batch_size)
    best = probs.argmax(axis=1)
    width = 2 + (len(clf.labels) if plan.probs else 0)
    added = [[""] * width + [p] for p in problems]
    for i, k, row in zip(ok, best.tolist(), probs.tolist()):  # Python floats format twice as fast
        added[i] = [clf.labels[k], f"{row[k]:.6f}", *([f"{p:.6f}" for p in row] if plan.probs else ()), ""]
    for p in filter(None, problems):
        tally.errors[p] = tally.errors.get(p, 0) + 1
    if plan.label_column:
        _count_gold(frame[plan.label_column].tolist(), ok, best, clf.labels, tally)
    tally.rows += len(frame)
    tally.predicted += len(ok)
    tally.truncated += int(truncated.sum())
    cells = frame.fillna("").to_numpy(dtype=object).tolist()
    return [row + extra for row, extra in zip(cells, added)]


def _count_gold(gold: list, ok: list[int], best: np.ndarray, labels: list[str], tally: Tally) -> None:
    """Add the chunk's predicted rows to the confusion counts; gold may be a name or an id."""
    index = {str(i): i for i in range(len(labels))} | {name: i for i, name in enumerate(labels)}  # names first
    for j, i in enumerate(ok):
        g = index.get(gold[i].strip()) if isinstance(gold[i], str) else None
        if g is None:
            tally.no_gold += 1
        else:
            tally.confusion[g][int(best[j])] += 1


def _file_metrics(tally: Tally, num_labels: int, plan: _Plan) -> dict[str, float] | None:
    if not plan.label_column:
        return None
    counts = np.asarray(tally.confusion)
    if counts.sum() == 0:
        log.warning("no predicted row has a gold label in column `%s` that names a model label", plan.label_column)
        return None
    gold, pred = (np.repeat(axis.ravel(), counts.ravel()) for axis in np.indices(counts.shape))
    return metrics.compute(gold, pred, num_labels)


def _log_summary(summary: PredictSummary) -> None:
    t = summary.tally
    log.info("wrote %s: %d rows, %d predicted, %d with an error, %d truncated at %d tokens (%.0f rows/s)",
             summary.output, t.rows, t.predicted, sum(t.errors.values()), t.truncated, summary.max_length,
             summary.rows_per_s)
    if t.no_gold:
        log.warning("%d predicted row(s) have an empty or unknown gold label and are left out of the metrics",
                    t.no_gold)
