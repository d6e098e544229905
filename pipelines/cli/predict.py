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

import dataclasses
import sys
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from pipelines.cli._common import configure_logging, fail, set_offline
from pipelines.cli._options import negative_values, one_line_errors

if TYPE_CHECKING:  # the real imports wait until the offline switches are set
    from pipelines.cli._parser import OptionParser
    from pipelines.prediction.plan import PredictOptions
    from pipelines.prediction.stream import PredictSummary


@dataclass
class Files:
    """What predict.py reads and writes (the library takes them as arguments of `predict_file`)."""

    model: str = field(metadata={"help": "Model directory (the --output-dir of scripts/run.py) or an ONNX export."})
    input: str = field(metadata={"help": "CSV/TSV file with a header row."})
    output: str = field(metadata={"help": "Where to write the predictions (.csv or .tsv)."})


def build_parser() -> OptionParser:
    """The predict command line, generated from `Files` and `PredictOptions` (flags in both spellings)."""
    from pipelines.cli._parser import OptionParser
    from pipelines.prediction.plan import PredictOptions

    parser = OptionParser((Files, PredictOptions), check_ranges=True, kebab_first=True, prog="predict.py",
                          description=__doc__.split("\n")[0])
    return one_line_errors(parser)


def parse(argv: list[str]) -> tuple[Files, PredictOptions]:
    """The files and the options of a prediction run from its command line (SystemExit: already reported)."""
    from pipelines.prediction.plan import PredictOptions

    values = vars(build_parser().parse_args(argv))
    files = Files(**{f.name: values.pop(f.name) for f in dataclasses.fields(Files)})
    options = PredictOptions(**values)
    # Without --threads, torch's threads follow the cores other jobs leave free
    return files, dataclasses.replace(options, adapt_threads=options.threads is None)


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
    set_offline(True)  # a saved model directory never needs the network; before the parser imports transformers
    try:
        files, options = parse(negative_values(list(sys.argv[1:] if argv is None else argv)))
    except SystemExit as exit_:  # one line (or --help) already printed
        return int(exit_.code or 0)
    configure_logging()
    from pipelines import hardware
    from pipelines.errors import CardtuneError
    from pipelines.filesystem import check_output_file
    from pipelines.prediction.shards import launched_rank
    from pipelines.prediction.stream import predict_file

    main_process = launched_rank()[0] == 0
    if options.threads:
        hardware.configure_threads(options.threads)  # process-wide, so it belongs here, not in the library
    try:
        problem = hardware.launcher_problem("scripts/predict.py")
        if problem:
            raise CardtuneError(problem)
        check_output_file(files.output, "--output")
        summary = predict_file(files.model, files.input, files.output, options)
    except CardtuneError as err:
        return fail(err) if main_process else 2  # every process hits it; one line is enough
    except KeyboardInterrupt:
        if main_process:
            print(f"interrupted: the rows done are kept in {files.output}.partial; rerun the same command with "
                  "--resume to continue", file=sys.stderr)
        return 130
    except Exception as err:
        from pipelines import distributed

        lost = distributed.lost_peer(err, options.ddp_timeout, f"the rounds done are kept in {files.output}.partial "
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
