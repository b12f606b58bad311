"""An SFC-lowered 3x3 convolution on integers: additions-only transforms around int8 products.

Per L x L input tile T (L = m + 2) of int8 data x_q (scale s_x) and output channel k:

    Z  = S T S^T                     S ternary: additions only            (R x R)
    V  = slot_map . vec(Z)           entries in {-1, 0, 1}: additions     (P slots)
    Vq = clamp(round(V / 2^ev[p]))   one power-of-two scale per slot      int8
    M  = sum_c Vq[p, c] Uq[p, c, k]  the P int8 x int8 products per tile  int32
    Ms = M << (ev[p] + eu[p, k] - emin[k])                                exact, int64
    Y  = Ln (Un . Ms) Ln^T           Un = du unslot_map, Ln = dl Lam: small integers
    y  = requant(Y + bias_q[k], c_k / s_y),  c_k = s_x s_k 2^emin[k] / (du dl^2)

with the transformed weights U = slots(Sg W Sg^T) quantized as Uq = round(U / (s_k 2^eu[p, k])):
one real scale s_k per output channel (which folds into the requantization like a direct
convolution's) and power-of-two refinements per slot, so that aligning the slots before the
output transform takes shifts, not multipliers. ev comes from calibration data: the largest
|V| each slot reaches. Every constant multiplication (Un, Ln up to 6 for SFC-6) is emitted as
shifts and additions; the only multipliers are the P products per tile and channel pair, and
the one requantization multiply per output.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from fractions import Fraction

import numpy as np

from ember.sfc_algorithms import Algorithm
from ember.targets.fpga.fixed import check_headroom, fixed_point, requantize
from ember.targets.fpga.integer.layers import INT8, Layer, _chunks, _int32, exact_matmul

MIN_WEIGHT_EXPONENT = -8  # bounds the alignment shifts (and the int64 stage's width)


@dataclass
class SFCLayer(Layer):
    algorithm: str = ""
    m: int = 6
    s: np.ndarray = field(default=None)  # (R, L) ternary
    slot_map: np.ndarray = field(default=None)  # (P, R*R) in {-1, 0, 1}
    unslot: np.ndarray = field(default=None)  # (R*R, P) integers: du * unslot_map
    lam: np.ndarray = field(default=None)  # (m, R) integers: dl * Lam
    slot_shift: np.ndarray = field(default=None)  # ev (P,) >= 0
    weight: np.ndarray = field(default=None)  # Uq int8 (P, C, K)
    align: np.ndarray = field(default=None)  # (P, K) left shifts >= 0
    bias: np.ndarray = field(default=None)  # int64 (K,)
    mult: np.ndarray = field(default=None)
    shift: np.ndarray = field(default=None)
    lo: int = INT8[0]
    padding: tuple[int, int] = (1, 1)

    @property
    def tiles(self) -> tuple[int, int]:
        _, ho, wo = self.out_shape
        return math.ceil(ho / self.m), math.ceil(wo / self.m)

    @property
    def slots(self) -> int:
        return self.slot_map.shape[0]

    def transform_input(self, x: np.ndarray) -> np.ndarray:
        """V (N, C, th, tw, P) of int8 data, exactly."""
        th, tw = self.tiles
        m, (ph, pw) = self.m, self.padding
        length = m + 2
        extra_h = th * m + 2 - x.shape[2] - 2 * ph
        extra_w = tw * m + 2 - x.shape[3] - 2 * pw
        xp = np.pad(x.astype(np.int64), ((0, 0), (0, 0), (ph, ph + extra_h), (pw, pw + extra_w)))
        tiles = np.lib.stride_tricks.sliding_window_view(xp, (length, length), axis=(2, 3))
        tiles = tiles[:, :, ::m, ::m]  # (N, C, th, tw, L, L)
        z = self.s @ tiles @ self.s.T  # (N, C, th, tw, R, R)
        return z.reshape(*z.shape[:4], -1) @ self.slot_map.T

    def quantize_slots(self, v: np.ndarray) -> np.ndarray:
        e = self.slot_shift
        half = np.where(e > 0, np.left_shift(1, np.maximum(e - 1, 0)), 0)
        return np.clip((v + half) >> e, *INT8)

    def run(self, x: np.ndarray) -> np.ndarray:
        return np.concatenate([self._run(c) for c in _chunks(x)])

    def _run(self, x: np.ndarray) -> np.ndarray:
        vq = self.quantize_slots(self.transform_input(x))  # (N, C, th, tw, P)
        n, c, th, tw, p = vq.shape
        rows = vq.transpose(4, 0, 2, 3, 1).reshape(p, n * th * tw, c)
        products = _int32(exact_matmul(rows, self.weight), self.name)  # (P, tiles, K)
        aligned = products << self.align[:, None, :]
        z = self.unslot @ aligned.reshape(p, -1)  # (R*R, tiles*K)
        r = self.lam.shape[1]
        z = z.reshape(r, r, n, th, tw, -1)
        y = np.einsum("ar,rsntwk,bs->nktawb", self.lam, z, self.lam)
        n, k, th, m, tw, _ = y.shape
        _, ho, wo = self.out_shape
        y = y.reshape(n, k, th * m, tw * m)[:, :, :ho, :wo] + self.bias[None, :, None, None]
        return requantize(y, self.mult, self.shift, self.lo, INT8[1], axis=1)

    def transform_bound(self) -> int:
        """max |V| over int8 tiles (the transform domain's width)."""
        rows = self.slot_map @ np.kron(self.s, self.s)
        return int(np.abs(rows).sum(axis=1).max()) * INT8[1]

    def wide_bound(self) -> int:
        """A bound on |Y + bias| (the int64 stage), from the int32 product bound."""
        c = self.weight.shape[1]
        products = c * 127 * 127 << int(self.align.max(initial=0))
        un = int(np.abs(self.unslot).sum(axis=1).max())
        ln = int(np.abs(self.lam).sum(axis=1).max())
        return products * un * ln * ln + int(np.abs(self.bias).max(initial=0))


def integer_matrices(alg: Algorithm) -> tuple[np.ndarray, ...]:
    """(S, slot_map, du * unslot_map, du, dl * Lam, dl) as int64, refusing non-integer
    transforms (Winograd's larger tiles have fractional input transforms)."""
    def exact(matrix: np.ndarray) -> np.ndarray:
        values = [Fraction(v) for v in matrix.flatten()]
        if any(v.denominator != 1 for v in values):
            raise ValueError(f"algorithm {alg.name} has a fractional input transform")
        return np.array([int(v) for v in values], np.int64).reshape(matrix.shape)

    def scaled(matrix: np.ndarray) -> tuple[np.ndarray, int]:
        values = [Fraction(v) for v in matrix.flatten()]
        d = math.lcm(*(v.denominator for v in values))
        return np.array([int(v * d) for v in values], np.int64).reshape(matrix.shape), d

    unslot, du = scaled(alg.unslot_map)
    lam, dl = scaled(alg.Lam)
    return exact(alg.S), exact(alg.slot_map), unslot, du, lam, dl


def slot_exponents(v_max: np.ndarray) -> np.ndarray:
    """ev[p] >= 0: the smallest power-of-two step that brings the calibrated |V| into int8."""
    ratio = np.maximum(np.asarray(v_max, np.float64), 1.0) / INT8[1]
    return np.maximum(0, np.ceil(np.log2(ratio))).astype(np.int64)


def weight_scales(u: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(Uq int8 (P, C, K), s_k (K,), eu (P, K) <= 0) for U (P, C, K) float64:
    Uq = round(U / (s_k 2^eu)), s_k = max |U[:, :, k]| / 127, 2^eu the finest power-of-two
    refinement that keeps slot p of channel k within int8."""
    top = np.abs(u).max(axis=(0, 1))
    s_k = np.where(top > 0, top / INT8[1], 1.0)
    slot_top = np.abs(u).max(axis=1)  # (P, K)
    with np.errstate(divide="ignore"):
        eu = np.ceil(np.log2(slot_top / (INT8[1] * s_k[None, :])))
    eu = np.clip(np.nan_to_num(eu, nan=0.0, neginf=0.0), MIN_WEIGHT_EXPONENT, 0)  # zero slot: 0
    eu = eu.astype(np.int64)
    uq = np.rint(u / (s_k[None, None, :] * np.exp2(eu)[:, None, :]))
    return np.clip(uq, *INT8).astype(np.int8), s_k, eu


def build_sfc_layer(name: str, source: str, output: str, out_shape: tuple[int, ...],
                    alg: Algorithm, u: np.ndarray, bias: np.ndarray | None,
                    padding: tuple[int, int], s_x: float, s_y: float, relu: bool,
                    x_calibration: np.ndarray) -> SFCLayer:
    """The integer layer for one SFCConv2d (U: its float64 transformed weights (P, C, K))."""
    s, slot_map, unslot, du, lam, dl = integer_matrices(alg)
    layer = SFCLayer(name=name, op="SFCConv2d", inputs=[source], output=output,
                     out_shape=out_shape, algorithm=alg.name, m=alg.m, s=s, slot_map=slot_map,
                     unslot=unslot, lam=lam, padding=padding, lo=0 if relu else INT8[0])
    if layer.transform_bound() >= 1 << 15:
        raise ValueError(f"layer {name}: {alg.name}'s transform domain exceeds 16 bits")
    v = layer.transform_input(x_calibration)
    layer.slot_shift = slot_exponents(np.abs(v).max(axis=(0, 1, 2, 3)))
    layer.weight, s_k, eu = weight_scales(u)
    exponent = layer.slot_shift[:, None] + eu  # (P, K)
    emin = exponent.min(axis=0)
    layer.align = exponent - emin[None, :]
    c_k = s_x * s_k * np.exp2(emin) / (du * dl * dl)
    b = np.zeros(len(s_k)) if bias is None else np.asarray(bias, np.float64)
    layer.bias = np.rint(b / c_k).astype(np.int64)
    layer.mult, layer.shift = fixed_point(c_k / s_y)
    check_headroom(layer.wide_bound(), layer.mult, f"layer {name}")
    return layer
