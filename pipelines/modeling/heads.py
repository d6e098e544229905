"""The classifier heads a run can put on an encoder, each declared once in `HEADS`.

`linear` is the model's own `*ForSequenceClassification` head (pooled [CLS] -> dropout -> linear);
it loads in plain `transformers.pipeline`. The others run in `PooledClassifier`
(pooled_classifier.py), which saves `cardtune_head` in config.json and its own code beside the
weights, so the folder loads with `trust_remote_code=True`. To add a head, write how it builds its
layers and how it pools, and add one `Head` to `HEADS`.

How an encoder is read is its pooling: `cls` (the [CLS] vector through the pooler) or `mean` (the
masked mean of the token vectors, how sentence encoders were trained). A named offline model declares
its pooling; `DEFAULT_HEAD` is the head a run uses for it unless `--head` says otherwise.

Kept free of torch at import, and of any cardtune import (this file is saved beside models): the run
options offer these names as choices, and card checks must stay cheap.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from torch import Tensor, nn


@dataclass(frozen=True)
class Head:
    """A classifier head: how it builds its layers and how it pools the encoder's output."""

    name: str
    help: str
    pooling: str  # how it reads the encoder: "cls" or "mean"
    uses_pooler: bool  # whether the encoder's pooler (dense + tanh over [CLS]) is loaded
    # (hidden size, head hidden size, labels, dropout) -> module; None: the model's own head
    layers: Callable[[int, int, int, float], nn.Module] | None = None
    # (encoder output, attention mask) -> one vector per example
    pool: Callable[[Any, Tensor], Tensor] | None = None

    @property
    def is_models_own(self) -> bool:
        """True when `*ForSequenceClassification` provides the head (no `PooledClassifier`)."""
        return self.layers is None


def pooled_cls(out: Any, attention_mask: Tensor) -> Tensor:
    """The pooler's output, or the [CLS] vector for encoders without a pooler."""
    return out.pooler_output if getattr(out, "pooler_output", None) is not None else out.last_hidden_state[:, 0]


def masked_mean(out: Any, attention_mask: Tensor) -> Tensor:
    """The mean of the token vectors, padding left out (how sentence-embedding checkpoints were trained)."""
    mask = attention_mask.unsqueeze(-1).to(out.last_hidden_state.dtype)
    return (out.last_hidden_state * mask).sum(1) / mask.sum(1).clamp(min=1e-9)


def linear_layers(size: int, hidden: int, labels: int, dropout: float) -> nn.Module:
    """dropout -> linear."""
    from torch import nn

    return nn.Sequential(nn.Dropout(dropout), nn.Linear(size, labels))


def mlp_layers(size: int, hidden: int, labels: int, dropout: float) -> nn.Module:
    """dropout -> hidden -> GELU -> dropout -> output, as in the d2l SNLI recipe."""
    from torch import nn

    return nn.Sequential(nn.Dropout(dropout), nn.Linear(size, hidden), nn.GELU(),
                         nn.Dropout(dropout), nn.Linear(hidden, labels))


HEADS: dict[str, Head] = {head.name: head for head in (
    Head("linear", "the model's own linear layer on the pooled [CLS], loads in transformers.pipeline", "cls", True),
    Head("mlp", "hidden layer + output on the pooled [CLS]", "cls", True, mlp_layers, pooled_cls),
    Head("mean", "linear layer on the masked mean of the token vectors (the default for sentence encoders)",
         "mean", False, linear_layers, masked_mean),
)}

# The head a run uses for an encoder read by this pooling, when neither the card nor --head names one.
DEFAULT_HEAD = {"cls": "linear", "mean": "mean"}
