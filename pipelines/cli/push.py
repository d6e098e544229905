"""Push a finished run's output directory to the Hugging Face Hub (no retraining).

    python scripts/push.py outputs/cola --hub-model-id alice/cola-minilm [--hub-private]
    python scripts/push.py outputs/cola --hub-model-id alice/cola-minilm --hub-dry-run hub_preview

The token comes from `hf auth login` or the HF_TOKEN environment variable, never from the command
line. --hub-dry-run writes the exact folder that would be uploaded and lists it; it needs no token.
"""

from __future__ import annotations

import argparse
import sys

from pipelines.cli._common import configure_logging, fail, token_flag, token_flag_error
from pipelines.cli._options import negative_values, one_line_errors


def build_parser() -> argparse.ArgumentParser:
    """The push command line."""
    parser = argparse.ArgumentParser(prog="push.py", description=__doc__.split("\n")[0], allow_abbrev=False)
    one_line_errors(parser)
    parser.add_argument("output_dir", help="The --output-dir of a finished run (it is only read).")
    parser.add_argument("--hub-model-id", "--hub_model_id", help="The Hub repository, USER/NAME (created if missing).")
    parser.add_argument("--hub-private", "--hub_private", action="store_true",
                        help="Create the repository private (an existing repository keeps its visibility).")
    parser.add_argument("--hub-dry-run", "--hub_dry_run", metavar="DIR",
                        help="Write the folder that would be uploaded to DIR and list it; upload nothing.")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Publish a finished output directory (`cardtune-push`); returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    # Pushing is an explicit request for the network: unlike run.py, no offline switch is set here.
    configure_logging()
    from pipelines import hub
    from pipelines.errors import CardtuneError

    flag = token_flag(argv)
    if flag:
        return fail(token_flag_error(flag))
    try:
        args = build_parser().parse_args(negative_values(argv))
    except SystemExit as exit_:  # argparse already printed usage and the error
        return int(exit_.code or 0)
    try:
        print("\n".join(hub.publish(args.output_dir, args.hub_model_id, args.hub_private, args.hub_dry_run)))
        return 0
    except CardtuneError as err:
        return fail(err)


if __name__ == "__main__":
    sys.exit(main())
