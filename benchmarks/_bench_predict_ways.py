"""The ways `bench_predict.py` times, each run in a child process of its own (clean peak RSS,
its own thread settings): cardtune's predict_file in a precision or backend, or transformers'
pipeline. A child writes one JSON file: rows/s (model loading left out, for every way alike), peak
RSS and, for int8, the rows the cascade re-scored in fp32 (the parent times the whole process)."""

from __future__ import annotations

import csv
import json
import os
import resource
import time
from pathlib import Path

# int8: --int8 (ONNX Runtime, unsure rows re-scored in fp32 to agree with it on 99.5% of rows);
# int8-plain: --int8 --agreement 0 (no re-scoring); torch-int8: PyTorch's dynamic int8;
# onnx-fp32: an exported fp32 folder
WAYS = ("fp32", "int8", "int8-plain", "torch-int8", "bf16", "onnx-fp32", "pipeline")


def peak_rss_mb() -> float:
    """This process's peak RSS. VmHWM, not getrusage: ru_maxrss survives fork and exec, so a child
    would report its parent's peak when that is higher."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            return next(int(line.split()[1]) for line in fh if line.startswith("VmHWM:")) / 1024
    except (OSError, StopIteration):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kilobytes on Linux


def set_threads(threads: str) -> bool:
    """'auto': cardtune's default (threads follow the free cores); a number: fixed. True for auto."""
    import torch

    if threads == "auto":
        return True
    torch.set_num_threads(int(threads))
    return False


def run_cardtune(way: str, model: str, source: str, out: str, threads: str, batch_size: int, chunk_size: int) -> dict:
    """predict_file over `source` (text column `sentence`) in the way's precision."""
    from pipelines.prediction.stream import PredictOptions, predict_file

    auto = set_threads(threads)
    precision = "int8" if "int8" in way else "bf16" if way == "bf16" else "fp32"
    options = PredictOptions(text_column="sentence", batch_size=batch_size, chunk_size=chunk_size, progress=False,
                             precision=precision, backend="torch" if way == "torch-int8" else "auto",
                             threads=None if auto else int(threads), adapt_threads=auto,
                             agreement=0.0 if way == "int8-plain" else PredictOptions.agreement)
    summary = predict_file(model, source, out, options)
    rank = int(os.environ.get("RANK", "0"))
    meta = json.loads(Path(f"{out}.meta.json").read_text(encoding="utf-8")) if summary else {}
    return {"rank": rank, "rows_per_s": summary.rows_per_s if summary else None, "peak_rss_mb": peak_rss_mb(),
            "cascade": meta.get("cascade"), "graph_build_s": meta.get("graph_build_s")}


def run_pipeline(model: str, source: str, out: str, threads: str, batch_size: int) -> dict:
    """transformers' text-classification pipeline over the same sentences; probabilities written
    in label-id order, like cardtune's prob_<label> columns."""
    from transformers import pipeline

    set_threads("1" if threads == "auto" else threads)
    with open(source, encoding="utf-8", newline="") as fh:
        texts = [row["sentence"] for row in csv.DictReader(fh)]
    # trust_remote_code: a mean-head model's head is code saved in its folder (README, "Use the model")
    clf = pipeline("text-classification", model=model, top_k=None, batch_size=batch_size, device="cpu",
                   trust_remote_code=True)
    labels = [clf.model.config.id2label[i] for i in range(clf.model.config.num_labels)]
    max_length = _max_length(model)
    clf(texts[:32], truncation=True, max_length=max_length)  # warm-up
    start = time.perf_counter()
    outputs = clf(texts, truncation=True, max_length=max_length)
    rate = len(texts) / (time.perf_counter() - start)
    with open(out, "w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(["predicted"] + [f"prob_{n}" for n in labels])
        for o in outputs:
            scores = {d["label"]: d["score"] for d in o}
            writer.writerow([max(scores, key=scores.get)] + [f"{scores[n]:.6f}" for n in labels])
    return {"rank": 0, "rows_per_s": rate, "peak_rss_mb": peak_rss_mb()}


def _max_length(model: str) -> int:
    from pipelines.prediction.classifier import Classifier

    return Classifier(model, "cpu").default_max_length()


def child(way: str, model: str, source: str, out: str, threads: str, batch_size: int, chunk_size: int) -> None:
    """Entry point of a child process (see bench_predict --child)."""
    if way == "pipeline":
        result = run_pipeline(model, source, out, threads, batch_size)
    else:
        result = run_cardtune(way, model, source, out, threads, batch_size, chunk_size)
    # A file per process: lines that several processes print to one pipe can interleave.
    Path(f"{out}.bench-{result['rank']}.json").write_text(json.dumps(result), encoding="utf-8")


def compare(reference: Path, other: Path) -> tuple[int, int, float]:
    """(identical labels, rows, largest probability difference) of two prediction files."""
    def read(path: Path) -> tuple[list[str], list[list[float]]]:
        with open(path, encoding="utf-8", newline="") as fh:
            rows = list(csv.DictReader(fh))
        return [r["predicted"] for r in rows], [[float(v) for k, v in r.items() if k.startswith("prob_")] for r in rows]

    (ref_labels, ref_probs), (labels, probs) = read(reference), read(other)
    same = sum(a == b for a, b in zip(ref_labels, labels, strict=True))
    diff = max((abs(a - b) for ra, rb in zip(ref_probs, probs) for a, b in zip(ra, rb, strict=True)), default=0.0)
    return same, len(ref_labels), diff
