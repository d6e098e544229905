"""Trainer callbacks: epoch timing kept in the log history, log lines instead of printed dicts."""

from __future__ import annotations

import logging
import time

from transformers import TrainerCallback

from pipelines import hardware

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



class ThreadCallback(TrainerCallback):
    """CPU training without --threads: every `every_s` seconds, torch's thread count is fitted to
    the cores other jobs leave free (hardware.ThreadGovernor), so a job that starts beside ours
    does not make every step wait on a descheduled thread."""

    def __init__(self, every_s: float = 15.0) -> None:
        self.every_s = every_s
        self.governor: hardware.ThreadGovernor | None = None
        self._last = 0.0

    def on_train_begin(self, args, state, control, **kwargs):
        self.governor = hardware.ThreadGovernor(settle_s=0)  # configure_threads has just looked
        self._last = time.monotonic()

    def on_step_end(self, args, state, control, **kwargs):
        if self.governor is not None and time.monotonic() - self._last >= self.every_s:
            self.governor.update()
            self._last = time.monotonic()


class WatchdogCallback(TrainerCallback):
    """Training progress (steps, evaluation batches, saves) keeps `distributed.Watchdog` quiet."""

    def __init__(self, seconds: float) -> None:
        from pipelines import distributed

        self.watchdog = distributed.Watchdog(seconds, "nothing was published; once every machine is up again, rerun "
                                             "the same command on each with --resume to continue from the last "
                                             "complete checkpoint (docs/distributed.md)")

    def on_train_begin(self, args, state, control, **kwargs):
        self.watchdog.start()

    def on_train_end(self, args, state, control, **kwargs):
        self.watchdog.stop()

    def _beat(self, args, state, control, **kwargs):
        self.watchdog.beat()

    on_step_begin = on_step_end = on_substep_end = on_prediction_step = on_evaluate = on_save = on_log = _beat
