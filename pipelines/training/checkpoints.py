"""Checkpoints that prove what they are: complete, undamaged, and from this run.

Every checkpoint cardtune saves is sealed (`pipelines.sealing`) with `cardtune_checkpoint.json`,
written last: a fingerprint of what decides the result (card, tokenized data, base model,
result-changing settings) and the size and SHA-256 of each file. A save cut short (full disk,
Ctrl-C, kill) has no record, or a record its files do not match, and `--resume` skips it; a
checkpoint of another run is refused.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import pyarrow.compute as pc
from transformers import Trainer, TrainingArguments
from transformers.trainer_utils import rotate_checkpoints

from pipelines import filesystem, sealing
from pipelines.card.cards import TaskCard
from pipelines.errors import CardtuneError
from pipelines.filesystem import WriteError, is_write_failure, sha256
from pipelines.training.options import RUN_OPTIONS_RESULT_NEUTRAL, TRAINING_ARGUMENTS_RESULT_NEUTRAL, RunArgs
from pipelines.training.settings import Settings

log = logging.getLogger(__name__)

RECORD = "cardtune_checkpoint.json"
SAVING = ".staging-checkpoint"  # a checkpoint being saved; renamed to checkpoint-N once recorded
_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")
# Card keys that only describe the task; changing them changes no result.
CARD_NOTES = ("description", "recommended_model", "license")
class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C during training, with where it stopped and what can be resumed."""

    def __init__(self, step: int, max_steps: int, epoch: float, output_dir: str, complete: Path | None) -> None:
        super().__init__(f"interrupted at step {step} of {max_steps}")
        self.step, self.max_steps, self.epoch = step, max_steps, epoch
        self.output_dir, self.complete = output_dir, complete


def fingerprint(card: TaskCard, run: RunArgs, effective: Settings, args: TrainingArguments,
                splits: datasets.DatasetDict, model_path: str) -> dict[str, Any]:
    """What a checkpoint must share with a run that resumes it: the options and settings that change the
    result (declared with `result=True`, the default), the card, the features and the model's files."""
    card_data = {k: v for k, v in card.to_dict().items() if k not in CARD_NOTES}
    settings = {k: v for k, v in asdict(run).items() if k not in RUN_OPTIONS_RESULT_NEUTRAL}
    settings.update(effective.result_changing())  # what a None option resolved to
    settings.update({k: v for k, v in args.to_dict().items()
                     if k not in TRAINING_ARGUMENTS_RESULT_NEUTRAL and "token" not in k})
    settings["world_size"] = max(1, args.world_size)  # the effective batch size depends on it
    return {"card": _digest(card_data), "data": _features_digest(splits), "model": _model_digest(model_path),
            "settings": json.loads(json.dumps(settings, default=str))}


def save_sealed(trainer: Trainer, save: Callable[[], None]) -> None:
    """Run the Trainer's checkpoint save into a hidden folder, record it there, then rename it into
    place: `checkpoint-N` appears with its record in one step (a kill at any moment leaves the
    previous checkpoints and, at worst, a hidden `.staging-checkpoint` the next save removes). Older
    checkpoints are rotated out only after that. A save that fails leaves no half checkpoint."""
    run_dir = Path(trainer._get_output_dir(None))
    folder = run_dir / f"checkpoint-{trainer.state.global_step}"
    staged = run_dir / SAVING / folder.name
    try:
        if trainer.args.should_save:
            shutil.rmtree(run_dir / SAVING, ignore_errors=True)
        trainer.cardtune_saving = True
        try:
            save()
        finally:
            trainer.cardtune_saving = False
        state = trainer.state
        moved = state.best_model_checkpoint and Path(state.best_model_checkpoint).parent == run_dir / SAVING
        if moved:  # the Trainer names the folder it wrote; the checkpoint's name is the one it will have
            state.best_model_checkpoint = str(folder)
        _barrier()  # every process has written its files (rng_state_<rank>.pth) before the rename
        if trainer.args.should_save:
            if moved:
                state.save_to_json(str(staged / "trainer_state.json"))
            seal(staged, getattr(trainer, "cardtune_fingerprint", None) or {},
                 getattr(trainer, "cardtune_session", None))
            if folder.exists():  # the same step saved again (a resumed run): the new save replaces it
                shutil.rmtree(folder)
            os.rename(staged, folder)
            (run_dir / SAVING).rmdir()
            filesystem.fsync(run_dir)
            rotate_checkpoints(str(run_dir), trainer.args.save_total_limit, state.best_model_checkpoint)
    except BaseException as err:
        if trainer.args.should_save:
            shutil.rmtree(run_dir / SAVING, ignore_errors=True)
        if isinstance(err, Exception) and is_write_failure(err):
            done = last_complete(folder.parent)
            after = (f"{done.name} is complete: once there is room, continue with --resume" if done else
                     "no checkpoint is complete yet: once there is room, rerun the same command")
            raise WriteError.of(err, folder, f"save {folder.name}", after) from None
        raise


def output_dir(trainer: Trainer, run_dir: str) -> str:
    """Where the Trainer writes: the hidden staging folder while `save_sealed` saves a checkpoint."""
    return str(Path(run_dir) / SAVING) if getattr(trainer, "cardtune_saving", False) else run_dir


def _barrier() -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def seal(folder: Path, fp: dict[str, Any], session: str | None = None) -> None:
    """Seal a complete checkpoint (`pipelines.sealing`, after every file is on disk) with the run's
    fingerprint; `session`: the run's TensorBoard folder, which a resumed run continues."""
    sealing.write(folder, RECORD, {"fingerprint": fp, "session": session})


def _record(folder: str | Path) -> dict[str, Any]:
    """The checkpoint's record (raises `sealing.Unsealed` when it has none or it is unreadable)."""
    return sealing.read(Path(folder), RECORD)


def session(folder: str | Path) -> str | None:
    """The TensorBoard folder recorded in a checkpoint (None when it has none)."""
    try:
        return _record(folder).get("session")
    except sealing.Unsealed:
        return None


def problem(folder: Path) -> str | None:
    """Why `folder` is not a complete checkpoint (None when it is); files a checkpoint gains after
    its save are not checked."""
    flaw = sealing.check(folder, RECORD)
    return None if flaw is None else str(flaw)


def changes(folder: Path, fp: dict[str, Any]) -> list[str]:
    """What differs between the run that saved `folder` and the fingerprint `fp`."""
    saved = _record(folder).get("fingerprint") or {}
    changed = [part for part in ("card", "data", "model") if saved.get(part) != fp.get(part)]
    old, new = saved.get("settings") or {}, fp.get("settings") or {}
    return changed + sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))


def checkpoints(output_dir: str | Path) -> list[Path]:
    """checkpoint-N folders, newest (highest step) first."""
    folder = Path(output_dir)
    if not folder.is_dir():
        return []
    found = [p for p in folder.iterdir() if p.is_dir() and _CHECKPOINT.match(p.name)]
    return sorted(found, key=lambda p: int(_CHECKPOINT.match(p.name).group(1)), reverse=True)


def last_complete(output_dir: str | Path) -> Path | None:
    """The newest checkpoint that is complete and intact."""
    return next((c for c in checkpoints(output_dir) if problem(c) is None), None)


def pick(output_dir: str | Path, fp: dict[str, Any], remove_damaged: bool = True) -> str:
    """The checkpoint `--resume` continues: the newest intact one, if it belongs to this run.

    Newer damaged checkpoints are removed (the run saves those steps again), saying so."""
    folder = Path(output_dir)
    found = checkpoints(folder)
    if not found:
        raise CardtuneError(f"--resume: no checkpoint-* folder in {folder}; run without --resume to start afresh")
    damaged = []
    for ckpt in found:
        why = problem(ckpt)
        if why:
            damaged.append((ckpt, why))
            continue
        changed = changes(ckpt, fp)
        if changed:
            raise CardtuneError(
                f"--resume: {ckpt.name} in {folder} was saved by a run with other settings or inputs (changed: "
                f"{', '.join(changed[:8])}): resuming would mix two runs; use the same card, data, model and "
                "settings, or run without --resume to start afresh")
        for bad, bad_why in damaged:
            log.warning("%s is damaged (%s): removing it and resuming from %s instead", bad, bad_why, ckpt.name)
            if remove_damaged:
                shutil.rmtree(bad, ignore_errors=True)
        log.info("resuming from %s", ckpt)
        return str(ckpt)
    newest, why = damaged[0]
    raise CardtuneError(f"--resume: {newest.name} in {folder} is damaged ({why}) and no earlier checkpoint is "
                        "intact: delete it, or run without --resume")


def interrupted(trainer: Trainer) -> TrainingInterrupted:
    """What to tell the user after Ctrl-C in `trainer.train`."""
    state, out = trainer.state, trainer.args.output_dir
    return TrainingInterrupted(state.global_step, state.max_steps, state.epoch or 0.0, out, last_complete(out))


def whole_train_loss(history: list[dict[str, Any]], first_step: int, session_loss: float | None,
                     last_step: int) -> float | None:
    """Mean training loss over every step, also after a resume (the Trainer's figure covers only the
    steps of its own session): the logged losses before `first_step` are weighted by their steps."""
    if not first_step or session_loss is None or last_step <= first_step:
        return session_loss
    done, total = 0, 0.0
    for entry in sorted((e for e in history if "loss" in e and e.get("step", 0) <= first_step),
                        key=lambda e: e["step"]):
        total += entry["loss"] * (entry["step"] - done)
        done = entry["step"]
    if not done:
        return session_loss
    before = total / done
    return (before * first_step + session_loss * (last_step - first_step)) / last_step


def _digest(data: Any) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:32]


def _features_digest(splits: datasets.DatasetDict) -> str:
    """A hash of the token ids and labels the model trains and selects on, independent of how
    the Arrow data is chunked (fresh tokenization and the feature cache give the same hash)."""
    h = hashlib.sha256()
    for name in sorted(splits):
        table = splits[name].with_format("arrow")[:]
        h.update(f"{name}:{table.num_rows}".encode())
        for col in ("input_ids", "token_type_ids", "label"):
            if col not in table.column_names:
                continue
            values = table.column(col).combine_chunks()
            if hasattr(values, "flatten") and str(values.type).startswith(("list", "large_list")):
                h.update(np.asarray(pc.list_value_length(values), dtype=np.int64).tobytes())
                values = pc.list_flatten(values)
            h.update(col.encode())
            h.update(np.asarray(values, dtype=np.int64).tobytes())
    return h.hexdigest()[:32]


def _model_digest(model_path: str) -> str:
    """The base model a run starts from: its config and weights (a Hub id not on disk: its name)."""
    folder = Path(model_path)
    if not folder.is_dir():
        return _digest(model_path)
    files = sorted(p for p in folder.iterdir() if p.is_file() and (p.name == "config.json" or p.suffix in
                                                                   (".safetensors", ".bin")))
    return _digest({p.name: sha256(p) for p in files})
