"""Benchmark: cardtune prediction (fp32, int8, bf16, ONNX Runtime, several processes) vs transformers.pipeline.

    python benchmarks/bench_predict.py --sst2-model outputs/sst2 --cola-model outputs/cola   # the issue's run
    python benchmarks/bench_predict.py --rows 2000 --rounds 1 --ways fp32,int8                # a quick check
    python benchmarks/bench_predict.py --threads auto --ways fp32 --hog                       # defaults, one core taken

Every way predicts the same files, each run in a child process of its own (`_bench_predict_ways`),
in `--rounds` interleaved rounds (the load drifts on a shared machine); the figures are medians.
Files: the first `--rows` sentences of SST-2 train (10,000 and 20,000 by default) with the SST-2
model, the first of them also with the CoLA model, and CoLA `in_domain_dev` with the CoLA model.
Per way: rows/s inside the process (model loading left out) and for the whole process (start-up,
loading, the int8 graph), the whole-process ratio to the pipeline (at its best batch size, chosen
on the first `--calibration-rows` rows) and to cardtune fp32, labels identical to fp32 and the
largest probability difference, the share of rows int8 re-scored in fp32, peak RSS. int8's graph
cache is the benchmark's own: before the rounds, each model's first int8 call (which builds the
graph) is timed as a whole process; the rounds then load it. Agreement means most on rows that
neither the model nor its calibration (its run's validation split) has seen: point --sst2 and
--cola at such rows (CoLA `in_domain_dev` is the CoLA card's validation split). `--processes 2x1`
runs `accelerate launch --multi_gpu --num_processes 2` with 1 thread each, on the first file.
`--memory` adds the flat-memory check (peak RSS on `--big-rows` rows against `--small-rows`).
Without trained models the offline model gets a seeded head: fine for speed, not for agreement.
The CPU's features (avx2, avx512, vnni, amx) come first, then the kernels ONNX Runtime and PyTorch
dispatch to: int8's gain depends on them. Under `LD_PRELOAD=benchmarks/cpuid_avx2.so` (build:
benchmarks/cpuid_avx2.c) every process sees a CPU without AVX-512, VNNI and AMX.
Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import _bench_predict_ways as ways
from _shared import add_data_dir

from pipelines.cli._common import configure_logging, set_offline

SST2 = Path("sst2") / "train.tsv"
COLA = Path("cola_public") / "raw" / "in_domain_dev.tsv"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="bench_predict.py", description=__doc__.split("\n")[0])
    p.add_argument("--sst2-model", help="SST-2 classifier (default: the offline model with a seeded, untuned head)")
    p.add_argument("--cola-model", help="CoLA classifier (default: the same seeded model)")
    add_data_dir(p, f"{SST2} and {COLA}")
    p.add_argument("--sst2", help=f"SST-2 train.tsv, sentence<TAB>label (default: {SST2} in --data-dir)")
    p.add_argument("--cola", help="CoLA in_domain_dev.tsv (headerless: source, label, notation, sentence; "
                                  f"default: {COLA} in --data-dir); '' to skip")
    p.add_argument("--rows", default="10000,20000", help="SST-2 file sizes, comma-separated")
    p.add_argument("--ways", default="pipeline,fp32,int8,torch-int8,bf16", help=f"comma-separated, of {ways.WAYS}")
    p.add_argument("--processes", default="1x2,2x1", help="PROCESSESxTHREADS runs of fp32 and int8 on the first file")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--threads", default="1", help="threads per way: a number, or 'auto' (cardtune's default)")
    p.add_argument("--pipeline-batch-sizes", default="4,8,16,32,64", help="batch sizes tried for the pipeline")
    p.add_argument("--calibration-rows", type=int, default=2000, help="rows to choose the pipeline's batch size on")
    p.add_argument("--batch-size", type=int, default=64, help="cardtune --batch-size")
    p.add_argument("--chunk-size", type=int, default=4096, help="cardtune --chunk-size")
    p.add_argument("--hog", action="store_true", help="keep one core busy with a spinning process throughout")
    p.add_argument("--memory", action="store_true", help="also the flat-memory check (long: 1M rows by default)")
    p.add_argument("--small-rows", type=int, default=20_000, help="rows of the small memory run")
    p.add_argument("--big-rows", type=int, default=1_000_000, help="rows of the big memory run")
    p.add_argument("--child", nargs=7, help=argparse.SUPPRESS)
    return p


def tsv_rows(path: Path, columns: tuple[int, int] = (0, 1), header: bool = True) -> list[tuple[str, str]]:
    """(sentence, label) rows of a GLUE TSV, read without quote handling (SST-2 has bare quotes)."""
    with open(path, encoding="utf-8", newline="") as fh:
        rows = list(csv.reader(fh, delimiter="\t", quoting=csv.QUOTE_NONE))
    return [(r[columns[0]], r[columns[1]]) for r in rows[1 if header else 0 :]]


def write_rows(path: Path, rows: list[tuple[str, str]], n: int) -> Path:
    """A CSV of `n` rows (id, sentence, label), cycling through `rows`."""
    with open(path, "w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(["id", "sentence", "label"])
        for i in range(n):
            writer.writerow([i, *rows[i % len(rows)]])
    return path


def default_model(folder: Path) -> Path:
    """The offline model with a seeded classification head (unit scale, so rows are not all near-ties)."""
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


def launch(way: str, model: Path, source: Path, out: Path, threads: str, batch_size: int, args,
           processes: int = 1) -> dict:
    """Run one way in a child process (or `processes` of them under accelerate); its figures."""
    child = [__file__, "--child", way, str(model), str(source), str(out), threads, str(batch_size),
             str(args.chunk_size)]
    env = {**os.environ, "OMP_NUM_THREADS": threads if threads != "auto" else ""}
    if processes > 1:
        command = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes",
                   str(processes), "--main_process_port", "0", *child]
    else:
        command = [sys.executable, *child]
    for stale in out.parent.glob(out.name + ".bench-*.json"):
        stale.unlink()
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env={k: v for k, v in env.items() if v})
    seconds = time.perf_counter() - start
    results = [json.loads(f.read_text(encoding="utf-8")) for f in sorted(out.parent.glob(out.name + ".bench-*.json"))]
    if done.returncode != 0 or len(results) != processes:
        raise SystemExit(f"{way} on {source.name} failed:\n{done.stderr[-3000:]}")
    main = next(r for r in results if r["rank"] == 0)
    rows = sum(1 for _ in open(source, encoding="utf-8")) - 1
    return {"rows_per_s": main["rows_per_s"], "process_rows_per_s": rows / seconds, "process_s": seconds,
            "peak_rss_mb": sum(r["peak_rss_mb"] for r in results), "cascade": main.get("cascade"),
            "graph_build_s": main.get("graph_build_s")}


def export_fp32(model: Path, sample: Path, folder: Path) -> tuple[Path, float]:
    """The model exported to ONNX (fp32) in `folder`; seconds the export took."""
    from pipelines.cli.export import main as export_main

    start = time.perf_counter()
    if export_main([str(folder), "--onnx", "--model", str(model), "--sample", str(sample),
                    "--text-column", "sentence", "--sample-rows", "200"]) != 0:
        raise SystemExit(f"export of {model} failed")
    return folder, time.perf_counter() - start


def calibrate_pipeline(model: Path, source: Path, tmp: Path, args) -> int:
    """The pipeline's fastest batch size on the calibration rows."""
    rates = {}
    for bs in [int(b) for b in args.pipeline_batch_sizes.split(",")]:
        rates[bs] = launch("pipeline", model, source, tmp / "calibration.csv", args.threads, bs, args)["rows_per_s"]
        print(f"pipeline  calibration, batch_size {bs}: {rates[bs]:.1f} rows/s", flush=True)
    return max(rates, key=rates.get)


def files(args, tmp: Path) -> list[tuple[str, Path, Path]]:
    """(name, CSV, model) of every file the ways predict."""
    made = {}
    sst2_model = Path(args.sst2_model) if args.sst2_model else default_model(tmp / "seeded")
    sst2 = tsv_rows(Path(args.sst2))
    for n in (int(r) for r in args.rows.split(",") if r):
        made[f"sst2-{n // 1000}k" if n % 1000 == 0 else f"sst2-{n}"] = (write_rows(tmp / f"sst2_{n}.csv", sst2, n),
                                                                         sst2_model)
    if args.cola_model and made:
        name, (source, _) = next(iter(made.items()))
        made[f"{name}/cola-model"] = (source, Path(args.cola_model))  # the issue's figure: SST-2 rows, CoLA model
    if args.cola:
        cola = tsv_rows(Path(args.cola), columns=(3, 1), header=False)
        cola_model = Path(args.cola_model) if args.cola_model else sst2_model
        made["cola-dev"] = (write_rows(tmp / "cola_dev.csv", cola, len(cola)), cola_model)
    return [(name, source, model) for name, (source, model) in made.items()]


def run_round(args, table: list, tmp: Path, exported: dict, pipeline_bs: int) -> None:
    """Every way on every file once, then the process counts on the first file; figures into `table`."""
    selected = [w for w in ways.WAYS if w in args.ways.split(",")]
    selected.sort(key=lambda w: w != "fp32")  # fp32 first: the others are compared with its output
    for index, (name, source, model) in enumerate(args.files):
        runs = [(w, args.threads, 1) for w in selected]
        if index == 0:
            for spec in filter(None, args.processes.split(",")):
                procs, threads = spec.split("x")
                runs += [(w, threads, int(procs)) for w in ("fp32", "int8") if w in selected]
        for way, threads, procs in runs:
            label = way if (threads, procs) == (args.threads, 1) else f"{way} {procs}x{threads}"
            out = tmp / f"out_{name.replace('/', '_')}_{label.replace(' ', '_')}.csv"
            target = exported.get((model, way), model)
            figures = launch(way, target, source, out, threads, pipeline_bs if way == "pipeline" else args.batch_size,
                             args, procs)
            reference = tmp / f"out_{name.replace('/', '_')}_fp32.csv"
            same, rows, diff = ways.compare(reference, out) if "fp32" in selected else (0, 0, 0)
            table.append({"file": name, "way": label, "rows": rows, "same": same, "diff": diff, **figures})
            rescored = f"  re-scored {figures['cascade']['share_rescored']:.1%}" if figures.get("cascade") else ""
            print(f"  {name:<9} {label:<14} {figures['rows_per_s']:8.1f} rows/s ({figures['process_rows_per_s']:6.1f} "
                  f"whole process)  peak RSS {figures['peak_rss_mb']:6.0f} MB  labels = fp32 {same}/{rows}  "
                  f"max |dp| {diff:.1e}{rescored}"
                  f"{'  (same bytes as fp32)' if label != 'fp32' and _same_bytes(reference, out) else ''}",
                  flush=True)


def cpu_features() -> str:
    """The CPU's model and the features int8 and bf16 speed depend on, from /proc/cpuinfo."""
    from pipelines.prediction.backends import cpu_flags

    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
        name = next(line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("model name"))
    except (OSError, StopIteration):
        name = "unknown CPU"
    flags = cpu_flags()
    wanted = ["avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_int8", "amx_bf16"]
    return f"{name}: " + ", ".join(f"{f} {'yes' if f in flags else 'no'}" for f in wanted)


def kernels_seen() -> str:
    """What this process's libraries dispatch to, which CPUID decides and /proc/cpuinfo does not show
    when CPUID is masked (benchmarks/cpuid_avx2.c): ONNX Runtime's int8 products (255 x 127 summed over
    64 terms is 2,072,640 with VNNI's 32-bit sums and 1,048,544 with AVX2's saturating 16-bit pairs)
    and PyTorch's ATen kernels."""
    import torch

    seen = f"PyTorch {torch.backends.cpu.get_cpu_capability()}"
    try:
        import numpy as np
        import onnxruntime as ort
        from onnx import TensorProto, helper
    except ImportError:
        return seen + ", onnxruntime not installed"
    a = helper.make_tensor_value_info("A", TensorProto.UINT8, [1, 64])
    b = helper.make_tensor_value_info("B", TensorProto.INT8, [64, 16])
    y = helper.make_tensor_value_info("Y", TensorProto.INT32, [1, 16])
    graph = helper.make_graph([helper.make_node("MatMulInteger", ["A", "B"], ["Y"])], "mmi", [a, b], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    feed = {"A": np.full((1, 64), 255, np.uint8), "B": np.full((64, 16), 127, np.int8)}
    total = int(session.run(None, feed)[0][0, 0])
    kind = {2_072_640: "exact 32-bit sums (VNNI)", 1_048_544: "16-bit saturating pairs (AVX2)"}.get(total, str(total))
    return f"{seen}, ONNX Runtime int8: {kind}"


def first_calls(args, tmp: Path) -> None:
    """Each model's first int8 call (it builds and calibrates the graph) and second (it loads it),
    timed as whole processes on the first file."""
    _, source, _ = args.files[0]
    for model in dict.fromkeys(model for _, _, model in args.files):
        figures = [launch("int8", model, source, tmp / f"first_{i}.csv", args.threads, args.batch_size, args)
                   for i in range(2)]
        print(f"int8 graph of {model}: first call {figures[0]['process_s']:.1f} s as a whole process (build "
              f"{figures[0]['graph_build_s'] or 0:.1f} s), second {figures[1]['process_s']:.1f} s (cached: "
              f"{'built again!' if figures[1]['graph_build_s'] else 'loaded'})", flush=True)


def _same_bytes(a: Path, b: Path) -> bool:
    return a.is_file() and b.is_file() and a.read_bytes() == b.read_bytes()


def summarize(table: list, pipeline_bs: int) -> None:
    """Medians per file and way, with the ratios the issue asks for."""
    for name in dict.fromkeys(r["file"] for r in table):
        runs = [r for r in table if r["file"] == name]
        median = {w: statistics.median(r["rows_per_s"] for r in runs if r["way"] == w)
                  for w in dict.fromkeys(r["way"] for r in runs)}
        whole = {w: statistics.median(r["process_rows_per_s"] for r in runs if r["way"] == w) for w in median}
        print(f"\n{name} ({runs[0]['rows']} rows; medians of {sum(r['way'] == runs[0]['way'] for r in runs)} rounds; "
              "ratios of whole processes)")
        print("| way | rows/s in process | rows/s whole process | x pipeline | x fp32 | labels = fp32 | re-scored "
              "in fp32 | max prob. diff | peak RSS |")
        print("|---|---|---|---|---|---|---|---|---|")
        for way, rate in median.items():
            last = [r for r in runs if r["way"] == way][-1]
            vs_pipe = f"{whole[way] / whole['pipeline']:.2f}x" if "pipeline" in whole else "-"
            vs_fp32 = f"{whole[way] / whole['fp32']:.2f}x" if "fp32" in whole else "-"
            agree = f"{100 * last['same'] / last['rows']:.2f}%" if last["rows"] else "-"
            rescored = f"{last['cascade']['share_rescored']:.1%}" if last.get("cascade") else "-"
            shown = f"pipeline (batch {pipeline_bs})" if way == "pipeline" else way
            print(f"| {shown} | {rate:.1f} | {whole[way]:.1f} | {vs_pipe} | {vs_fp32} | {agree} | {rescored} | "
                  f"{last['diff']:.1e} | {last['peak_rss_mb']:.0f} MB |")


def memory(args, tmp: Path) -> None:
    """Peak RSS of fp32 prediction on a big file against a small one (flat memory)."""
    _, _, model = args.files[0]
    rows = tsv_rows(Path(args.sst2))
    peaks = []
    for n in (args.small_rows, args.big_rows):
        source = write_rows(tmp / f"rows_{n}.csv", rows, n)
        figures = launch("fp32", model, source, tmp / f"mem_{n}.csv", args.threads, args.batch_size, args)
        peaks.append(figures["peak_rss_mb"])
        print(f"peak RSS  {n:>9,} rows: {figures['peak_rss_mb']:.0f} MB ({figures['rows_per_s']:.1f} rows/s)",
              flush=True)
        for path in (source, tmp / f"mem_{n}.csv"):
            path.unlink(missing_ok=True)
    print(f"peak RSS  ratio big/small: {peaks[1] / peaks[0]:.3f}")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.sst2 is None:
        args.sst2 = str(args.data_dir / SST2)
    if args.cola is None:
        args.cola = str(args.data_dir / COLA)
    set_offline(True)
    configure_logging(30)  # WARNING: the per-chunk lines would drown the figures
    if args.child:
        way, model, source, out, threads, batch_size, chunk_size = args.child
        ways.child(way, model, source, out, threads, int(batch_size), int(chunk_size))
        return 0
    from pipelines.prediction.backends import bf16_native

    if "bf16" in args.ways and not bf16_native():
        print("bf16      left out: this CPU has no native bf16 (avx512_bf16 / amx_bf16)")
        args.ways = ",".join(w for w in args.ways.split(",") if w != "bf16")
    hog = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if args.hog else None
    print(f"machine   {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}, threads per way {args.threads}"
          f"{', one core kept busy by a spinning process' if hog else ''}", flush=True)
    print(f"cpu       {cpu_features()}", flush=True)
    print(f"kernels   {kernels_seen()}", flush=True)
    try:
        with tempfile.TemporaryDirectory(prefix="bench_predict_") as tmp_name:
            tmp = Path(tmp_name)
            os.environ["CARDTUNE_CACHE"] = str(tmp / "cache")  # the children's: a first int8 call builds
            args.files = files(args, tmp)
            if any(w in args.ways.split(",") for w in ("int8", "int8-plain")):
                first_calls(args, tmp)
            exported = {}
            for _, source, model in args.files:
                if "onnx-fp32" in args.ways.split(",") and (model, "onnx-fp32") not in exported:
                    folder, seconds = export_fp32(model, source, tmp / f"export_{len(exported)}")
                    exported[(model, "onnx-fp32")] = folder
                    print(f"export    {model} -> ONNX fp32 in {seconds:.0f} s", flush=True)
            pipeline_bs = args.batch_size
            if "pipeline" in args.ways.split(","):
                _, source, model = args.files[0]
                calibration = write_rows(tmp / "calibration_in.csv", tsv_rows(Path(args.sst2)), args.calibration_rows)
                pipeline_bs = calibrate_pipeline(model, calibration, tmp, args)
            table: list = []
            for r in range(args.rounds):
                print(f"round {r + 1} of {args.rounds} (load average {os.getloadavg()[0]:.1f})", flush=True)
                run_round(args, table, tmp, exported, pipeline_bs)
            summarize(table, pipeline_bs)
            if args.memory:
                memory(args, tmp)
    finally:
        if hog is not None:
            hog.kill()
    print(f"\nmachine   load average at the end {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
