"""A saved classifier ready to score texts: a PyTorch model directory or an ONNX export of one."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from pipelines.card.cards import saved_card
from pipelines.data import features
from pipelines.errors import ModelError
from pipelines.evaluation import metrics
from pipelines.modeling import model_folder
from pipelines.modeling.loading import load_tokenizer, load_trained
from pipelines.prediction import backends, cascade
from pipelines.prediction.backends import OnnxRunner, Precision, TorchRunner
from pipelines.reporting import run_id, run_lock

if TYPE_CHECKING:  # a cached int8 graph (or an ONNX export) predicts without importing torch
    import torch

log = logging.getLogger(__name__)

MIN_BATCH = 8  # see Classifier._probs_of
TOKEN_CAP = 512  # default limit for a model saved without a card (BERT-family position tables)


class Classifier:
    """A saved sequence classifier, its tokenizer and label names, and the card saved with it.

    `precision`: fp32, bf16 (autocast) or int8 (dynamic int8 matrix products on the CPU, run by
    ONNX Runtime on a graph built once and cached, or by PyTorch with `backend="torch"`); an
    ONNX export runs in the precision it was exported in. `threads`: batches ONNX Runtime runs
    at once (torch's threads are process-wide and set by the caller)."""

    def __init__(self, model_dir: str | Path, device: str | None = None, precision: Precision = "fp32",
                 threads: int | None = None, backend: str = "auto", agreement: float | None = None,
                 calibration: cascade.CalibrationFile | None = None) -> None:
        self.path = Path(model_dir)
        run_lock.refuse_if_busy(self.path, "predicting with it")
        self.run_id = run_id.verify(self.path)  # a folder mixing two runs' files (a publish cut short) is refused
        model_folder.check(self.path, "--model")  # tokenizer files, weights, an export's description
        self.graph: dict | None = None  # the recipe of the int8 graph (and its cascade), for --resume
        self.cascade: Cascade | None = None  # int8 rows re-scored in fp32 below a margin (prediction/cascade.py)
        self.rescored = 0  # rows re-scored in fp32 so far
        self.graph_build_s: float | None = None  # seconds the int8 graph took to build; None: loaded or none
        self.card = saved_card(self.path)
        exported = backends.is_onnx_export(self.path)
        if exported or (precision == "int8" and backend != "torch"):
            # ONNX Runtime runs a graph: labels and tokenizer are read without torch, which loads only to
            # build a graph not yet cached.
            self.config = model_folder.saved_config(self.path)
            self.tokenizer = load_tokenizer(str(self.path))
            self._labels()
            self.runner = (self._onnx_runner(device, precision, threads) if exported
                           else self._int8_graph(device, threads, agreement, calibration))
        else:
            model, self.tokenizer = load_trained(self.path)
            self.config = model.config
            self._labels()
            device = device or ("cpu" if precision == "int8" else None)  # int8 kernels are CPU kernels
            self.runner = TorchRunner(self._to_device(model, device), self.device, precision)
        features.check_fast(self.tokenizer, str(self.path))

    def _labels(self) -> None:
        if self.config.problem_type == "regression":
            raise ModelError(f"{self.path} holds a regression model; predict.py handles classifiers only")
        self.labels = [str(self.config.id2label[i]) for i in range(self.config.num_labels)]
        # The text-classification pipeline's rule: sigmoid for multi-label or single-logit heads.
        self.sigmoid = self.config.problem_type == "multi_label_classification" or self.config.num_labels == 1

    @property
    def precision(self) -> Precision:
        return self.runner.precision

    @property
    def backend(self) -> str:
        return self.runner.backend

    def _to_device(self, model: torch.nn.Module, device: str | None) -> torch.nn.Module:
        import torch

        try:
            self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
            return model.to(self.device)
        except (RuntimeError, AssertionError) as err:
            raise ModelError(f"cannot run the model on device '{device}' ({err}); try --device cpu") from None

    def _onnx_runner(self, device: str | None, precision: Precision, threads: int | None) -> OnnxRunner:
        if device not in (None, "cpu"):
            raise ModelError(f"{self.path} is an ONNX export, run by onnxruntime on the CPU; drop --device {device}")
        exported = backends.onnx_precision(self.path)
        if precision not in ("fp32", exported):
            raise ModelError(f"{self.path} was exported in {exported}; for {precision} predictions export again "
                             f"with `scripts/export.py OUT --onnx --{precision}`, or pass the PyTorch model")
        self.device = "cpu"
        return OnnxRunner(self.path / backends.ONNX_FILE, exported, threads)

    def _int8_graph(self, device: str | None, threads: int | None, agreement: float | None,
                    calibration_file: cascade.CalibrationFile | None) -> OnnxRunner:
        """The int8 graph from cardtune's cache (built and calibrated on first use), run in ONNX
        Runtime; with an agreement target, the fp32 graph of the same entry re-scores unsure rows.
        Calibration rows: `calibration_file`, else the run's validation texts."""
        if device not in (None, "cpu"):
            raise ModelError(f"--int8 runs on the CPU (ONNX Runtime); drop --device {device}")
        backends.import_onnxruntime()
        from pipelines.prediction import graph_cache, onnx_graph

        self.device = "cpu"
        self.graph = recipe = {**onnx_graph.recipe(), "rescoring": graph_cache.RESCORING}
        if calibration_file is not None:
            texts, source = calibration_file.texts(self.card), str(calibration_file.path)
            recipe = {**recipe, "calibration": calibration_file.digest()}  # another file: another entry
        else:
            texts = cascade.calibration_texts(self.path, self.card.text_columns) if self.card else ([], None)
            source = f"{cascade.CALIBRATION_SOURCE} of the model folder"

        def build(folder: Path) -> dict | None:
            import torch

            model, _ = load_trained(self.path)
            onnx_graph.write_graph(model, self.tokenizer, folder / graph_cache.FP32_FILE, int8=False)
            onnx_graph.quantize(folder / graph_cache.FP32_FILE, folder / graph_cache.GRAPH_FILE)
            if not texts[0]:
                return None
            # Agreement is measured against PyTorch's fp32, the reference `--fp32` runs.
            int8 = self._probs(OnnxRunner(folder / graph_cache.GRAPH_FILE, "int8", threads), *texts)
            reference = self._probs(TorchRunner(model, torch.device("cpu"), "fp32"), *texts)
            return cascade.record(cascade.margins(int8, self.sigmoid), cascade.agree(int8, reference, self.sigmoid),
                                  source)

        folder, calibration, self.graph_build_s = graph_cache.cached_graph(self.path, recipe, build)
        if agreement:
            if calibration is None:
                log.warning("%s has no %s (a run by an older cardtune, or a model from elsewhere): int8 without "
                            "re-scoring; 1-4%% of labels may differ from fp32 (docs/int8.md)", self.path,
                            cascade.CALIBRATION_SOURCE)
            else:
                fp32 = OnnxRunner(folder / graph_cache.FP32_FILE, "fp32", threads)
                self.cascade = Cascade(fp32, cascade.threshold_for(calibration, agreement))
                self.graph = {**self.graph, "cascade": self.cascade.threshold.as_dict()}
                t = self.cascade.threshold
                log.info("int8 with fp32 re-scoring below a margin of %.4f: expected agreement with fp32 %.2f%% "
                         "(target %.2f%%; %.1f%% of the %d calibration rows re-scored)", t.threshold,
                         100 * t.expected_agreement, 100 * t.target, 100 * t.calibration_rescored, t.calibration_rows)
        return OnnxRunner(folder / graph_cache.GRAPH_FILE, "int8", threads)

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
        if not first:
            return np.zeros((0, len(self.labels))), np.zeros(0, dtype=bool)
        enc = self._encoded(first, second, max_length, truncation, head_tokens)
        probs = self._probs_of(self.runner, enc, np.arange(len(first)), batch_size)
        if self.cascade is not None:
            unsure = np.flatnonzero(cascade.margins(probs, self.sigmoid) < self.cascade.threshold.threshold)
            if unsure.size:
                probs[unsure] = self._probs_of(self.cascade.fp32, enc, unsure, batch_size)
            self.rescored += int(unsure.size)
        return probs, np.asarray(enc["truncated"], dtype=bool)

    def _encoded(self, first: list[str], second: list[str] | None, max_length: int | None = None,
                 truncation: str | None = None, head_tokens: int | float | None = None) -> dict:
        """Token ids (the model's inputs) and lengths; the card's limits and cut by default."""
        if truncation is None:
            truncation, head_tokens = self.cut()
        return features.encode(self.tokenizer, first, second, max_length or self.default_max_length(), truncation,
                               head_tokens=head_tokens)

    def _probs(self, runner, first: list[str], second: list[str] | None) -> np.ndarray:
        """Probabilities of `runner` on texts, with the card's limits (calibration)."""
        return self._probs_of(runner, self._encoded(first, second), np.arange(len(first)), 64)

    def _probs_of(self, runner, enc: dict, rows: np.ndarray, batch_size: int) -> np.ndarray:
        """Probabilities of the encoded `rows` (in that order), in batches of similar lengths, each
        padded to its longest row.

        Bit for bit, PyTorch's fp32 result for a row on the CPU depends on the length its batch is
        padded to, and in batches of one or two rows on the batch size too: every batch has at least
        MIN_BATCH rows (repeats fill it), so a row's output does not depend on where a chunk ends."""
        inputs = {k: enc[k] for k in self.tokenizer.model_input_names if k in enc}
        lengths = np.asarray(enc["length"])[rows]
        order = np.argsort(-lengths, kind="stable")  # similar lengths share a batch
        picks = [order[start : start + batch_size] for start in range(0, len(order), batch_size)]

        def padded(picked: np.ndarray) -> dict[str, np.ndarray]:
            fill = np.concatenate([picked, np.repeat(picked[:1], max(0, MIN_BATCH - len(picked)))])
            return dict(self.tokenizer.pad({k: [v[i] for i in rows[fill]] for k, v in inputs.items()},
                                           return_tensors="np"))

        probs = np.zeros((len(rows), len(self.labels)))
        for picked, logits in zip(picks, runner.map(padded(p) for p in picks)):
            logits = logits[: len(picked)]
            probs[picked] = 1 / (1 + np.exp(-logits)) if self.sigmoid else metrics.softmax(logits)
        return probs


@dataclass(frozen=True)
class Cascade:
    """The fp32 graph that re-scores the rows int8 is unsure of, and the margin below which it does."""

    fp32: OnnxRunner
    threshold: cascade.Threshold
