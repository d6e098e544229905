"""`PooledClassifier`: an encoder with one of cardtune's own heads (see heads.py), saved and loaded
like a transformers model; config.json records the head as `cardtune_head`."""

from __future__ import annotations

import json
from pathlib import Path

from torch import nn
from transformers import AutoModel, PretrainedConfig, PreTrainedModel
from transformers.modeling_outputs import SequenceClassifierOutput

from pipelines.modeling.heads import HEADS


class PooledClassifier(nn.Module):
    """An encoder (any `AutoModel`) with a head from `HEADS` that is not the model's own."""

    main_input_name = "input_ids"

    def __init__(self, encoder: PreTrainedModel, head: str, hidden: int | None = None, dropout: float = 0.1) -> None:
        super().__init__()
        self.encoder = encoder
        self.config: PretrainedConfig = encoder.config
        size, labels = self.config.hidden_size, self.config.num_labels
        hidden = hidden or size
        self.config.cardtune_head, self.config.cardtune_head_hidden = head, hidden
        self.config.classifier_dropout = dropout
        self._pool = HEADS[head].pool
        self.head = HEADS[head].layers(size, hidden, labels, dropout)
        for module in self.head.modules():
            if isinstance(module, nn.Linear):  # BERT's initialisation for new layers
                nn.init.normal_(module.weight, std=getattr(self.config, "initializer_range", 0.02))
                nn.init.zeros_(module.bias)

    @property
    def base_model(self) -> PreTrainedModel:
        """The transformer body, under the name `*ForSequenceClassification` models give it."""
        return self.encoder

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, labels=None, **kwargs):
        """Same inputs and outputs as `*ForSequenceClassification`."""
        inputs = {"input_ids": input_ids, "attention_mask": attention_mask}
        if token_type_ids is not None:
            inputs["token_type_ids"] = token_type_ids
        logits = self.head(self._pool(self.encoder(**inputs), attention_mask))
        loss = nn.functional.cross_entropy(logits, labels) if labels is not None else None
        return SequenceClassifierOutput(loss=loss, logits=logits)

    def save_pretrained(self, folder: str | Path, **kwargs) -> None:
        """config.json (with `cardtune_head`) and model.safetensors, like transformers models."""
        from safetensors.torch import save_file

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        self.config.save_pretrained(folder)
        state = {k: v.detach().contiguous() for k, v in self.state_dict().items()}
        save_file(state, folder / "model.safetensors", metadata={"format": "pt"})


def build(encoder_path: str, config: PretrainedConfig, head: str, hidden: int | None, dropout: float,
          attn_implementation: str | None, local_only: bool) -> PooledClassifier:
    """A `PooledClassifier` over pretrained encoder weights (the pooler only when the head uses it)."""
    kwargs = {"config": config, "attn_implementation": attn_implementation, "local_files_only": local_only}
    encoder = _encoder(AutoModel.from_pretrained, head, encoder_path, **kwargs)
    return PooledClassifier(encoder, head, hidden, dropout)


def load(folder: str | Path) -> PooledClassifier:
    """A saved `PooledClassifier` (config.json with `cardtune_head`)."""
    from safetensors.torch import load_file
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(folder)
    encoder = _encoder(AutoModel.from_config, config.cardtune_head, config)
    model = PooledClassifier(encoder, config.cardtune_head, config.cardtune_head_hidden, config.classifier_dropout)
    model.load_state_dict(load_file(Path(folder) / "model.safetensors"))
    return model


def _encoder(make, head: str, *args, **kwargs) -> PreTrainedModel:
    try:
        return make(*args, add_pooling_layer=HEADS[head].uses_pooler, **kwargs)
    except TypeError:  # encoders without a pooler do not take the argument
        return make(*args, **kwargs)


def is_custom(folder: str | Path) -> bool:
    """True when a saved model needs `load` (plain transformers cannot rebuild its head)."""
    config = Path(folder) / "config.json"
    return config.is_file() and "cardtune_head" in json.loads(config.read_text(encoding="utf-8"))
