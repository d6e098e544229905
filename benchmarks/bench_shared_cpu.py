"""The default settings of predict.py and run.py on an idle machine and beside one busy process.

    python benchmarks/bench_shared_cpu.py --model outputs/sst2          # both, 2 rounds
    python benchmarks/bench_shared_cpu.py --model outputs/sst2 --rounds 1 --ways predict

Each measurement runs the real script as a child process with nothing but its required options
(so the thread count, precision and batching are the defaults), once with the machine idle and
once beside a spinning `python -c "while True: pass"` (one core kept busy, as a second CPU-bound
job would), alternating, for --rounds rounds. Printed per way: the median speed idle and loaded,
and loaded / idle. The target: the loaded speed at least half the idle one.
  predict  `scripts/predict.py --model M --input <--rows SST-2 sentences>`: rows/s from its
           OUT.meta.json (prediction time only, model loading excluded);
  train    `scripts/run.py --task cola --data-dir ... --max_steps S`: train samples/s from
           metrics.json (the Trainer's own figure over the S steps).
Run it with nothing else on the machine: its "idle" must be idle.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _shared import add_data_dir
from bench_predict import tsv_rows, write_rows

REPO = Path(__file__).resolve().parents[1]
WAYS = ("predict", "train")


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_data_dir(p, "sst2/train.tsv and cola_public/")
    p.add_argument("--model", type=Path, help="a trained classifier folder for predict (default: the cola model "
                                               "this benchmark trains first, with the same steps)")
    p.add_argument("--rows", type=int, default=4000, help="SST-2 sentences predicted per measurement")
    p.add_argument("--steps", type=int, default=80, help="training steps per measurement (batch 32)")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--ways", default=",".join(WAYS))
    return p.parse_args(argv)


def sst2_input(data_dir: Path, rows: int, folder: Path) -> Path:
    """The first `rows` SST-2 training sentences as a CSV with a `sentence` column."""
    return write_rows(folder / "input.csv", tsv_rows(data_dir / "sst2" / "train.tsv")[:rows], rows)


def run_script(command: list[str]) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    done = subprocess.run([sys.executable, *command], capture_output=True, text=True, cwd=REPO, env=env)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command[:2])} failed:\n{done.stderr[-3000:]}")


def predict_speed(model: Path, source: Path, folder: Path) -> float:
    out = folder / f"pred-{time.monotonic_ns()}.csv"
    run_script(["scripts/predict.py", "--model", str(model), "--input", str(source), "--output", str(out)])
    return json.loads(out.with_name(out.name + ".meta.json").read_text())["rows_per_s"]


def train_speed(data_dir: Path, steps: int, folder: Path, keep: Path | None = None) -> float:
    out = keep or folder / f"train-{time.monotonic_ns()}"
    run_script(["scripts/run.py", "--task", "cola", "--data-dir", str(data_dir / "cola_public"),
                "--max_steps", str(steps), "--output-dir", str(out)])
    return json.loads((out / "metrics.json").read_text())["train"]["samples_per_second"]


def measure(way: str, args: argparse.Namespace, folder: Path, source: Path | None) -> float:
    if way == "predict":
        return predict_speed(args.model, source, folder)
    return train_speed(args.data_dir, args.steps, folder)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    ways = [w for w in args.ways.split(",") if w]
    unknown = sorted(set(ways) - set(WAYS))
    if unknown:
        raise SystemExit(f"--ways: unknown {unknown}; choose from {list(WAYS)}")
    with tempfile.TemporaryDirectory(prefix="bench-shared-") as tmp:
        folder = Path(tmp)
        source = sst2_input(args.data_dir, args.rows, folder) if "predict" in ways else None
        if "predict" in ways and args.model is None:
            print(f"training the cola model for predict ({args.steps} steps) ...", flush=True)
            args.model = folder / "model"
            train_speed(args.data_dir, args.steps, folder, keep=args.model)
        speeds: dict[tuple[str, bool], list[float]] = {}
        for round_ in range(args.rounds):
            for way in ways:
                for loaded in (False, True):
                    hog = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if loaded else None
                    try:
                        speed = measure(way, args, folder, source)
                    finally:
                        if hog is not None:
                            hog.kill()
                            hog.wait()
                    speeds.setdefault((way, loaded), []).append(speed)
                    print(f"round {round_ + 1} {way} {'beside a spinning core' if loaded else 'idle'}: "
                          f"{speed:.1f}/s", flush=True)
    print(f"\n{os.cpu_count()} CPUs; medians of {args.rounds} round(s)")
    print("| default settings | idle | beside a spinning core | loaded / idle |\n|---|---|---|---|")
    for way in ways:
        idle, loaded = (statistics.median(speeds[(way, x)]) for x in (False, True))
        unit = "rows/s" if way == "predict" else "samples/s"
        print(f"| {way} ({unit}) | {idle:.1f} | {loaded:.1f} | {loaded / idle:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
