"""Synthetic "llama" gpu programs with random weights, at any shape: what the device check
times (Llama-2-7B-shaped blocks, dense and pruned) and what tests run at small shapes.

Projections are "dense" (fp32 weights, scaled by 1/sqrt(in)) or "spike" (4-bit codes in
[-7, 7], per-row scales, `salient` of the input channels spiking T_s = 2 times at a_bits = 4,
decoupled ranges): the layouts targets/gpu_program.py writes for nn.Linear and SpikeLinear.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch


@dataclass(frozen=True)
class LlamaShape:
    hidden: int
    heads: int
    kv_heads: int
    head_dim: int
    ffn: int
    layers: int
    vocab: int = 256

    def pruned(self, ratio: float, multiple: int = 64) -> LlamaShape:
        """Hidden, heads (whole GQA groups) and FFN each cut by `ratio`, widths rounded down
        to `multiple` (as the prune pass rounds)."""
        keep = 1 - ratio
        group = self.heads // self.kv_heads
        kv = max(1, round(self.kv_heads * keep))
        return LlamaShape(_round(self.hidden * keep, multiple), kv * group, kv, self.head_dim,
                          _round(self.ffn * keep, multiple), self.layers, self.vocab)

    def linear_shapes(self) -> dict[str, tuple[int, int]]:
        """(out, in) of each projection of a block."""
        q, kv = self.heads * self.head_dim, self.kv_heads * self.head_dim
        return {"q": (q, self.hidden), "k": (kv, self.hidden), "v": (kv, self.hidden),
                "o": (self.hidden, q), "gate": (self.ffn, self.hidden),
                "up": (self.ffn, self.hidden), "down": (self.hidden, self.ffn)}

    def linear_macs(self) -> int:
        """Multiply-accumulates of one token through the blocks' projections."""
        return self.layers * sum(o * i for o, i in self.linear_shapes().values())

    def attention_macs(self, tokens: int) -> int:
        """Causal scores and values: about T^2 / 2 pairs, head_dim MACs each, twice."""
        return self.layers * self.heads * self.head_dim * tokens * (tokens + 1)


def synthetic_llama(shape: LlamaShape, kind: str = "dense", salient: float = 1 / 16,
                    seed: int = 0, device: str = "cpu"
                    ) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    gen = torch.Generator(device="cpu").manual_seed(seed)
    tensors = {"embed": torch.randn(shape.vocab, shape.hidden, generator=gen),
               "norm": 1 + 0.1 * torch.randn(shape.hidden, generator=gen),
               "inv_freq": 1.0 / (10000 ** (torch.arange(0, shape.head_dim, 2).float()
                                            / shape.head_dim))}
    layers = []
    for i in range(shape.layers):
        tensors[f"l{i}.norm1"] = 1 + 0.1 * torch.randn(shape.hidden, generator=gen)
        tensors[f"l{i}.norm2"] = 1 + 0.1 * torch.randn(shape.hidden, generator=gen)
        linears = {}
        for name, (out, inp) in shape.linear_shapes().items():
            key = f"l{i}.{name}"
            linears[key] = _linear(tensors, key, out, inp, kind, salient, gen)
        layers.append({"linears": linears, "eps": [1e-5, 1e-5],
                       "scaling": shape.head_dim ** -0.5})
    program = {"schema": 1, "kind": "llama", "vocab": shape.vocab, "hidden": shape.hidden,
               "head_dim": shape.head_dim, "heads": [[shape.heads, shape.kv_heads]] *
               shape.layers, "tied": True, "layers": layers, "norm_eps": 1e-5,
               "rope_attention_scaling": 1.0}
    return program, {k: v.to(device) for k, v in tensors.items()}


def _linear(tensors: dict[str, torch.Tensor], key: str, out: int, inp: int, kind: str,
            salient: float, gen: torch.Generator) -> dict[str, Any]:
    if kind == "dense":
        tensors[f"{key}.weight"] = torch.randn(out, inp, generator=gen) / inp ** 0.5
        return {"kind": "dense"}
    codes = torch.randint(-7, 8, (out, inp), generator=gen, dtype=torch.int8)
    order = torch.randperm(inp, generator=gen)
    count = int(inp * salient)
    salient_idx, plain_idx = order[:count].sort().values, order[count:].sort().values
    tensors[f"{key}.plain_t"] = codes[:, plain_idx].T.contiguous()
    tensors[f"{key}.salient_t"] = codes[:, salient_idx].T.contiguous()
    tensors[f"{key}.plain_idx"], tensors[f"{key}.salient_idx"] = plain_idx, salient_idx
    tensors[f"{key}.weight_scale"] = torch.rand(out, generator=gen) / (7 * inp ** 0.5)
    tensors[f"{key}.bias"] = torch.zeros(out)
    return {"kind": "spike", "a_bits": 4, "steps": 2, "decoupled": True}


def _round(value: float, multiple: int) -> int:
    return max(multiple, int(value) // multiple * multiple)

