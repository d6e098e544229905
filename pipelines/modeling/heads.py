"""Classifier heads besides the standard one, layer freezing, and layer-wise learning rates.

`linear` is the model's own head (pooled [CLS] -> dropout -> linear); it loads in plain
`transformers.pipeline`. `mlp` (pooled -> dropout -> hidden -> GELU -> dropout -> output, as in
the d2l SNLI recipe) and `mean` (masked mean of the last hidden states -> dropout -> linear, how
sentence-embedding checkpoints such as the offline default were trained) live in
`PooledClassifier`, which saves `cardtune_head` in config.json so cardtune can load it back.
"""

from __future__ import annotations

import json
from pathlib import Path

from torch import nn
from transformers import AutoModel, PretrainedConfig, PreTrainedModel
from transformers.modeling_outputs import SequenceClassifierOutput

HEADS = ("linear", "mlp", "mean")


FREEZE = ("none", "encoder", "all_but_pooler", "all_but_last")


class PooledClassifier(nn.Module):
    """An encoder (any `AutoModel`) with an `mlp` or `mean` head."""

    main_input_name = "input_ids"

    def __init__(self, encoder: PreTrainedModel, head: str, hidden: int | None = None, dropout: float = 0.1) -> None:
        super().__init__()
        self.encoder = encoder
        self.config: PretrainedConfig = encoder.config
        size, labels = self.config.hidden_size, self.config.num_labels
        hidden = hidden or size
        self.config.cardtune_head, self.config.cardtune_head_hidden = head, hidden
        self.config.classifier_dropout = dropout
        if head == "mlp":
            self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(size, hidden), nn.GELU(),
                                      nn.Dropout(dropout), nn.Linear(hidden, labels))
        else:
            self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(size, labels))
        for module in self.head.modules():
            if isinstance(module, nn.Linear):  # BERT's initialisation for new layers
                nn.init.normal_(module.weight, std=getattr(self.config, "initializer_range", 0.02))
                nn.init.zeros_(module.bias)

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, labels=None, **kwargs):
        """Same inputs and outputs as `*ForSequenceClassification`."""
        inputs = {"input_ids": input_ids, "attention_mask": attention_mask}
        if token_type_ids is not None:
            inputs["token_type_ids"] = token_type_ids
        out = self.encoder(**inputs)
        if self.config.cardtune_head == "mean":
            mask = attention_mask.unsqueeze(-1).to(out.last_hidden_state.dtype)
            pooled = (out.last_hidden_state * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        else:
            pooled = out.pooler_output if getattr(out, "pooler_output", None) is not None else out.last_hidden_state[:, 0]
        logits = self.head(pooled)
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
    try:
        encoder = AutoModel.from_pretrained(encoder_path, add_pooling_layer=head != "mean", **kwargs)
    except TypeError:  # encoders without a pooler do not take the argument
        encoder = AutoModel.from_pretrained(encoder_path, **kwargs)
    return PooledClassifier(encoder, head, hidden, dropout)


def load(folder: str | Path) -> PooledClassifier:
    """A saved `PooledClassifier` (config.json with `cardtune_head`)."""
    from safetensors.torch import load_file
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(folder)
    head = config.cardtune_head
    try:
        encoder = AutoModel.from_config(config, add_pooling_layer=head != "mean")
    except TypeError:
        encoder = AutoModel.from_config(config)
    model = PooledClassifier(encoder, head, config.cardtune_head_hidden, config.classifier_dropout)
    model.load_state_dict(load_file(Path(folder) / "model.safetensors"))
    return model


def is_custom(folder: str | Path) -> bool:
    """True when a saved model needs `load` (plain transformers cannot rebuild its head)."""
    config = Path(folder) / "config.json"
    return config.is_file() and "cardtune_head" in json.loads(config.read_text(encoding="utf-8"))

