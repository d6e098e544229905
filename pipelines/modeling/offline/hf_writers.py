"""Byte-reproducible writers for Hugging Face model folders: streamed safetensors, Unigram tokenizers.

Both write the same bytes for the same input (sorted JSON keys, no timestamps), so a prepared
cache folder can be checked against a manifest and compared across machines.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path

import numpy as np

from pipelines.modeling.offline.spm_charsmap import build_charsmap

# (state-dict key, shape, producer of float32 chunks whose rows concatenate to the tensor)
TensorSource = tuple[str, tuple[int, ...], Callable[[], Iterator[np.ndarray]]]

METASPACE = "\u2581"


def write_safetensors(path: Path, items: Sequence[TensorSource]) -> None:
    """Write float32 tensors to a .safetensors file one chunk at a time (no whole-model copy in memory).

    The header is built first from the shapes, so data is streamed in `items` order;
    readers only need the offsets in the header to be contiguous, which they are.
    """
    header: dict[str, dict] = {"__metadata__": {"format": "pt"}}
    offset = 0
    for key, shape, _ in items:
        if key in header:
            raise ValueError(f"duplicate tensor name {key}")
        size = int(np.prod(shape)) * 4
        header[key] = {"dtype": "F32", "shape": list(shape), "data_offsets": [offset, offset + size]}
        offset += size
    raw = json.dumps(header, sort_keys=True, separators=(",", ":")).encode("utf-8")
    raw += b" " * (-len(raw) % 8)  # the format pads the header with spaces to an 8-byte boundary
    with open(path, "wb") as fh:
        fh.write(struct.pack("<Q", len(raw)))
        fh.write(raw)
        for key, shape, produce in items:
            written = 0
            for chunk in produce():
                data = np.ascontiguousarray(chunk, dtype="<f4")
                fh.write(memoryview(data).cast("B"))
                written += data.size
            if written != int(np.prod(shape)):
                raise ValueError(f"tensor {key}: wrote {written} values, expected {int(np.prod(shape))}")


def write_unigram_tokenizer(
    folder: Path,
    pieces: Sequence[str],
    scores: Sequence[float],
    special: Mapping[str, int],
    normalization: Mapping[str, str],
    max_length: int,
) -> None:
    """tokenizer.json (+ config files) for an XLM-R style SentencePiece Unigram tokenizer.

    `special` maps "bos", "eos", "pad", "unk" to piece ids; `normalization` maps characters
    to replacements (nmt_nfkc). Loads as a fast tokenizer that keeps the normalization, which
    transformers' own XLM-R tokenizer class would rebuild without it.
    """
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

    names = {role: pieces[i] for role, i in special.items()}
    tok = Tokenizer(models.Unigram([(p, float(s)) for p, s in zip(pieces, scores)],
                                   unk_id=int(special["unk"]), byte_fallback=False))
    steps = [normalizers.Precompiled(build_charsmap(normalization))] if normalization else []
    # SentencePiece's remove_extra_whitespaces, as e5.c does it: runs of spaces become one.
    tok.normalizer = normalizers.Sequence(steps + [normalizers.Replace(Regex(" {2,}"), " ")])
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement=METASPACE, prepend_scheme="always", split=True)
    tok.decoder = decoders.Metaspace(replacement=METASPACE, prepend_scheme="always", split=True)
    bos, eos = names["bos"], names["eos"]
    tok.post_processor = processors.TemplateProcessing(
        single=f"{bos}:0 $A:0 {eos}:0", pair=f"{bos}:0 $A:0 {eos}:0 {eos}:0 $B:0 {eos}:0",
        special_tokens=[(bos, int(special["bos"])), (eos, int(special["eos"]))],
    )
    mask = "<mask>" if "<mask>" in pieces else None
    added = [names[r] for r in ("bos", "pad", "eos", "unk")] + ([mask] if mask else [])
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False, lstrip=t == mask) for t in added])
    tok.save(str(folder / "tokenizer.json"), pretty=True)
    tokens = {"bos_token": bos, "eos_token": eos, "cls_token": bos, "sep_token": eos,
              "pad_token": names["pad"], "unk_token": names["unk"], **({"mask_token": mask} if mask else {})}
    config = {"tokenizer_class": "PreTrainedTokenizerFast", "model_max_length": max_length,
              # As the original XLM-R tokenizer: no token_type_ids, so the model always sees type 0.
              "model_input_names": ["input_ids", "attention_mask"], "padding_side": "right",
              "clean_up_tokenization_spaces": False, **tokens}
    _write_json(folder / "tokenizer_config.json", config)
    _write_json(folder / "special_tokens_map.json", tokens)


def _write_json(path: Path, data: dict) -> None:
    path.write_text(json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n", encoding="utf-8")
