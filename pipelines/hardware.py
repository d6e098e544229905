"""Fast defaults that depend on the machine: CPU threads, mixed precision, TF32, fused AdamW."""

from __future__ import annotations

import logging
import os
import sys
import time
from typing import Any

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


def cpu_share() -> int:
    """This process's share of the available cores."""
    return max(1, available_cpus() // local_processes())


def configure_threads(threads: int | None = None) -> int:
    """`threads` if given; else one intra-op thread per available core, divided among local
    processes (oversubscribed threads in data-parallel CPU runs are slower than fewer ones), less
    the cores other jobs keep busy right now (ThreadGovernor; training keeps refitting it)."""
    if threads:
        set_torch_threads(threads)
        return threads
    return ThreadGovernor().update()


def set_torch_threads(threads: int) -> None:
    """torch's intra-op threads; in a process that has not imported torch (a prediction that runs only
    ONNX Runtime may never need it), through OMP_NUM_THREADS, which torch reads when it is imported."""
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(threads)
    else:
        os.environ["OMP_NUM_THREADS"] = str(threads)


# Device files a CUDA or ROCm driver creates; without any, torch finds no GPU.
GPU_DEVICE_FILES = ("/dev/nvidiactl", "/dev/nvidia0", "/proc/driver/nvidia/version", "/dev/kfd", "/dev/dxg")


def gpu_available() -> bool:
    """Whether torch would run on a GPU here. On a machine without a GPU driver, answered without
    importing torch (about a second of a prediction process's start, where only ONNX Runtime runs)."""
    if "torch" not in sys.modules and not any(os.path.exists(p) for p in GPU_DEVICE_FILES):
        return False
    import torch

    return torch.cuda.is_available()


def _machine_busy_seconds() -> float | None:
    """CPU seconds all processes on this machine have used since boot (Linux /proc/stat)."""
    try:
        with open("/proc/stat", encoding="ascii") as fh:
            ticks = [int(x) for x in fh.readline().split()[1:9]]  # user .. steal; guest is inside user
        return (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")  # less idle and iowait
    except (OSError, ValueError, IndexError):
        return None


class ThreadGovernor:
    """torch's CPU threads follow the cores that other jobs leave free.

    OpenMP threads meet at a barrier after every operation; when a core is shared with another
    busy process, the thread on it is descheduled for whole time slices while the others wait, so
    two threads on two cores, one of them shared, ran 4x slower than one thread (README, "Batch
    prediction"). Each `update()` measures how many cores other processes kept busy since the
    last one and uses what is left, at most this process's share. Off Linux it keeps the share."""

    def __init__(self, share: int | None = None, settle_s: float = 0.3) -> None:
        self.share = share or cpu_share()
        self.cores = os.cpu_count() or 1
        if settle_s <= 0:  # keep the count already set; adjust from the next update on
            self._mark = self._sample()
            return
        set_torch_threads(self.share)
        self._mark = self._sample()
        if self._mark[1] is not None and self.share > 1:
            time.sleep(settle_s)  # a first look at the machine, so the first stretch of work already fits it
            self.update()

    @staticmethod
    def _sample() -> tuple[float, float | None, float]:
        return time.monotonic(), _machine_busy_seconds(), time.process_time()

    def others_busy(self) -> float | None:
        """Cores kept busy by other processes since the last call (None when unknown or too soon)."""
        now = self._sample()
        wall, busy, own = (a - b if a is not None and b is not None else None for a, b in zip(now, self._mark))
        if busy is None or wall < 0.2:
            return None
        self._mark = now
        return max(0.0, (busy - own) / wall)

    @property
    def threads(self) -> int:
        import torch

        return torch.get_num_threads()

    def update(self) -> int:
        """Set and return the thread count for the next stretch of work."""
        import torch

        others = self.others_busy()
        current = torch.get_num_threads()
        if others is None:
            return current
        threads = max(1, min(self.share, self.cores - int(others + 0.5)))
        if threads != current:
            torch.set_num_threads(threads)
            log.info("CPU threads %d -> %d (other processes keep %.1f of %d cores busy)", current, threads,
                     others, self.cores)
        return threads


def training_defaults() -> dict[str, Any]:
    """TrainingArguments defaults for the hardware at hand (card and command line still win)."""
    import torch

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


def launcher_problem(script: str = "scripts/run.py") -> str | None:
    """What is wrong when `accelerate launch --num_processes N` (N > 1) started a single process.

    accelerate's plain launcher runs one process unless it finds GPUs; it still exports
    MASTER_ADDR for the process group it expected. Without a GPU, its torchrun-based launcher
    (`--multi_gpu`) is the one that starts N processes, which then train on the CPU with gloo.
    """
    env = os.environ
    launched = "ACCELERATE_DYNAMO_BACKEND" in env and "MASTER_ADDR" in env
    if launched and not any(k in env for k in ("RANK", "LOCAL_RANK", "WORLD_SIZE")) and not gpu_available():
        return ("accelerate launch started one process although several were asked for: on a machine without "
                f"GPUs use `accelerate launch --multi_gpu --num_processes N {script} ...` (the processes "
                "then run on the CPU with gloo), or drop --num_processes for a single process")
    return None
