"""What runs a classifier's forward pass: PyTorch (fp32, bf16, dynamic int8) or ONNX Runtime.

Each runner takes a padded batch as NumPy arrays and returns float64 logits, so the streaming
code around it does not care which one it has. README, "Batch prediction", has the measurements
behind the choices (`--int8` runs ONNX Runtime's dynamic int8; PyTorch's stays for comparison).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import warnings
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from pipelines import hardware
from pipelines.errors import ModelError
from pipelines.modeling import model_folder

if TYPE_CHECKING:  # imported where a PyTorch model runs: a cached int8 graph runs without torch
    import torch

log = logging.getLogger(__name__)

Precision = Literal["fp32", "int8", "bf16"]
ONNX_FILE, EXPORT_INFO = model_folder.ONNX_FILE, model_folder.EXPORT_INFO


def is_onnx_export(folder: Path) -> bool:
    """A folder written by `scripts/export.py --onnx` (an ONNX graph beside config and tokenizer)."""
    return model_folder.is_export(folder)


def onnx_precision(folder: Path) -> Precision:
    """The precision an export was written in, from export.json (missing or damaged: a `ModelError`)."""
    return model_folder.export_precision(folder)


@functools.cache
def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags (Linux /proc/cpuinfo, read once per process; empty elsewhere)."""
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return frozenset()
    return frozenset(flag for line in text.splitlines() if line.startswith("flags")
                     for flag in line.split(":", 1)[1].split())


# An 8-bit dot product in one instruction, accumulated in 32 bits (AVX512-VNNI, AVX-VNNI, AMX).
VNNI_FLAGS = frozenset({"avx512_vnni", "avx_vnni", "amx_int8"})
# CPUs where the int8 cascade was measured faster than fp32 as a whole process, labels equal to fp32
# on 99.5% of rows or more (docs/int8.md): with VNNI 2.5-2.6x, on AVX2's kernels 1.56x.
INT8_DEFAULT_FLAGS = VNNI_FLAGS | {"avx2"}


def int8_kernels() -> str | None:
    """The int8 kernels ONNX Runtime takes on this CPU where int8 is a default: "VNNI" (32-bit sums),
    "AVX2" (16-bit saturating pairs), else None."""
    flags = cpu_flags()
    return "VNNI" if flags & VNNI_FLAGS else "AVX2" if flags & INT8_DEFAULT_FLAGS else None


def bf16_native() -> bool:
    """Whether this CPU computes bf16 in hardware (AVX512-BF16 or AMX)."""
    return bool(cpu_flags() & {"avx512_bf16", "amx_bf16"})


def auto_precision(device: str | None, calibrated: bool = False) -> Precision:
    """The default precision: bf16 on CPUs with AMX, where it was measured faster than fp32 with at
    least 99.9% of labels the same (README); on other CPUs with VNNI or AVX2 (`INT8_DEFAULT_FLAGS`),
    int8 with fp32 re-scoring when the model has calibration rows (`calibrated`) and onnxruntime is
    installed; fp32 elsewhere (GPUs, and CPUs where int8's or bf16's speed is unmeasured)."""
    on_cpu = device == "cpu" or (device is None and not hardware.gpu_available())
    if not on_cpu:
        return "fp32"
    flags = cpu_flags()
    if "amx_bf16" in flags:
        return "bf16"
    return "int8" if calibrated and int8_kernels() and onnxruntime_installed() else "fp32"


def onnxruntime_installed() -> bool:
    """Whether the optional onnxruntime can be imported (without importing it)."""
    import importlib.util

    return importlib.util.find_spec("onnxruntime") is not None


def quantize_int8(model: torch.nn.Module) -> torch.nn.Module:
    """PyTorch's dynamic int8 of every nn.Linear, weights per output channel (fewer flipped labels
    than per tensor, same speed). torch marks it deprecated in favour of torchao."""
    import torch
    from torch.ao.quantization import per_channel_dynamic_qconfig

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear: per_channel_dynamic_qconfig},
                                                      dtype=torch.qint8)


class TorchRunner:
    """A PyTorch sequence classifier, optionally int8 (CPU) or under bf16 autocast."""

    backend = "torch"

    def __init__(self, model: torch.nn.Module, device: torch.device, precision: Precision) -> None:
        if precision == "int8" and device.type != "cpu":
            raise ModelError(f"--int8 runs on the CPU (dynamic int8 quantization); drop --device {device} or pass "
                             "--device cpu")
        self.precision, self.device = precision, device
        self.model = quantize_int8(model) if precision == "int8" else model

    def map(self, batches: Iterable[dict[str, np.ndarray]]) -> list[np.ndarray]:
        """Logits of each batch, in order."""
        return [self(batch) for batch in batches]

    def __call__(self, batch: dict[str, np.ndarray]) -> np.ndarray:
        import torch

        tensors = {k: torch.from_numpy(v).to(self.device) for k, v in batch.items()}
        cast = (torch.autocast(self.device.type, dtype=torch.bfloat16) if self.precision == "bf16"
                else contextlib.nullcontext())
        with torch.inference_mode(), cast:
            return self.model(**tensors).logits.float().cpu().numpy().astype(np.float64)


class OnnxRunner:
    """An ONNX graph run by ONNX Runtime on the CPU, `threads` batches at a time, one thread each.

    Whole batches in parallel rather than each operator split across threads: the products of a
    small encoder on short texts are too small to split well. On 10,000 SST-2 sentences (minilm,
    int8, 2 cores) 1,235 rows/s against 1,131 (docs/int8.md)."""

    backend = "onnxruntime"

    def __init__(self, graph: Path, precision: Precision, threads: int | None = None) -> None:
        ort = import_onnxruntime()
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        self.threads = threads or hardware.cpu_share()
        try:
            self.session = ort.InferenceSession(str(graph), options, providers=["CPUExecutionProvider"])
        except Exception as err:  # noqa: BLE001 - ORT raises its own types (InvalidProtobuf, Fail, ...)
            first = (str(err).strip().splitlines() or [type(err).__name__])[0][:200]
            raise ModelError(f"cannot load {graph}: the ONNX graph is damaged or unreadable ({type(err).__name__}: "
                             f"{first}); copy the export again, or export again with scripts/export.py") from None
        self.inputs = [i.name for i in self.session.get_inputs()]
        self.precision = precision
        self.device = "cpu"

    def map(self, batches: Iterable[dict[str, np.ndarray]]) -> list[np.ndarray]:
        """Logits of each batch, in order; `threads` batches run at once (ONNX Runtime releases the GIL)."""
        if self.threads == 1:
            return [self(batch) for batch in batches]
        with ThreadPoolExecutor(self.threads, thread_name_prefix="onnxruntime") as pool:
            return list(pool.map(self, batches))

    def __call__(self, batch: dict[str, np.ndarray]) -> np.ndarray:
        feed = {k: batch[k].astype(np.int64, copy=False) for k in self.inputs}
        return np.asarray(self.session.run(None, feed)[0], dtype=np.float64)


def versions(packages: list[str]) -> dict[str, str | None]:
    """Installed versions of `packages` (None where missing), for the records outputs carry."""
    from importlib import metadata

    found: dict[str, str | None] = {}
    for name in packages:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = None
    return found


def import_onnxruntime() -> Any:
    """onnxruntime, or a one-line error saying how to install it (it is an optional extra)."""
    try:
        import onnxruntime
    except ImportError:
        raise ModelError("--int8 and ONNX exports need onnxruntime and onnx: `pip install -e '.[onnx]'`") from None
    return onnxruntime
