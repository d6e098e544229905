"""Run scripts/run.py in a fresh process with one fault installed (used by test_faults.py).

    python tests/fault_hooks.py FAULT [PARAM ...] -- RUN_PY_ARGS ...

The child imports the checkout through PYTHONPATH (faultkit.child_env) or the installed package.

FAULT is one of:
  none                      no fault: run.py as users run it
  kill_at_rename WHICH      SIGKILL this process at one rename of the final publish step: WHICH is
                            first, middle, before_manifest (all files moved but run.json and
                            metrics.json) or before_metrics (all but metrics.json)
  sigint_at_step N          send this process a real SIGINT (Ctrl-C) when training reaches step N
  hold FLAG_DIR             once training starts, write FLAG_DIR/started and wait for FLAG_DIR/go
"""

from __future__ import annotations

import os
import signal
import sys
import time
import types
from pathlib import Path


def kill_at_rename(which: str) -> None:
    from pipelines.reporting import staging

    real, calls = os.replace, []

    def replace(src, dst):
        if not calls:
            staged = len(list(Path(src).parent.iterdir()))
            calls.append({"first": 0, "middle": staged // 2, "before_manifest": staged - 2,
                          "before_metrics": staged - 1}[which])
        if len(calls) - 1 == calls[0]:
            os.kill(os.getpid(), signal.SIGKILL)
        calls.append(src)
        return real(src, dst)

    staging.os = types.SimpleNamespace(**{**vars(os), "replace": replace})


def sigint_at_step(step: str) -> None:
    from pipelines.training import callbacks

    # A shell without job control starts `cmd &` with SIGINT ignored, and Python keeps it ignored:
    # a suite launched that way would see this Ctrl-C vanish. A terminal's Ctrl-C reaches a
    # foreground process that has Python's own handler, so the hook restores it.
    signal.signal(signal.SIGINT, signal.default_int_handler)

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == int(step):
            signal.raise_signal(signal.SIGINT)  # a real SIGINT, delivered as KeyboardInterrupt like Ctrl-C

    callbacks.LogCallback.on_step_end = on_step_end


def hold(flag_dir: str) -> None:
    from pipelines.training import callbacks

    flags = Path(flag_dir)

    def on_train_begin(self, args, state, control, **kwargs):
        (flags / "started").write_text(str(os.getpid()))
        deadline = time.time() + 180
        while not (flags / "go").exists() and time.time() < deadline:
            time.sleep(0.1)

    callbacks.LogCallback.on_train_begin = on_train_begin


FAULTS = {"none": lambda: None, "kill_at_rename": kill_at_rename, "sigint_at_step": sigint_at_step, "hold": hold}


def main() -> int:
    split = sys.argv.index("--")
    fault, *params = sys.argv[1:split]
    FAULTS[fault](*params)
    from pipelines.cli.run import main as run_main

    return run_main(sys.argv[split + 1:])


if __name__ == "__main__":
    sys.exit(main())
