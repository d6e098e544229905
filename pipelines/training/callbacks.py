"""Trainer callbacks: epoch timing kept in the log history, log lines instead of printed dicts."""

from __future__ import annotations

import logging
import time

from transformers import TrainerCallback

log = logging.getLogger(__name__)


class EpochTimer(TrainerCallback):
    """Training wall time per epoch (evaluation excluded), kept in the log history so that it
    survives a resume along with the rest of the history."""

    def __init__(self) -> None:
        self._start = 0.0

    def on_epoch_begin(self, args, state, control, **kwargs):
        self._start = time.perf_counter()

    def on_epoch_end(self, args, state, control, **kwargs):
        seconds = round(time.perf_counter() - self._start, 2)
        state.log_history.append({"epoch": state.epoch, "step": state.global_step, "epoch_time_s": seconds})


class LogCallback(TrainerCallback):
    """Trainer logs as log lines (instead of dicts printed on stdout)."""

    def on_log(self, args, state, control, logs=None, **kwargs):
        if state.is_world_process_zero and logs:
            shown = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in logs.items())
            log.info("epoch %.2f step %d: %s", state.epoch or 0, state.global_step, shown)

