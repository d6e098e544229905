"""Every value of a run checked before any work starts, whether it came from the command line or a
card's `defaults`: one line that names the option, the value and what is accepted."""

from __future__ import annotations

import functools
import json
from pathlib import Path

from transformers import TrainingArguments

from pipelines.card.cards import TaskCard
from pipelines.card.schema import did_you_mean
from pipelines.errors import CardtuneError
from pipelines.modeling import loading, model_folder, offline
from pipelines.option_fields import Range
from pipelines.training import arguments
from pipelines.training.options import RunArgs, ranges
from pipelines.training.settings import Settings

# option -> accepted range, read from the options' declarations (training/options.py)
RANGES: dict[str, Range] = ranges()


def check(card: TaskCard, run: RunArgs, args: TrainingArguments, argv: list[str], settings: Settings) -> None:
    """Raise a `CardtuneError` for the first value no run could use (`settings`: what the options resolve to)."""
    _check_model_names(card)
    values = {**vars(run), **{k: getattr(args, k, None) for k in RANGES if hasattr(args, k)}}
    source = functools.partial(_source, card=card, argv=argv, model=settings.model)
    for key, accepted in RANGES.items():
        value = values.get(key)
        if value is not None and not isinstance(value, bool):
            problem = accepted.problem(value)
            if problem:
                raise CardtuneError(f"{source(key)} {value}: {problem}")
    if args.max_steps == 0 or args.max_steps < -1:
        raise CardtuneError(f"{source('max_steps')} {args.max_steps}: expected a whole number of steps, "
                            "at least 1 (or -1: train for num_train_epochs)")
    if args.max_steps == -1 and not args.num_train_epochs > 0:
        raise CardtuneError(f"{source('num_train_epochs')} {args.num_train_epochs}: expected a number "
                            "of epochs above 0 (or set --max_steps)")
    parse_seeds(run.seeds, source("seeds"))
    from pipelines import hub

    hub.refuse_token(args.hub_model_id)  # published or not, it lands in run_config.json and the trackers
    args.report_to = check_report_to(args.report_to, source("report_to"))
    if run.search is not None:
        from pipelines.training import search

        search.check_ready(card, run)
    if run.model and Path(run.model).is_dir():  # a local folder: complete, or one line now rather than a bad run
        model_folder.check(run.model, "--model")
    _check_length(card, run, settings, argv)


def parse_seeds(spec: str | None, source: str = "--seeds") -> list[int]:
    """'1,2,3' -> [1, 2, 3]: distinct seeds, each in the range of `--seed`."""
    if not spec:
        return []
    low, high = RANGES["seed"].whole_bounds()
    try:
        seeds = [int(s) for s in str(spec).split(",") if s.strip()]
    except ValueError:
        seeds = []
    if not seeds or len(set(seeds)) != len(seeds) or not all(low <= s <= high for s in seeds):
        raise CardtuneError(f"{source} '{spec}': expected distinct whole numbers from {low} to {high} separated by "
                            "commas, e.g. 1,2,3")
    return seeds


def check_report_to(report_to: str | list[str] | None, source: str = "--report_to") -> list[str]:
    """The backends of `--report_to` (a comma list, or several values) as a list; a name transformers
    does not know is one line with the closest known name; a missing package, the install command."""
    import difflib

    from transformers.integrations.integration_utils import INTEGRATION_TO_CALLBACK

    from pipelines.training import tracking

    values = [report_to] if isinstance(report_to, str) else list(report_to or [])
    names = [n.strip() for v in values for n in str(v).replace(" ", ",").split(",") if n.strip()]
    known = sorted(INTEGRATION_TO_CALLBACK)
    if names in (["none"], []):
        return []
    if names == ["all"]:
        from transformers.integrations import get_available_reporting_integrations

        return get_available_reporting_integrations()
    for name in names:
        if name not in known:
            close = difflib.get_close_matches(name, known + ["none", "all"], n=1)
            hint = f"did you mean {close[0]}? " if close else ""
            raise CardtuneError(f"{source} {name!r} is not a tracking backend: {hint}expected a comma-separated list "
                                f"of {', '.join(known)} (or all, none)")
    tracking.check_backends(names)
    return list(dict.fromkeys(names))


def _source(key: str, card: TaskCard, argv: list[str], model: str | None = None) -> str:
    """Where a value came from: the command line (as the user spelled the flag) or the card (for `model`)."""
    spellings = {f"--{key}", f"--{key.replace('_', '-')}"}
    given = next((a.split("=", 1)[0] for a in argv if a.split("=", 1)[0] in spellings), None)
    if given:
        return given
    entry = arguments.model_entry(card, model) if model else None
    if entry and key in entry[1]:
        return f"card {card.path.name} `model_defaults.{entry[0]}.{key}`"
    if key in card.defaults or (key == "max_length" and card.max_length):
        where = "defaults." if key in card.defaults else ""
        return f"card {card.path.name} `{where}{key}`"
    return f"--{key}"


def _check_model_names(card: TaskCard) -> None:
    """Each `model_defaults:` key names a model: an offline one (or its alias), a Hub id or a folder."""
    names = [n for m in offline.OFFLINE_MODELS for n in (m.name, *m.aliases)]
    for key in card.model_defaults:
        if offline.find(key) is None and "/" not in key:
            raise CardtuneError(
                f"card {card.path.name} `model_defaults.{key}`: unknown model {key!r}{did_you_mean(key, names)}; "
                f"name an offline model ({', '.join(m.name for m in offline.OFFLINE_MODELS)}), a Hub id or a folder")


def _check_length(card: TaskCard, run: RunArgs, settings: Settings, argv: list[str]) -> None:
    """The token limit against the model's: longer inputs would crash in the position embeddings."""
    name, length = settings.model, settings.max_length
    limit = model_token_limit(name)
    if limit is not None and length > limit:
        source = (_source("max_length", card, argv, settings.model) if run.max_length
                  else f"card {card.path.name} `max_length`")
        raise CardtuneError(f"{source} {length} is more than model '{name}' takes "
                            f"({limit} tokens); pass --max-length {limit} or less")


def model_token_limit(name: str | None) -> int | None:
    """The longest input a local model takes (its position table, or its tokenizer's limit if
    lower); None when unknown here, e.g. a Hub model not downloaded yet (loading reports that)."""
    try:
        folder = Path(loading.resolve(name))
    except CardtuneError:
        return None
    limits = []
    for file, key in (("config.json", "max_position_embeddings"), ("tokenizer_config.json", "model_max_length")):
        try:
            value = json.loads((folder / file).read_text(encoding="utf-8")).get(key)
        except (OSError, ValueError, AttributeError):
            continue
        if isinstance(value, (int, float)) and 0 < value < 1_000_000:  # an unset tokenizer limit reads as 1e30
            limits.append(int(value))
    return min(limits) if limits else None
