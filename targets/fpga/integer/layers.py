"""The integer layers of an `fpga` design and their numpy golden model.

Every tensor between layers is int8 with one real scale (x ~= s * x_q, zero point 0), except
a network output taken straight from a layer's accumulators (int32, one scale per channel).
Layers run batch-first numpy arrays here (int64 inside, so nothing wraps silently); the C++
project (targets/fpga/hls/layers.py) computes the same integers one image at a time.

    conv / linear   acc[k] = bias[k] + sum_c x_q[c] w_q[k, c]      int8 x int8 -> int32
                    y_q = requant(acc, s_x s_w[k] / s_y)           ReLU: clamp at 0
    max pool        y_q = max over the window                      (scale unchanged)
    avg pool        y_q = requant(sum over the window, 1 / k^2)    (scale unchanged)
    add             y_q = clamp((a_q M_a + b_q M_b + 2^(n-1)) >> n) M = s / s_y in fixed point
    relu / relu6    y_q = clamp(x_q, 0, hi)
    flatten         y_q = x_q  (C-order, no data movement)
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ember.targets.fpga.fixed import requantize

INT8 = (-127, 127)
INT32_LIMIT = (1 << 31) - 1
CHUNK = 64  # images per numpy step (conv windows of a batch are large)


@dataclass(frozen=True)
class TensorSpec:
    name: str
    shape: tuple[int, ...]  # one image
    kind: str  # "int8" | "int32"
    scale: np.ndarray  # (1,) per tensor, or (channels,) for int32 accumulator outputs
    channel_axis: int = 1  # where per-channel scales apply (batch-first): 1 conv, -1 linear

    @property
    def size(self) -> int:
        return int(np.prod(self.shape))


@dataclass
class Layer:
    name: str
    op: str  # the source operator, as the report names it
    inputs: list[str]
    output: str
    out_shape: tuple[int, ...]

    def run(self, *xs: np.ndarray) -> np.ndarray:
        raise NotImplementedError


@dataclass
class Requant:
    """Output stage shared by conv and linear: per-channel fixed point, or raw int32."""

    mult: np.ndarray | None  # None: the layer outputs its int32 accumulators
    shift: np.ndarray | None
    lo: int = INT8[0]
    hi: int = INT8[1]

    def apply(self, acc: np.ndarray, axis: int = 1) -> np.ndarray:
        if self.mult is None:
            return acc
        return requantize(acc, self.mult, self.shift, self.lo, self.hi, axis=axis)


@dataclass
class ConvLayer(Layer):
    weight: np.ndarray = field(default=None)  # int8 (K, C/groups, kh, kw)
    bias: np.ndarray = field(default=None)  # int32 (K,)
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (0, 0)
    groups: int = 1
    requant: Requant = field(default=None)

    def accumulate(self, x: np.ndarray) -> np.ndarray:
        k, cg, kh, kw = self.weight.shape
        (sh, sw), (ph, pw) = self.stride, self.padding
        xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
        windows = np.lib.stride_tricks.sliding_window_view(xp, (kh, kw), axis=(2, 3))
        windows = windows[:, :, ::sh, ::sw]  # (N, C, Ho, Wo, kh, kw)
        n, _, ho, wo = windows.shape[:4]
        g = self.groups
        windows = windows.reshape(n, g, cg, ho, wo, kh, kw).transpose(1, 0, 3, 4, 2, 5, 6)
        w = self.weight.reshape(g, k // g, cg * kh * kw).transpose(0, 2, 1)
        acc = exact_matmul(windows.reshape(g, n * ho * wo, cg * kh * kw), w)  # (G, N*HW, K/G)
        acc = acc.reshape(g, n, ho, wo, k // g).transpose(1, 0, 4, 2, 3).reshape(n, k, ho, wo)
        return acc + self.bias.astype(np.int64)[None, :, None, None]

    def run(self, x: np.ndarray) -> np.ndarray:
        out = [self.requant.apply(_int32(self.accumulate(c), self.name)) for c in _chunks(x)]
        return np.concatenate(out)


@dataclass
class LinearLayer(Layer):
    weight: np.ndarray = field(default=None)  # int8 (K, C)
    bias: np.ndarray = field(default=None)  # int32 (K,)
    requant: Requant = field(default=None)

    def run(self, x: np.ndarray) -> np.ndarray:
        """x (N, C) or (N, tokens, C): every token through the same weights."""
        acc = exact_matmul(x, self.weight.T) + self.bias.astype(np.int64)
        return self.requant.apply(_int32(acc, self.name), axis=-1)


@dataclass
class PoolLayer(Layer):
    kind: str = "max"  # "max" | "avg"
    kernel: tuple[int, int] = (2, 2)
    stride: tuple[int, int] = (2, 2)
    mult: int = 0  # avg: 1 / (kh kw) in fixed point
    shift: int = 1

    def run(self, x: np.ndarray) -> np.ndarray:
        (kh, kw), (sh, sw) = self.kernel, self.stride
        windows = np.lib.stride_tricks.sliding_window_view(x.astype(np.int64), (kh, kw),
                                                           axis=(2, 3))[:, :, ::sh, ::sw]
        if self.kind == "max":
            return windows.max(axis=(4, 5))
        return requantize(windows.sum(axis=(4, 5)), np.array(self.mult), np.array(self.shift),
                          *INT8)


@dataclass
class AddLayer(Layer):
    mult_a: int = 0
    mult_b: int = 0
    shift: int = 1
    lo: int = INT8[0]

    def run(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        total = a.astype(np.int64) * self.mult_a + b.astype(np.int64) * self.mult_b
        return np.clip((total + (1 << (self.shift - 1))) >> self.shift, self.lo, INT8[1])


@dataclass
class ClampLayer(Layer):
    """ReLU (lo 0) and ReLU6 (hi = round(6 / s)) on int8 data."""

    lo: int = 0
    hi: int = INT8[1]

    def run(self, x: np.ndarray) -> np.ndarray:
        return np.clip(x.astype(np.int64), self.lo, self.hi)


@dataclass
class FlattenLayer(Layer):
    def run(self, x: np.ndarray) -> np.ndarray:
        return x.reshape(x.shape[0], -1)


def exact_matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a @ b of int8-range integers as int64, through float64 BLAS: every product and partial
    sum is an integer below 2^53 (checked), so the float result is exact."""
    bound = np.abs(a).max(initial=0) * np.abs(b).max(initial=0) * a.shape[-1]
    if bound >= 2**53:
        raise OverflowError("integer product too wide for the exact float64 path")
    return np.rint(np.matmul(a.astype(np.float64), b.astype(np.float64))).astype(np.int64)


def _chunks(x: np.ndarray) -> list[np.ndarray]:
    return [x[i:i + CHUNK] for i in range(0, len(x), CHUNK)] or [x]


def _int32(acc: np.ndarray, name: str) -> np.ndarray:
    """The accumulators, checked to be int32 values (the C++ accumulates in int32_t)."""
    if acc.size and np.abs(acc).max() > INT32_LIMIT:
        raise OverflowError(f"layer {name}: an accumulator left the int32 range")
    return acc
