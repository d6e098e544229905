"""A saved classifier ready to score texts: a PyTorch model directory or an ONNX export of one."""

from __future__ import annotations

import logging
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from pipelines.card.cards import saved_card
from pipelines.data import features
from pipelines.errors import ModelError
from pipelines.evaluation import metrics
from pipelines.modeling.loading import load_tokenizer, load_trained
from pipelines.prediction import backends
from pipelines.prediction.backends import OnnxRunner, Precision, TorchRunner
from pipelines.reporting import run_id, run_lock

log = logging.getLogger(__name__)

TOKEN_CAP = 512  # default limit for a model saved without a card (BERT-family position tables)


class Classifier:
    """A saved sequence classifier, its tokenizer and label names, and the card saved with it.

    `precision`: fp32, bf16 (autocast) or int8 (dynamic int8 matrix products on the CPU, run by
    ONNX Runtime on a graph exported at load time, or by PyTorch with `backend="torch"`); an
    ONNX export runs in the precision it was exported in. `threads` sizes ONNX Runtime's pool
    (torch's is process-wide and set by the caller)."""

    def __init__(self, model_dir: str | Path, device: str | None = None, precision: Precision = "fp32",
                 threads: int | None = None, backend: str = "auto") -> None:
        self.path = Path(model_dir)
        run_lock.refuse_if_busy(self.path, "predicting with it")
        self.run_id = run_id.verify(self.path)  # a folder mixing two runs' files (a publish cut short) is refused
        self.graph: dict | None = None  # the recipe of a graph built here at load time (int8)
        if backends.is_onnx_export(self.path):
            self.runner = self._onnx_runner(device, precision, threads)
        else:
            model, self.tokenizer = load_trained(self.path)
            self.config = model.config
            if precision == "int8" and backend != "torch":
                self.runner = self._int8_graph(model, device, threads)
            else:
                device = device or ("cpu" if precision == "int8" else None)  # int8 kernels are CPU kernels
                self.runner = TorchRunner(self._to_device(model, device), self.device, precision)
        features.check_fast(self.tokenizer, str(self.path))
        if self.config.problem_type == "regression":
            raise ModelError(f"{self.path} holds a regression model; predict.py handles classifiers only")
        self.labels = [str(self.config.id2label[i]) for i in range(self.config.num_labels)]
        # The text-classification pipeline's rule: sigmoid for multi-label or single-logit heads.
        self.sigmoid = self.config.problem_type == "multi_label_classification" or self.config.num_labels == 1
        self.card = saved_card(self.path)

    @property
    def precision(self) -> Precision:
        return self.runner.precision

    @property
    def backend(self) -> str:
        return self.runner.backend

    def _to_device(self, model: torch.nn.Module, device: str | None) -> torch.nn.Module:
        try:
            self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
            return model.to(self.device)
        except (RuntimeError, AssertionError) as err:
            raise ModelError(f"cannot run the model on device '{device}' ({err}); try --device cpu") from None

    def _onnx_runner(self, device: str | None, precision: Precision, threads: int | None) -> OnnxRunner:
        from transformers import AutoConfig

        if device not in (None, "cpu"):
            raise ModelError(f"{self.path} is an ONNX export, run by onnxruntime on the CPU; drop --device {device}")
        exported = backends.onnx_precision(self.path)
        if precision not in ("fp32", exported):
            raise ModelError(f"{self.path} was exported in {exported}; for {precision} predictions export again "
                             f"with `scripts/export.py OUT --onnx --{precision}`, or pass the PyTorch model")
        self.config = AutoConfig.from_pretrained(str(self.path), local_files_only=True)
        self.tokenizer = load_tokenizer(str(self.path))
        self.device = torch.device("cpu")
        return OnnxRunner(self.path / backends.ONNX_FILE, exported, threads)

    def _int8_graph(self, model: torch.nn.Module, device: str | None, threads: int | None) -> OnnxRunner:
        """Export to ONNX and quantize now (seconds), then run it in ONNX Runtime."""
        if device not in (None, "cpu"):
            raise ModelError(f"--int8 runs on the CPU (ONNX Runtime); drop --device {device}")
        backends.import_onnxruntime()
        from pipelines.prediction.onnx_graph import RECIPE, write_graph

        self.device = torch.device("cpu")
        start = time.perf_counter()
        with tempfile.TemporaryDirectory(prefix="cardtune-int8-") as folder:
            graph = Path(folder) / backends.ONNX_FILE
            write_graph(model, self.tokenizer, graph, int8=True)
            runner = OnnxRunner(graph, "int8", threads)  # the session holds the graph; the file can go
        self.graph = RECIPE
        log.info("int8 graph for %s built in %.1f s (ONNX Runtime, dynamic int8)", self.path,
                 time.perf_counter() - start)
        return runner

    def token_limit(self) -> int:
        """The longest input the model takes: its tokenizer's limit or position table, whichever is less."""
        limits = (self.tokenizer.model_max_length, getattr(self.config, "max_position_embeddings", 0))
        sane = [int(x) for x in limits if x and x < 1_000_000]  # an unset tokenizer limit reads as 1e30
        return min(sane) if sane else TOKEN_CAP

    def default_max_length(self) -> int:
        """The card's max_length, else the model's token limit, at most 512."""
        return self.card.max_length if self.card is not None else min(TOKEN_CAP, self.token_limit())

    def cut(self) -> tuple[str | None, int | float | None]:
        """How the training run cut long texts, from its saved card: (truncation, head_tokens), where
        head_tokens is None unless truncation is head_tail, and truncation None (no card) is
        `features.encode`'s default for the texts given."""
        if self.card is None:
            return None, None
        return self.card.truncation, self.card.head_tokens if self.card.truncation == "head_tail" else None

    def score(
        self, first: list[str], second: list[str] | None, max_length: int, truncation: str | None, batch_size: int,
        head_tokens: int | float | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Probabilities (rows x labels) and a truncated flag per row, in the order given."""
        probs = np.zeros((len(first), len(self.labels)))
        if not first:
            return probs, np.zeros(0, dtype=bool)
        enc = features.encode(self.tokenizer, first, second, max_length, truncation, head_tokens=head_tokens)
        inputs = {k: enc[k] for k in self.tokenizer.model_input_names if k in enc}
        order = np.argsort(-np.asarray(enc["length"]), kind="stable")  # similar lengths share a batch
        for start in range(0, len(order), batch_size):
            rows = order[start : start + batch_size]
            batch = self.tokenizer.pad({k: [v[i] for i in rows] for k, v in inputs.items()}, return_tensors="np")
            logits = self.runner(dict(batch))
            probs[rows] = 1 / (1 + np.exp(-logits)) if self.sigmoid else metrics.softmax(logits)
        return probs, np.asarray(enc["truncated"], dtype=bool)
