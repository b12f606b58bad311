"""Triton kernel of the int4 GEMV (imports triton: load only through int4_gemv).

One program owns BN output rows and walks the whole K in steps of BG groups (no split-K, so
no atomics and no zero-fill launch): N/BN programs fill the GPU for N >= 4096. A program's
steps would each wait a full HBM round trip, so loads of later steps are issued early:
either by Triton's software pipeline (`tl.range(num_stages=STAGES)`, through shared memory)
or, with PREFETCH, by hand one step ahead in registers.

Unpacking without integer-to-float conversions: for nibble j at bits e..e+3 of a word w,
(w & (0xF << e)) | 0x4B000000 is the fp32 number 2^23 + u * 2^e (exact while e + 4 <= 23),
so subtracting 2^23 gives u * 2^e; the 2^-e is folded into the activation, which is
scaled once per program step rather than once per weight. Nibbles 5..7 (bits 20..31) are
read the same way from w >> 12. Each weight then costs one LOP3, one FADD and one FFMA.
The offset of 8 is applied per group: sum (u - 8) x = sum u x - 8 sum x.
"""

from __future__ import annotations

import triton
import triton.language as tl


@triton.jit
def _plane(src, x, E: tl.constexpr):
    """u * x for the nibble at bits E..E+3 of `src`, with x already scaled by 2^-E."""
    bits = (src & (0xF << E)) | 0x4B000000
    return (bits.to(tl.float32, bitcast=True) - 8388608.0) * x[None, :, :]


@triton.jit
def _int4_gemv(x_ptr, q_ptr, s_ptr, y_ptr, N, G, KW,
               BN: tl.constexpr, BG: tl.constexpr, STAGES: tl.constexpr,
               PREFETCH: tl.constexpr):
    pid = tl.program_id(0)
    rows = pid * BN + tl.arange(0, BN)
    row_ok = rows < N
    gi = tl.arange(0, BG)
    i = tl.arange(0, 16)
    w_ptrs = q_ptr + rows[:, None, None] * KW + (gi * 16)[None, :, None] + i[None, None, :]
    acc = tl.zeros((BN,), dtype=tl.float32)
    if PREFETCH:  # the next step's words are loaded by hand before this step is computed
        words = tl.load(w_ptrs, mask=row_ok[:, None, None] & (gi < G)[None, :, None], other=0)
        for step in range(tl.cdiv(G, BG)):
            g0 = step * BG
            ahead = (gi + g0 + BG < G)[None, :, None] & row_ok[:, None, None]
            nxt = tl.load(w_ptrs + (g0 + BG) * 16, mask=ahead, other=0)
            acc += _step(words, x_ptr, s_ptr, rows, row_ok, g0, gi, i, G)
            words = nxt
    else:  # the compiler's software pipeline keeps STAGES steps of loads in flight
        for step in tl.range(0, tl.cdiv(G, BG), num_stages=STAGES):
            g0 = step * BG
            mask = (gi + g0 < G)[None, :, None] & row_ok[:, None, None]
            words = tl.load(w_ptrs + g0 * 16, mask=mask, other=0)
            acc += _step(words, x_ptr, s_ptr, rows, row_ok, g0, gi, i, G)
    tl.store(y_ptr + rows, acc.to(y_ptr.dtype.element_ty), mask=row_ok)


@triton.jit
def _step(words, x_ptr, s_ptr, rows, row_ok, g0, gi, i, G):
    """sum over groups g0 + gi of s[n, g] sum_{k in g} q[n, k] x[k]: (BN,) float32."""
    g_ok = gi + g0 < G
    xs = x_ptr + (g0 + gi)[:, None] * 128 + i[None, :]  # (BG, 16): k of nibble 0, word i
    x0 = tl.load(xs, mask=g_ok[:, None], other=0.0).to(tl.float32)
    x1 = tl.load(xs + 16, mask=g_ok[:, None], other=0.0).to(tl.float32)
    x2 = tl.load(xs + 32, mask=g_ok[:, None], other=0.0).to(tl.float32)
    x3 = tl.load(xs + 48, mask=g_ok[:, None], other=0.0).to(tl.float32)
    x4 = tl.load(xs + 64, mask=g_ok[:, None], other=0.0).to(tl.float32)
    x5 = tl.load(xs + 80, mask=g_ok[:, None], other=0.0).to(tl.float32)
    x6 = tl.load(xs + 96, mask=g_ok[:, None], other=0.0).to(tl.float32)
    x7 = tl.load(xs + 112, mask=g_ok[:, None], other=0.0).to(tl.float32)
    x_sum = tl.sum(x0 + x1 + x2 + x3 + x4 + x5 + x6 + x7, axis=1)  # (BG,)
    high = words >> 12  # nibbles 5, 6, 7 at bits 8, 12, 16
    part = _plane(words, x0, 0) + _plane(words, x1 * 0.0625, 4)
    part += _plane(words, x2 * 0.00390625, 8) + _plane(words, x3 * 0.000244140625, 12)
    part += _plane(words, x4 * 1.52587890625e-05, 16)
    part += _plane(high, x5 * 0.00390625, 8) + _plane(high, x6 * 0.000244140625, 12)
    part += _plane(high, x7 * 1.52587890625e-05, 16)
    group_dot = tl.sum(part, axis=2) - 8.0 * x_sum[None, :]  # (BN, BG)
    s_ptrs = s_ptr + rows[:, None] * G + (g0 + gi)[None, :]
    scales = tl.load(s_ptrs, mask=row_ok[:, None] & g_ok[None, :], other=0.0)
    return tl.sum(group_dot * scales.to(tl.float32), axis=1)


@triton.jit
def _plane_1d(src, x, E: tl.constexpr):
    """u * x for the nibble at bits E..E+3 of `src` (BN, BW), x (BW,) pre-scaled by 2^-E."""
    bits = (src & (0xF << E)) | 0x4B000000
    return (bits.to(tl.float32, bitcast=True) - 8388608.0) * x[None, :]


@triton.jit
def _int4_gemv_flat(x_ptr, q_ptr, s_ptr, y_ptr, N, G, KW,
                    BN: tl.constexpr, BW: tl.constexpr, STAGES: tl.constexpr):
    """The same product over 2-D (BN rows, BW words) tiles: per-word partial sums with the
    word's group scale applied elementwise, reduced over the row once at the end, so the
    loop has no reductions and no 3-D broadcasts (fewer layout conversions)."""
    pid = tl.program_id(0)
    rows = pid * BN + tl.arange(0, BN)
    row_ok = rows < N
    w = tl.arange(0, BW)
    acc = tl.zeros((BN, BW), dtype=tl.float32)
    for step in tl.range(0, tl.cdiv(KW, BW), num_stages=STAGES):
        word = step * BW + w
        w_ok = word < KW
        ok = row_ok[:, None] & w_ok[None, :]
        words = tl.load(q_ptr + rows[:, None] * KW + word[None, :], mask=ok, other=0)
        group = word // 16
        scales = tl.load(s_ptr + rows[:, None] * G + group[None, :], mask=ok, other=0.0)
        xs = x_ptr + group * 128 + word % 16  # k of nibble 0 of each word
        x0 = tl.load(xs, mask=w_ok, other=0.0).to(tl.float32)
        x1 = tl.load(xs + 16, mask=w_ok, other=0.0).to(tl.float32)
        x2 = tl.load(xs + 32, mask=w_ok, other=0.0).to(tl.float32)
        x3 = tl.load(xs + 48, mask=w_ok, other=0.0).to(tl.float32)
        x4 = tl.load(xs + 64, mask=w_ok, other=0.0).to(tl.float32)
        x5 = tl.load(xs + 80, mask=w_ok, other=0.0).to(tl.float32)
        x6 = tl.load(xs + 96, mask=w_ok, other=0.0).to(tl.float32)
        x7 = tl.load(xs + 112, mask=w_ok, other=0.0).to(tl.float32)
        part = (-8.0 * (x0 + x1 + x2 + x3 + x4 + x5 + x6 + x7))[None, :]  # the offset 8
        high = words >> 12
        part += _plane_1d(words, x0, 0) + _plane_1d(words, x1 * 0.0625, 4)
        part += _plane_1d(words, x2 * 0.00390625, 8) + _plane_1d(words, x3 * 0.000244140625, 12)
        part += _plane_1d(words, x4 * 1.52587890625e-05, 16)
        part += _plane_1d(high, x5 * 0.00390625, 8) + _plane_1d(high, x6 * 0.000244140625, 12)
        part += _plane_1d(high, x7 * 1.52587890625e-05, 16)
        acc += part * scales.to(tl.float32)
    tl.store(y_ptr + rows, tl.sum(acc, axis=1).to(y_ptr.dtype.element_ty), mask=row_ok)
