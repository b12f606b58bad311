"""Triton kernels of the SFC convolution (imports triton: load only through sfc/conv.py).

Three kernels, each reading and writing global memory once:

1. `_input_transform`: a program owns BT tiles x BC channels. It gathers their L x L
   patches straight from the input (any strides, so NCHW or channels-last; padding and the
   ragged last tiles are masked loads of zero) as X (L^2, BT*BC), and writes
   V[p0:p0+P_CHUNK] = B[p0:p0+P_CHUNK] X (fp32 accumulate, fp16 store) for every slot chunk:
   the transform is a tensor-core dot with the constant integer matrix B.
2. `_slot_gemm`: M[p] = V[p] @ U[p] for every slot p, a batched fp16 GEMM (fp32 accumulate),
   grid (tile blocks x output-channel blocks, P).
3. `_output_transform`: a program owns BT tiles x BK output channels, accumulates
   A[:, chunk] M[chunk] over slot chunks (A integer, exact in fp16), scales by 1/den, adds
   the bias and stores only the pixels inside the output (crop) at any output strides.

V and M are the only transform-domain tensors in global memory, each written once in fp16.
"""

from __future__ import annotations

import triton
import triton.language as tl


@triton.jit
def _input_transform(x_ptr, b_ptr, v_ptr, C, H, W, TH, TW, T, P, PAD,
                     sxn, sxc, sxh, sxw,
                     M: tl.constexpr, L: tl.constexpr, L2P: tl.constexpr,
                     P_CHUNK: tl.constexpr, BT: tl.constexpr, BC: tl.constexpr):
    pid_t = tl.program_id(0)
    pid_c = tl.program_id(1)
    r = tl.arange(0, L2P)  # pixel (a, b) of the L x L patch, r = a*L + b
    col = tl.arange(0, BT * BC)  # column (tile, channel), channels fastest
    t = pid_t * BT + col // BC
    c = pid_c * BC + col % BC
    n = t // (TH * TW)
    ti = (t // TW) % TH
    tj = t % TW
    h = ti[None, :] * M + (r // L)[:, None] - PAD
    w = tj[None, :] * M + (r % L)[:, None] - PAD
    col_ok = (t < T) & (c < C)
    inside = (r < L * L)[:, None] & col_ok[None, :] & (h >= 0) & (h < H) & (w >= 0) & (w < W)
    x_off = n[None, :] * sxn + c[None, :] * sxc + h * sxh + w * sxw
    x = tl.load(x_ptr + x_off, mask=inside, other=0.0)  # (L2P, BT*BC)
    for p0 in range(0, P, P_CHUNK):
        p = p0 + tl.arange(0, P_CHUNK)
        b = tl.load(b_ptr + p[:, None] * L2P + r[None, :], mask=(p < P)[:, None], other=0.0)
        v = tl.dot(b, x)  # (P_CHUNK, BT*BC), fp32
        v_off = p[:, None] * T * C + (t * C + c)[None, :]
        tl.store(v_ptr + v_off, v.to(v_ptr.dtype.element_ty),
                 mask=(p < P)[:, None] & col_ok[None, :])


@triton.jit
def _slot_gemm(v_ptr, u_ptr, m_ptr, T, C, K,
               BM: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr):
    pid = tl.program_id(0)
    p = tl.program_id(1).to(tl.int64)
    blocks_n = tl.cdiv(K, BN)
    rows = (pid // blocks_n) * BM + tl.arange(0, BM)
    cols = (pid % blocks_n) * BN + tl.arange(0, BN)
    red = tl.arange(0, BK)
    a_ptrs = v_ptr + p * T * C + rows[:, None] * C + red[None, :]
    b_ptrs = u_ptr + p * C * K + red[:, None] * K + cols[None, :]
    acc = tl.zeros((BM, BN), dtype=tl.float32)
    for k0 in range(0, C, BK):
        a = tl.load(a_ptrs, mask=(rows < T)[:, None] & (red + k0 < C)[None, :], other=0.0)
        b = tl.load(b_ptrs, mask=(red + k0 < C)[:, None] & (cols < K)[None, :], other=0.0)
        acc = tl.dot(a, b, acc)
        a_ptrs += BK
        b_ptrs += BK * K
    out = m_ptr + p * T * K + rows[:, None] * K + cols[None, :]
    tl.store(out, acc.to(m_ptr.dtype.element_ty), mask=(rows < T)[:, None] & (cols < K)[None, :])


@triton.jit
def _output_transform(m_ptr, a_ptr, bias_ptr, y_ptr, K, HO, WO, TH, TW, T, P, inv_den,
                      syn, syk, syh, syw,
                      M: tl.constexpr, M2P: tl.constexpr, PP: tl.constexpr,
                      P_CHUNK: tl.constexpr, BT: tl.constexpr, BK: tl.constexpr,
                      HAS_BIAS: tl.constexpr):
    pid_t = tl.program_id(0)
    pid_k = tl.program_id(1)
    col = tl.arange(0, BT * BK)  # column (tile, output channel), channels fastest
    t = pid_t * BT + col // BK
    k = pid_k * BK + col % BK
    col_ok = (t < T) & (k < K)
    o = tl.arange(0, M2P)  # output pixel (i, j) of the m x m tile, o = i*m + j
    acc = tl.zeros((M2P, BT * BK), dtype=tl.float32)
    for p0 in range(0, P, P_CHUNK):
        p = p0 + tl.arange(0, P_CHUNK)
        a = tl.load(a_ptr + o[:, None] * PP + p[None, :])  # zero-padded on the host
        prods = tl.load(m_ptr + p[:, None] * T * K + (t * K + k)[None, :],
                        mask=(p < P)[:, None] & col_ok[None, :], other=0.0)
        acc = tl.dot(a, prods, acc)
    y = acc * inv_den
    if HAS_BIAS:
        y += tl.load(bias_ptr + k, mask=k < K, other=0.0)[None, :]
    n = t // (TH * TW)
    hh = ((t // TW) % TH)[None, :] * M + (o // M)[:, None]
    ww = (t % TW)[None, :] * M + (o % M)[:, None]
    ok = (o < M * M)[:, None] & col_ok[None, :] & (hh < HO) & (ww < WO)
    y_off = n[None, :] * syn + k[None, :] * syk + hh * syh + ww * syw
    tl.store(y_ptr + y_off, y.to(y_ptr.dtype.element_ty), mask=ok)
