"""Triton kernel of the W8A8 GEMM (imports triton: load only through int8_gemm).

A classic tiled GEMM: program (pid_m, pid_n) in grouped order (GROUP_M row blocks share
each column block, for L2 reuse) accumulates int8 x int8 -> int32 with tl.dot (tensor-core
IMMA / Hopper wgmma; both operands K-major, as 8-bit MMAs require), then scales in fp32 and
stores fp16. With TWO_GROUPS the K loop is split at K_SPLIT into two accumulators, each
corrected by its zero point and scaled by its own per-token scale before they are summed
(int8/quant.py gives the formula). Rows and columns past M and N wrap around for the loads
(always in bounds) and are masked at the store.
"""

from __future__ import annotations

import triton
import triton.language as tl


@triton.jit
def _segment(a_ptrs, w_ptrs, k_lo, k_hi, BM: tl.constexpr, BN: tl.constexpr,
             BK: tl.constexpr, EVEN_K: tl.constexpr):
    """sum over k in [k_lo, k_hi) of a[:, k] w[k, :] as int32 (BM, BN)."""
    red = tl.arange(0, BK)
    acc = tl.zeros((BM, BN), dtype=tl.int32)
    for k0 in range(k_lo, k_hi, BK):
        if EVEN_K:
            a = tl.load(a_ptrs + k0)
            w = tl.load(w_ptrs + k0)
        else:
            a = tl.load(a_ptrs + k0, mask=(red + k0 < k_hi)[None, :], other=0)
            w = tl.load(w_ptrs + k0, mask=(red + k0 < k_hi)[:, None], other=0)
        acc = tl.dot(a, w, acc, out_dtype=tl.int32)
    return acc


@triton.jit
def _int8_gemm(a_ptr, w_ptr, sa_ptr, sw_ptr, za_ptr, rs_ptr, out_ptr, M, N, K, K_SPLIT,
               BM: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr, GROUP_M: tl.constexpr,
               EVEN_K: tl.constexpr, TWO_GROUPS: tl.constexpr, HAS_ZP: tl.constexpr):
    pid = tl.program_id(0)
    blocks_m = tl.cdiv(M, BM)
    blocks_n = tl.cdiv(N, BN)
    per_group = GROUP_M * blocks_n
    first_m = (pid // per_group) * GROUP_M
    size_m = min(blocks_m - first_m, GROUP_M)
    pid_m = first_m + (pid % per_group) % size_m
    pid_n = (pid % per_group) // size_m
    rows = pid_m * BM + tl.arange(0, BM)
    cols = pid_n * BN + tl.arange(0, BN)
    red = tl.arange(0, BK)
    a_ptrs = a_ptr + (rows % M)[:, None] * K + red[None, :]
    w_ptrs = w_ptr + (cols % N)[None, :] * K + red[:, None]  # (BK, BN), K-major
    sa_stride = 2 if TWO_GROUPS else 1
    row_ok = rows < M
    col_ok = cols < N
    acc = _segment(a_ptrs, w_ptrs, 0, K_SPLIT, BM, BN, BK, EVEN_K)
    if HAS_ZP:
        za = tl.load(za_ptr + rows * 2, mask=row_ok, other=0)
        acc -= za[:, None] * tl.load(rs_ptr + cols * 2, mask=col_ok, other=0)[None, :]
    sa = tl.load(sa_ptr + rows * sa_stride, mask=row_ok, other=0.0)
    y = acc.to(tl.float32) * sa[:, None]
    if TWO_GROUPS:
        acc = _segment(a_ptrs, w_ptrs, K_SPLIT, K, BM, BN, BK, EVEN_K)
        if HAS_ZP:
            za = tl.load(za_ptr + rows * 2 + 1, mask=row_ok, other=0)
            acc -= za[:, None] * tl.load(rs_ptr + cols * 2 + 1, mask=col_ok, other=0)[None, :]
        sa = tl.load(sa_ptr + rows * 2 + 1, mask=row_ok, other=0.0)
        y += acc.to(tl.float32) * sa[:, None]
    y = y * tl.load(sw_ptr + cols, mask=col_ok, other=0.0)[None, :]
    out = out_ptr + rows[:, None] * N + cols[None, :]
    tl.store(out, y.to(out_ptr.dtype.element_ty), mask=row_ok[:, None] & col_ok[None, :])
