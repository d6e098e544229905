"""Progress lines for training and evaluation when there are no progress bars (stderr is not a
terminal, so `disable_tqdm` is on): without them a 15-minute epoch is a silent log."""

from __future__ import annotations

import logging
import time

from transformers import TrainerCallback

from pipelines.progress import Clock, Pace

log = logging.getLogger(__name__)


class ProgressLog(TrainerCallback):
    """One INFO line every `interval` seconds or `fraction` of the work, whichever comes first (see
    `Pace`): step, epoch, samples per second, elapsed and remaining time. Silent while tqdm's bars
    show, and on every process but the main one."""

    def __init__(self, interval: float = 30.0, fraction: float = 0.05, floor: float = 5.0,
                 clock: Clock = time.monotonic) -> None:
        self._pace_args = {"interval": interval, "fraction": fraction, "floor": floor, "clock": clock}
        self._train: Pace | None = None
        self._eval: Pace | None = None
        self._first_step = 0
        self._batches = 0

    def _active(self, args, state) -> bool:
        return bool(args.disable_tqdm) and state.is_world_process_zero

    def on_train_begin(self, args, state, control, **kwargs):
        if self._active(args, state):
            self._first_step = state.global_step  # a resumed run starts past 0
            self._train = Pace(state.max_steps - self._first_step, **self._pace_args)

    def on_step_end(self, args, state, control, **kwargs):
        pace = self._train
        if pace is None:
            return
        done = state.global_step - self._first_step
        if pace.due(done):
            samples = done * args.train_batch_size * args.gradient_accumulation_steps * max(1, args.world_size)
            log.info("train: step %d/%d (%.0f%%), epoch %.2f, %.1f samples/s, %s",
                     state.global_step, state.max_steps, 100 * state.global_step / max(1, state.max_steps),
                     state.epoch or 0.0, samples / max(pace.elapsed, 1e-9), pace.timing(done))

    def on_train_end(self, args, state, control, **kwargs):
        self._train = None

    def on_prediction_step(self, args, state, control, eval_dataloader=None, **kwargs):
        if not self._active(args, state):
            return
        if self._eval is None:
            total = len(eval_dataloader) if hasattr(eval_dataloader, "__len__") else None
            self._eval, self._batches = Pace(total, **self._pace_args), 0
        self._batches += 1
        if self._eval.due(self._batches):
            samples = self._batches * args.eval_batch_size
            total = self._eval.total
            share = f"/{total} ({100 * self._batches / total:.0f}%)" if total else ""
            log.info("evaluation: batch %d%s, %.1f samples/s, %s", self._batches, share,
                     samples / max(self._eval.elapsed, 1e-9), self._eval.timing(self._batches))

    def on_evaluate(self, args, state, control, **kwargs):
        self._eval = None

    def on_predict(self, args, state, control, **kwargs):
        self._eval = None
