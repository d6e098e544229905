"""`PooledClassifier`: an encoder with one of cardtune's own heads (see heads.py), a transformers model.

This file and heads.py are saved beside the weights of every model that uses such a head, and
config.json maps `AutoModelForSequenceClassification` to this class, as Hub models with custom heads
do: `transformers.pipeline(..., trust_remote_code=True)` loads the folder without cardtune. Hence the
relative import and no other import from cardtune.
"""

from __future__ import annotations

import json
from pathlib import Path

from torch import nn
from transformers import AutoModel, PretrainedConfig, PreTrainedModel
from transformers.modeling_outputs import SequenceClassifierOutput

from .heads import HEADS

# transformers 5 swaps layers for Hub "kernels" at load time when the `kernels` package is installed
# (a dependency of transformers itself): code fetched from the Hub at run time, and on a GPU without
# network a crash at the first `model.train()`. Every load in cardtune passes this.
NO_HUB_KERNELS = {"use_kernels": False}


class PooledClassifier(PreTrainedModel):
    """An encoder (any `AutoModel`) with a head from `HEADS` that is not the model's own.

    config.json carries the head: `cardtune_head`, `cardtune_head_hidden`, `classifier_dropout`.
    """

    config_class = PretrainedConfig
    base_model_prefix = "encoder"
    main_input_name = "input_ids"
    supports_gradient_checkpointing = True
    _supports_sdpa = True

    def __init__(self, config: PretrainedConfig, encoder: PreTrainedModel | None = None) -> None:
        super().__init__(config)
        head = HEADS[config.cardtune_head]
        if encoder is None:  # loading a saved model: from_pretrained fills every weight afterwards
            encoder = _encoder_of(config, head.uses_pooler)
        self.encoder = encoder
        size, labels = config.hidden_size, config.num_labels
        hidden = getattr(config, "cardtune_head_hidden", None) or size
        dropout = getattr(config, "classifier_dropout", None)
        dropout = getattr(config, "hidden_dropout_prob", 0.1) if dropout is None else dropout
        self._pool = head.pool
        self.head = head.layers(size, hidden, labels, dropout)
        self.post_init()

    def _init_weights(self, module: nn.Module) -> None:
        # Only the head's layers are new: BERT's initialisation for them. The encoder's own weights
        # are loaded (from_pretrained marks them initialised) and never pass through here.
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, std=getattr(self.config, "initializer_range", 0.02))
            nn.init.zeros_(module.bias)

    def get_input_embeddings(self) -> nn.Module:
        return self.encoder.get_input_embeddings()

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, labels=None, **kwargs):
        """Same inputs and outputs as `*ForSequenceClassification`."""
        inputs = {"input_ids": input_ids, "attention_mask": attention_mask}
        if token_type_ids is not None:
            inputs["token_type_ids"] = token_type_ids
        logits = self.head(self._pool(self.encoder(**inputs), attention_mask))
        loss = nn.functional.cross_entropy(logits, labels) if labels is not None else None
        return SequenceClassifierOutput(loss=loss, logits=logits)


def build(encoder_path: str, config: PretrainedConfig, head: str, hidden: int | None, dropout: float,
          attn_implementation: str | None, local_only: bool) -> PooledClassifier:
    """A `PooledClassifier` over pretrained encoder weights (the pooler only when the head uses it)."""
    config.cardtune_head, config.cardtune_head_hidden = head, hidden or config.hidden_size
    config.classifier_dropout = dropout
    encoder = _encoder(AutoModel.from_pretrained, HEADS[head].uses_pooler, encoder_path, config=config,
                       attn_implementation=attn_implementation, local_files_only=local_only, **NO_HUB_KERNELS)
    config.architectures = [PooledClassifier.__name__]
    PooledClassifier.register_for_auto_class("AutoModelForSequenceClassification")
    return PooledClassifier(config, encoder=encoder)


def load(folder: str | Path) -> PooledClassifier:
    """A saved `PooledClassifier` (config.json with `cardtune_head`), with cardtune's own copy of the code."""
    from transformers import AutoConfig

    # config_class is generic (any encoder family): the folder's own config class is read first.
    config = AutoConfig.from_pretrained(str(folder), local_files_only=True)
    return PooledClassifier.from_pretrained(str(folder), config=config, local_files_only=True, **NO_HUB_KERNELS)


def _encoder_of(config: PretrainedConfig, uses_pooler: bool) -> PreTrainedModel:
    """The encoder of a saved model, built from its config. This class takes the fused (sdpa)
    attention by default; an encoder that transformers has none for (MPNet) is built with eager."""
    try:
        return _encoder(AutoModel.from_config, uses_pooler, config)
    except ValueError as err:
        if not lacks_sdpa(err):
            raise
        return _encoder(AutoModel.from_config, uses_pooler, config, attn_implementation="eager")


def lacks_sdpa(err: Exception) -> bool:
    """True when transformers refused fused (sdpa) attention for an encoder that has none (MPNet)."""
    return isinstance(err, ValueError) and "scaled_dot_product_attention" in str(err)


def _encoder(make, uses_pooler: bool, *args, **kwargs) -> PreTrainedModel:
    try:
        return make(*args, add_pooling_layer=uses_pooler, **kwargs)
    except TypeError:  # encoders without a pooler do not take the argument
        return make(*args, **kwargs)


def is_custom(folder: str | Path) -> bool:
    """True when a saved model holds one of cardtune's heads (plain transformers cannot rebuild it)."""
    config = Path(folder) / "config.json"
    return config.is_file() and "cardtune_head" in json.loads(config.read_text(encoding="utf-8"))
