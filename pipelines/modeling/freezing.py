"""Layer freezing strategies and layer-wise learning-rate groups."""

from __future__ import annotations

from typing import Iterator

import torch
from torch import nn

from pipelines.modeling.heads import PooledClassifier


def encoder_of(model: nn.Module) -> nn.Module:
    """The transformer body: `PooledClassifier.encoder` or `*ForSequenceClassification.base_model`."""
    return model.encoder if isinstance(model, PooledClassifier) else model.base_model


def layers_of(encoder: nn.Module) -> nn.ModuleList:
    """The stack of transformer blocks (BERT/RoBERTa/ELECTRA `encoder.layer`, DistilBERT `transformer.layer`)."""
    for name in ("encoder.layer", "transformer.layer", "encoder.layers", "layers"):
        module = encoder
        for part in name.split("."):
            module = getattr(module, part, None)
        if isinstance(module, nn.ModuleList):
            return module
    raise ValueError(f"cannot find the transformer layers of {type(encoder).__name__}")


def freeze(model: nn.Module, strategy: str, trainable_layers: int = 0) -> tuple[int, int]:
    """Apply a freezing strategy; returns (trainable, total) parameter counts.

    none: train everything; encoder: head only; all_but_pooler: pooler + head;
    all_but_last: pooler + the last `trainable_layers` blocks + head.
    """
    body = encoder_of(model)
    if strategy != "none":
        for param in body.parameters():
            param.requires_grad = False
        pooler = getattr(body, "pooler", None)
        if strategy in ("all_but_pooler", "all_but_last") and pooler is not None:
            pooler.requires_grad_(True)
        if strategy == "all_but_last" and trainable_layers > 0:
            for block in layers_of(body)[-trainable_layers:]:
                block.requires_grad_(True)
    total = sum(p.numel() for p in model.parameters())
    return sum(p.numel() for p in model.parameters() if p.requires_grad), total


def depth_of(name: str, model: nn.Module) -> int:
    """0 for embeddings, i + 1 for block i, layers + 1 for the pooler and head."""
    count = len(layers_of(encoder_of(model)))
    if "embeddings" in name:
        return 0
    for i in range(count):
        if f"layer.{i}." in name or f"layers.{i}." in name:
            return i + 1
    return count + 1


def layerwise_groups(
    model: nn.Module, lr: float, decay: float, weight_decay: float, decay_names: set[str]
) -> list[dict]:
    """Optimizer groups with lr * decay**(top - depth), and weight decay only on `decay_names`."""
    top = len(layers_of(encoder_of(model))) + 1
    groups: dict[tuple[int, bool], dict] = {}
    for name, param in _trainable(model):
        depth, decays = depth_of(name, model), name in decay_names
        group = groups.setdefault((depth, decays), {
            "params": [], "lr": lr * decay ** (top - depth), "weight_decay": weight_decay if decays else 0.0})
        group["params"].append(param)
    return list(groups.values())


def _trainable(model: nn.Module) -> Iterator[tuple[str, torch.nn.Parameter]]:
    return ((n, p) for n, p in model.named_parameters() if p.requires_grad)

