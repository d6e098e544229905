"""Predict a CSV/TSV file with a model directory saved by scripts/run.py (or any saved classifier).

    python scripts/predict.py --model outputs/cola --input sentences.csv --output predictions.csv
    python scripts/predict.py --model my_model --input dev.tsv --output dev_pred.tsv \\
        --text-column sentence --label-column label

Every input column is kept as it was, in the original row order; added: `predicted`,
`predicted_prob`, `prob_<label>` per label (unless --no-probs) and `error`.
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from scripts._common import configure_logging, fail, set_offline
from scripts._options import negative_values, one_line_errors, whole_number

if TYPE_CHECKING:  # the real import waits until the offline switches are set
    from pipelines.prediction.stream import PredictSummary


_positive = whole_number(1)


def _encoding(text: str) -> str:
    import codecs

    try:
        codecs.lookup(text)
    except LookupError:
        raise argparse.ArgumentTypeError(f"unknown encoding {text!r} (e.g. utf-8, cp949, latin-1)") from None
    return text


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
    p.add_argument("--encoding", default="utf-8-sig", type=_encoding,
                   help="input encoding (default: UTF-8 with or without BOM)")
    p.add_argument("--batch-size", type=_positive, default=64, help="rows per forward pass (default 64)")
    p.add_argument("--chunk-size", type=_positive, default=4096,
                   help="rows read, sorted and written at a time (default 4096)")
    p.add_argument("--max-length", type=_positive,
                   help="token limit (default: the card's, else the model's, at most 512)")
    p.add_argument("--no-probs", action="store_true", help="leave out the per-label probability columns")
    p.add_argument("--resume", action="store_true", help="continue an interrupted run from the rows already written")
    p.add_argument("--device", help="torch device (default: cuda when available, else cpu)")
    p.add_argument("--threads", type=_positive,
                   help="CPU threads for torch (default: torch's choice; 1 can be much faster on a busy machine)")
    return p


def report(summary: PredictSummary) -> str:
    """What the run did, for stdout."""
    t = summary.tally
    errors = "; ".join(f"{n} {why}" for why, n in sorted(t.errors.items())) or "none"
    lines = [
        f"wrote {summary.output}: {t.rows} rows, {t.predicted} predicted ({summary.rows_per_s:.0f} rows/s on "
        f"{summary.device}{f', resumed after row {summary.resumed_from}' if summary.resumed_from else ''})",
        f"truncated at {summary.max_length} tokens: {t.truncated} rows; "
        f"errors: {sum(t.errors.values())} rows ({errors})",
    ]
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
    from pipelines.errors import CardtuneError
    from pipelines.filesystem import check_output_file
    from pipelines.prediction.stream import PredictOptions, predict_file

    if args.threads:
        import torch

        torch.set_num_threads(args.threads)  # process-wide, so it belongs here, not in the library

    options = PredictOptions(
        text_column=args.text_column, text_pair_column=args.text_pair_column, label_column=args.label_column,
        sep=args.sep, encoding=args.encoding, max_length=args.max_length, batch_size=args.batch_size,
        chunk_size=args.chunk_size, probs=not args.no_probs, resume=args.resume, device=args.device,
    )
    try:
        check_output_file(args.output, "--output")
        summary = predict_file(args.model, args.input, args.output, options)
    except CardtuneError as err:
        return fail(err)
    except KeyboardInterrupt:
        print(f"interrupted: the rows done are kept in {args.output}.partial; rerun the same command with --resume "
              "to continue", file=sys.stderr)
        return 130
    print(report(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
