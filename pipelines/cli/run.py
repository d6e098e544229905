"""Fine-tune a model on a task card.

    accelerate launch scripts/run.py --task cola --data-dir ../shared/data/cola_public
    python scripts/run.py --task my_card.yaml --model bert-base-uncased --online
    python scripts/run.py --list-tasks
    python scripts/run.py --task cola --push-to-hub --hub-model-id alice/cola-minilm [--hub-private]

Every TrainingArguments flag works too (--learning_rate, --num_train_epochs, ...); precedence is
TrainingArguments default < cardtune default < card `defaults` < command line.
"""

from __future__ import annotations

import argparse
import logging
import re
import shlex
import sys
from typing import TYPE_CHECKING

from pipelines.cli._common import configure_logging, fail, redact, set_offline, token_flag, token_flag_error
from pipelines.cli._options import joined_lists, negative_values, one_line_errors, resume_command

if TYPE_CHECKING:  # the real imports wait until the offline switches are set
    from transformers import HfArgumentParser, TrainingArguments

    from pipelines.card.cards import TaskCard
    from pipelines.training.options import RunArgs

log = logging.getLogger("cardtune")


def list_tasks() -> str:
    """One line per shipped card: name, description, the model its tutorial used."""
    from pipelines.card.cards import load_card, shipped_cards
    from pipelines.modeling.offline import choose

    lines = []
    for name in shipped_cards():
        card = load_card(name)
        lines.append(f"{name:<12} {card.description}  [offline model: {choose(None, card.language, card.model).name}; "
                     f"tutorial model: {card.recommended_model or '-'}]")
    return "\n".join(lines)


def list_models() -> str:
    """The named offline models: languages, size, license, whether installed, and the install command."""
    from pipelines.modeling.offline import listing

    rows = listing()
    columns = ("name", "languages", "size", "license", "installed")
    widths = {c: max(len(c), *(len(r[c]) for r in rows)) for c in columns}
    lines = ["  ".join(c.ljust(widths[c]) for c in columns)]
    for row in rows:
        lines.append("  ".join(row[c].ljust(widths[c]) for c in columns))
        lines.append(f"    {row['description']}; aliases: {row['aliases'] or '-'}; install: {row['install']}")
    return "\n".join(lines)


def build_parser(card: TaskCard | None = None, model: str | None = None) -> HfArgumentParser:
    """HfArgumentParser over RunArgs + TrainingArguments (their facts in --help), with the card's defaults for
    `model` (the `--model` value; None: the card's choice) applied."""
    from transformers import TrainingArguments

    from pipelines.cli._parser import OptionParser
    from pipelines.training.arguments import card_settings
    from pipelines.training.options import TRAINING_ARGUMENTS, RunArgs

    parser = OptionParser((RunArgs, TrainingArguments), facts=TRAINING_ARGUMENTS, prog="run.py",
                          description=__doc__.split("\n")[0])
    one_line_errors(parser)
    # The issue's spelling, as a plain flag for TrainingArguments' own field (--hub-private-repo wants a value).
    parser.add_argument("--hub-private", "--hub_private", dest="hub_private_repo", action="store_const", const=True,
                        default=argparse.SUPPRESS, help="Create the Hub repository private (--push-to-hub).")
    if card is not None:
        defaults = card_settings(card, model)
        defaults["disable_tqdm"] = not sys.stderr.isatty()
        parser.set_defaults(**defaults)
    return parser


def early_flags(argv: list[str]) -> argparse.Namespace:
    """The flags needed before the card is loaded and any Hugging Face library is imported."""
    pre = one_line_errors(argparse.ArgumentParser(add_help=False))
    pre.add_argument("--task")
    pre.add_argument("--model")  # picks the card's `model_defaults` before the full parse
    pre.add_argument("--list-tasks", "--list_tasks", action="store_true")
    pre.add_argument("--list-models", "--list_models", action="store_true")
    pre.add_argument("--online", action="store_true")
    pre.add_argument("--push-to-hub", "--push_to_hub", nargs="?", const="true", default="false")
    pre.add_argument("--hub-dry-run", "--hub_dry_run")
    return pre.parse_known_args(argv)[0]


def parse(card: TaskCard, argv: list[str], model: str | None = None) -> tuple[RunArgs, TrainingArguments]:
    """RunArgs and TrainingArguments for `card` with `model` (`--model`) from the command line; bad
    combinations are one line."""
    from pipelines.errors import CardtuneError

    try:
        return build_parser(card, model).parse_args_into_dataclasses(args=argv)
    except ValueError as err:  # TrainingArguments rejects a combination of values
        unused = re.match(r"Some specified arguments are not used by the HfArgumentParser: (.*)", str(err))
        if unused:
            raise CardtuneError(f"unknown option(s) {unused.group(1)} (see --help)") from None
        raise CardtuneError(f"invalid training arguments (card {card.path.name} + command line): {err}") from None


def main(argv: list[str] | None = None) -> int:
    """Train on a task card (`cardtune-train`); returns the exit code."""
    argv = negative_values(list(sys.argv[1:] if argv is None else argv))
    argv = joined_lists(argv, ("--report_to", "--report-to"))
    try:
        known = early_flags(argv)
    except SystemExit as exit_:  # one line already printed
        return int(exit_.code or 0)
    uploads = known.push_to_hub.lower() in ("true", "yes", "1", "y", "t") and not known.hub_dry_run
    set_offline(not known.online, upload=uploads)  # before any Hugging Face import: they read it once
    configure_logging()
    from pipelines.card.cards import load_card
    from pipelines.errors import CardtuneError

    flag = token_flag(argv)
    if flag:
        return fail(token_flag_error(flag))
    try:
        listing = listing_of(known, argv)
        if listing is not None:
            print(listing)
            return 0
        card = load_card(known.task)
        try:
            run_args, training_args = parse(card, argv, known.model)
        except SystemExit as exit_:  # argparse already printed usage and the error
            return int(exit_.code or 0)
        from pipelines import hardware
        from pipelines.training import option_checks
        from pipelines.training.settings import resolve

        settings = resolve(card, run_args, training_args)  # the effective settings, once; every stage reads them
        option_checks.check(card, run_args, training_args, argv, settings)
        problem = hardware.launcher_problem()
        if problem:
            raise CardtuneError(problem)
        publish = hub_request(run_args, training_args)
        from pipelines.reporting import run_lock
        from pipelines.training.run import run_task

        log.info("task %s from %s; output directory %s", card.name, card.path, training_args.output_dir)
        with run_lock.hold(training_args.output_dir, enabled=training_args.process_index == 0):
            summary = run_task(card, run_args, training_args, settings)
            if publish and summary:  # summary is empty on the non-main processes of a distributed run
                publish_outputs(training_args.output_dir, *publish)
        return 0
    except CardtuneError as err:
        return fail(err)
    except KeyboardInterrupt as err:
        print(redact(interrupted(err, argv)), file=sys.stderr)
        return 130
    except Exception as err:
        from pipelines import distributed

        seconds = getattr(locals().get("training_args"), "ddp_timeout", distributed.COLLECTIVE_TIMEOUT_S)
        lost = distributed.lost_peer(err, seconds, "nothing was published; once every machine is up again, rerun "
                                     "the same command on each with --resume to continue from the last complete "
                                     "checkpoint (docs/distributed.md)")
        if lost is None:
            raise
        return fail(lost)


def listing_of(known: argparse.Namespace, argv: list[str]) -> str | None:
    """What --list-models, --list-tasks or --help without --task prints; None when a task is given."""
    from pipelines.errors import CardtuneError

    if known.list_models:
        return list_models()
    if known.list_tasks:
        return list_tasks()
    if not known.task:
        if any(a in ("-h", "--help") for a in argv):
            return build_parser().format_help().rstrip("\n")
        raise CardtuneError("--task is required: a shipped card name (see --list-tasks) or a card .yaml path")
    return None


def interrupted(err: KeyboardInterrupt, argv: list[str]) -> str:
    """Where a Ctrl-C stopped the run and how to continue it."""
    if getattr(err, "db", None) is not None:  # a search, between or inside trials
        return (f"interrupted: {err.finished} of {err.total} trials are finished and kept in {err.db} (the one "
                f"running is marked failed); continue the search with the same command: "
                f"`python scripts/run.py {shlex.join(a for a in argv if a != '--resume')}`")
    if getattr(err, "step", None) is None:  # not inside trainer.train: nothing to resume from
        return "interrupted: no new outputs were published (an earlier complete run, if any, is unchanged)"
    stopped = f"interrupted at step {err.step} of {err.max_steps} (epoch {err.epoch:.2f})"
    if err.complete is None:
        return f"{stopped}; no checkpoint was complete yet: rerun the same command to start over"
    return (f"{stopped}; {err.complete.name} in {err.output_dir} is complete: continue with "
            f"`{resume_command('run.py', argv)}`")


def hub_request(run_args: RunArgs, training_args: TrainingArguments) -> tuple[str, bool, str | None] | None:
    """(repo id, private, dry-run folder) when the run ends with a push or a dry run; checked before
    training so that nobody waits an hour to learn that the repository id or the token is missing."""
    from pipelines import hub
    from pipelines.errors import CardtuneError

    if not (training_args.push_to_hub or run_args.hub_dry_run):
        if training_args.hub_model_id:
            log.warning("--hub-model-id without --push-to-hub or --hub-dry-run: nothing will be published")
        return None
    if run_args.seeds:
        raise CardtuneError("--push-to-hub/--hub-dry-run with --seeds: publish one seed's folder afterwards with "
                            "`python scripts/push.py OUT/seed-N --hub-model-id USER/NAME`")
    if run_args.search is not None:
        raise CardtuneError("--push-to-hub/--hub-dry-run with --search: publish the final model afterwards with "
                            "`python scripts/push.py OUT/final --hub-model-id USER/NAME`")
    repo_id = hub.check_repo_id(training_args.hub_model_id)
    if run_args.hub_dry_run:
        hub.check_dry_run_dir(run_args.hub_dry_run, training_args.output_dir)
    else:
        hub.check_can_push()
    # The Trainer would create the repository now and push every checkpoint; cardtune pushes once,
    # at the end, from the finished output directory.
    training_args.push_to_hub = False
    return repo_id, bool(training_args.hub_private_repo), run_args.hub_dry_run


def publish_outputs(output_dir: str, repo_id: str, private: bool, dry_run: str | None) -> None:
    """Push the finished outputs; a failure keeps them and says how to retry without retraining."""
    from pipelines import hub
    from pipelines.errors import HubError

    try:
        print("\n".join(hub.publish(output_dir, repo_id, private, dry_run)))
    except HubError as err:
        retry = f"python scripts/push.py {output_dir} --hub-model-id {repo_id}" + (" --hub-private" if private else "")
        refused = bool(dry_run) and str(dry_run) in str(err)  # the folder itself was the problem: name another
        retry += f" --hub-dry-run {'NEW_EMPTY_FOLDER' if refused else dry_run}" if dry_run else ""
        raise HubError(f"{err}; the outputs in {output_dir} are complete: retry with `{retry}`") from None


if __name__ == "__main__":
    sys.exit(main())
