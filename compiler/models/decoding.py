"""A causal LM as one decode graph over a KV cache, for text-generation artifacts.

    (input_ids [b, t], attention_mask [b, p+t],
     past.0.key, past.0.value, ... [b, kv_heads, p, head_dim])
        -> (logits [b, t, vocab], present.0.key, present.0.value, ... [b, kv_heads, p+t, head_dim])

A prefill is the call with p = 0 (an empty cache), a decode step the call with t = 1 and the
previous call's presents as its pasts. `attention_mask` marks the real tokens of the p + t
positions (0: padding), so prompts of different lengths run as one batch, left-padded: a
token attends to the real positions up to itself, and its position id counts only the real
tokens before it (cumsum(mask) - 1), as transformers' `generate` does with padding. One graph serves
both, so prefill and decode share one copy of the weights, and the cache grows by
concatenation inside the graph (transformers' DynamicCache, traced): each step attends over
the positions that exist, not over max_length slots. (A static cache of max_length slots,
the other layout, is not built or measured here.)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from ember.errors import UnsupportedModelError, first_line

PAST, PRESENT = "past", "present"
MASK = "attention_mask"
KINDS = ("key", "value")


@dataclass(frozen=True)
class CacheShape:
    """The KV cache of one sequence: layers x (key, value) of [kv_heads, length, head_dim]."""

    layers: int
    kv_heads: int
    head_dim: int
    dtype: str = "float32"

    def names(self, prefix: str) -> list[str]:
        return [f"{prefix}.{layer}.{kind}" for layer in range(self.layers) for kind in KINDS]

    def empty(self, batch: int = 1, length: int = 0) -> dict[str, np.ndarray]:
        shape = (batch, self.kv_heads, length, self.head_dim)
        return {name: np.zeros(shape, self.dtype) for name in self.names(PAST)}


class CausalLMWithCache(nn.Module):
    """`lm` (a transformers causal LM) called with its cache as flat tensors (module doc)."""

    def __init__(self, lm: nn.Module) -> None:
        super().__init__()
        self.lm = lm

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                *past: torch.Tensor) -> tuple[torch.Tensor, ...]:
        from transformers import DynamicCache

        # no config: full-attention layers throughout (cache_shape keeps a sliding window
        # out of reach, so it never slides)
        cache = DynamicCache(ddp_cache_data=list(zip(past[0::2], past[1::2], strict=True)))
        tokens, start = input_ids.shape[1], past[0].shape[2]
        positions = (attention_mask.cumsum(-1) - 1).clamp(min=0)[:, -tokens:]
        out = self.lm(input_ids=input_ids, attention_mask=attention_mask, cache=cache,
                      position_ids=positions, use_cache=True,
                      cache_position=torch.arange(tokens, device=input_ids.device) + start)
        present = [t for layer in _cache_of(out).layers for t in (layer.keys, layer.values)]
        return (out.logits, *present)


def cache_shape(lm: nn.Module, max_length: int) -> CacheShape:
    """The cache layout, read from a two-token prefill (pruned models have fewer heads than
    their config says). Declines caches that are not one key/value pair per layer of one
    shape, and a sliding window shorter than `max_length` (within it, a sliding layer is a
    full one)."""
    from transformers import DynamicCache

    try:
        with torch.no_grad():
            out = lm(input_ids=torch.zeros(1, 2, dtype=torch.long), use_cache=True)
    except Exception as exc:
        raise UnsupportedModelError(f"the model cannot run with a KV cache: "
                                    f"{type(exc).__name__}: {first_line(exc)}") from None
    cache = _cache_of(out)
    layers = getattr(cache, "layers", None)
    if not isinstance(cache, DynamicCache) or not layers:
        raise UnsupportedModelError(f"generation needs a per-layer key/value cache; this model "
                                    f"returns {type(cache).__name__}")
    kinds = {type(layer).__name__ for layer in layers} - {"DynamicLayer"}
    window = getattr(lm.config, "sliding_window", None)
    if kinds - {"DynamicSlidingWindowLayer"}:
        raise UnsupportedModelError(f"generation artifacts take key/value caches; this "
                                    f"model's has {', '.join(sorted(kinds))} layers")
    if kinds and isinstance(window, int) and window < max_length:
        raise UnsupportedModelError(f"max_length {max_length} is longer than the model's "
                                    f"sliding window {window}: give max_length <= {window}")
    shapes = {tuple(t.shape) for layer in layers for t in (layer.keys, layer.values)}
    if len(shapes) != 1:
        raise UnsupportedModelError(f"generation artifacts take one cache shape for every "
                                    f"layer; this model's differ: {sorted(shapes)}")
    _, kv_heads, _, head_dim = shapes.pop()
    return CacheShape(len(layers), kv_heads, head_dim)


def _cache_of(output: Any) -> Any:
    """The returned cache: `cache` since transformers 5 renamed `past_key_values`."""
    cache = getattr(output, "cache", None)
    return cache if cache is not None else getattr(output, "past_key_values", None)
