"""Export a saved classifier for deployment: ONNX (fp32 or dynamic int8), verified on real rows.

    python scripts/export.py exported/cola --onnx --model outputs/cola --sample dev.csv
    python scripts/export.py exported/cola_int8 --onnx --int8 --model outputs/cola --sample dev.tsv --sample-rows 2000

The folder loads in plain onnxruntime (inputs named as the tokenizer names them, output `logits`)
and in `scripts/predict.py --model FOLDER`. The PyTorch model and the export score the first
--sample-rows rows of --sample; label agreement and the largest probability difference are printed
and stored in FOLDER/export.json. Needs the `onnx` extra: `pip install 'cardtune[onnx]'`.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from pipelines.cli._common import configure_logging, fail, set_offline
from pipelines.cli._options import encoding_name, negative_values, one_line_errors, whole_number

log = logging.getLogger("cardtune")


def build_parser() -> argparse.ArgumentParser:
    p = one_line_errors(argparse.ArgumentParser(prog="export.py", description=__doc__.split("\n")[0]))
    p.add_argument("out_dir", help="new folder for the export")
    p.add_argument("--model", required=True, help="model directory (the --output-dir of scripts/run.py)")
    p.add_argument("--onnx", action="store_true", help="export to ONNX (the one format so far; required)")
    p.add_argument("--int8", action="store_true", help="dynamic int8 weights for the matrix products")
    p.add_argument("--sample", required=True, help="CSV/TSV with a header row: real rows to verify the export on")
    p.add_argument("--sample-rows", type=whole_number(1), default=1000,
                   help="rows of --sample to compare (default 1000)")
    p.add_argument("--text-column", help="text column of --sample (default: the saved task card's)")
    p.add_argument("--text-pair-column", help="second text column, for sentence-pair models")
    p.add_argument("--sep", help="delimiter of --sample (default: tab for .tsv/.tab, comma otherwise)")
    p.add_argument("--encoding", default="utf-8-sig", type=encoding_name, help="encoding of --sample (default: UTF-8)")
    return p


def read_sample(args, card) -> tuple[list[str], list[str] | None]:
    """The first --sample-rows rows of --sample that have text in every text column."""
    from pipelines.errors import DataError
    from pipelines.prediction import delimited as tables

    path = Path(args.sample)
    if not path.is_file():
        raise DataError(f"--sample {path} not found")
    if args.text_column:
        columns = [args.text_column] + ([args.text_pair_column] if args.text_pair_column else [])
    elif card is not None:
        columns = list(card.text_columns)
    else:
        raise DataError(f"{args.model} has no task_card.yaml; name the text column(s) of --sample with --text-column")
    sep = tables.sep_for(path, args.sep)
    header = tables.read_columns(path, sep, args.encoding)
    tables.check_columns(path, header, columns, "name the text column(s) with --text-column / --text-pair-column")
    frame = next(tables.chunks(path, sep, args.encoding, max(1, args.sample_rows)), None)
    rows = [] if frame is None else [t for t in zip(*(frame[c].tolist() for c in columns))
                                     if all(isinstance(v, str) and v.strip() for v in t)]
    return [t[0] for t in rows], [t[1] for t in rows] if len(columns) == 2 else None


def report(out_dir: str, info: dict) -> str:
    check = info["verification"]
    return (f"exported {info['precision']} ONNX (opset {info['opset']}) to {out_dir}\n"
            f"verified on {check['rows']} rows against the PyTorch model: labels agree on {check['labels_identical']}/"
            f"{check['rows']} ({100 * check['label_agreement']:.2f}%), largest probability difference "
            f"{check['max_prob_diff']:.2e} (stored in {Path(out_dir) / 'export.json'})")


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(negative_values(list(sys.argv[1:] if argv is None else argv)))
    except SystemExit as exit_:  # one line (or --help) already printed
        return int(exit_.code or 0)
    set_offline(True)
    configure_logging()
    from pipelines.card.cards import saved_card
    from pipelines.errors import CardtuneError

    if not args.onnx:
        return fail("choose the export format: --onnx (the only one so far)")
    try:
        from pipelines.modeling import model_folder
        from pipelines.prediction.export import check_target, export_onnx

        check_target(args.out_dir)  # before the model loads: a read-only or non-empty OUT is one line now
        model_folder.check(args.model, "--model")
        sample = read_sample(args, saved_card(args.model))
        info = export_onnx(args.model, args.out_dir, args.int8, sample)
    except CardtuneError as err:
        return fail(err)
    print(report(args.out_dir, info))
    return 0


if __name__ == "__main__":
    sys.exit(main())
