"""Predict a CSV/TSV file with a model directory saved by scripts/run.py (or any saved classifier).

    python scripts/predict.py --model outputs/cola --input sentences.csv --output predictions.csv
    python scripts/predict.py --model my_model --input dev.tsv --output dev_pred.tsv \\
        --text-column sentence --label-column label

    python scripts/predict.py --model outputs/cola --input big.csv --output pred.csv --int8   # CPU int8: see README
    accelerate launch --multi_gpu --num_processes 2 scripts/predict.py --model ... --input ... --output ...

Every input column is kept as it was, in the original row order; added: `predicted`,
`predicted_prob`, `prob_<label>` per label (unless --no-probs) and `error`. `OUT.meta.json` says how
the file was made (precision, backend, model, versions). --model may also be a folder written by
scripts/export.py --onnx (run with onnxruntime).
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from pipelines.cli._common import configure_logging, fail, set_offline
from pipelines.cli._options import encoding_name, negative_values, one_line_errors, whole_number

if TYPE_CHECKING:  # the real import waits until the offline switches are set
    from pipelines.prediction.stream import PredictSummary


_positive = whole_number(1)


def build_parser() -> argparse.ArgumentParser:
    """The predict command line."""
    p = one_line_errors(argparse.ArgumentParser(prog="predict.py", description=__doc__.split("\n")[0]))
    p.add_argument("--model", required=True, help="model directory (the --output-dir of scripts/run.py)")
    p.add_argument("--input", required=True, help="CSV/TSV file with a header row")
    p.add_argument("--output", required=True, help="where to write the predictions (.csv or .tsv)")
    p.add_argument("--text-column", help="text column (default: the saved task card's)")
    p.add_argument("--text-pair-column", help="second text column, for sentence-pair models")
    p.add_argument("--label-column", help="gold labels in the input: also report accuracy / MCC / F1")
    p.add_argument("--sep", help="input delimiter (default: tab for .tsv/.tab, comma otherwise; '\\t' for tab)")
    p.add_argument("--encoding", default="utf-8-sig", type=encoding_name,
                   help="input encoding (default: UTF-8 with or without BOM)")
    p.add_argument("--batch-size", type=_positive, default=64, help="rows per forward pass (default 64)")
    p.add_argument("--chunk-size", type=_positive, default=4096,
                   help="rows read, sorted and written at a time (default 4096)")
    p.add_argument("--max-length", type=_positive,
                   help="token limit (default: the card's, else the model's, at most 512)")
    p.add_argument("--no-probs", action="store_true", help="leave out the per-label probability columns")
    p.add_argument("--resume", action="store_true", help="continue an interrupted run from the rows already written")
    p.add_argument("--device", help="torch device (default: cuda when available, else cpu)")
    p.add_argument("--ddp-timeout", type=_positive, default=None,
                   help="launched runs: seconds a process waits for the others before it stops (default 180; "
                        "raise it when one chunk takes a process longer)")
    p.add_argument("--threads", type=_positive,
                   help="CPU threads (default: the cores other jobs leave free, checked every chunk)")
    precision = p.add_mutually_exclusive_group()
    precision.add_argument("--fp32", action="store_true", help="fp32 everywhere (default: bf16 on CPUs with AMX)")
    precision.add_argument("--bf16", action="store_true", help="bf16 autocast (default on CPUs with AMX)")
    precision.add_argument("--int8", action="store_true",
                           help="int8 in ONNX Runtime on the CPU (needs cardtune[onnx]); rows int8 is unsure of are "
                                "re-scored in fp32 to meet --agreement (docs/int8.md)")
    p.add_argument("--agreement", type=_share, default=0.995,
                   help="with --int8: re-score in fp32 enough rows to keep the fp32 label on this share of rows, "
                        "as calibrated on the run's validation texts (default 0.995; 0: int8 alone)")
    p.add_argument("--calibration", help="with --int8: a CSV/TSV of texts (same text columns) to calibrate the "
                                         "re-scoring on, for a model folder without validation_predictions.csv")
    return p


def _share(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"expected a share between 0 and 1 (e.g. 0.995), got {text!r}")
    return value


def report(summary: PredictSummary) -> str:
    """What the run did, for stdout."""
    t = summary.tally
    errors = "; ".join(f"{n} {why}" for why, n in sorted(t.errors.items())) or "none"
    lines = [
        f"wrote {summary.output}: {t.rows} rows, {t.predicted} predicted ({summary.rows_per_s:.0f} rows/s on "
        f"{summary.device}, {summary.precision} {summary.backend}"
        f"{f', {summary.processes} processes' if summary.processes > 1 else ''}"
        f"{f', resumed after row {summary.resumed_from}' if summary.resumed_from else ''})",
        f"truncated at {summary.max_length} tokens: {t.truncated} rows; "
        f"errors: {sum(t.errors.values())} rows ({errors})",
    ]
    if t.rescored:
        share = 100 * t.rescored / max(1, t.predicted)
        lines.append(f"re-scored in fp32 (int8 unsure): {t.rescored} rows ({share:.1f}%)")
    if summary.metrics is not None:
        scored = sum(map(sum, t.confusion))
        scores = "  ".join(f"{k} {v:.4f}" for k, v in summary.metrics.items())
        skipped = f"; {t.no_gold} with an empty or unknown one left out" if t.no_gold else ""
        lines.append(f"{scores}  ({scored} rows with a gold label{skipped})")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Predict a CSV/TSV file with a saved model (`cardtune-predict`); returns the exit code."""
    try:
        args = build_parser().parse_args(negative_values(list(sys.argv[1:] if argv is None else argv)))
    except SystemExit as exit_:  # one line (or --help) already printed
        return int(exit_.code or 0)
    set_offline(True)  # a saved model directory never needs the network
    configure_logging()
    from pipelines import hardware
    from pipelines.errors import CardtuneError
    from pipelines.filesystem import check_output_file
    from pipelines.prediction.shards import launched_rank
    from pipelines.prediction.stream import PredictOptions, predict_file

    main_process = launched_rank()[0] == 0
    if args.threads:
        hardware.configure_threads(args.threads)  # process-wide, so it belongs here, not in the library
    options = PredictOptions(
        text_column=args.text_column, text_pair_column=args.text_pair_column, label_column=args.label_column,
        sep=args.sep, encoding=args.encoding, max_length=args.max_length, batch_size=args.batch_size,
        chunk_size=args.chunk_size, probs=not args.no_probs, resume=args.resume, device=args.device,
        precision="int8" if args.int8 else "bf16" if args.bf16 else "fp32" if args.fp32 else "auto",
        threads=args.threads, agreement=args.agreement, calibration=args.calibration,
        **({"ddp_timeout": args.ddp_timeout} if args.ddp_timeout else {}),
        adapt_threads=not args.threads,
    )
    try:
        problem = hardware.launcher_problem("scripts/predict.py")
        if problem:
            raise CardtuneError(problem)
        check_output_file(args.output, "--output")
        summary = predict_file(args.model, args.input, args.output, options)
    except CardtuneError as err:
        return fail(err) if main_process else 2  # every process hits it; one line is enough
    except KeyboardInterrupt:
        if main_process:
            print(f"interrupted: the rows done are kept in {args.output}.partial; rerun the same command with "
                  "--resume to continue", file=sys.stderr)
        return 130
    except Exception as err:
        from pipelines import distributed

        lost = distributed.lost_peer(err, options.ddp_timeout, f"the rounds done are kept in {args.output}.partial "
                                     "on machine 0; once every machine is up again, rerun the same command on each "
                                     "with --resume")
        if lost is None:
            raise
        return fail(lost)  # on whichever process survives: it may not be the main one
    if summary is not None:  # None on the other processes of a launched run
        print(report(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
