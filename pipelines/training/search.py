"""Hyperparameter search: `--search N` runs N Optuna trials over the card's `search:` space.

Each trial is a normal training run of the card with the trial's settings and its own seed (the
run's seed + the trial number), scored by the best validation `select_by` over its evaluations.
After each evaluation the trial reports that score and the pruner may stop a hopeless one. The
study lives in OUT/search.db (SQLite), so running the same command again continues an interrupted
search up to N finished trials. At the end: the trials table, plots and the best settings as a
card `defaults:` snippet (`reporting/search_report.py`), and with `--search_final` the final
model trained with them in OUT/final.

Optuna is driven with ask/tell rather than `Trainer.hyperparameter_search`, which only sets
TrainingArguments fields (cardtune's `classifier_dropout` or `layerwise_lr_decay` are not), scores a
trial by its last evaluation rather than its best, and under DDP leaves the other processes
training when the main one prunes. Here, under `accelerate launch`, only the main process opens
the study; it sends each trial's settings, and each pruning decision, to the others.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import functools
import importlib.util
import json
import logging
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import datasets
import transformers
from transformers import PreTrainedTokenizerBase, TrainerCallback, TrainingArguments
from transformers.trainer_utils import SaveStrategy, get_last_checkpoint

from pipelines import filesystem
from pipelines.card.cards import TaskCard
from pipelines.card.keys import setting_types
from pipelines.card.search_space import Param, resolve
from pipelines.errors import CardtuneError
from pipelines.evaluation.metrics import METRICS
from pipelines.progress import timing
from pipelines.reporting import search_report
from pipelines.training import arguments, tracking
from pipelines.training import settings as run_settings
from pipelines.training.callbacks import EpochTimer
from pipelines.training.loop import build_trainer
from pipelines.training.options import RunArgs
from pipelines.training.settings import Settings

log = logging.getLogger(__name__)

DB = "search.db"
STUDY = "cardtune"


class SearchInterrupted(KeyboardInterrupt):
    """Ctrl-C during the trials of a search: the finished trials are kept in the study."""

    def __init__(self, finished: int, total: int, db: Path) -> None:
        super().__init__(f"search interrupted after {finished} of {total} trials")
        self.finished, self.total, self.db = finished, total, db


def make_pruner() -> Any:
    """Median pruning of the running best score: from the 4th trial on, a trial whose best score after
    its 2nd evaluation (or later) is below the median of the earlier trials' at the same point stops."""
    import optuna

    return optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=2)


def share(value: Any) -> Any:
    """`value` as the main process has it, on every process (as is without a process group)."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


class TrialMonitor(TrainerCallback):
    """The best `select_by` so far and its epoch; on the main process, reports it to the trial after
    each evaluation and asks the pruner, whose answer every process follows."""

    def __init__(self, trial: Any, select_by: str, higher_is_better: bool) -> None:
        self.trial, self.key, self.sign = trial, f"eval_{select_by}", 1 if higher_is_better else -1
        self.best: float | None = None
        self.best_epoch: float | None = None
        self.evaluations = 0
        self.pruned = False

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        value = (metrics or {}).get(self.key)
        if value is None:
            return
        self.evaluations += 1
        if self.best is None or self.sign * value > self.sign * self.best:
            epoch = round(state.epoch or 0.0, 2)
            self.best, self.best_epoch = float(value), int(epoch) if epoch.is_integer() else epoch
        prune = False
        if self.trial is not None:
            self.trial.report(self.best, self.evaluations)
            prune = self.trial.should_prune()
        if share(prune):
            self.pruned = control.should_training_stop = True


def apply_params(run: RunArgs, args: TrainingArguments, params: dict[str, Any]) -> tuple[RunArgs, TrainingArguments]:
    """Copies of the run options and TrainingArguments with `params` set (each goes where it belongs)."""
    run_fields = {f.name for f in dataclasses.fields(RunArgs)}
    new_args = copy.copy(args)
    for name, value in params.items():
        if name not in run_fields:
            setattr(new_args, name, value)
    return dataclasses.replace(run, **{k: v for k, v in params.items() if k in run_fields}), new_args


def open_study(out: Path, card: TaskCard, space: dict[str, Param], seed: int) -> Any:
    """The study in OUT/search.db, created or continued; refuses one made for another task or space."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)  # cardtune logs each trial itself
    out.mkdir(parents=True, exist_ok=True)
    direction = "maximize" if METRICS[card.select_by].higher_is_better else "minimize"
    try:
        study = optuna.create_study(storage=f"sqlite:///{out / DB}", study_name=STUDY, direction=direction,
                                    pruner=make_pruner(), load_if_exists=True)
        study.trials  # noqa: B018 - reads every table now, so a damaged file fails here and not mid-search
    except Exception as err:  # noqa: BLE001 - sqlalchemy, sqlite3 and optuna each raise their own types
        if isinstance(err, OSError):
            raise filesystem.WriteError.of(err, out, f"open the search study {DB}") from None
        first = (str(err).strip().splitlines() or [""])[0][:160]
        raise CardtuneError(f"{out / DB} cannot be read as a search study ({type(err).__name__}: {first}): it is "
                            "damaged or not cardtune's; move it aside or delete it to start the search over, or "
                            "pass another --output-dir") from None
    fingerprint = {"task": card.name, "select_by": card.select_by,
                   "space": {name: dataclasses.asdict(p) for name, p in space.items()}}
    old = study.user_attrs.get("fingerprint")
    if old is None:
        study.set_user_attr("fingerprint", json.loads(json.dumps(fingerprint)))
    elif old != json.loads(json.dumps(fingerprint)):
        raise CardtuneError(f"{out / DB} holds a search of task {old['task']} by {old['select_by']} over another "
                            f"space ({', '.join(old['space'])}): use another --output-dir, or delete it to start over")
    stale = [t for t in study.trials if t.state == optuna.trial.TrialState.RUNNING]
    for trial in stale:  # left by a process that was killed mid-trial
        study.tell(trial.number, state=optuna.trial.TrialState.FAIL)
        log.info("search: trial %d was still running when its process ended; marked failed", trial.number)
    # A sampler seeded by the trials so far: a continued search does not repeat its first suggestions.
    study.sampler = optuna.samplers.TPESampler(seed=seed + len(study.trials))
    return study


def finished(study: Any) -> list[Any]:
    """Trials that count towards N: complete or pruned."""
    from optuna.trial import TrialState

    return [t for t in study.trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]


def check_ready(card: TaskCard, run: RunArgs) -> dict[str, Param]:
    """Everything a search needs that can be checked before any data is read; returns the space."""
    if importlib.util.find_spec("optuna") is None:
        raise CardtuneError('--search: the `optuna` package is not installed; install it with '
                            '`pip install -e ".[search]"` (or: pip install optuna)')
    if run.seeds and not run.search_final:
        raise CardtuneError("--seeds with --search sets the seeds of the final model: add --search_final "
                            "(each trial has its own seed: --seed + the trial number)")
    if run.search < 1:
        raise CardtuneError(f"--search {run.search}: expected a number of trials of at least 1")
    return resolve(card.search, run.search_space, setting_types())


def run_search(
    card: TaskCard,
    run: RunArgs,
    args: TrainingArguments,
    feats: datasets.DatasetDict,
    tokenizer: PreTrainedTokenizerBase,
    build_model: Callable[[RunArgs, Settings], tuple[Any, dict[str, Any]]],
    train_final: Callable[[RunArgs, TrainingArguments, Settings], dict[str, Any]],
    model: str | None = None,
) -> dict[str, Any]:
    """Run the missing trials, write the search report; train the final model when asked.
    Returns the report's summary (empty on processes other than the main one). Each trial, and the
    final model, is a run of its own: its settings are resolved from its options. `model`: the
    searched model (the run's resolved `Settings.model`), for the settings snippet."""
    space = check_ready(card, run)
    out, main = Path(args.output_dir), args.process_index == 0
    study = open_study(out, card, space, args.seed) if main else None
    todo = share(max(0, run.search - len(finished(study))) if main else None)
    if main:
        log.info("search: %d trial(s) to run of %d over %s; study %s", todo, run.search,
                 "; ".join(p.describe() for p in space.values()), out / DB)
    started = time.monotonic()
    try:
        for done in range(todo):
            trial = study.ask() if main else None
            plan = share(_plan(trial, space, args.seed) if main else None)
            if main:
                _log_start(study, plan, card.select_by, done, todo, time.monotonic() - started)
            work = functools.partial(run_trial, card, run, args, feats, tokenizer, build_model, plan, trial)
            _run_and_record(study, trial, plan, card.select_by, work)
    except KeyboardInterrupt:
        raise SearchInterrupted(len(finished(study)) if main else 0, run.search, out / DB) from None
    if main:
        with contextlib.suppress(OSError):
            (out / "trials").rmdir()  # kept only when a tracker wrote there
    entry = arguments.model_entry(card, model) if model else None
    summary = search_report.write_report(study, out, card, space, entry[0] if entry else None) if main else {}
    best = share(summary.get("best"))
    if run.search_final and best:
        final_run, final_args = apply_params(run, args, best["params"])
        final_args.output_dir = str(out / "final")
        final_run = dataclasses.replace(final_run, search=None,
                                        resume=run.resume and _has_checkpoint(final_args.output_dir))
        log.info("search: training the final model with trial %d's settings into %s", best["trial"], out / "final")
        final = train_final(final_run, final_args, run_settings.resolve(card, final_run, final_args))
        if main:
            summary["final"] = {"folder": "final", "validation": final.get("validation")}
    elif run.search_final and main:
        log.warning("search: no trial finished with a score; no final model")
    return summary


def _has_checkpoint(folder: str) -> bool:
    return Path(folder).is_dir() and get_last_checkpoint(folder) is not None


def _plan(trial: Any, space: dict[str, Param], seed: int) -> dict[str, Any]:
    params = {name: param.suggest(trial) for name, param in space.items()}
    trial.set_user_attr("seed", seed + trial.number)
    return {"number": trial.number, "params": params, "seed": seed + trial.number}


def _run_and_record(study: Any, trial: Any, plan: dict[str, Any], select_by: str,
                    work: Callable[[], TrialMonitor]) -> None:
    """Run one trial; the main process tells the study how it ended (failed, too, when interrupted)."""
    from optuna.trial import TrialState

    started = time.monotonic()
    try:
        monitor = work()
    except BaseException:
        if trial is not None:
            study.tell(trial, state=TrialState.FAIL)
        raise
    if trial is None:
        return
    seconds = round(time.monotonic() - started, 1)
    for key, value in (("best_epoch", monitor.best_epoch), ("evaluations", monitor.evaluations), ("time_s", seconds)):
        trial.set_user_attr(key, value)
    if monitor.pruned:
        study.tell(trial, state=TrialState.PRUNED)
    elif monitor.best is None:
        study.tell(trial, state=TrialState.FAIL)
    else:
        study.tell(trial, monitor.best)
    ending = "pruned" if monitor.pruned else "finished"
    log.info("search: trial %d %s after %d evaluation(s) in %.1fs: best %s %s at epoch %s", plan["number"],
             ending, monitor.evaluations, seconds, select_by,
             f"{monitor.best:.4f}" if monitor.best is not None else "-", monitor.best_epoch)


def _log_start(study: Any, plan: dict[str, Any], select_by: str, done: int, todo: int, elapsed: float) -> None:
    """The search's progress line, at the start of every trial."""
    ended = finished(study)
    best = ""
    if any(t.state.name == "COMPLETE" for t in ended):
        best = f"; best {select_by} so far {study.best_trial.value:.4f} (trial {study.best_trial.number})"
    shown = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in plan["params"].items())
    pruned = sum(t.state.name == "PRUNED" for t in ended)
    log.info("search: trial %d (%d of %d in this run), seed %d: %s; %d finished (%d pruned)%s; %s", plan["number"],
             done + 1, todo, plan["seed"], shown, len(ended), pruned, best, timing(done, todo, elapsed))


def run_trial(card: TaskCard, run: RunArgs, args: TrainingArguments, feats: datasets.DatasetDict,
              tokenizer: PreTrainedTokenizerBase,
              build_model: Callable[[RunArgs, Settings], tuple[Any, dict[str, Any]]],
              plan: dict[str, Any], trial: Any = None) -> TrialMonitor:
    """Train once with the trial's settings; no checkpoints unless early stopping needs them. `trial`:
    the Optuna trial on the main process, None on the others."""
    number, seed = plan["number"], plan["seed"]
    trial_run, trial_args = apply_params(dataclasses.replace(run, resume=False), args, plan["params"])
    trial_args.seed = seed
    trial_args.output_dir = str(Path(args.output_dir) / "trials" / f"trial-{number}")
    trial_args.run_name = f"{args.run_name}-trial{number}" if args.run_name else None
    settings = run_settings.resolve(card, trial_run, trial_args)
    tracking.name_run(card, settings, trial_args, trial=number)
    if not trial_run.early_stopping_patience:  # the score is read at each evaluation: nothing to restore
        trial_args.save_strategy, trial_args.load_best_model_at_end = SaveStrategy.NO, False
    transformers.set_seed(seed)  # the new head is initialised at load time
    monitor = TrialMonitor(trial, card.select_by, METRICS[card.select_by].higher_is_better)
    classifier, _ = build_model(trial_run, settings)
    trainer = build_trainer(card, trial_args, feats, classifier, tokenizer, trial_run, [EpochTimer(), monitor],
                            settings)
    trainer.train()
    if monitor.best is not None:
        tracking.log_final(trainer, card, trial_run, settings, {"validation": {card.select_by: monitor.best}})
    # One process tidies, and trials/ goes only after the last trial: under DDP another process's
    # rmdir pulled the folder from under this one's glob (FileNotFoundError in scandir).
    if trainer.is_world_process_zero():
        folder = Path(trial_args.output_dir)
        for checkpoint in folder.glob("checkpoint-*"):
            shutil.rmtree(checkpoint, ignore_errors=True)
        with contextlib.suppress(OSError):
            folder.rmdir()  # kept only when a tracker wrote there
    return monitor
