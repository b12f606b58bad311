"""Llama-style causal LMs on the fpga target: the decoder's structure read from the
transformers model (embedding, per block RMSNorm -> q/k/v -> RoPE -> causal GQA attention ->
o -> residual -> RMSNorm -> gate/up -> SiLU x up -> down -> residual, final norm, LM head),
calibrated on a float run of that same structure and lowered to the integer layers of
targets/fpga/integer/decoder.py. Linear layers the spike pass made spiking keep its integer codes
(SpikeLayer); the others get int8 weights. The sequence length is the example's."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ember.passes.spike.linear import SpikeLinear
from ember.targets.fpga.fixed import check_headroom, fixed_point
from ember.targets.fpga.integer.decoder import (
    EXP_STEP,
    NORM_BITS,
    PROB_BITS,
    ROPE_BITS,
    AttentionLayer,
    EmbeddingLayer,
    GatedSiluLayer,
    RMSNormLayer,
    RopeLayer,
    SpikeLayer,
)
from ember.targets.fpga.integer.layers import INT8, Layer, LinearLayer, Requant, TensorSpec
from ember.targets.fpga.lower.graph import IntNetwork, _add, _bias, _weights
from ember.targets.module_reader import check_decoder

GAIN_LEVELS = 32767  # RMSNorm gains: int16


def float_trace(lm: Any, ids: torch.Tensor) -> dict[str, torch.Tensor]:
    """Every tensor the integer design holds, in float, for token ids (N, T)."""
    body, config = lm.model, lm.config
    heads, kv = config.num_attention_heads, config.num_key_value_heads
    x = body.embed_tokens(ids)
    out = {"embed": x}
    cos, sin = body.rotary_emb(x, torch.arange(ids.shape[1])[None])
    for i, layer in enumerate(body.layers):
        p, attn, mlp = f"l{i}.", layer.self_attn, layer.mlp
        h = out[p + "norm1"] = layer.input_layernorm(x)
        q = out[p + "q"] = attn.q_proj(h)
        k = out[p + "k"] = attn.k_proj(h)
        v = out[p + "v"] = attn.v_proj(h)
        q = out[p + "q_rope"] = _rope(q, cos, sin, heads)
        k = out[p + "k_rope"] = _rope(k, cos, sin, kv)
        a = out[p + "attn"] = _attention(q, k, v, heads, kv, attn.scaling)
        o = out[p + "o"] = attn.o_proj(a)
        x = out[p + "resid1"] = x + o
        h = out[p + "norm2"] = layer.post_attention_layernorm(x)
        gate = out[p + "gate"] = mlp.gate_proj(h)
        up = out[p + "up"] = mlp.up_proj(h)
        out[p + "act"] = F.silu(gate)
        mixed = out[p + "h"] = F.silu(gate) * up
        down = out[p + "down"] = mlp.down_proj(mixed)
        x = out[p + "resid2"] = x + down
    out["norm"] = body.norm(x)
    out["logits"] = lm.lm_head(out["norm"])
    return out


def _rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, heads: int) -> torch.Tensor:
    n, t, width = x.shape
    x = x.view(n, t, heads, width // heads)
    half = x.shape[-1] // 2
    rot = torch.cat([-x[..., half:], x[..., :half]], dim=-1)
    return (x * cos[:, :, None] + rot * sin[:, :, None]).reshape(n, t, width)


def _attention(q, k, v, heads: int, kv: int, scaling: float) -> torch.Tensor:
    n, t, width = q.shape
    hd = width // heads
    q = q.view(n, t, heads, hd).transpose(1, 2)
    k = k.view(n, t, kv, hd).transpose(1, 2).repeat_interleave(heads // kv, dim=1)
    v = v.view(n, t, kv, hd).transpose(1, 2).repeat_interleave(heads // kv, dim=1)
    scores = (q @ k.transpose(-1, -2)) * scaling
    scores = scores.masked_fill(~torch.ones(t, t, dtype=torch.bool).tril(), float("-inf"))
    return (scores.softmax(-1) @ v).transpose(1, 2).reshape(n, t, width)


class _Builder:
    """Appends integer layers in order, running each on the integer calibration data."""

    def __init__(self, floats: dict[str, torch.Tensor], ids: np.ndarray) -> None:
        self.floats = floats
        t = ids.shape[1]
        self.tensors = {"input_ids": TensorSpec("input_ids", (t,), "int32", np.ones(1))}
        self.ints = {"input_ids": ids.astype(np.int64)}
        self.layers: list[Layer] = []

    def scale(self, name: str) -> float:
        top = float(self.floats[name].abs().max())
        return top / INT8[1] if top > 0 else 1.0

    def s(self, name: str) -> float:
        return float(self.tensors[name].scale[0])

    def add(self, layer: Layer, spec: TensorSpec) -> str:
        self.layers.append(layer)
        self.tensors[spec.name] = spec
        self.ints[spec.name] = layer.run(*(self.ints[i] for i in layer.inputs))
        return spec.name

    def int8(self, name: str, shape: tuple[int, ...]) -> TensorSpec:
        return TensorSpec(name, shape, "int8", np.array([self.scale(name)]))


def lower_causal_lm(lm: Any, ids: np.ndarray) -> IntNetwork:
    """The integer network of `lm` for token ids (N, T), calibrated on those ids."""
    check_decoder(lm)
    with torch.no_grad():
        floats = float_trace(lm, torch.from_numpy(ids.astype(np.int64)))
    b = _Builder(floats, ids)
    body, config = lm.model, lm.config
    t, d = ids.shape[1], config.hidden_size
    x = _embedding(b, body.embed_tokens.weight, (t, d))
    cos, sin = body.rotary_emb(floats["embed"], torch.arange(t)[None])
    tables = tuple(np.rint(c[0].double().numpy() * 2**ROPE_BITS).astype(np.int64)
                   for c in (cos, sin))
    for i, layer in enumerate(body.layers):
        x = _block(b, f"l{i}.", layer, x, tables, config)
    x = _norm(b, "norm", body.norm, x)
    out = _linear(b, "logits", lm.lm_head, x, raw=True)
    return IntNetwork(b.tensors["input_ids"], b.layers, b.tensors, out)


def _block(b: _Builder, p: str, layer: Any, x: str, tables: tuple[np.ndarray, ...],
           config: Any) -> str:
    attn, mlp = layer.self_attn, layer.mlp
    heads, kv = config.num_attention_heads, config.num_key_value_heads
    h = _norm(b, p + "norm1", layer.input_layernorm, x)
    q = _rope_layer(b, p + "q_rope", _linear(b, p + "q", attn.q_proj, h), heads, tables)
    k = _rope_layer(b, p + "k_rope", _linear(b, p + "k", attn.k_proj, h), kv, tables)
    v = _linear(b, p + "v", attn.v_proj, h)
    a = _attention_layer(b, p + "attn", q, k, v, heads, kv, attn.scaling)
    x = _residual(b, p + "resid1", x, _linear(b, p + "o", attn.o_proj, a))
    h = _norm(b, p + "norm2", layer.post_attention_layernorm, x)
    mixed = _gated_silu(b, p + "h", _linear(b, p + "gate", mlp.gate_proj, h),
                        _linear(b, p + "up", mlp.up_proj, h), p + "act")
    return _residual(b, p + "resid2", x, _linear(b, p + "down", mlp.down_proj, mixed))


def _embedding(b: _Builder, weight: torch.Tensor, shape: tuple[int, int]) -> str:
    table, _ = _weights(weight.detach().reshape(1, -1))  # one scale for the whole table
    scale = float(weight.detach().abs().max()) / INT8[1] or 1.0
    layer = EmbeddingLayer("embed", "Embedding", ["input_ids"], "embed", shape,
                           table=table.reshape(weight.shape))
    return b.add(layer, TensorSpec("embed", shape, "int8", np.array([scale])))


def _norm(b: _Builder, name: str, norm: Any, x: str) -> str:
    gain = norm.weight.detach().double().numpy()
    s_g = float(np.abs(gain).max()) / GAIN_LEVELS or 1.0
    s_x, d = b.s(x), gain.size
    spec = b.int8(name, b.tensors[x].shape)
    mult, shift = fixed_point(s_g * math.sqrt(d) / (2**NORM_BITS * float(spec.scale[0])))
    check_headroom(INT8[1] * GAIN_LEVELS << NORM_BITS, mult, f"layer {name}")
    eps = getattr(norm, "variance_epsilon", getattr(norm, "eps", 1e-6))
    layer = RMSNormLayer(name, "RMSNorm", [x], name, spec.shape,
                         gain=np.rint(gain / s_g).astype(np.int16),
                         eps=round(d * eps / s_x**2), mult=int(mult[0]), shift=int(shift[0]))
    return b.add(layer, spec)


def _linear(b: _Builder, name: str, module: Any, x: str, raw: bool = False) -> str:
    if isinstance(module, SpikeLinear):
        return _spike(b, name, module, x)
    s_x = b.s(x)
    w, s_w = _weights(module.weight)
    bias = _bias(module.bias, s_x * s_w)
    shape = (b.tensors[x].shape[0], w.shape[0])
    if raw:
        spec = TensorSpec(name, shape, "int32", s_x * s_w, -1)
        requant = Requant(None, None)
    else:
        spec = b.int8(name, shape)
        requant = Requant(*fixed_point(s_x * s_w / float(spec.scale[0])))
    layer = LinearLayer(name, "Linear", [x], name, shape, weight=w, bias=bias, requant=requant)
    return b.add(layer, spec)


def _spike(b: _Builder, name: str, module: SpikeLinear, x: str) -> str:
    """The spike pass's codes and salient channels, with power-of-two spike steps
    calibrated on the integer data reaching the layer."""
    codes = module.codes().numpy()
    salient = module.salient_idx.numpy().astype(np.int64)
    bits = module.a_bits if 2 <= module.a_bits <= 8 else 8  # float activations: 8-bit spikes
    steps = module.steps if len(salient) else 1
    x_int = np.abs(b.ints[x]).reshape(-1, codes.shape[1])
    plain = np.setdiff1d(np.arange(codes.shape[1]), salient)
    amplitude = 2 ** (bits - 1) - 1
    k_p = _spike_shift(x_int[:, plain].max(initial=1), amplitude)
    k_s = _spike_shift(x_int[:, salient].max(initial=1), steps * amplitude) if len(salient) \
        else k_p
    k_min = min(k_p, k_s)
    c_k = b.s(x) * 2.0**k_min * module.weight_scale.double().numpy()
    spec = b.int8(name, (b.tensors[x].shape[0], codes.shape[0]))
    mult, shift = fixed_point(c_k / float(spec.scale[0]))
    layer = SpikeLayer(name, "SpikeLinear", [x], name, spec.shape, weight=codes.astype(np.int8),
                       ternary=module.weight_grid == "ternary", spike_bits=bits, steps=steps,
                       salient=salient, plain_shift=k_p, salient_shift=k_s,
                       bias=np.rint(module.bias.double().numpy() / c_k).astype(np.int64),
                       mult=mult, shift=shift)
    return b.add(layer, spec)


def _spike_shift(top: int, limit: int) -> int:
    """k >= 0: the smallest power-of-two step that brings |x_q| <= top within +-limit."""
    return max(0, math.ceil(math.log2(max(int(top), 1) / limit)))


def _rope_layer(b: _Builder, name: str, x: str, heads: int,
                tables: tuple[np.ndarray, ...]) -> str:
    spec = b.int8(name, b.tensors[x].shape)
    mult, shift = fixed_point(b.s(x) / (2**ROPE_BITS * float(spec.scale[0])))
    layer = RopeLayer(name, "RoPE", [x], name, spec.shape, heads=heads, cos=tables[0],
                      sin=tables[1], mult=int(mult[0]), shift=int(shift[0]))
    return b.add(layer, spec)


def _attention_layer(b: _Builder, name: str, q: str, k: str, v: str, heads: int, kv: int,
                     scaling: float) -> str:
    spec = b.int8(name, b.tensors[q].shape)
    score_mult, score_shift = fixed_point(b.s(q) * b.s(k) * scaling / EXP_STEP)
    mult, shift = fixed_point(b.s(v) / (2**PROB_BITS * float(spec.scale[0])))
    layer = AttentionLayer(name, "Attention", [q, k, v], name, spec.shape, heads=heads,
                           kv_heads=kv, score_mult=int(score_mult[0]),
                           score_shift=int(score_shift[0]), mult=int(mult[0]),
                           shift=int(shift[0]))
    return b.add(layer, spec)


def _gated_silu(b: _Builder, name: str, gate: str, up: str, act: str) -> str:
    s_g, s_a = b.s(gate), b.scale(act)
    codes = torch.arange(-128, 128, dtype=torch.float64)
    table = np.clip(np.rint(F.silu(codes * s_g).numpy() / s_a), *INT8).astype(np.int8)
    spec = b.int8(name, b.tensors[gate].shape)
    mult, shift = fixed_point(s_a * b.s(up) / float(spec.scale[0]))
    layer = GatedSiluLayer(name, "SiLU*up", [gate, up], name, spec.shape, table=table,
                           mult=int(mult[0]), shift=int(shift[0]))
    return b.add(layer, spec)


def _residual(b: _Builder, name: str, x: str, y: str) -> str:
    base = dict(name=name, inputs=[x, y], output=name, out_shape=b.tensors[x].shape)
    layer, spec = _add(base, b.tensors[x], b.tensors[y], b.scale(name))
    return b.add(layer, spec)
