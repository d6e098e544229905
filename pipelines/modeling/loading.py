"""Model and tokenizer loading: the offline default, label maps, clear errors."""

from __future__ import annotations

import functools
import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING

from safetensors import SafetensorError

from pipelines.errors import ModelError
from pipelines.modeling import model_folder, offline
from pipelines.modeling.heads import HEADS

if TYPE_CHECKING:  # torch and transformers' model code load where a model does (not for a tokenizer)
    from torch import nn
    from transformers import PreTrainedTokenizerBase

    from pipelines.card.cards import TaskCard

log = logging.getLogger(__name__)

def resolve(name: str | None) -> str:
    """A named offline model (or `None`: the default) -> its prepared folder; a Hub id or path unchanged."""
    entry = offline.find(name or offline.default_model())
    return offline.resolve(entry.name) if entry else str(name)


def base_model_id(name: str | None) -> str | None:
    """The Hub id a model card can cite as `base_model` (None for a local directory)."""
    entry = offline.find(name or offline.default_model())
    if entry:
        return entry.origin
    return None if Path(name).exists() else str(name)


def _hint(name: str, online: bool) -> str:
    if Path(name).exists():
        return "the directory exists but holds no loadable model (config.json + weights)"
    if online:
        return "not found on the Hub either; check the model id"
    return "not a local directory and not in the Hugging Face cache; pass a local path, or --online to download it"


def _first_line(err: Exception, default: str) -> str:
    return (str(err).strip().splitlines() or [default])[0][:300]


def _why(err: Exception, path: str, online: bool) -> str:
    """The reason a model did not load, in one clause. A cut weights file and a folder transformers
    refuses (ValueError) are named as such: the generic hint would send the user looking elsewhere."""
    if isinstance(err, SafetensorError):
        first = _first_line(err, "unreadable")
        return f"its weights file is damaged ({first}); copy it again from a good source, or retrain"
    if isinstance(err, ValueError) and Path(path).exists():
        return f"transformers refused it ({_first_line(err, 'ValueError')})"
    return _hint(path, online)


def load_tokenizer(name: str | None, online: bool = False) -> PreTrainedTokenizerBase:
    """Load the (fast) tokenizer of a model id or directory."""
    path = resolve(name)
    model_folder.check(path, "model")
    try:
        named = _named_tokenizer_class(path)
        if named is not None:
            return named.from_pretrained(path, local_files_only=not online)
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(path, local_files_only=not online)
    except (OSError, ValueError) as err:
        log.debug("tokenizer load failed: %s", err)
        raise ModelError(
            f"cannot load the tokenizer of model '{name or offline.default_model()}': {_hint(path, online)}") from None


def _named_tokenizer_class(path: str) -> type | None:
    """The tokenizer class a folder's tokenizer_config.json names, when transformers has it: what
    AutoTokenizer picks too, without AutoTokenizer's read of config.json, which imports torch (a
    second of a prediction process that runs only ONNX Runtime)."""
    try:
        name = json.loads((Path(path) / "tokenizer_config.json").read_text(encoding="utf-8")).get("tokenizer_class")
    except (OSError, ValueError, AttributeError):
        return None
    if not isinstance(name, str) or not name.isidentifier():
        return None
    import transformers

    found = getattr(transformers, name, None)
    return found if isinstance(found, type) else None


def load_model(
    card: TaskCard,
    name: str | None,
    online: bool = False,
    attn_implementation: str | None = "sdpa",
    head: str = "linear",
    head_hidden: int | None = None,
    dropout: float | None = None,
) -> nn.Module:
    """A sequence classifier whose config carries the card's label names."""
    path = resolve(name)
    model_folder.check(path, "model", tokenizer=False)  # load_tokenizer checks the tokenizer files
    labels = {"num_labels": len(card.labels), "id2label": card.id2label,
              "label2id": {label: i for i, label in card.id2label.items()}}
    build = functools.partial(_classifier, path, labels, online, head=head, head_hidden=head_hidden, dropout=dropout)
    from pipelines.modeling import pooled_classifier

    try:
        try:
            return build(attn_implementation)
        except ValueError as err:  # e.g. MPNet: transformers has no sdpa attention for it
            if attn_implementation != "sdpa" or not pooled_classifier.lacks_sdpa(err):
                raise
            log.info("model '%s' has no fused (sdpa) attention in transformers: using eager attention", name)
            return build("eager")
    except (OSError, ValueError, SafetensorError) as err:
        log.debug("model load failed: %s", err)
        raise ModelError(f"cannot load model '{name or offline.default_model()}': {_why(err, path, online)}") from None


def _classifier(path: str, labels: dict, online: bool, attn_implementation: str | None, head: str,
                head_hidden: int | None, dropout: float | None) -> nn.Module:
    """The model's own sequence classifier, or an encoder under one of cardtune's heads."""
    from transformers import AutoConfig, AutoModelForSequenceClassification

    from pipelines.modeling import pooled_classifier

    if not HEADS[head].is_models_own:
        config = AutoConfig.from_pretrained(path, local_files_only=not online, **labels)
        rate = dropout if dropout is not None else getattr(config, "hidden_dropout_prob", 0.1)
        return pooled_classifier.build(path, config, head, head_hidden, rate, attn_implementation, not online)
    extra = {"classifier_dropout": dropout} if dropout is not None else {}
    return AutoModelForSequenceClassification.from_pretrained(
        path,
        attn_implementation=attn_implementation,
        # A checkpoint fine-tuned on another label set gets a fresh head instead of a crash.
        ignore_mismatched_sizes=True,
        local_files_only=not online,
        **labels,
        **extra,
        **pooled_classifier.NO_HUB_KERNELS,
    )


def load_trained(model_dir: str | Path) -> tuple[nn.Module, PreTrainedTokenizerBase]:
    """A fine-tuned classifier and its tokenizer from a directory, ready for inference."""
    path = Path(model_dir)
    if not (path / "config.json").is_file():
        raise ModelError(f"{path} is not a saved model directory (no config.json); pass the --output-dir of a run")
    model_folder.check(path, "model")
    tokenizer = load_tokenizer(str(path))
    from transformers import AutoModelForSequenceClassification

    from pipelines.modeling import pooled_classifier

    try:
        if pooled_classifier.is_custom(path):
            return pooled_classifier.load(path).eval(), tokenizer
        clf = AutoModelForSequenceClassification.from_pretrained(str(path), local_files_only=True,
                                                                  **pooled_classifier.NO_HUB_KERNELS)
    except (OSError, ValueError, SafetensorError) as err:
        log.debug("model load failed: %s", err)
        raise ModelError(f"cannot load the model in {path}: {_why(err, str(path), False)}") from None
    return clf.eval(), tokenizer
