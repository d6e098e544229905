"""The warm start (LP-FT, Kumar et al. 2022): the head is fitted on frozen features before fine-tuning.

A random head sends large, noisy gradients into a small pretrained encoder during the first steps;
a head that already separates the classes does not. The features are exactly what the head's last
linear layer reads (dropout off), taken with a forward hook, so the fit holds for any head; the
fitted logistic regression (regularisation chosen by cross-validation on the training split only)
becomes that layer's weights, and fine-tuning starts from there.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import datasets
import numpy as np
import torch
from torch import nn
from transformers import PreTrainedTokenizerBase

from pipelines.data import features
from pipelines.evaluation import probe

log = logging.getLogger(__name__)

@dataclass(frozen=True)
class WarmStart:
    """The fitted head: weights for the last linear layer and how they were chosen."""

    weight: np.ndarray  # (labels, features)
    bias: np.ndarray  # (labels,)
    C: float
    train_accuracy: float
    seconds: float

    def apply(self, model: nn.Module) -> None:
        """Copy the fitted weights into the model's last linear layer."""
        layer = last_linear(model)
        with torch.no_grad():
            layer.weight.copy_(torch.as_tensor(self.weight, dtype=layer.weight.dtype))
            layer.bias.copy_(torch.as_tensor(self.bias, dtype=layer.bias.dtype))

    def summary(self) -> dict[str, float]:
        return {"C": self.C, "train_accuracy": round(self.train_accuracy, 4), "seconds": round(self.seconds, 1)}


def last_linear(model: nn.Module) -> nn.Linear:
    """The layer that produces the logits: the last `nn.Linear` with one output per label."""
    labels = model.config.num_labels
    found = [m for m in model.modules() if isinstance(m, nn.Linear) and m.out_features == labels]
    if not found:
        raise ValueError(f"{type(model).__name__} has no linear layer with {labels} outputs to warm-start")
    return found[-1]


@torch.inference_mode()
def head_inputs(model: nn.Module, ds: datasets.Dataset, tokenizer: PreTrainedTokenizerBase,
                batch_size: int = 64) -> np.ndarray:
    """What the last linear layer reads for each row of a tokenized split, in row order (eval mode)."""
    layer = last_linear(model)
    out = np.zeros((len(ds), layer.in_features), dtype=np.float32)
    captured: list[torch.Tensor] = []
    hook = layer.register_forward_hook(lambda _m, inputs, _o: captured.append(inputs[0].float()))
    was_training = model.training
    model.eval()
    try:
        for rows, batch in features.length_batches(ds, tokenizer, batch_size):
            model(**batch)
            out[rows] = captured.pop().numpy()
    finally:
        hook.remove()
        model.train(was_training)
    return out


def fit(model: nn.Module, train: datasets.Dataset, tokenizer: PreTrainedTokenizerBase, seed: int = 0,
        inputs: np.ndarray | None = None) -> WarmStart:
    """Fit the head's last layer on frozen features of the training split (a logistic regression).
    `inputs`: what that layer reads for each training row, when already computed (else one forward pass)."""
    start = time.perf_counter()
    x = head_inputs(model, train, tokenizer) if inputs is None else inputs
    y = np.asarray(train["label"][:])
    labels = model.config.num_labels
    fitted = probe.fit(x, y, labels, seed)
    clf = fitted.classifier
    weight = np.zeros((labels, x.shape[1]))
    bias = np.zeros(labels)
    if clf.coef_.shape[0] == 1:  # binary: softmax over (-z/2, z/2) equals sigmoid(z)
        pos, neg = int(clf.classes_[1]), int(clf.classes_[0])
        weight[pos], bias[pos] = clf.coef_[0] / 2, clf.intercept_[0] / 2
        weight[neg], bias[neg] = -clf.coef_[0] / 2, -clf.intercept_[0] / 2
    else:
        weight[clf.classes_], bias[clf.classes_] = clf.coef_, clf.intercept_
    accuracy = float((fitted.predict_proba(x).argmax(1) == y).mean()) if len(y) else 0.0
    warm = WarmStart(weight, bias, fitted.C, accuracy, time.perf_counter() - start)
    log.info("warm start: head fitted on frozen features of %d training rows (C=%g, train accuracy %.4f, %.1f s)",
             len(y), warm.C, warm.train_accuracy, warm.seconds)
    return warm
