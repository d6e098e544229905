"""Tokenization (single sentences or real sentence pairs), how long texts are cut, and the padding collator."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import numpy as np
from tokenizers import Encoding

from pipelines.card.cards import TaskCard
from pipelines.card.keys import DEFAULT_HEAD_TOKENS, PAIR_TRUNCATION, SINGLE_TRUNCATION
from pipelines.data.readers import column
from pipelines.errors import ModelError

if TYPE_CHECKING:  # prediction with a cached int8 graph runs without datasets, torch or transformers' models
    import datasets
    from transformers import DataCollatorWithPadding, PreTrainedTokenizerBase

log = logging.getLogger(__name__)


def check_fast(tokenizer: PreTrainedTokenizerBase, name: str) -> None:
    """Pair encoding and truncation counts rely on a Rust-backed (fast) tokenizer."""
    if not getattr(tokenizer, "is_fast", False):
        raise ModelError(f"tokenizer of {name} is not a fast tokenizer; use a model that ships tokenizer.json")


def encode(
    tokenizer: PreTrainedTokenizerBase,
    first: list[str],
    second: list[str] | None,
    max_length: int,
    truncation: str | None = None,
    pad_to_max_length: bool = False,
    head_tokens: int | float | None = None,
) -> dict[str, list]:
    """Encode one batch (unpadded unless asked); adds `length` (real tokens) and `truncated`.

    `truncation` is a card's strategy (`keys.TRUNCATION`), `head_tokens` the card's split for
    `head_tail` (None: the card default). A strategy of the other kind, or None, means
    the default of the texts given (`head` for one text, `longest_first` for pairs): prediction may
    read one column with a pair model's card, or two with a single-text one.
    """
    pair = second is not None
    if truncation not in (PAIR_TRUNCATION if pair else SINGLE_TRUNCATION):
        truncation = "longest_first" if pair else "head"
    if truncation in ("proportional", "tail", "head_tail"):
        if pair:
            out = encode_proportional(tokenizer, first, second, max_length)
        else:
            head = (DEFAULT_HEAD_TOKENS if head_tokens is None else head_tokens) if truncation == "head_tail" else 0
            out = encode_ends(tokenizer, first, max_length, head)
        if pad_to_max_length:
            out = dict(tokenizer.pad(out, padding="max_length", max_length=max_length))
    else:
        # `head` is the tokenizer's own cut at the end of the text (as longest_first is for one text)
        strategy = truncation if pair else True
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
    merged, cuts = [], []
    for a, b in zip(enc_a, enc_b):
        la, lb = len(a.ids), len(b.ids)
        cut = la + lb > budget
        if cut:
            keep_a = round(budget * la / (la + lb))
            a.truncate(keep_a)
            b.truncate(budget - keep_a)
        merged.append(process(a, b, add_special_tokens=True))
        cuts.append(cut)
    return _features(tokenizer, merged, cuts)


def _features(tokenizer: PreTrainedTokenizerBase, encodings: list[Encoding], cuts: list[bool]) -> dict[str, list]:
    """The model inputs of encodings cut by hand, and whether each was cut."""
    out = {"input_ids": [e.ids for e in encodings], "token_type_ids": [e.type_ids for e in encodings],
           "attention_mask": [e.attention_mask for e in encodings], "truncated": cuts}
    if "token_type_ids" not in tokenizer.model_input_names:
        del out["token_type_ids"]
    return out


def head_split(budget: int, head_tokens: int | float) -> int:
    """Tokens `head_tail` keeps from the start of a text cut to `budget` tokens: a count (at most the
    budget) or a fraction of the budget."""
    head = head_tokens if isinstance(head_tokens, int) else round(head_tokens * budget)
    return max(0, min(head, budget))


def encode_ends(tokenizer: PreTrainedTokenizerBase, texts: list[str], max_length: int, head: int | float) -> dict:
    """Single texts longer than the budget keep their first `head` tokens (`head_split`) and the rest of
    the budget from their end: `head` 0 is `tail`, Sun et al.'s head+tail otherwise.

    The cut is made on the tokens without special tokens; the tokenizer's post-processor then adds
    them once ([CLS] ... [SEP], <s> ... </s>), so any fast tokenizer is cut the same way.
    """
    budget = max_length - tokenizer.num_special_tokens_to_add(pair=False)
    keep_head = head_split(budget, head)
    post = tokenizer.backend_tokenizer.post_processor
    done, cuts = [], []
    # verbose=False: no "longer than the maximum length" warning for texts this function cuts
    for enc in tokenizer(texts, add_special_tokens=False, truncation=False, verbose=False).encodings:
        cut = len(enc.ids) > budget
        if cut:
            enc = _ends(enc, keep_head, budget - keep_head)
        done.append(post.process(enc, None, add_special_tokens=True) if post is not None else enc)
        cuts.append(cut)
    return _features(tokenizer, done, cuts)


def _ends(enc: Encoding, head: int, tail: int) -> Encoding:
    """The first `head` and the last `tail` tokens of `enc` (longer than head + tail), as one encoding."""
    if tail == 0 or head == 0:
        _truncate(enc, head or tail, "right" if tail == 0 else "left")
        return enc
    # One truncate splits the encoding in two; the cut-off part comes back as its one overflowing
    # piece (a cheap copy), whichever part is the longer.
    rest = len(enc.ids) - tail
    if rest >= tail:
        enc.truncate(rest)  # keeps the first `rest` tokens; the last `tail` overflow in one piece
        start, end = enc, enc.overflowing[0]
    else:
        enc.truncate(tail, direction="left")  # keeps the last `tail`; the first `rest` overflow in one piece
        start, end = enc.overflowing[0], enc
    _truncate(start, head, "right")
    return Encoding.merge([start, end], growing_offsets=False)


def _truncate(enc: Encoding, n: int, direction: str) -> None:
    """Cut `enc` to its first (`right`: cut on the right) or last (`left`) `n` tokens, in place."""
    # Encoding.truncate keeps what it cuts off as overflowing pieces of n tokens, which merge and the
    # post-processor then copy: cutting to 2n first leaves one piece instead of len / n.
    if len(enc.ids) > 2 * n:
        enc.truncate(2 * n, direction=direction)
    enc.truncate(n, direction=direction)


def log_cut(card: TaskCard, tokenizer: PreTrainedTokenizerBase, max_length: int) -> None:
    """Say what `head_tail` keeps at this max length (a head count may not fit a smaller --max_length)."""
    if card.truncation != "head_tail":
        return
    budget = max_length - tokenizer.num_special_tokens_to_add(pair=False)
    head = head_split(budget, card.head_tokens)
    if head == budget:
        log.warning("head_tokens %s fills the whole budget of %d tokens at max length %d: long texts keep only "
                    "their head; give head_tokens as a fraction (e.g. 0.25) to scale with the max length",
                    card.head_tokens, budget, max_length)
    else:
        log.info("head_tail truncation: texts over %d tokens keep their first %d and last %d tokens",
                 budget, head, budget - head)


def tokenize(
    dsd: datasets.DatasetDict,
    tokenizer: PreTrainedTokenizerBase,
    card: TaskCard,
    max_length: int,
    pad_to_max_length: bool = False,
) -> datasets.DatasetDict:
    """Batched `map` over every split, cut at the run's `max_length` (`Settings.max_length`, or the
    card's own for a caller without a run); keeps the text and label columns for reports."""
    first = card.text_columns[0]
    second = card.text_columns[1] if card.is_pair else None

    def fn(batch: dict, indices: list[int]) -> dict:
        pair = batch[second] if second else None
        out = encode(tokenizer, batch[first], pair, max_length, card.truncation, pad_to_max_length, card.head_tokens)
        out["row"] = indices
        return out

    return dsd.map(fn, batched=True, batch_size=1000, with_indices=True, desc="tokenize")


def sort_by_length(ds: datasets.Dataset) -> datasets.Dataset:
    """Longest first, so evaluation batches pad little and memory peaks show up at once."""
    order = np.argsort(-np.asarray(column(ds, "length")), kind="stable")
    return ds.select(order)


def collator(tokenizer: PreTrainedTokenizerBase, pad_to_multiple_of: int | None = None) -> DataCollatorWithPadding:
    """Dynamic padding to the longest sequence of each batch."""
    from transformers import DataCollatorWithPadding

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
