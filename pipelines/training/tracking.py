"""Experiment tracking through the Trainer's own `--report_to` backends, made to fit cardtune's runs.

cardtune adds: a check before any work that the named backend's package is installed (one line with
the install command otherwise); a run name from the card, model and seed; a TensorBoard folder per
run (`OUT/runs/<run name>/<session>`), which a resumed run continues without repeating a step; and, after
training, the card and run configuration as hyperparameters with the final metrics of the restored
best checkpoint (`final/validation_mcc`, ...) for the local-first backends, TensorBoard and trackio.
MLflow and W&B get the run name and what the Trainer itself logs (arguments, per-epoch metrics).
"""

from __future__ import annotations

import dataclasses
import enum
import importlib.util
import json
import logging
import os
from pathlib import Path
from typing import Any

from transformers import Trainer, TrainingArguments
from transformers.integrations import TensorBoardCallback

from pipelines.card.cards import TaskCard
from pipelines.errors import CardtuneError
from pipelines.modeling import offline
from pipelines.reporting.run_id import new_run_id
from pipelines.training import arguments
from pipelines.training.options import RunArgs
from pipelines.training.settings import Settings

log = logging.getLogger(__name__)

# --report_to name -> (module to import, whether cardtune's `tracking` extra installs it)
BACKENDS: dict[str, tuple[str, bool]] = {
    "tensorboard": ("tensorboard", True),
    "trackio": ("trackio", True),
    "mlflow": ("mlflow", False),
    "wandb": ("wandb", False),
}
# Backends cardtune also gives the hyperparameters and final metrics to.
FINAL_LOGGED = ("tensorboard", "trackio")


def reported(report_to: str | list[str] | None) -> list[str]:
    """The backend names in a `report_to` value (`none` or empty: none)."""
    names = [report_to] if isinstance(report_to, str) else list(report_to or [])
    return [n for n in names if n and n != "none"]


def check_backends(report_to: str | list[str] | None) -> None:
    """One line with the install command when a named backend's package is missing (before any work)."""
    for name in reported(report_to):
        module, in_extra = BACKENDS.get(name, (None, False))
        if module and importlib.util.find_spec(module) is None:
            install = f'`pip install -e ".[tracking]"` (or `pip install {module}`)' if in_extra \
                else f"`pip install {module}`"
            raise CardtuneError(f"--report_to {name}: the `{module}` package is not installed; "
                                f"install it with {install}, or drop --report_to {name}")


def short_model(model: str | None) -> str:
    """A named offline model's name, else the last part of the path or Hub id."""
    entry = offline.find(model)
    return entry.name if entry else Path(str(model or "model")).name


def run_name(card: TaskCard, model: str | None, seed: int, trial: int | None = None) -> str:
    """`cola-minilm-seed42` (`cola-minilm-trial3-seed45` for a search trial)."""
    return f"{card.name}-{short_model(model)}" + (f"-trial{trial}" if trial is not None else "") + f"-seed{seed}"


def name_run(card: TaskCard, settings: Settings, args: TrainingArguments, trial: int | None = None) -> None:
    """Set `run_name` from the card, model and seed unless the card or the command line set one."""
    if not args.run_name:
        args.run_name = run_name(card, settings.model, args.seed, trial)


def tags(card: TaskCard, settings: Settings, args: TrainingArguments) -> list[str]:
    """What a run is filed under: task, model, seed and the card's languages."""
    return [card.name, short_model(settings.model), f"seed-{args.seed}", *card.language]


def configure(trainer: Trainer) -> None:
    """TensorBoard writes to OUT/runs/<run name>/<session>: a folder per run, so two runs of the same
    name never share curves; `resume` points a resumed run back at its own folder. The folder is
    recorded in each checkpoint (`trainer.cardtune_session`). TENSORBOARD_LOGGING_DIR, when set, still wins."""
    args = trainer.args
    for callback in _tensorboard(trainer):
        if callback.logging_dir is None and args.run_name:
            trainer.cardtune_session = f"runs/{args.run_name}/{new_run_id()}"
            callback.logging_dir = str(Path(args.output_dir) / trainer.cardtune_session)


def resume(trainer: Trainer, session: str | None, step: int) -> None:
    """A resumed run continues the TensorBoard folder of the run it resumes (`session`, from the
    checkpoint), without the events that run logged after the checkpoint's `step`: the resumed run
    logs those steps again, and each step is in the curves once."""
    if not session:
        return
    for callback in _tensorboard(trainer):
        folder = Path(trainer.args.output_dir) / session
        if getattr(trainer, "cardtune_session", None) is not None and folder.is_dir():
            trainer.cardtune_session = session
            callback.logging_dir = str(folder)
            _drop_events_after(folder, step)


def _tensorboard(trainer: Trainer) -> list[TensorBoardCallback]:
    return [cb for cb in trainer.callback_handler.callbacks if isinstance(cb, TensorBoardCallback)]


def _drop_events_after(folder: Path, step: int) -> None:
    """Rewrite each event file of `folder` without its events past `step` (each file replaced whole)."""
    import tempfile

    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
    from tensorboard.summary.writer.record_writer import RecordWriter

    for path in sorted(folder.glob("events.out.tfevents.*")):
        events = list(EventFileLoader(str(path)).Load())
        kept = [e for e in events if e.step <= step or e.HasField("file_version")]
        if len(kept) == len(events):
            continue
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".cut-", delete=False) as fh:
            writer = RecordWriter(fh)
            for event in kept:
                writer.write(event.SerializeToString())
            fh.flush()
        os.replace(fh.name, path)
        log.info("TensorBoard: %d event(s) past step %d of the interrupted run dropped from %s",
                 len(events) - len(kept), step, path.name)


def hyperparameters(card: TaskCard, run: RunArgs, settings: Settings, args: TrainingArguments) -> dict[str, Any]:
    """The card and the run configuration, flattened to the scalars trackers accept. `run/...` holds
    what the run used: an option left unset shows the value it resolved to (`Settings`)."""
    values: dict[str, Any] = {
        "task": card.name, "model": settings.model, "seed": args.seed, "run_name": args.run_name,
        "tags": ",".join(tags(card, settings, args)), "card/path": str(card.path), "card/select_by": card.select_by,
        "card/max_length": card.max_length, "card/labels": len(card.labels),
        **{f"card/defaults/{k}": v for k, v in arguments.card_defaults(card, settings.model).items()},
        **{f"run/{k}": v for k, v in dataclasses.asdict(run).items()},
        **{f"run/{k}": v for k, v in dataclasses.asdict(settings).items()},
        **{f"args/{k}": v for k, v in args.to_dict().items() if "token" not in k},
    }
    return {k: _scalar(v) for k, v in values.items()}


def _scalar(value: Any) -> bool | int | float | str:
    if isinstance(value, enum.Enum):
        value = value.value
    if isinstance(value, (bool, int, float, str)):
        return value
    return json.dumps(value, default=str) if isinstance(value, (list, tuple, dict)) else str(value)


def final_metrics(splits: dict[str, dict[str, float] | None], names: tuple[str, ...]) -> dict[str, float]:
    """`final/<split>_<metric>` for the card's metrics and the loss of each scored split."""
    out = {}
    for split, values in splits.items():
        for key, value in (values or {}).items():
            if key in names or key == "loss":
                out[f"final/{split}_{key}"] = float(value)
    return out


def log_final(trainer: Trainer, card: TaskCard, run: RunArgs, settings: Settings,
              splits: dict[str, dict[str, float] | None]) -> None:
    """Hyperparameters and the final metrics of the restored best checkpoint, on the main process."""
    names = [n for n in reported(trainer.args.report_to) if n in FINAL_LOGGED]
    if not names or not trainer.is_world_process_zero():
        return
    hparams = hyperparameters(card, run, settings, trainer.args)
    final = final_metrics(splits, (*card.metrics, card.select_by))
    if "tensorboard" in names:
        _to_tensorboard(trainer, hparams, final)
    if "trackio" in names:
        _to_trackio(trainer.args, hparams, final)
    log.info("logged to %s: %d hyperparameters, %s", ", ".join(names), len(hparams),
             ", ".join(f"{k}={v:.4f}" for k, v in final.items()))


def _to_tensorboard(trainer: Trainer, hparams: dict[str, Any], final: dict[str, float]) -> None:
    from torch.utils.tensorboard import SummaryWriter

    folders = [cb.logging_dir for cb in _tensorboard(trainer) if cb.logging_dir]
    if folders:
        # run_name=".": the HParams entry joins the run's own folder instead of a timestamped subfolder.
        with SummaryWriter(folders[0]) as writer:
            writer.add_hparams(hparams, final, run_name=".", global_step=trainer.state.global_step)


def _to_trackio(args: TrainingArguments, hparams: dict[str, Any], final: dict[str, float]) -> None:
    import trackio

    # The Trainer's callback finished the run at the end of training; this reopens the same one.
    trackio.init(project=args.project, name=args.run_name, resume="allow", space_id=args.trackio_space_id)
    trackio.config.update(hparams, allow_val_change=True)
    trackio.log(final)
    trackio.finish()
