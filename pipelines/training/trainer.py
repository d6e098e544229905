"""The Trainer subclass and callbacks cardtune runs with."""

from __future__ import annotations

import logging
import time
from typing import Any

import torch
from torch.utils.data import SequentialSampler
from transformers import Trainer, TrainerCallback
from transformers.trainer_pt_utils import LengthGroupedSampler

from pipelines.modeling import heads

log = logging.getLogger(__name__)


class EpochTimer(TrainerCallback):
    """Training wall time per epoch (evaluation excluded), kept in the log history so that it
    survives a resume along with the rest of the history."""

    def __init__(self) -> None:
        self._start = 0.0

    def on_epoch_begin(self, args, state, control, **kwargs):  # noqa: D102
        self._start = time.perf_counter()

    def on_epoch_end(self, args, state, control, **kwargs):  # noqa: D102
        seconds = round(time.perf_counter() - self._start, 2)
        state.log_history.append({"epoch": state.epoch, "step": state.global_step, "epoch_time_s": seconds})


class LogCallback(TrainerCallback):
    """Trainer logs as log lines (instead of dicts printed on stdout)."""

    def on_log(self, args, state, control, logs=None, **kwargs):  # noqa: D102
        if state.is_world_process_zero and logs:
            shown = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in logs.items())
            log.info("epoch %.2f step %d: %s", state.epoch or 0, state.global_step, shown)


class CardtuneTrainer(Trainer):
    """Trainer with: length-grouped batches from precomputed lengths; evaluation in the dataset's
    own order (our eval sets are pre-sorted by length); optional class-weighted loss; optional
    layer-wise learning-rate decay."""

    def __init__(
        self,
        *args: Any,
        train_lengths: list[int] | None = None,
        class_weights: torch.Tensor | None = None,
        layerwise_lr_decay: float = 1.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self._train_lengths = train_lengths
        self._class_weights = class_weights
        self._lr_decay = layerwise_lr_decay
        # Sequence classifiers average their loss over the batch themselves; if the Trainer thinks
        # the model takes `num_items_in_batch`, it multiplies the loss by the process count in DDP.
        self.model_accepts_loss_kwargs = False

    def _get_train_sampler(self, train_dataset=None):
        if self.args.train_sampling_strategy == "group_by_length" and self._train_lengths is not None:
            # The base class would re-measure every row after dropping our `length` column.
            return LengthGroupedSampler(
                self.args.train_batch_size * self.args.gradient_accumulation_steps, lengths=self._train_lengths
            )
        return super()._get_train_sampler(train_dataset)

    def _get_eval_sampler(self, eval_dataset):
        if self.args.world_size <= 1:
            return SequentialSampler(eval_dataset)
        return None

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if self._class_weights is None:
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        labels = inputs.pop("labels")
        outputs = model(**inputs)
        weights = self._class_weights.to(device=outputs.logits.device, dtype=outputs.logits.dtype)
        loss = torch.nn.functional.cross_entropy(
            outputs.logits, labels, weight=weights, label_smoothing=self.args.label_smoothing_factor
        )
        return (loss, outputs) if return_outputs else loss

    def create_optimizer(self, model=None):
        if self._lr_decay == 1.0 or self.optimizer is not None:
            return super().create_optimizer(model)
        model = model or self.model
        groups = heads.layerwise_groups(model, self.args.learning_rate, self._lr_decay, self.args.weight_decay,
                                        set(self.get_decay_parameter_names(model)))
        optimizer_cls, kwargs = Trainer.get_optimizer_cls_and_kwargs(self.args, model)
        kwargs.pop("lr", None)
        self.optimizer = optimizer_cls(groups, **kwargs)
        return self.optimizer
