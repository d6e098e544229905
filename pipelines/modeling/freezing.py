"""Layer freezing strategies, each one registered function, and layer-wise learning-rate groups.

To add a strategy, register a function `(encoder body, trainable_layers) -> None` with
`@register_strategy`. Kept free of torch at import: the run options offer these names as choices.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch
    from torch import nn

StrategyFn = Callable[["nn.Module", int], None]


@dataclass(frozen=True)
class Strategy:
    """A freezing strategy: what it leaves trainable, and the function that freezes the rest."""

    name: str
    help: str
    apply: StrategyFn


STRATEGIES: dict[str, Strategy] = {}


def register_strategy(name: str, help_text: str) -> Callable[[StrategyFn], StrategyFn]:
    """Register `fn(encoder body, trainable_layers)` as the `--freeze` choice `name`."""

    def register(fn: StrategyFn) -> StrategyFn:
        if name in STRATEGIES:
            raise ValueError(f"freezing strategy '{name}' is registered twice")
        STRATEGIES[name] = Strategy(name, help_text, fn)
        return fn

    return register


@register_strategy("none", "train everything")
def _nothing(body: nn.Module, trainable_layers: int) -> None:
    """Train everything."""


@register_strategy("encoder", "the whole encoder, only the head trains")
def _encoder(body: nn.Module, trainable_layers: int) -> None:
    body.requires_grad_(False)


@register_strategy("all_but_pooler", "all of the encoder but the pooler")
def _all_but_pooler(body: nn.Module, trainable_layers: int) -> None:
    _encoder(body, trainable_layers)
    pooler = getattr(body, "pooler", None)
    if pooler is not None:
        pooler.requires_grad_(True)


@register_strategy("all_but_last", "all but the pooler and the last --trainable-layers blocks")
def _all_but_last(body: nn.Module, trainable_layers: int) -> None:
    _all_but_pooler(body, trainable_layers)
    if trainable_layers > 0:
        for block in layers_of(body)[-trainable_layers:]:
            block.requires_grad_(True)


def freeze(model: nn.Module, strategy: str, trainable_layers: int = 0) -> tuple[int, int]:
    """Freeze the encoder by a strategy (the head always trains); returns (trainable, total) parameter counts."""
    STRATEGIES[strategy].apply(encoder_of(model), trainable_layers)
    total = sum(p.numel() for p in model.parameters())
    return sum(p.numel() for p in model.parameters() if p.requires_grad), total


def encoder_of(model: nn.Module) -> nn.Module:
    """The transformer body: `base_model` of `*ForSequenceClassification` and of `PooledClassifier`."""
    return model.base_model


def layers_of(encoder: nn.Module) -> nn.ModuleList:
    """The stack of transformer blocks (BERT/RoBERTa/ELECTRA `encoder.layer`, DistilBERT `transformer.layer`)."""
    from torch import nn

    for name in ("encoder.layer", "transformer.layer", "encoder.layers", "layers"):
        module = encoder
        for part in name.split("."):
            module = getattr(module, part, None)
        if isinstance(module, nn.ModuleList):
            return module
    raise ValueError(f"cannot find the transformer layers of {type(encoder).__name__}")


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



def freeze_word_embeddings(model: nn.Module) -> int:
    """Freeze the input (word) embedding table; returns how many parameters that froze."""
    table = encoder_of(model).get_input_embeddings()
    table.requires_grad_(False)
    return sum(p.numel() for p in table.parameters())
