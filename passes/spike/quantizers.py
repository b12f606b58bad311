"""Quantizers of the spike pass (design: spike.md §4, §5.3).

Activations, per token (dynamic), asymmetric over a range [lo, hi] (SpikeLinear passes
[min(x, 0), max(x, 0)] of the token or of its channel group) and `top` codes:

    Δ = max((hi - lo) / top, EPS);  z = round(-lo / Δ);  q = clamp(round(x / Δ) + z, 0, top)
                                                         (spike_codes.py at the root)

`x̂ = Δ (q - z)`. The ops and their order are the ones the ONNX lowering emits, so the codes
are bit-identical in torch and in ONNX Runtime (fp32 division, round half to even).

Weights, per output row, symmetric (spec: recommended for integer kernels):

    w_bits b:  s_i = max_j |w_ij| / L,  L = 2^(b-1) - 1,  q_ij = clamp(round(w_ij / s_i), ±L)

or, weight-only with `group` g, one step per row and per run of g input columns (the block-wise
layout of ONNX Runtime's MatMulNBits and of llama.cpp's Q4 formats):

    s_ik = max_{j in block k} |w_ij| / L,   q_ij = clamp(round(w_ij / s_i,k(j)), ±L)
    ternary:   θ_i = mean_j |w_ij| (absmean),           q_ij = clamp(round(w_ij / θ_i), ±T_j)

with T_j = T_s on salient weight columns and 1 elsewhere (ternary GIF with T_j steps).
`gptq` quantizes the same grids column by column and feeds each column's error forward
through the inverse Hessian's Cholesky factor U (H = 2 XᵀX / N + λ mean(diag H) I, λ = 0.01):

    err_j = (w_j - s ⊙ q_j) / U_jj;   W[:, j+1:] -= err_j ⊗ U[j, j+1:]

in blocks of 128 columns with lazy updates of the rest (Frantar et al., GPTQ, 2023).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

DAMPING = 0.01
GPTQ_BLOCK = 128


def weight_levels(bits: int) -> int:
    return 2 ** (bits - 1) - 1


def row_scales(weight: torch.Tensor, grid: str, bits: int) -> torch.Tensor:
    """Per-output-row step: max-abs / levels (`rtn`), or the absmean θ (`ternary`)."""
    if grid == "ternary":
        return weight.abs().mean(dim=1).clamp_min(1e-12)
    return weight.abs().amax(dim=1).clamp_min(1e-12) / weight_levels(bits)


def weight_scales(weight: torch.Tensor, grid: str, bits: int, group: int = 0) -> torch.Tensor:
    """`row_scales` (out,) when `group` is 0; else the block steps (in / group, out), laid out
    as the transposed codes (in, out) the layers store are: block k is rows k·g..(k+1)·g - 1
    (`spike_codes.weight_steps` spreads them onto every weight)."""
    if not group:
        return row_scales(weight, grid, bits)
    d_out, d_in = weight.shape
    blocks = weight.abs().reshape(d_out, d_in // group, group).amax(dim=2)
    return (blocks.clamp_min(1e-12) / weight_levels(bits)).T.contiguous()


def column_limits(d_in: int, grid: str, bits: int, salient_columns: torch.Tensor | None,
                  steps: int) -> torch.Tensor:
    """Largest |code| per input column: 2^(b-1) - 1, or T_j for ternary (T_s on salient)."""
    if grid != "ternary":
        return torch.full((d_in,), weight_levels(bits), dtype=torch.float64)
    limits = torch.ones(d_in, dtype=torch.float64)
    if salient_columns is not None:
        limits[salient_columns] = steps
    return limits


def round_to_grid(weight: torch.Tensor, scale: torch.Tensor, limits: torch.Tensor) -> torch.Tensor:
    """q = clamp(round(w / s), -limit_j, limit_j) for a whole matrix (RTN); `scale` per row
    (out,) or per weight (out, in)."""
    codes = torch.round(weight / (scale[:, None] if scale.dim() == 1 else scale))
    return torch.maximum(torch.minimum(codes, limits[None, :]), -limits[None, :])


def gptq(weight: torch.Tensor, gram: torch.Tensor, tokens: int, scale: torch.Tensor,
         limits: torch.Tensor, progress: Callable[[], None] = lambda: None) -> torch.Tensor:
    """Integer codes of `weight` (out, in) on the grid `scale` (per row (out,), or per weight
    (out, in): block steps fixed from the original weights before compensation, AutoGPTQ's
    "static groups") and `limits` (per column), with GPTQ error compensation under
    H = 2 G / N (float64 throughout)."""
    w = weight.to(torch.float64).clone()
    upper = inverse_hessian_factor(gram, tokens)
    dead = torch.diagonal(gram) == 0
    w[:, dead] = 0
    codes = torch.zeros_like(w)
    d_in = w.shape[1]
    for start in range(0, d_in, GPTQ_BLOCK):
        stop = min(start + GPTQ_BLOCK, d_in)
        block = w[:, start:stop].clone()
        errors = torch.zeros_like(block)
        factor = upper[start:stop, start:stop]
        for i in range(stop - start):
            column = block[:, i]
            limit = limits[start + i]
            step = scale if scale.dim() == 1 else scale[:, start + i]
            q = torch.clamp(torch.round(column / step), -limit, limit)
            codes[:, start + i] = q
            err = (column - step * q) / factor[i, i]
            block[:, i:] -= err[:, None] * factor[i, i:][None, :]
            errors[:, i] = err
        w[:, stop:] -= errors @ upper[start:stop, stop:]
        progress()
    return codes


def inverse_hessian_factor(gram: torch.Tensor, tokens: int) -> torch.Tensor:
    """Upper Cholesky factor U of H⁻¹, H = 2 G / N + λ mean(diag H) I (dead columns get 1)."""
    hessian = 2 * gram.to(torch.float64) / max(tokens, 1)
    dead = torch.diagonal(hessian) == 0
    hessian[dead, dead] = 1
    damp = DAMPING * torch.diagonal(hessian).mean()
    hessian = hessian + damp * torch.eye(hessian.shape[0], dtype=torch.float64)
    inverse = torch.cholesky_inverse(torch.linalg.cholesky(hessian))
    return torch.linalg.cholesky(inverse, upper=True)
