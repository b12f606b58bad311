"""W8A8 operands and the integer GEMM references (plain torch, any device).

One scale group (SmoothQuant-style W8A8):

    a[m, k] ~ sa[m] qa[m, k]       per token, symmetric, qa in [-127, 127]
    w[n, k] ~ sw[n] qw[n, k]       per output channel, symmetric
    y[m, n] = sa[m] sw[n] sum_k qa[m, k] qw[n, k]          (int32 sum, fp16 result)

Two scale groups (SpikeLLM, design spike.md 5.3-5.4 and 9 (a)): the input channels are
permuted offline so the non-salient ones come first (k < k_split) and the salient ones
last. Each token has a scale and a zero point per group (qmax 2^a - 1 for the non-salient
group, T_s (2^a - 1) for the salient one: at a = 4, T_s = 2 the codes are 0..15 and 0..30,
so both fit int8 containers and one int8 GEMM covers both groups without duplicating
anything). With rs_g[n] = sum_{k in g} qw[n, k] (computed offline):

    y[m, n] = sw[n] sum_g sa_g[m] (sum_{k in g} qa[m, k] qw[n, k] - za_g[m] rs_g[n])

i.e. two K-segments of one GEMM with separate accumulators, summed in the epilogue after
each is scaled: the same as two GEMMs summed, or as a GEMM over the scaled concatenation,
without materialising either.

With the paper's shared ranges (sa_1 = sa_0 / T_s, spike.md 4.1) the two groups collapse
into one accumulator: store the non-salient codes times T_s (0, 2, ..., 30 at a = 4, still
int8), then y = sw[n] sa_1[m] (sum_k qa' qw - T_s za_0[m] rs_0[n] - za_1[m] rs_1[n]), a plain
one-group GEMM with a two-term zero-point epilogue. Only decoupled ranges need two
accumulators (measured on an H200 at M, K, N = 2048, 4096, 4096: 0.091 ms for two groups
with zero points at K' = 4224 against 0.066 ms for one group and 0.092 ms for cuBLAS fp16).
"""

from __future__ import annotations

import torch


def quantize_symmetric(x: torch.Tensor, dim: int = -1) -> tuple[torch.Tensor, torch.Tensor]:
    """(q int8 in [-127, 127], scale float32) with one scale per slice along `dim`'s
    complement: per token for activations (M, K), per output channel for weights (N, K)."""
    scale = (x.detach().float().abs().amax(dim, keepdim=True) / 127).clamp_min(1e-12)
    q = torch.round(x.float() / scale).clamp(-127, 127).to(torch.int8)
    return q, scale.squeeze(dim)


def quantize_two_groups(x: torch.Tensor, k_split: int, qmax: tuple[int, int] = (15, 30)
                        ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-token asymmetric min/max codes for columns [0, k_split) and [k_split, K), each
    group with its own range ("decoupled" scales): (codes int8, scales (M, 2) float32,
    zero points (M, 2) int32), x ~ scale_g (code - zero_g)."""
    if not 0 < k_split < x.shape[1]:
        raise ValueError(f"k_split must split the {x.shape[1]} columns, got {k_split}")
    if max(qmax) > 127:
        raise ValueError(f"codes must fit int8, got qmax {qmax}")
    codes, scales, zeros = [], [], []
    for part, top in ((x[:, :k_split], qmax[0]), (x[:, k_split:], qmax[1])):
        part = part.float()
        low = part.amin(1, keepdim=True).clamp_max(0)
        high = part.amax(1, keepdim=True).clamp_min(0)
        scale = ((high - low) / top).clamp_min(1e-12)
        zero = torch.round(-low / scale)
        codes.append(torch.clamp(torch.round(part / scale) + zero, 0, top))
        scales.append(scale)
        zeros.append(zero)
    return (torch.cat(codes, 1).to(torch.int8), torch.cat(scales, 1),
            torch.cat(zeros, 1).to(torch.int32))


def group_row_sums(w: torch.Tensor, k_split: int) -> torch.Tensor:
    """rs (N, 2) int32: each output channel's weight sum over the two column groups."""
    w = w.to(torch.int32)
    return torch.stack([w[:, :k_split].sum(1), w[:, k_split:].sum(1)], 1).to(torch.int32)


def int8_gemm_reference(a: torch.Tensor, a_scale: torch.Tensor, w: torch.Tensor,
                        w_scale: torch.Tensor, out_dtype: torch.dtype = torch.float16
                        ) -> torch.Tensor:
    """sa[m] sw[n] (qa @ qw^T)[m, n]; the integer sum is exact in float64 (|sum| < 2^53)."""
    acc = a.double() @ w.double().T
    return (acc * a_scale.double()[:, None] * w_scale.double()[None, :]).to(out_dtype)


def int8_gemm_two_group_reference(a: torch.Tensor, a_scales: torch.Tensor, w: torch.Tensor,
                                  w_scale: torch.Tensor, k_split: int,
                                  a_zeros: torch.Tensor | None = None,
                                  w_row_sums: torch.Tensor | None = None,
                                  out_dtype: torch.dtype = torch.float16) -> torch.Tensor:
    """The two-group product of the module docstring, in float64."""
    y = torch.zeros(a.shape[0], w.shape[0], dtype=torch.float64, device=a.device)
    for g, cols in enumerate((slice(0, k_split), slice(k_split, None))):
        acc = a[:, cols].double() @ w[:, cols].double().T
        if a_zeros is not None:
            rs = w_row_sums if w_row_sums is not None else group_row_sums(w, k_split)
            acc -= a_zeros[:, g].double()[:, None] * rs[:, g].double()[None, :]
        y += a_scales[:, g].double()[:, None] * acc
    return (y * w_scale.double()[None, :]).to(out_dtype)
