"""Integer layers of a Llama-style decoder on the fpga target, and their numpy golden model.

Per sample the design holds T tokens; every tensor is int8 with one scale per tensor unless
stated. With x_q int8 (scale s_x):

    embedding   y[t] = E_q[id[t]]      (a table row; the engine refuses ids out of range)
    RMSNorm     R = sum_c x_q^2 + round(d eps / s_x^2)
                inv = isqrt(2^(2F) // R) = floor(2^F / sqrt R)
                y = requant(x_q g_q inv, s_g sqrt(d) / (2^F s_y))       g_q int16 (scale s_g)
    RoPE        y[i] = requant(x_q[i] C[t,i] + rot(x_q)[i] S[t,i], s_x / (2^14 s_y))
                C, S = round(2^14 cos, 2^14 sin), rot(x) = (-x[h:], x[:h])
    attention   per head (KV head h // (H / KV)): a[t,u] = q[t].k[u] for u <= t (int32)
                j = clamp(round((max_u a - a[t,u]) s_q s_k / (sqrt(hd) DELTA)), 0, 255)
                e = EXP[j] = round(2^15 exp(-j DELTA)),  Z = sum_u e
                p = floor((e 2^16 + Z) / (2 Z))  (round half up of 2^15 e / Z)
                y = requant(sum_u p v[u], s_v / (2^15 s_y))
    SiLU x up   y = requant(LUT[g_q] u_q, s_a s_u / s_y),  LUT = round(silu(s_g code) / s_a)
    spiking     codes q = clamp(round(x_q / 2^k), -L, L) per channel group: plain channels one
    linear      a-bit spike (L = 2^(a-1) - 1), salient channels T_s spikes (L = T_s (2^(a-1)-1))
                acc = (sum_plain q W) << (k_p - k_min) + (sum_salient q W) << (k_s - k_min)
                y = requant(acc + bias, s_x 2^k_min w_s[k] / s_y)
                W: the spike pass's integer or ternary codes; the C++ adds shifted weights
                spike by spike (Sum_t s_t W = q W), so its products need no multiplier.

Divisions and square roots are on integers (floor), identical in numpy and C++.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from ember.targets.fpga.fixed import requantize
from ember.targets.fpga.integer.layers import INT8, Layer, exact_matmul

NORM_BITS = 20  # F: inv = floor(2^F / sqrt(R))
ROPE_BITS = 14
PROB_BITS = 15
EXP_STEP = 1.0 / 16  # DELTA: the exp table's step (256 entries reach exp(-16))
EXP_TABLE = np.array([round(2**PROB_BITS * math.exp(-j * EXP_STEP)) for j in range(256)],
                     np.int64)


@dataclass
class EmbeddingLayer(Layer):
    table: np.ndarray = field(default=None)  # int8 (V, d)

    def run(self, ids: np.ndarray) -> np.ndarray:
        ids = np.asarray(ids, np.int64)
        inside = (ids >= 0) & (ids < len(self.table))
        rows = self.table[np.where(inside, ids, 0)].astype(np.int64)
        return rows * inside[..., None]


@dataclass
class RMSNormLayer(Layer):
    gain: np.ndarray = field(default=None)  # int16 (d,)
    eps: int = 0  # round(d eps / s_x^2)
    mult: int = 0
    shift: int = 1

    def inverse_root(self, x: np.ndarray) -> np.ndarray:
        r = (x.astype(np.int64) ** 2).sum(axis=-1) + self.eps
        r = np.maximum(r, 1)
        out = np.array([math.isqrt((1 << (2 * NORM_BITS)) // int(v)) for v in r.reshape(-1)],
                       np.int64)
        return out.reshape(r.shape)

    def run(self, x: np.ndarray) -> np.ndarray:
        inv = self.inverse_root(x)[..., None]
        return requantize(x.astype(np.int64) * self.gain.astype(np.int64) * inv,
                          np.array(self.mult), np.array(self.shift), *INT8)


@dataclass
class RopeLayer(Layer):
    heads: int = 1
    cos: np.ndarray = field(default=None)  # int32 (T, hd): round(2^14 cos)
    sin: np.ndarray = field(default=None)
    mult: int = 0
    shift: int = 1

    def run(self, x: np.ndarray) -> np.ndarray:
        n, t, width = x.shape
        hd = width // self.heads
        x = x.astype(np.int64).reshape(n, t, self.heads, hd)
        half = hd // 2
        rot = np.concatenate([-x[..., half:], x[..., :half]], axis=-1)
        acc = x * self.cos[None, :, None, :] + rot * self.sin[None, :, None, :]
        y = requantize(acc, np.array(self.mult), np.array(self.shift), *INT8)
        return y.reshape(n, t, width)


@dataclass
class AttentionLayer(Layer):
    """inputs: q (after RoPE), k (after RoPE), v; causal, grouped-query."""

    heads: int = 1
    kv_heads: int = 1
    score_mult: int = 0  # s_q s_k / (sqrt(hd) DELTA) in fixed point
    score_shift: int = 1
    mult: int = 0
    shift: int = 1

    def probabilities(self, q: np.ndarray, k: np.ndarray) -> np.ndarray:
        """p (N, H, T, T) in units of 2^-15, zero above the diagonal."""
        n, t, width = q.shape
        hd = width // self.heads
        group = self.heads // self.kv_heads
        q = q.astype(np.int64).reshape(n, t, self.heads, hd).transpose(0, 2, 1, 3)
        k = k.astype(np.int64).reshape(n, t, self.kv_heads, hd).transpose(0, 2, 1, 3)
        k = np.repeat(k, group, axis=1)
        scores = exact_matmul(q, k.transpose(0, 1, 3, 2))  # (N, H, T, T)
        causal = np.tril(np.ones((t, t), bool))
        top = np.where(causal, scores, np.iinfo(np.int64).min).max(axis=-1, keepdims=True)
        gap = (top - scores) * self.score_mult + (1 << (self.score_shift - 1))
        index = np.clip(gap >> self.score_shift, 0, len(EXP_TABLE) - 1)
        e = np.where(causal, EXP_TABLE[index], 0)
        z = e.sum(axis=-1, keepdims=True)
        return (e * (1 << (PROB_BITS + 1)) + z) // (2 * z)

    def run(self, q: np.ndarray, k: np.ndarray, v: np.ndarray) -> np.ndarray:
        n, t, width = q.shape
        hd = width // self.heads
        p = self.probabilities(q, k)
        v = v.astype(np.int64).reshape(n, t, self.kv_heads, hd).transpose(0, 2, 1, 3)
        v = np.repeat(v, self.heads // self.kv_heads, axis=1)
        acc = exact_matmul(p, v).transpose(0, 2, 1, 3).reshape(n, t, width)  # (N, T, H*hd)
        return requantize(acc, np.array(self.mult), np.array(self.shift), *INT8)


@dataclass
class GatedSiluLayer(Layer):
    """inputs: gate, up."""

    table: np.ndarray = field(default=None)  # int8 (256,): SiLU of each int8 code (+128)
    mult: int = 0
    shift: int = 1

    def run(self, gate: np.ndarray, up: np.ndarray) -> np.ndarray:
        a = self.table[gate.astype(np.int64) + 128].astype(np.int64)
        return requantize(a * up.astype(np.int64), np.array(self.mult), np.array(self.shift),
                          *INT8)


@dataclass
class SpikeLayer(Layer):
    weight: np.ndarray = field(default=None)  # int8 codes (K, C): w_bits or ternary
    ternary: bool = False
    spike_bits: int = 4  # a: one spike carries a signed a-bit amplitude
    steps: int = 1  # T_s: spikes of a salient channel
    salient: np.ndarray = field(default=None)  # int64 channel indices
    plain_shift: int = 0  # k_p
    salient_shift: int = 0  # k_s
    bias: np.ndarray = field(default=None)  # int64 (K,)
    mult: np.ndarray = field(default=None)
    shift: np.ndarray = field(default=None)
    lo: int = INT8[0]

    @property
    def amplitude(self) -> int:
        return 2 ** (self.spike_bits - 1) - 1

    @property
    def plain(self) -> np.ndarray:
        return np.setdiff1d(np.arange(self.weight.shape[1]), self.salient)

    def codes(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(plain, salient) spike codes of int8 inputs x (..., C)."""
        x = x.astype(np.int64)

        def code(values: np.ndarray, k: int, limit: int) -> np.ndarray:
            half = (1 << (k - 1)) if k > 0 else 0
            return np.clip((values + half) >> k, -limit, limit)

        return (code(x[..., self.plain], self.plain_shift, self.amplitude),
                code(x[..., self.salient], self.salient_shift, self.steps * self.amplitude))

    def run(self, x: np.ndarray) -> np.ndarray:
        q_p, q_s = self.codes(x)
        k_min = min(self.plain_shift, self.salient_shift) if len(self.salient) else \
            self.plain_shift
        acc = exact_matmul(q_p, self.weight[:, self.plain].T) << (self.plain_shift - k_min)
        if len(self.salient):
            acc = acc + (exact_matmul(q_s, self.weight[:, self.salient].T)
                         << (self.salient_shift - k_min))
        return requantize(acc + self.bias, self.mult, self.shift, self.lo, INT8[1], axis=-1)
