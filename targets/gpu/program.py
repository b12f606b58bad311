"""The `gpu` target's program: the torch model after passes as a JSON description plus named
tensors (safetensors), which runtime/gpu/program/load.py rebuilds on CUDA without unpickling
anything.

Two kinds:
- "graph": a one-input CNN traced with torch.fx (targets/module_reader.py, BatchNorm after a
  conv or linear folded first): input, conv, sfc, linear, batchnorm, relu, relu6, maxpool,
  avgpool, add, flatten nodes. SFC layers keep their transformed weights U (P, C, K), which
  the runtime turns into the fused kernel's plan.
- "llama": a Llama-style causal LM read from its decoder structure (targets/module_reader.py
  finds it):
  embedding, per block RMSNorm, q/k/v with RoPE, causal GQA attention, o, RMSNorm,
  SiLU(gate) x up, down; final norm and LM head. Each projection is "dense" (a float weight),
  "spike" (SpikeLinear: int8 codes split into plain and salient input channels, per-token
  activation codes) or "weight_only" (SpikeLinear with float activations).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from ember.passes.spike.linear import SpikeLinear
from ember.targets.module_reader import (
    UnsupportedModule,
    causal_lm,
    check_decoder,
    read_graph,
)

SCHEMA = 1
PROJECTIONS = (("self_attn", ("q_proj", "k_proj", "v_proj", "o_proj")),
               ("mlp", ("gate_proj", "up_proj", "down_proj")))


def build_program(module: Any, example: np.ndarray) -> tuple[dict[str, Any],
                                                              dict[str, torch.Tensor]]:
    """(program, tensors) for the model after passes and one example input."""
    lm = causal_lm(module)
    if lm is not None:
        return _llama_program(lm)
    return _graph_program(module, example)


def _graph_program(module: Any, example: np.ndarray) -> tuple[dict[str, Any],
                                                               dict[str, torch.Tensor]]:
    nodes, output, folded = read_graph(module, "input", example, target="gpu")
    tensors: dict[str, torch.Tensor] = {}
    described = [_graph_node(node, tensors) for node in nodes]
    program = {"schema": SCHEMA, "kind": "graph", "nodes": described, "output": output,
               "batchnorm_folded": folded}
    return program, tensors


def _graph_node(node: Any, tensors: dict[str, torch.Tensor]) -> dict[str, Any]:
    m, attrs = node.module, dict(node.info)
    entry = {"name": node.name, "op": node.kind, "inputs": node.inputs, "attrs": attrs}
    if node.kind == "conv":
        attrs.update(stride=list(m.stride), padding=list(m.padding), groups=m.groups)
        _keep(tensors, node.name, weight=m.weight, bias=m.bias)
    elif node.kind == "sfc":
        if m.padding[0] != m.padding[1]:
            raise UnsupportedModule(f"layer {node.name}: SFC with unequal padding {m.padding}")
        attrs.update(algorithm=m.algorithm, symbolic=bool(m.symbolic), padding=m.padding[0])
        _keep(tensors, node.name, u=m.U, bias=m.bias)
    elif node.kind == "linear":
        _keep(tensors, node.name, weight=m.weight, bias=m.bias)
    elif node.kind == "batchnorm":
        attrs.update(eps=float(m.eps))
        _keep(tensors, node.name, mean=m.running_mean, var=m.running_var, weight=m.weight,
              bias=m.bias)
    elif node.kind in ("maxpool", "avgpool") and not attrs.get("global"):
        attrs.update(kernel=list(attrs["kernel"]), stride=list(attrs["stride"]))
    return entry


def _llama_program(lm: Any) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    check_decoder(lm, target="gpu")
    body, config = lm.model, lm.config
    first = body.layers[0].self_attn
    head_dim = int(getattr(first, "head_dim", config.hidden_size // config.num_attention_heads))
    tensors = {"embed": body.embed_tokens.weight, "norm": body.norm.weight}
    tied = lm.lm_head.weight.data_ptr() == body.embed_tokens.weight.data_ptr()
    if not tied:
        tensors["lm_head"] = lm.lm_head.weight
    rotary = body.rotary_emb
    tensors["inv_freq"] = rotary.inv_freq
    layers = []
    for i, layer in enumerate(body.layers):
        tensors[f"l{i}.norm1"] = layer.input_layernorm.weight
        tensors[f"l{i}.norm2"] = layer.post_attention_layernorm.weight
        linears = {}
        for owner, names in PROJECTIONS:
            for name in names:
                key = f"l{i}.{name.removesuffix('_proj')}"
                linears[key] = _linear(key, getattr(getattr(layer, owner), name), tensors)
        layers.append({"linears": linears, "eps": [_eps(layer.input_layernorm),
                                                   _eps(layer.post_attention_layernorm)],
                       "scaling": float(layer.self_attn.scaling)})
    program = {
        "schema": SCHEMA, "kind": "llama", "vocab": int(body.embed_tokens.weight.shape[0]),
        "hidden": int(body.embed_tokens.weight.shape[1]), "head_dim": head_dim,
        "heads": layers_heads(body, head_dim), "tied": tied, "layers": layers,
        "norm_eps": _eps(body.norm), "rope_attention_scaling": float(rotary.attention_scaling),
    }
    return program, tensors


def layers_heads(body: Any, head_dim: int) -> list[list[int]]:
    """[query heads, KV heads] per layer, read from the projections' widths (pruning may have
    narrowed them)."""
    heads = []
    for layer in body.layers:
        attn = layer.self_attn
        q, k = int(attn.q_proj.out_features), int(attn.k_proj.out_features)
        if q % head_dim or k % head_dim or (q // head_dim) % (k // head_dim):
            raise UnsupportedModule(f"attention widths q={q}, k={k} are not whole GQA groups of "
                                    f"head_dim {head_dim}")
        heads.append([q // head_dim, k // head_dim])
    return heads


def _linear(key: str, m: nn.Module, tensors: dict[str, torch.Tensor]) -> dict[str, Any]:
    if isinstance(m, SpikeLinear):
        if not m.a_bits:
            _keep(tensors, key, codes_t=m.plain_t, weight_scale=m.weight_scale, bias=m.bias)
            return {"kind": "weight_only"}
        _keep(tensors, key, plain_t=m.plain_t, salient_t=m.salient_t, plain_idx=m.plain_idx,
              salient_idx=m.salient_idx, weight_scale=m.weight_scale, bias=m.bias)
        return {"kind": "spike", "a_bits": m.a_bits, "steps": m.steps,
                "decoupled": bool(m.decoupled)}
    if isinstance(m, nn.Linear):
        _keep(tensors, key, weight=m.weight, bias=m.bias)
        return {"kind": "dense"}
    raise UnsupportedModule(f"projection {key} is a {type(m).__name__}; the gpu target runs "
                            f"nn.Linear and SpikeLinear")


def _eps(norm: nn.Module) -> float:
    eps = getattr(norm, "variance_epsilon", getattr(norm, "eps", None))
    if eps is None:
        raise UnsupportedModule(f"norm {type(norm).__name__} has no epsilon; RMSNorm expected")
    return float(eps)


def _keep(tensors: dict[str, torch.Tensor], prefix: str, **named: torch.Tensor | None) -> None:
    for name, tensor in named.items():
        if tensor is not None:
            tensors[f"{prefix}.{name}"] = tensor.detach()
