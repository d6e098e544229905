"""The Trainer subclass cardtune runs with: length-grouped batches, class weights, layer-wise learning rates."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch.utils.data import SequentialSampler
from transformers import Trainer
from transformers.trainer_pt_utils import LengthGroupedSampler

from pipelines.errors import CardtuneError
from pipelines.modeling import freezing
from pipelines.training import checkpoints


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

    def _save_checkpoint(self, model, trial):
        # A checkpoint appears with its record or not at all; a failed save leaves no half folder.
        checkpoints.save_sealed(self, lambda: super(CardtuneTrainer, self)._save_checkpoint(model, trial))

    def _get_output_dir(self, trial):
        return checkpoints.output_dir(self, super()._get_output_dir(trial))

    def create_optimizer(self, model=None):
        if self._lr_decay == 1.0 or self.optimizer is not None:
            return super().create_optimizer(model)
        model = model or self.model
        groups = freezing.layerwise_groups(model, self.args.learning_rate, self._lr_decay, self.args.weight_decay,
                                        set(self.get_decay_parameter_names(model)))
        optimizer_cls, kwargs = Trainer.get_optimizer_cls_and_kwargs(self.args, model)
        kwargs.pop("lr", None)
        self.optimizer = optimizer_cls(groups, **kwargs)
        return self.optimizer



def class_weights(spec: str | None, labels: list[int], num_labels: int) -> torch.Tensor | None:
    """`balanced` (n / (k * count), as scikit-learn) or an explicit comma-separated list."""
    if not spec:
        return None
    if spec == "balanced":
        counts = np.bincount(np.asarray(labels), minlength=num_labels).astype(float)
        if (counts == 0).any():
            raise CardtuneError(f"class_weights: balanced needs every class in train; counts are {counts.tolist()}")
        return torch.tensor(counts.sum() / (num_labels * counts), dtype=torch.float32)
    try:
        values = [float(v) for v in spec.split(",")]
    except ValueError:
        values = []
    if len(values) != num_labels or min(values, default=0) <= 0:
        raise CardtuneError(
            f"class_weights '{spec}': expected 'balanced' or {num_labels} positive numbers like '1.0,3.0'")
    return torch.tensor(values, dtype=torch.float32)

