"""Fine-tune a model on a task card.

    accelerate launch scripts/run.py --task cola --data-dir ../shared/data/cola_public
    python scripts/run.py --task my_card.yaml --model bert-base-uncased --online
    python scripts/run.py --list-tasks

Every TrainingArguments flag works too (--learning_rate, --num_train_epochs, ...); precedence is
TrainingArguments default < cardtune default < card `defaults` < command line.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from scripts._common import configure_logging, fail, set_offline  # noqa: E402

log = logging.getLogger("cardtune")


def list_tasks() -> str:
    """One line per shipped card: name, description, the model its tutorial used."""
    from pipelines.cards import load_card, shipped_cards

    lines = []
    for name in shipped_cards():
        card = load_card(name)
        lines.append(f"{name:<12} {card.description}  [tutorial model: {card.recommended_model or '-'}]")
    return "\n".join(lines)


def build_parser(card=None):
    """HfArgumentParser over RunArgs + TrainingArguments, with the card's defaults applied."""
    from transformers import HfArgumentParser, TrainingArguments

    from pipelines.options import RunArgs
    from pipelines.train import base_defaults

    parser = HfArgumentParser((RunArgs, TrainingArguments), prog="run.py", description=__doc__.split("\n")[0])
    if card is not None:
        defaults = {**base_defaults(card), **card.defaults}
        defaults["disable_tqdm"] = not sys.stderr.isatty()
        parser.set_defaults(**defaults)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--task")
    pre.add_argument("--list-tasks", "--list_tasks", action="store_true")
    pre.add_argument("--online", action="store_true")
    known, _ = pre.parse_known_args(argv)
    set_offline(not known.online)
    configure_logging()
    from pipelines.cards import load_card
    from pipelines.errors import CardtuneError

    try:
        if known.list_tasks:
            print(list_tasks())
            return 0
        if not known.task:
            if any(a in ("-h", "--help") for a in argv):
                build_parser().print_help()
                return 0
            raise CardtuneError("--task is required: a shipped card name (see --list-tasks) or a card .yaml path")
        card = load_card(known.task)
        try:
            run_args, training_args = build_parser(card).parse_args_into_dataclasses(args=argv)
        except SystemExit as exit_:  # argparse already printed usage and the error
            return int(exit_.code or 0)
        except ValueError as err:  # TrainingArguments rejects a combination of values
            raise CardtuneError(f"invalid training arguments (card {card.path.name} + command line): {err}") from None
        from pipelines.runner import run_task

        log.info("task %s from %s; output directory %s", card.name, card.path, training_args.output_dir)
        run_task(card, run_args, training_args)
        return 0
    except CardtuneError as err:
        return fail(err)


if __name__ == "__main__":
    sys.exit(main())
