"""Shared by the fault-injection tests: child processes, mount namespaces, one-line error checks."""

from __future__ import annotations

import functools
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

from conftest import ROOT

HOOKS = ROOT / "tests" / "fault_hooks.py"
LEARNS = ["--learning_rate", "1e-2", "--per_device_train_batch_size", "8", "--threads", "1"]


def run_argv(card: Path, data: Path, model: Path, out: Path, *extra: str) -> list[str]:
    return ["--task", str(card), "--data-dir", str(data), "--model", str(model), "--output-dir", str(out), *extra]


def child_env() -> dict[str, str]:
    """The test's environment (offline, its own feature cache) for a child process."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    env["PYTHONPATH"] = str(ROOT)
    return env


def hooked(fault: str, *params: str) -> list[str]:
    """The command line of run.py in a fresh process with `fault` installed (see fault_hooks.py)."""
    return [sys.executable, str(HOOKS), fault, *params, "--"]


def run_child(cmd: list[str], timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, env=child_env(), cwd=ROOT, timeout=timeout)


def one_error(stderr: str) -> str:
    """The single `error:` line of a failed command (and no traceback, no usage text)."""
    errors = [line for line in stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "Traceback" not in stderr and "usage:" not in stderr, stderr[-3000:]
    return errors[0]


def leftovers(folder: Path) -> list[str]:
    """What a failed or killed run must not leave: staging folders, temp files, unrecorded checkpoints."""
    from pipelines.training import checkpoints

    found = [str(p.relative_to(folder)) for p in folder.rglob("*") if ".staging-" in p.name or p.name.endswith(".tmp")]
    return found + [c.name for c in checkpoints.checkpoints(folder) if checkpoints.problem(c)]


@functools.lru_cache(maxsize=1)
def can_mount() -> bool:
    """Whether this machine lets a test mount a tmpfs in its own namespace (`unshare -rm`)."""
    if not shutil.which("unshare"):
        return False
    probe = "d=$(mktemp -d) && mount -t tmpfs -o size=64k tmpfs $d && umount $d && rmdir $d"
    try:
        return subprocess.run(["unshare", "-rm", "sh", "-c", probe], capture_output=True, timeout=30).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


def in_namespace(lines: list[str], timeout: int = 300) -> subprocess.CompletedProcess:
    """Run shell `lines` in a private mount namespace (mounts vanish with it; files copied out stay)."""
    script = "\n".join(["set -e", *lines])
    return subprocess.run(["unshare", "-rm", "sh", "-c", script], capture_output=True, text=True,
                          env=child_env(), cwd=ROOT, timeout=timeout)


def sh(cmd: list[str]) -> str:
    return shlex.join(cmd)


def folder_kib(folder: Path) -> int:
    """Space a folder takes on a tmpfs: every file rounded up to 4 KiB pages."""
    return sum(-(-p.stat().st_size // 4096) * 4 for p in folder.rglob("*") if p.is_file()) + 16
