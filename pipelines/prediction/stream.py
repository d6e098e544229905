"""Streaming batch prediction: a saved classifier over a CSV/TSV file, written chunk by chunk.

Each chunk is tokenized in one call (fast tokenizer), its rows sorted by token length and run in
batches padded only to their own longest row, then written back in input order. Only one chunk
is in memory at a time, so memory stays flat however long the file is.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pipelines import filesystem, hardware
from pipelines.errors import DataError
from pipelines.evaluation import metrics
from pipelines.prediction import backends, cascade, shards
from pipelines.prediction import delimited as tables
from pipelines.prediction.cascade import CalibrationFile
from pipelines.prediction.classifier import Classifier
from pipelines.prediction.consumed import ConsumedRows
from pipelines.prediction.partial import PartialOutput, write_meta
from pipelines.prediction.plan import Plan, PredictOptions, fingerprint, resolve
from pipelines.prediction.progress import Progress
from pipelines.prediction.tally import Tally, count_gold

log = logging.getLogger(__name__)

@dataclass
class PredictSummary:
    """What a prediction run did, for the script's report."""

    output: Path
    device: str
    precision: str
    backend: str
    processes: int
    max_length: int
    tally: Tally
    resumed_from: int
    seconds: float
    metrics: dict[str, float] | None

    @property
    def rows_per_s(self) -> float:
        """Rows predicted per second by this run (rows skipped by --resume not counted)."""
        return (self.tally.rows - self.resumed_from) / self.seconds if self.seconds > 0 else 0.0


def predict_file(
    model_dir: str | Path, input_path: str | Path, output_path: str | Path, options: PredictOptions | None = None
) -> PredictSummary | None:
    """Predict every row of a CSV/TSV file with a saved classifier; see the module docstring.

    Under a launcher with several processes (see `shards`), every process calls this with the same
    arguments; rank 0 writes the file and gets the summary, the others get None."""
    opts = options or PredictOptions()
    source, target = Path(input_path), Path(output_path)
    if not source.is_file():
        raise DataError(f"input file {source} not found")
    if target.resolve() == source.resolve():
        raise DataError(f"--output {target} is the input file; write the predictions to another file")
    group = shards.Group.from_env(opts.ddp_timeout)
    try:
        return _predict(group, model_dir, source, target, opts)
    finally:
        group.close()


def _predict(group: shards.Group, model_dir: str | Path, source: Path, target: Path,
             opts: PredictOptions) -> PredictSummary | None:
    clf = _classifier(group, model_dir, opts)
    plan = resolve(clf, source, target, opts)
    out = PartialOutput(target, fingerprint(clf, source, plan)) if group.is_main else None

    def open_output() -> dict | None:
        with filesystem.writing(target.parent, f"write {out.partial.name}"):
            return out.open(opts.resume)

    state = group.on_main(open_output)
    tally = Tally(**state["counters"]) if state else Tally(confusion=[[0] * len(clf.labels) for _ in clf.labels])
    resumed_from, clock = tally.rows, time.perf_counter()
    consumed = ConsumedRows(source, state and state.get("consumed"), resumed_from)
    log.info("predicting %s with %s on %s (%s, %s): text %s, max_length %d, batch size %d", source, clf.path,
             clf.device, clf.precision, clf.backend, list(plan.text_columns), plan.max_length, plan.batch_size)
    progress = Progress(source, resumed_from, opts.progress if group.is_main else False)
    # Only torch's OpenMP threads collapse on a shared core; ONNX Runtime keeps its share (see _classifier).
    threads = hardware.ThreadGovernor() if opts.adapt_threads and clf.backend == "torch" else None
    try:
        if out is not None and state is None:
            out.write(tables.to_text([list(plan.header)], plan.out_sep))
            out.commit(0, asdict(tally), consumed.digest())
        chunks = tables.chunks(source, plan.sep, plan.encoding, plan.chunk_size, resumed_from, consumed.add)
        for dealt in shards.rounds(chunks, group.size):
            if threads is not None:
                threads.update()
            _round(group, clf, plan, dealt, out, tally, consumed, source)
            if out is not None:
                progress.update(tally.rows)
        consumed.check(at_end=True)
    except Exception as err:
        if out is None:
            raise
        if filesystem.is_write_failure(err):
            raise _write_failure(err, out) from None
        if isinstance(err, DataError):  # the input stops it: keep what --resume can use, not a header-only file
            out.salvage()
        raise
    finally:
        progress.close()
        if out is not None:
            out.close()
    if out is None:
        return None
    out.finish()
    summary = PredictSummary(target, str(clf.device), clf.precision, clf.backend, group.size, plan.max_length, tally,
                             resumed_from, time.perf_counter() - clock, _file_metrics(tally, len(clf.labels), plan))
    return _finished(summary, clf, plan)


def _round(group: shards.Group, clf: Classifier, plan: Plan, dealt: list[pd.DataFrame], out: PartialOutput | None,
           tally: Tally, consumed: ConsumedRows, source: Path) -> None:
    """One chunk per process: each scores its own, the main process writes them all in input order."""
    for frame in dealt:
        consumed.add(frame)
    mine = dealt[group.rank] if group.rank < len(dealt) else None
    pieces = group.gather(None if mine is None else _score_chunk(clf, mine, plan, source))
    if out is not None:
        for text, part in filter(None, pieces):  # in rank order, which is input order
            out.write(text)
            tally.add(part)
        out.commit(tally.rows, asdict(tally), consumed.digest())  # only now do these rows count as done


def _write_failure(err: Exception, out: PartialOutput) -> Exception:
    """A one-line error for a full or read-only disk, after keeping the rows already complete."""
    kept = out.salvage()
    after = f"the first {kept} rows are kept: free some space, then rerun with --resume" if kept else "nothing was kept"
    return filesystem.WriteError.of(err, out.output.parent, f"write {out.partial.name}", after)


def _classifier(group: shards.Group, model_dir: str | Path, opts: PredictOptions) -> Classifier:
    """The model on this process's device, in the precision asked for (or the fastest that keeps quality)."""
    device = _device(opts.device, group)
    precision = opts.precision
    if precision == "auto":  # rank 0 decides for every process: machines may differ in CPU features, a file may not
        precision = group.on_main(lambda: _auto_precision(Path(model_dir), device, opts))
    # ONNX Runtime gets this process's share of the cores, whatever the load: each of its threads runs
    # whole batches and takes the next when done, so one on a shared core holds no other up (torch's
    # OpenMP threads wait for each other after every operation).
    calibration = None
    if opts.calibration:
        columns = (opts.text_column, opts.text_pair_column) if opts.text_pair_column else (opts.text_column,)
        calibration = CalibrationFile(Path(opts.calibration), columns if opts.text_column else None, opts.encoding)
    return Classifier(model_dir, device, precision, opts.threads or hardware.cpu_share(), opts.backend,
                      opts.agreement or None, calibration)


def _auto_precision(model_dir: Path, device: str | None, opts: PredictOptions) -> backends.Precision:
    """The precision `auto` resolves to for this model on this machine (backends.auto_precision)."""
    if backends.is_onnx_export(model_dir):
        return "fp32"  # an export runs in the precision it was exported in
    # int8 is a default only with its fp32 re-scoring, which needs calibration rows
    calibrated = bool(opts.agreement) and opts.backend != "torch" and (
        opts.calibration is not None or (model_dir / cascade.CALIBRATION_SOURCE).is_file())
    precision = backends.auto_precision(device, calibrated)
    if precision == "int8":
        log.info("precision: int8 with fp32 re-scoring, the default on this CPU (it has %s; docs/int8.md); "
                 "--fp32 scores every row in fp32", backends.int8_kernels())
    return precision


def _finished(summary: PredictSummary, clf: Classifier, plan: Plan) -> PredictSummary:
    write_meta(summary.output, _meta(clf, plan, summary))
    _log_summary(summary)
    return summary


def _device(device: str | None, group: shards.Group) -> str | None:
    """The device asked for; with several processes on a GPU machine, this process's own GPU."""
    if group.size > 1 and device in (None, "cuda") and hardware.gpu_available():
        import torch

        return f"cuda:{group.local_rank % torch.cuda.device_count()}"
    return device


def _meta(clf: Classifier, plan: Plan, summary: PredictSummary) -> dict[str, Any]:
    """What made the output file: precision, backend, model and library versions."""
    packages = ["cardtune", "torch", "transformers"] + (["onnxruntime"] if clf.backend == "onnxruntime" else [])
    return {"output": summary.output.name, "rows": summary.tally.rows, "predicted": summary.tally.predicted,
            "precision": clf.precision, "backend": clf.backend, "model": str(clf.path.resolve()),
            "device": summary.device, "processes": summary.processes, "text_columns": list(plan.text_columns),
            "max_length": plan.max_length, "metrics": summary.metrics, "seconds": round(summary.seconds, 3),
            "rows_per_s": round(summary.rows_per_s, 1), "resumed_from": summary.resumed_from,
            "cascade": _cascade_meta(clf, summary.tally), "graph_build_s": clf.graph_build_s,
            "versions": backends.versions(packages)}


def _cascade_meta(clf: Classifier, tally: Tally) -> dict[str, Any] | None:
    """int8's fp32 re-scoring: the threshold, the expected agreement and the rows it re-scored."""
    if clf.cascade is None:
        return None
    return {**clf.cascade.threshold.as_dict(), "rows_rescored": tally.rescored,
            "share_rescored": round(tally.rescored / tally.predicted, 5) if tally.predicted else 0.0}


def _text_problem(values: tuple, columns: tuple[str, ...]) -> str:
    """Why a row cannot be predicted ('' when it can)."""
    for value, column in zip(values, columns):
        if not isinstance(value, str):
            return f"missing text in column `{column}`"
        if not value.strip():
            return f"empty text in column `{column}`"
    return ""


def _score_chunk(clf: Classifier, frame: pd.DataFrame, plan: Plan, source: Path) -> tuple[str, Tally]:
    """One chunk's output text and counts (what a process hands to the writer)."""
    tally = Tally(confusion=[[0] * len(clf.labels) for _ in clf.labels])
    first_row = int(frame.index[0]) + 1 if len(frame) else 1  # pandas numbers rows across chunks
    rows = _chunk_rows(clf, frame, plan, tally)
    return tables.to_text(rows, plan.out_sep, first_row, plan.header, where=source), tally


def _chunk_rows(clf: Classifier, frame: pd.DataFrame, plan: Plan, tally: Tally) -> list[list[str]]:
    """Output rows of one chunk, in input order: the input cells, then the prediction columns."""
    texts = list(zip(*(frame[c].tolist() for c in plan.text_columns)))
    problems = [_text_problem(t, plan.text_columns) for t in texts]
    ok = [i for i, p in enumerate(problems) if not p]
    pair = len(plan.text_columns) == 2
    before = clf.rescored
    probs, truncated = clf.score([texts[i][0] for i in ok], [texts[i][1] for i in ok] if pair else None,
                                 plan.max_length, plan.truncation, plan.batch_size, plan.head_tokens)
    best = probs.argmax(axis=1)
    width = 2 + (len(clf.labels) if plan.probs else 0)
    added = [[""] * width + [p] for p in problems]
    for i, k, row in zip(ok, best.tolist(), probs.tolist()):  # Python floats format twice as fast
        added[i] = [clf.labels[k], f"{row[k]:.6f}", *([f"{p:.6f}" for p in row] if plan.probs else ()), ""]
    for p in filter(None, problems):
        tally.errors[p] = tally.errors.get(p, 0) + 1
    if plan.label_column:
        count_gold(frame[plan.label_column].tolist(), ok, best, clf.labels, tally)
    tally.rows += len(frame)
    tally.predicted += len(ok)
    tally.truncated += int(truncated.sum())
    tally.rescored += clf.rescored - before
    cells = frame.fillna("").to_numpy(dtype=object).tolist()
    return [row + extra for row, extra in zip(cells, added)]


def _file_metrics(tally: Tally, num_labels: int, plan: Plan) -> dict[str, float] | None:
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
