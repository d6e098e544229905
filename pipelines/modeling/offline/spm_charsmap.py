"""Build a SentencePiece `precompiled_charsmap` from a plain character -> replacement map.

Hugging Face `tokenizers` can only take a normalization table as this binary blob
(`normalizers.Precompiled`). The blob is: a little-endian u32 with the trie's size in bytes,
the trie as u32 units of a darts-clone double array keyed by UTF-8 bytes, then the
replacement strings, each ended by a NUL byte; a key's trie value is its string's byte offset.

Unit layout (what the reader in `tokenizers` decodes): bits 0-7 label, bit 8 "has a value
child", bits 10-30 offset (bit 9 clear: no shift), and value units have bit 31 set. A child
with label c of a node at position p sits at p ^ offset ^ c; the value sits at p ^ offset.
"""

from __future__ import annotations

import struct
from collections import deque
from collections.abc import Mapping

import numpy as np

_MAX_OFFSET = 1 << 21  # offsets above this need the shifted encoding, which we never use
_VALUE_FLAG = 1 << 31


def _trie(keys: list[bytes], values: list[int]) -> list[dict]:
    """Nodes as dicts {"kids": {label: node index}, "value": int | None}; node 0 is the root."""
    nodes: list[dict] = [{"kids": {}, "value": None}]
    for key, value in zip(keys, values):
        at = 0
        for byte in key:
            kids = nodes[at]["kids"]
            if byte not in kids:
                kids[byte] = len(nodes)
                nodes.append({"kids": {}, "value": None})
            at = kids[byte]
        nodes[at]["value"] = value
    return nodes


def _double_array(nodes: list[dict]) -> list[int]:
    """Place the trie breadth-first, each node's children in the first 256-slot block that fits."""
    units: list[int] = [0] * 256
    free = np.ones(256, dtype=bool)
    free[0] = False  # the root
    bases: set[int] = set()  # two nodes sharing a base would read each other's children
    low = np.arange(256)
    first_block = 0
    queue, place = deque([0]), {0: 0}
    while queue:
        node_id = queue.popleft()
        node, pos = nodes[node_id], place[node_id]
        labels = ([0] if node["value"] is not None else []) + sorted(node["kids"])
        if not labels:
            continue
        while not free[first_block * 256:(first_block + 1) * 256].any():
            first_block += 1
        base = _find_base(free, bases, first_block, low ^ np.asarray(labels)[:, None])
        if (pos ^ base) >= _MAX_OFFSET:
            raise ValueError("normalization map too large for a double array without shifted offsets")
        bases.add(base)
        if base + 256 > len(units):  # a whole block is needed: the reader may index base ^ any byte
            units.extend([0] * 256)
            free = np.concatenate([free, np.ones(256, dtype=bool)])
        units[pos] |= (pos ^ base) << 10 | (1 << 8 if node["value"] is not None else 0)
        free[[base ^ c for c in labels]] = False
        if node["value"] is not None:
            units[base] = _VALUE_FLAG | node["value"]
        for c in sorted(node["kids"]):
            child = node["kids"][c]
            units[base ^ c] = c
            place[child] = base ^ c
            queue.append(child)
    return units


def _find_base(free: np.ndarray, bases: set[int], block: int, slots: np.ndarray) -> int:
    """The lowest base (at or after `block`) whose slots base ^ label are all free and unused as a base.

    `slots[i, x]` is x ^ labels[i]: the low bytes that labels[i] occupies for a base ending in x.
    """
    while True:
        if block * 256 >= len(free):
            return block * 256  # a fresh block: all free
        fits = free[block * 256 + slots].all(axis=0)
        for x in np.flatnonzero(fits):
            if block * 256 + int(x) not in bases:
                return block * 256 + int(x)
        block += 1


def build_charsmap(mapping: Mapping[str, str]) -> bytes:
    """The `precompiled_charsmap` bytes that replace each key (a character) by its value."""
    blob, offsets, keys, values = bytearray(), {}, [], []
    for key in sorted(mapping, key=lambda k: k.encode("utf-8")):
        out = mapping[key]
        if "\0" in out or not key or "\0" in key:
            raise ValueError(f"cannot encode normalization rule {key!r} -> {out!r}")
        if out not in offsets:  # identical replacements share one string
            offsets[out] = len(blob)
            blob += out.encode("utf-8") + b"\0"
        keys.append(key.encode("utf-8"))
        values.append(offsets[out])
    units = _double_array(_trie(keys, values))
    trie = np.asarray(units, dtype="<u4").tobytes()
    return struct.pack("<I", len(trie)) + trie + bytes(blob)


def lookup(charsmap: bytes, text: str) -> str | None:
    """The replacement of the longest key that prefixes `text` (None if none); for tests."""
    (size,) = struct.unpack_from("<I", charsmap, 0)
    units = np.frombuffer(charsmap, dtype="<u4", count=size // 4, offset=4)
    strings = charsmap[4 + size:]
    pos, found = int(units[0]) >> 10, None
    for byte in text.encode("utf-8"):
        pos ^= byte
        if pos >= len(units) or int(units[pos]) & (_VALUE_FLAG | 0xFF) != byte:
            break
        unit = int(units[pos])
        pos ^= unit >> 10
        if unit >> 8 & 1:
            start = int(units[pos]) & (_VALUE_FLAG - 1)
            found = strings[start:strings.index(b"\0", start)].decode("utf-8")
    return found
