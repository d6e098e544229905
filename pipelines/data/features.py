"""Tokenization (single sentences or real sentence pairs) and the padding collator."""

from __future__ import annotations

import datasets
import numpy as np
from transformers import DataCollatorWithPadding, PreTrainedTokenizerBase

from pipelines.card.cards import TaskCard
from pipelines.data.readers import column
from pipelines.errors import ModelError


def check_fast(tokenizer: PreTrainedTokenizerBase, name: str) -> None:
    """Pair encoding and truncation counts rely on a Rust-backed (fast) tokenizer."""
    if not getattr(tokenizer, "is_fast", False):
        raise ModelError(f"tokenizer of {name} is not a fast tokenizer; use a model that ships tokenizer.json")


def encode(
    tokenizer: PreTrainedTokenizerBase,
    first: list[str],
    second: list[str] | None,
    max_length: int,
    truncation: str = "longest_first",
    pad_to_max_length: bool = False,
) -> dict[str, list]:
    """Encode one batch (unpadded unless asked); adds `length` (real tokens) and `truncated`."""
    if second is not None and truncation == "proportional":
        out = encode_proportional(tokenizer, first, second, max_length)
        if pad_to_max_length:
            out = dict(tokenizer.pad(out, padding="max_length", max_length=max_length))
    else:
        strategy = truncation if second is not None else True
        padding = "max_length" if pad_to_max_length else False
        enc = tokenizer(first, second, truncation=strategy, max_length=max_length, padding=padding)
        out = dict(enc)
        out["truncated"] = [bool(e.overflowing) for e in enc.encodings]
    out["length"] = [sum(mask) for mask in out["attention_mask"]]
    return out


def encode_proportional(
    tokenizer: PreTrainedTokenizerBase, first: list[str], second: list[str], max_length: int
) -> dict[str, list]:
    """Pairs cut in proportion to their lengths (the d2l exercise), instead of longest-first.

    With a budget B = max_length - special tokens and lengths a, b (a + b > B), the first text
    keeps round(B * a / (a + b)) tokens and the second the rest of the budget.
    """
    budget = max_length - tokenizer.num_special_tokens_to_add(pair=True)
    enc_a = tokenizer(first, add_special_tokens=False, truncation=False).encodings
    enc_b = tokenizer(second, add_special_tokens=False, truncation=False).encodings
    process = tokenizer.backend_tokenizer.post_processor.process
    out: dict[str, list] = {"input_ids": [], "token_type_ids": [], "attention_mask": [], "truncated": []}
    for a, b in zip(enc_a, enc_b):
        la, lb = len(a.ids), len(b.ids)
        cut = la + lb > budget
        if cut:
            keep_a = round(budget * la / (la + lb))
            a.truncate(keep_a)
            b.truncate(budget - keep_a)
        merged = process(a, b, add_special_tokens=True)
        out["input_ids"].append(merged.ids)
        out["token_type_ids"].append(merged.type_ids)
        out["attention_mask"].append(merged.attention_mask)
        out["truncated"].append(cut)
    if "token_type_ids" not in tokenizer.model_input_names:
        del out["token_type_ids"]
    return out


def tokenize(
    dsd: datasets.DatasetDict,
    tokenizer: PreTrainedTokenizerBase,
    card: TaskCard,
    max_length: int | None = None,
    pad_to_max_length: bool = False,
) -> datasets.DatasetDict:
    """Batched `map` over every split; keeps the text and label columns for reports."""
    max_length = max_length or card.max_length
    first = card.text_columns[0]
    second = card.text_columns[1] if card.is_pair else None

    def fn(batch: dict, indices: list[int]) -> dict:
        pair = batch[second] if second else None
        out = encode(tokenizer, batch[first], pair, max_length, card.truncation, pad_to_max_length)
        out["row"] = indices
        return out

    return dsd.map(fn, batched=True, batch_size=1000, with_indices=True, desc="tokenize")


def sort_by_length(ds: datasets.Dataset) -> datasets.Dataset:
    """Longest first, so evaluation batches pad little and memory peaks show up at once."""
    order = np.argsort(-np.asarray(column(ds, "length")), kind="stable")
    return ds.select(order)


def collator(tokenizer: PreTrainedTokenizerBase, pad_to_multiple_of: int | None = None) -> DataCollatorWithPadding:
    """Dynamic padding to the longest sequence of each batch."""
    return DataCollatorWithPadding(tokenizer, pad_to_multiple_of=pad_to_multiple_of)


MODEL_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def length_batches(ds: datasets.Dataset, tokenizer: PreTrainedTokenizerBase, batch_size: int = 64):
    """(row positions, padded tensors) of a tokenized split, longest rows first so batches pad little."""
    collate = collator(tokenizer)
    keep = [c for c in MODEL_INPUTS if c in ds.column_names]
    order = np.argsort(-np.asarray(column(ds, "length")), kind="stable")
    for start in range(0, len(ds), batch_size):
        rows = order[start:start + batch_size]
        yield rows, collate(list(ds.select(rows).select_columns(keep)))
