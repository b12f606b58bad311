"""The static KV cache of a `tvm` generation artifact: one sequence's keys and values in
`slots` positions, fed through the artifact's fixed-shape `decode.S` and `prefill.S`
functions for a cache of S positions (targets/tvm/static_cache.py builds them).

    cache = StaticCache(engine)
    logits = cache.feed(ids, mask)        # [t] ids, [t] mask -> [t, vocab]

The cache lives in 64-byte aligned numpy arrays that the functions read in place (DLPack
views, no copies per call). A call passes the mask of all `slots` positions plus its own
tokens, so unwritten slots (mask 0) are padding to the graph; it returns its tokens' keys
and values, which are written into the next free slots. A prompt runs `chunk` tokens a call
(the last call padded, mask 0, its padding's keys and values dropped), decode steps one.
The cache starts at the smallest size and moves to the next (a copy of what it holds) when
a call would not fit, so a step attends over about as many positions as the sequence has.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ember.errors import InputError


@dataclass(frozen=True)
class CacheLayout:
    """What the artifact's manifest says of its cache and functions."""

    sizes: tuple[int, ...]  # the cache sizes, ascending; the last is max_length
    layers: int
    kv_heads: int
    head_dim: int
    chunk: int  # tokens per prefill call; 1: the artifact has no prefill function

    @property
    def slots(self) -> int:
        return self.sizes[-1]


class StaticCache:
    """One sequence's cache and mask, and the positions used so far (module doc)."""

    def __init__(self, engine: Any) -> None:
        self.engine = engine
        self.layout = engine.cache_layout
        self.length = 0
        self._allocate(self.layout.sizes[0])

    def _allocate(self, size: int) -> None:
        """Arrays of `size` positions holding what the cache holds so far."""
        layout, used = self.layout, self.length
        shape = (1, layout.kv_heads, size, layout.head_dim)
        arrays = [self.engine.aligned(np.zeros(shape, np.float32))
                  for _ in range(2 * layout.layers)]
        mask = np.zeros(size, np.int64)
        if used:
            for new, old in zip(arrays, self.arrays, strict=True):
                new[0, :, :used] = old[0, :, :used]
            mask[:used] = self.mask[:used]
        self.size, self.arrays, self.mask = size, arrays, mask
        self.views = [self.engine.from_dlpack(a) for a in arrays]

    def _make_room(self, tokens: int) -> None:
        """Move to the smallest cache that holds `tokens` more positions."""
        needed = self.length + tokens
        if needed > self.layout.slots:
            raise InputError(f"{needed} positions exceed the artifact's cache of "
                             f"{self.layout.slots} (its max_length)")
        if needed > self.size:
            self._allocate(next(s for s in self.layout.sizes if s >= needed))

    def load(self, past: list[np.ndarray], mask: np.ndarray) -> None:
        """Start from a given cache: `past` [kv, p, head_dim] per key and value, `mask` [p]."""
        used = mask.shape[0]
        self._make_room(used)
        for array, values in zip(self.arrays, past, strict=True):
            array[0, :, :used] = values
        self.mask[:used] = mask
        self.length = used

    def contents(self) -> list[np.ndarray]:
        """The cache so far, [kv, length, head_dim] per key and value (copies)."""
        return [a[0, :, :self.length].copy() for a in self.arrays]

    def feed(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """Run `ids` ([t]; `mask` [t], 0 for padding) after the cached positions; every
        position's logits, [t, vocab]."""
        self._make_room(ids.shape[0])  # every call of this feed fits (or none is made)
        logits, start = [], 0
        while start < ids.shape[0]:
            tokens = 1 if ids.shape[0] - start == 1 or self.layout.chunk == 1 \
                else self.layout.chunk
            count = min(tokens, ids.shape[0] - start)
            logits.append(self._call(ids[start:start + count], mask[start:start + count],
                                     tokens))
            start += count
        return np.concatenate(logits)

    def _call(self, ids: np.ndarray, mask: np.ndarray, tokens: int) -> np.ndarray:
        """One call of the `tokens`-token function on `ids` (padded up to `tokens`)."""
        count = ids.shape[0]
        padded_ids = np.zeros((1, tokens), np.int64)
        padded_ids[0, :count] = ids
        full_mask = np.zeros((1, self.size + tokens), np.int64)
        full_mask[0, :self.size] = self.mask
        full_mask[0, self.size:self.size + count] = mask
        kind = "decode" if tokens == 1 else "prefill"
        outputs = self.engine.call_function(f"{kind}.{self.size}", [padded_ids, full_mask],
                                            self.views)
        end = self.length + count
        for array, new in zip(self.arrays, outputs[1:], strict=True):
            array[0, :, self.length:end] = new[0, :, :count]
        self.mask[self.length:end] = mask
        self.length = end
        return outputs[0][0, :count]


def run_with_caches(engine: Any, inputs: list[np.ndarray]) -> list[np.ndarray]:
    """The generation graph's contract over static caches: (input_ids [b, t], attention_mask
    [b, p + t], past [b, kv, p, hd] ...) -> (logits [b, t, vocab], present [b, kv, p + t, hd]
    ...), one sequence at a time, each through a cache loaded with its past."""
    ids, mask, past = inputs[0], inputs[1], inputs[2:]
    used = past[0].shape[2]
    if mask.shape != (ids.shape[0], used + ids.shape[1]):
        raise InputError(f"attention_mask must be [batch, past + tokens] = "
                         f"{[ids.shape[0], used + ids.shape[1]]}, got {list(mask.shape)}")
    logits, presents = [], []
    for row in range(ids.shape[0]):
        cache = StaticCache(engine)
        cache.load([p[row] for p in past], mask[row, :used])
        logits.append(cache.feed(ids[row], mask[row, used:]))
        presents.append(cache.contents())
    return [np.stack(logits), *(np.stack(kv) for kv in zip(*presents, strict=True))]
