"""Everything the SFC kernels need from one 3x3 convolution, prepared once on the host.

With X the L x L input patch of a tile (flattened, L^2 values), ember's algorithm
(sfc_algorithms.py at the root) computes an m x m output tile as

    V = B X                     B = slot_map . (S (x) S)                (P, L^2), integers
    M[p] = sum_c V[p, c] U[p, c, k]                                     P GEMMs over channels
    Y = (A M) / den             A = den . (Lam (x) Lam) . unslot_map    (m^2, P), integers

so both transforms are small constant matrices applied to the data, which the kernels run
on tensor cores as ordinary dots. B and A are integers (|B| <= 25 for Winograd F(4x4),
|A| <= 64, den = 36 for SFC-6): they are exact in fp16, so all rounding happens in the data
(V and M stored in fp16) and in the fp32 accumulators. U = slots(Sg W Sg^T) is computed in
float64 by ember's `transformed_weights` and rounded once to the plan's dtype.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from fractions import Fraction
from functools import cache

import numpy as np
import torch

from ember.sfc_algorithms import Algorithm, algorithm, transformed_weights

FP16_EXACT_INT = 2048  # every integer of magnitude <= 2048 is exact in fp16


@dataclass(frozen=True)
class SFCPlan:
    """A convolution's transforms and transformed weights. Tensors share one device."""

    algorithm: str
    form: str
    m: int  # output tile
    tile: int  # L = m + 2, input tile
    slots: int  # P
    padding: int
    in_channels: int
    out_channels: int
    b: torch.Tensor  # (P, L^2) input map, integer-valued
    a: torch.Tensor  # (m^2, P) output map times `denominator`, integer-valued
    denominator: int
    u: torch.Tensor  # (P, C, K) transformed weights
    bias: torch.Tensor | None  # (K,) float32 (float64 in a float64 plan)
    # zero-padded copies of b and a in the kernels' block shapes, made on first use
    padded: dict[tuple, torch.Tensor] = field(default_factory=dict, compare=False, repr=False)

    def to(self, device: torch.device | str) -> SFCPlan:
        bias = None if self.bias is None else self.bias.to(device)
        return replace(self, b=self.b.to(device), a=self.a.to(device), u=self.u.to(device),
                       bias=bias, padded={})

    def padded_matrix(self, name: str, rows: int, cols: int) -> torch.Tensor:
        """b or a in the top-left corner of a contiguous (rows, cols) zero matrix."""
        key = (name, rows, cols)
        if key not in self.padded:
            matrix = getattr(self, name)
            out = matrix.new_zeros(rows, cols)
            out[: matrix.shape[0], : matrix.shape[1]] = matrix
            self.padded[key] = out
        return self.padded[key]


def make_plan(weight: torch.Tensor, bias: torch.Tensor | None = None,
              algorithm_name: str = "sfc6_6x6", form: str = "symbolic", padding: int = 1,
              dtype: torch.dtype = torch.float16) -> SFCPlan:
    """The plan for a stride-1, dilation-1, groups-1 3x3 convolution with weight (K, C, 3, 3)."""
    if weight.dim() != 4 or tuple(weight.shape[2:]) != (3, 3):
        raise ValueError(f"weight must be (K, C, 3, 3), got {tuple(weight.shape)}")
    if padding < 0:
        raise ValueError(f"padding must be >= 0, got {padding}")
    alg = algorithm(algorithm_name, form)
    b, a, den = transform_matrices(alg)
    out_channels, in_channels = weight.shape[:2]
    u = transformed_weights(weight, alg).to(dtype).to(weight.device)
    device = weight.device
    return SFCPlan(algorithm=alg.name, form=form if alg.symbolic else "integrated", m=alg.m,
                   tile=alg.tile, slots=alg.slots, padding=padding, in_channels=in_channels,
                   out_channels=out_channels, b=b.to(dtype).to(device),
                   a=a.to(dtype).to(device), denominator=den, u=u,
                   bias=None if bias is None else bias.detach().to(device, _bias_dtype(dtype)))


def plan_from_transformed(u: torch.Tensor, bias: torch.Tensor | None, algorithm_name: str,
                          symbolic: bool, padding: int,
                          dtype: torch.dtype = torch.float16) -> SFCPlan:
    """The plan for an sfc-pass layer (passes/sfc/conv.py, groups 1) from its transformed
    weights U (P, C, K): the same slots(Sg W Sg^T) that `make_plan` computes from W."""
    alg = algorithm(algorithm_name, "symbolic" if symbolic else "integrated")
    b, a, den = transform_matrices(alg)
    if u.dim() != 3 or u.shape[0] != alg.slots:
        raise ValueError(f"U must be ({alg.slots}, C, K) for {alg.name}, got {tuple(u.shape)}")
    device = u.device
    return SFCPlan(algorithm=alg.name, form="symbolic" if alg.symbolic else "integrated",
                   m=alg.m, tile=alg.tile, slots=alg.slots, padding=padding,
                   in_channels=u.shape[1], out_channels=u.shape[2],
                   b=b.to(dtype).to(device), a=a.to(dtype).to(device), denominator=den,
                   u=u.to(dtype).contiguous(),
                   bias=None if bias is None else bias.detach().to(device, _bias_dtype(dtype)))


def transform_matrices(alg: Algorithm) -> tuple[torch.Tensor, torch.Tensor, int]:
    """(B, den . A, den) as float64 tensors, from the algorithm's exact rational matrices."""
    b, a, den = _integer_matrices(alg.name, alg.symbolic)
    return torch.from_numpy(b.astype(np.float64)), torch.from_numpy(a.astype(np.float64)), den


@cache
def _integer_matrices(name: str, symbolic: bool) -> tuple[np.ndarray, np.ndarray, int]:
    """B and den . A in exact integer arithmetic: each rational factor is scaled to integers
    by its common denominator, the products are int64, and den is reduced to lowest terms."""
    alg = algorithm(name, "symbolic" if symbolic else "integrated")
    (s, ds), (slot, dslot) = _scaled(alg.S), _scaled(alg.slot_map)
    (lam, dlam), (unslot, dunslot) = _scaled(alg.Lam), _scaled(alg.unslot_map)
    b, b_den = slot @ np.kron(s, s), dslot * ds * ds
    if np.any(b % b_den):
        raise ValueError(f"{name}: B is not integer-valued")
    a, den = np.kron(lam, lam) @ unslot, dlam * dlam * dunslot
    common = math.gcd(den, int(np.gcd.reduce(a.reshape(-1))))
    a, den = a // common, den // common
    if max(np.abs(b // b_den).max(), np.abs(a).max()) > FP16_EXACT_INT:
        raise ValueError(f"{name}: the transforms have entries that fp16 cannot hold exactly")
    return b // b_den, a, den


def _scaled(matrix: np.ndarray) -> tuple[np.ndarray, int]:
    """(integer matrix, d) with matrix = integer matrix / d, d the common denominator."""
    d = math.lcm(*(Fraction(v).denominator for v in matrix.flat))
    return np.array([[int(Fraction(v) * d) for v in row] for row in matrix], dtype=np.int64), d


def tile_grid(plan: SFCPlan, height: int, width: int) -> tuple[int, int, int, int]:
    """(out_h, out_w, tile rows th, tile columns tw) of an input map."""
    out_h, out_w = height + 2 * plan.padding - 2, width + 2 * plan.padding - 2
    if out_h < 1 or out_w < 1:
        raise ValueError(f"a {height}x{width} map with padding {plan.padding} has no output")
    return out_h, out_w, math.ceil(out_h / plan.m), math.ceil(out_w / plan.m)


def _bias_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32
