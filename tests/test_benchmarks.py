"""Benchmark helpers: the CPUID shim that runs a process on a CPU's AVX2 kernels (docs/int8.md)."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _kernels(env: dict | None = None) -> str:
    code = "import bench_predict; print(bench_predict.kernels_seen())"  # as `python benchmarks/...` would
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT / "benchmarks", capture_output=True, text=True,
                          check=True, env=env).stdout.strip()


def test_the_cpuid_shim_gives_onnxruntime_and_pytorch_their_avx2_kernels(tmp_path):
    pytest.importorskip("onnxruntime")
    flags = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    if not shutil.which("gcc") or " cpuid_fault" not in flags or " avx512_vnni" not in flags:
        pytest.skip("needs gcc and a CPU with CPUID faulting and AVX512-VNNI")
    shim = tmp_path / "cpuid_avx2.so"
    subprocess.run(["gcc", "-O2", "-shared", "-fPIC", "-o", str(shim), str(ROOT / "benchmarks" / "cpuid_avx2.c")],
                   check=True)
    native = _kernels()
    # faulthandler would take SIGSEGV, which the shim answers CPUID on
    env = {k: v for k, v in os.environ.items() if k != "PYTHONFAULTHANDLER"}
    masked = _kernels({**env, "LD_PRELOAD": str(shim)})
    assert "exact 32-bit sums (VNNI)" in native and "PyTorch AVX512" in native
    assert masked == "PyTorch AVX2, ONNX Runtime int8: 16-bit saturating pairs (AVX2)"
