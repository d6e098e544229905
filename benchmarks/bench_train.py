"""Training-speed benchmark on real CoLA: the tutorial loop vs the HF example defaults vs cardtune.

    python benchmarks/bench_train.py                       # speed: 3 ways, each in its own process
    python benchmarks/bench_train.py --quality-epochs 4    # plus validation MCC, tutorial vs cardtune
    python benchmarks/bench_train.py --steps 2 --warmup 1 --ways cardtune   # a quick check that it works

Each way runs the same number of optimizer steps with the same batch size, after warm-up steps
that are not timed, on the offline model:
  tutorial  every sentence padded to 64 tokens, a plain PyTorch loop (AdamW, linear schedule,
            gradient clipping), as in McCormick & Ryan's BERT fine-tuning tutorial;
  hf        `Trainer` with TrainingArguments defaults and every sentence padded to 128 tokens,
            as the transformers text-classification example does by default;
  cardtune  the `cola` card's default path (dynamic padding, length-grouped batches, ...).
Printed: train samples/s, peak RSS, the ratios cardtune/tutorial and cardtune/hf, and achieved
model FLOP/s against a matmul probe of this machine. With --quality-epochs, the tutorial loop
drops each batch's all-padding columns (same results, see `_trim`), so 4 epochs take minutes.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

from _shared import add_data_dir

from pipelines.cli._common import set_offline

WAYS = ("tutorial", "hf", "cardtune")


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_data_dir(p, "cola_public/")
    p.add_argument("--steps", type=int, default=60, help="timed optimizer steps per way")
    p.add_argument("--warmup", type=int, default=5, help="untimed steps before timing starts")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--ways", default=",".join(WAYS))
    p.add_argument("--threads", type=int, default=0,
                   help="torch threads for the probe and every way alike (default: one per available core)")
    p.add_argument("--bf16", action="store_true", help="the cardtune way in bf16 autocast (CPUs with AMX/AVX512-BF16)")
    p.add_argument("--quality-epochs", type=int, default=0, help="also train tutorial and cardtune this many epochs")
    p.add_argument("--way", choices=WAYS, help=argparse.SUPPRESS)  # child process mode
    p.add_argument("--epochs", type=int, default=0, help=argparse.SUPPRESS)
    return p.parse_args(argv)


def run_child(way: str, opts: argparse.Namespace, epochs: int = 0) -> dict:
    """One way in a fresh process, so peak RSS and thread pools are its own."""
    cmd = [sys.executable, __file__, "--way", way, "--data-dir", str(opts.data_dir), "--steps", str(opts.steps),
           "--warmup", str(opts.warmup), "--batch-size", str(opts.batch_size), "--epochs", str(epochs),
           "--threads", str(opts.threads)] + (["--bf16"] if opts.bf16 else [])
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"{way} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    opts = parse(argv)
    set_offline(True)  # before any Hugging Face import; the child processes inherit it
    from pipelines.hardware import configure_threads

    threads = configure_threads(opts.threads or None)
    if opts.way:
        import _bench_train_ways as ways

        print(json.dumps(ways.run(opts.way, opts)))
        return 0
    from _bench_train_ways import gemm_probe

    peak = gemm_probe()
    print(f"machine: {os.cpu_count()} CPUs, {threads} torch threads per way; "
          f"fp32 matmul probe: {peak / 1e9:.1f} GFLOP/s")
    print(f"{opts.steps} timed steps after {opts.warmup} warm-up steps, batch size {opts.batch_size}, real CoLA train")
    results = {}
    for way in opts.ways.split(","):
        r = results[way] = run_child(way, opts)
        print(f"{way:>9}: {r['samples_per_s']:7.1f} samples/s  peak RSS {r['peak_rss_mb']:6.0f} MB  "
              f"mean padded length {r['mean_padded_len']:5.1f}  real tokens {r['real_token_frac']:.0%}  "
              f"model FLOP/s {r['useful_flops'] / 1e9:5.1f} G useful, {r['executed_flops'] / 1e9:5.1f} G executed "
              f"({r['executed_flops'] / peak:.0%} of the matmul probe)")
    if "cardtune" in results:
        for base in ("tutorial", "hf"):
            if base in results:
                ratio = results["cardtune"]["samples_per_s"] / results[base]["samples_per_s"]
                print(f"cardtune / {base}: {ratio:.2f}x samples/s")
    if opts.quality_epochs:
        print(f"quality: {opts.quality_epochs} epochs each, validation = in_domain_dev")
        for way in ("tutorial", "cardtune"):
            r = run_child(way, opts, epochs=opts.quality_epochs)
            print(f"{way:>9}: validation MCC {r['mcc']:.4f}  accuracy {r['accuracy']:.4f}  "
                  f"({r['train_s']:.0f} s training)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
