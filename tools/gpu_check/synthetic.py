"""Synthetic gpu programs with random weights: "llama" programs at any shape, which the device
check times (Llama-2-7B-shaped blocks, dense and pruned) and tests run at small shapes, and a
small "graph" CNN with an SFC layer.

Projections are "dense" (fp32 weights, scaled by 1/sqrt(in)) or "spike" (4-bit codes in
[-7, 7], per-row scales, `salient` of the input channels spiking T_s = 2 times at a_bits = 4,
decoupled ranges): the layouts targets/gpu/program.py writes for nn.Linear and SpikeLinear.
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
    """(program, tensors), the tensors made on `device` (7B-shaped weights are generated on
    the GPU in a fraction of the CPU's time)."""
    gen = torch.Generator(device=device).manual_seed(seed)
    rand = _Random(gen, device)
    tensors = {"embed": rand.normal(shape.vocab, shape.hidden),
               "norm": 1 + 0.1 * rand.normal(shape.hidden),
               "inv_freq": 1.0 / (10000 ** (torch.arange(0, shape.head_dim, 2, device=device)
                                            .float() / shape.head_dim))}
    layers = []
    for i in range(shape.layers):
        tensors[f"l{i}.norm1"] = 1 + 0.1 * rand.normal(shape.hidden)
        tensors[f"l{i}.norm2"] = 1 + 0.1 * rand.normal(shape.hidden)
        linears = {}
        for name, (out, inp) in shape.linear_shapes().items():
            key = f"l{i}.{name}"
            linears[key] = _linear(tensors, key, out, inp, kind, salient, rand)
        layers.append({"linears": linears, "eps": [1e-5, 1e-5],
                       "scaling": shape.head_dim ** -0.5})
    program = {"schema": 1, "kind": "llama", "vocab": shape.vocab, "hidden": shape.hidden,
               "head_dim": shape.head_dim, "heads": [[shape.heads, shape.kv_heads]] *
               shape.layers, "tied": True, "layers": layers, "norm_eps": 1e-5,
               "rope_attention_scaling": 1.0}
    return program, tensors


@dataclass(frozen=True)
class _Random:
    gen: torch.Generator
    device: str

    def normal(self, *shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=self.gen, device=self.device)

    def uniform(self, *shape: int) -> torch.Tensor:
        return torch.rand(*shape, generator=self.gen, device=self.device)

    def codes(self, *shape: int) -> torch.Tensor:
        return torch.randint(-7, 8, shape, generator=self.gen, device=self.device,
                             dtype=torch.int8)

    def permutation(self, n: int) -> torch.Tensor:
        return torch.randperm(n, generator=self.gen, device=self.device)


def _linear(tensors: dict[str, torch.Tensor], key: str, out: int, inp: int, kind: str,
            salient: float, rand: _Random) -> dict[str, Any]:
    if kind == "dense":
        tensors[f"{key}.weight"] = rand.normal(out, inp) / inp ** 0.5
        return {"kind": "dense"}
    codes = rand.codes(out, inp)
    order = rand.permutation(inp)
    count = int(inp * salient)
    salient_idx, plain_idx = order[:count].sort().values, order[count:].sort().values
    tensors[f"{key}.plain_t"] = codes[:, plain_idx].T.contiguous()
    tensors[f"{key}.salient_t"] = codes[:, salient_idx].T.contiguous()
    tensors[f"{key}.plain_idx"], tensors[f"{key}.salient_idx"] = plain_idx, salient_idx
    tensors[f"{key}.weight_scale"] = rand.uniform(out) / (7 * inp ** 0.5)
    tensors[f"{key}.bias"] = torch.zeros(out, device=rand.device)
    return {"kind": "spike", "a_bits": 4, "steps": 2, "decoupled": True}


def _round(value: float, multiple: int) -> int:
    return max(multiple, int(value) // multiple * multiple)



def synthetic_cnn(channels: int = 32, classes: int = 10, seed: int = 0
                  ) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """conv 3x3 -> ReLU -> SFC-6(6x6) 3x3 -> BatchNorm -> ReLU -> global average pool ->
    flatten -> linear, for (N, 16, H, W) inputs; U as the sfc pass computes it from the
    convolution weight it keeps as "sfc.weight"."""
    from ember.sfc_algorithms import algorithm, transformed_weights

    gen = torch.Generator().manual_seed(seed)
    c = channels
    sfc_weight = torch.randn(c, c, 3, 3, generator=gen) / (3 * c ** 0.5)
    tensors = {
        "conv.weight": torch.randn(c, 16, 3, 3, generator=gen) / 12,
        "conv.bias": 0.1 * torch.randn(c, generator=gen),
        "sfc.u": transformed_weights(sfc_weight, algorithm("sfc6_6x6")).float(),
        "sfc.weight": sfc_weight,  # not run: what U stands for, for checks
        "sfc.bias": 0.1 * torch.randn(c, generator=gen),
        "bn.mean": 0.1 * torch.randn(c, generator=gen),
        "bn.var": 0.5 + torch.rand(c, generator=gen),
        "bn.weight": 1 + 0.1 * torch.randn(c, generator=gen),
        "bn.bias": 0.1 * torch.randn(c, generator=gen),
        "fc.weight": torch.randn(classes, c, generator=gen) / c ** 0.5,
        "fc.bias": torch.zeros(classes),
    }
    node = lambda name, op, inputs, **attrs: {"name": name, "op": op,  # noqa: E731
                                              "inputs": inputs, "attrs": attrs}
    nodes = [node("x", "input", []),
             node("conv", "conv", ["x"], stride=[1, 1], padding=[1, 1], groups=1),
             node("relu1", "relu", ["conv"]),
             node("sfc", "sfc", ["relu1"], algorithm="sfc6_6x6", symbolic=True, padding=1),
             node("bn", "batchnorm", ["sfc"], eps=1e-5), node("relu2", "relu", ["bn"]),
             node("pool", "avgpool", ["relu2"], **{"global": True}),
             node("flat", "flatten", ["pool"]), node("fc", "linear", ["flat"])]
    return {"schema": 1, "kind": "graph", "nodes": nodes, "output": "fc"}, tensors
