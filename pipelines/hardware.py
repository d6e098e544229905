"""Fast defaults that depend on the machine: CPU threads, mixed precision, TF32, fused AdamW."""

from __future__ import annotations

import logging
import os
from typing import Any

import torch

log = logging.getLogger(__name__)


def available_cpus() -> int:
    """Cores this process may use: affinity mask, capped by a cgroup CPU quota if there is one."""
    try:
        count = len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        count = os.cpu_count() or 1
    try:
        quota, period = open("/sys/fs/cgroup/cpu.max").read().split()
        if quota != "max":
            count = min(count, max(1, int(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    return max(1, count)


def local_processes() -> int:
    """Processes sharing this machine (set by accelerate/torchrun launchers)."""
    return max(1, int(os.environ.get("LOCAL_WORLD_SIZE", os.environ.get("ACCELERATE_NUM_PROCESSES", "1"))))


def configure_threads(threads: int | None = None) -> int:
    """One intra-op thread per available core, divided among local processes (oversubscribed
    threads in data-parallel CPU runs are slower than fewer ones)."""
    count = threads or max(1, available_cpus() // local_processes())
    torch.set_num_threads(count)
    return count


def training_defaults() -> dict[str, Any]:
    """TrainingArguments defaults for the hardware at hand (card and command line still win)."""
    values: dict[str, Any] = {
        "optim": "adamw_torch_fused",
        # The NaN/inf filter calls .item() on every step's loss: a host sync per step on GPUs.
        "logging_nan_inf_filter": False,
        "dataloader_pin_memory": torch.cuda.is_available(),
        # Without a GPU, processes started by a launcher only form a (gloo) process group when
        # accelerate is told to stay on the CPU.
        "use_cpu": not torch.cuda.is_available(),
    }
    if torch.cuda.is_available():
        bf16 = torch.cuda.is_bf16_supported()
        values.update(bf16=bf16, fp16=not bf16)
        if torch.cuda.get_device_capability()[0] >= 8:  # TF32 exists from Ampere on
            values["tf32"] = True
    return values


def launcher_problem() -> str | None:
    """What is wrong when `accelerate launch --num_processes N` (N > 1) started a single process.

    accelerate's plain launcher runs one process unless it finds GPUs; it still exports
    MASTER_ADDR for the process group it expected. Without a GPU, its torchrun-based launcher
    (`--multi_gpu`) is the one that starts N processes, which then train on the CPU with gloo.
    """
    env = os.environ
    launched = "ACCELERATE_DYNAMO_BACKEND" in env and "MASTER_ADDR" in env
    if launched and not any(k in env for k in ("RANK", "LOCAL_RANK", "WORLD_SIZE")) and not torch.cuda.is_available():
        return ("accelerate launch started one process although several were asked for: on a machine without "
                "GPUs use `accelerate launch --multi_gpu --num_processes N scripts/run.py ...` (the processes "
                "then train on the CPU with gloo), or drop --num_processes for a single process")
    return None
