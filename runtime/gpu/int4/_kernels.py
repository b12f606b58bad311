"""Triton kernels of the int4 GEMV (imports triton: load only through int4_gemv).

Two kernels compute y[n] = sum_g s[n, g] sum_{k in g} (u[n, k] - 8) x[k], u the stored
nibble (see int4/pack.py for the planar layout: nibble j of word i of group g is
k = 128 g + 16 j + i). Neither splits K, so there are no atomics and no zero-fill launch.

`_int4_gemv_rows` (the fast one): a program owns R rows and steps through K BG groups at a
time. Its word tile is (4, BG, R, 4) = [a, g, n, b], word i = 4 a + b of group g of row n:
4 threads (a) x 8 threads (g) a warp, warps along g, and each thread's 4 consecutive words
(b, one 16-byte load) for all R rows in its registers. So the activations that a thread's
words need (8 planes x 4 words) are loaded, converted and pre-scaled once per step and
reused from registers for all R rows, and the sum over b stays in the thread. (The order
of the axes is chosen for Triton's layout pass, which lays threads along the most
contiguous axis and then along equally contiguous ones by index: a, then g, never n. The
scales, (BG, R), take one small layout conversion a step.)

Unpacking with one LOP3 and one FFMA per weight: for the nibble u at bits e..e+3 of a
32-bit source (e + 4 <= 23), (src & (0xF << e)) | 0x4B000000 is the fp32 number
2^23 + u 2^e (exponent of 2^23, u 2^e in the mantissa), so with x' = x 2^-e (exact)

    (2^23 + u 2^e) x' = u x + 2^(23 - e) x.

The constants 2^(23-e) x, and the offset 8 of the stored nibbles, are folded into the start
value of one FMA chain per word (a per-word constant, computed once per step for all rows):

    t = c + sum_j (2^23 + u_j 2^e_j) x'_j = sum_j (u_j - 8) x_j,
    c = -sum_j (2^(23 - e_j) + 8) x_j.

The chain is exact up to fp32 rounding of intermediates of size |c| ~ 2^(23 - min e) |x|,
so the sources keep e >= 10: lo = w << 10 holds nibbles 0, 1, 2 at bits 10, 14, 18, the
word itself nibbles 3, 4 at bits 12, 16, and hi = w >> 10 nibbles 5, 6, 7 at 10, 14, 18
(two shifts per word; hi's sign-extension lands above bit 21 and is masked off). The chain
runs from the smallest e up, which cancels the largest constants first; the error is
~1e-4 of the result, below the 2^-11 rounding of the fp16 output. Per word of 8 weights:
2 shifts, 8 LOP3, 8 FFMA, then per 4 words 3 FADD and 1 FFMA to add s[n, g] sum_b t to
the accumulator, which is summed over the row once at the end.

`_int4_gemv_flat` (the previous kernel, kept as a candidate): (BN rows, BW words) tiles,
activations reloaded per row, nibbles converted as (2^23 + u 2^e) - 2^23 (one more FADD
per weight).
"""

from __future__ import annotations

import triton
import triton.language as tl


@triton.jit
def _bits(src, magic, E: tl.constexpr):
    """2^23 + u 2^E as fp32, u the nibble at bits E..E+3 of the int32 `src` (E + 4 <= 23);
    magic = 0x4B000000, the exponent of 2^23."""
    return ((src & (0xF << E)) | magic).to(tl.float32, bitcast=True)


@triton.jit
def _load(ptrs, ok, MASKED: tl.constexpr):
    """tl.load(ptrs), masked by `ok` (0 where false) only in a tail step."""
    if MASKED:
        val = tl.load(ptrs, mask=ok, other=0)
    else:
        val = tl.load(ptrs)
    return val


@triton.jit
def _word_dots(words, magic, c, x0, x1, x2, x3, x4, x5, x6, x7):
    """t = c + sum_j (2^23 + u_j 2^e_j) x_j 2^-e_j = sum_j (u_j - 8) x_j for each word, given
    the pre-scaled planes x_j 2^-e_j and c = -sum_j (2^(23-e_j) + 8) x_j. FMAs in ascending
    e: the constants 2^(23-e) x cancel largest first."""
    lo = words << 10  # nibbles 0, 1, 2 at bits 10, 14, 18
    hi = words >> 10  # nibbles 5, 6, 7 at bits 10, 14, 18
    t = tl.fma(_bits(lo, magic, 10), x0, c)
    t = tl.fma(_bits(hi, magic, 10), x5, t)
    t = tl.fma(_bits(words, magic, 12), x3, t)
    t = tl.fma(_bits(lo, magic, 14), x1, t)
    t = tl.fma(_bits(hi, magic, 14), x6, t)
    t = tl.fma(_bits(words, magic, 16), x4, t)
    t = tl.fma(_bits(lo, magic, 18), x2, t)
    return tl.fma(_bits(hi, magic, 18), x7, t)


@triton.jit
def _rows_tiles(q_ptr, s_ptr, rows, G, KW, g0, BG: tl.constexpr, MASKED: tl.constexpr):
    """The weights of groups g = g0 .. g0 + BG - 1 of the rows n: words (4, BG, R, 4) int32
    with word i = 4 a + b of each group, and scales (BG, R) fp16."""
    g = g0 + tl.arange(0, BG)[:, None]  # (BG, 1)
    ok = g < G
    n = rows[None, :]  # (1, R)
    words = _load(q_ptr + (n * KW + g * 16)[None, :, :, None] + _word_index(),
                  ok[None, :, :, None], MASKED)
    return words, _load(s_ptr + n * G + g, ok, MASKED)


@triton.jit
def _rows_x(x_ptr, G, g0, BG: tl.constexpr, MASKED: tl.constexpr):
    """The activations x0..x7 (4, BG, 1, 4) of nibbles 0..7 of the words of groups g0 ..
    g0 + BG - 1 (k = 128 g + 16 j + i), as stored."""
    g = (g0 + tl.arange(0, BG))[None, :, None, None]
    ok = g < G
    xs = x_ptr + g * 128 + _word_index()
    return (_load(xs, ok, MASKED), _load(xs + 16, ok, MASKED), _load(xs + 32, ok, MASKED),
            _load(xs + 48, ok, MASKED), _load(xs + 64, ok, MASKED), _load(xs + 80, ok, MASKED),
            _load(xs + 96, ok, MASKED), _load(xs + 112, ok, MASKED))


@triton.jit
def _prescaled(x0, x1, x2, x3, x4, x5, x6, x7):
    """c = -sum_j (2^(23-e_j) + 8) x_j and the planes x_j 2^-e_j, in fp32."""
    x0, x1, x2, x3 = x0.to(tl.float32), x1.to(tl.float32), x2.to(tl.float32), x3.to(tl.float32)
    x4, x5, x6, x7 = x4.to(tl.float32), x5.to(tl.float32), x6.to(tl.float32), x7.to(tl.float32)
    # 2^(23-e) + 8 for e = 10, 14, 18 (x0, x1, x2; x5, x6, x7), 12 (x3) and 16 (x4); c is
    # rounded like any fp32 sum (~2^-24 |c|, part of the ~1e-4 above)
    c = -(8200.0 * (x0 + x5) + 2056.0 * x3 + 520.0 * (x1 + x6) + 136.0 * x4
          + 40.0 * (x2 + x7))
    return (c, x0 * 0.0009765625, x1 * 6.103515625e-05, x2 * 3.814697265625e-06,
            x3 * 0.000244140625, x4 * 1.52587890625e-05, x5 * 0.0009765625,
            x6 * 6.103515625e-05, x7 * 3.814697265625e-06)


@triton.jit
def _group_sums(words, scales, MAGIC, c, x0, x1, x2, x3, x4, x5, x6, x7):
    """s[n, g] sum_b t[a, g, n, b] (4, BG, R) from the pre-scaled planes; the sum over b (a
    thread's 4 words) stays in the thread."""
    t = _word_dots(words, MAGIC, c, x0, x1, x2, x3, x4, x5, x6, x7)
    return tl.sum(t, axis=3) * scales.to(tl.float32)[None, :, :]


@triton.jit
def _rows_step(acc, x_ptr, q_ptr, s_ptr, rows, G, KW, MAGIC, g0, BG: tl.constexpr,
               MASKED: tl.constexpr):
    """acc (4, BG, R) plus the group sums of groups g0 .. g0 + BG - 1 (loads issued
    together, then computed)."""
    words, scales = _rows_tiles(q_ptr, s_ptr, rows, G, KW, g0, BG, MASKED)
    x0, x1, x2, x3, x4, x5, x6, x7 = _rows_x(x_ptr, G, g0, BG, MASKED)
    c, x0, x1, x2, x3, x4, x5, x6, x7 = _prescaled(x0, x1, x2, x3, x4, x5, x6, x7)
    return acc + _group_sums(words, scales, MAGIC, c, x0, x1, x2, x3, x4, x5, x6, x7)


@triton.jit
def _word_index():
    """4 a + b as (4, 1, 1, 4): a thread's 4 consecutive words (b) are one 16-byte load, 4
    threads (a) cover a group's 16 words."""
    return 4 * tl.arange(0, 4)[:, None, None, None] + tl.arange(0, 4)[None, None, None, :]


@triton.jit
def _int4_gemv_rows(x_ptr, q_ptr, s_ptr, y_ptr, N, G, KW, MAGIC,
                    R: tl.constexpr, BG: tl.constexpr, STAGES: tl.constexpr):
    """y[n] for the R rows n of this program; rows past N repeat row N - 1 unstored, so the
    loads need no row mask, and only a last partial step of groups is masked. MAGIC =
    0x4B000000 comes as an argument, not a constant: in a register, ptxas merges the AND and
    the OR of each nibble into one LOP3 (an instruction takes one immediate, not two)."""
    n = tl.program_id(0) * R + tl.arange(0, R)
    rows = tl.minimum(n, N - 1)
    acc = tl.zeros((4, BG, R), dtype=tl.float32)
    full = G // BG
    for step in tl.range(0, full, num_stages=STAGES):
        acc = _rows_step(acc, x_ptr, q_ptr, s_ptr, rows, G, KW, MAGIC, step * BG, BG, False)
    if full * BG < G:
        acc = _rows_step(acc, x_ptr, q_ptr, s_ptr, rows, G, KW, MAGIC, full * BG, BG, True)
    y = tl.sum(tl.sum(acc, axis=1), axis=0)
    tl.store(y_ptr + n, y.to(y_ptr.dtype.element_ty), mask=n < N)


@triton.jit
def _plane_1d(src, x, E: tl.constexpr):
    """u * x for the nibble at bits E..E+3 of `src` (BN, BW), x (BW,) pre-scaled by 2^-E."""
    bits = (src & (0xF << E)) | 0x4B000000
    return (bits.to(tl.float32, bitcast=True) - 8388608.0) * x[None, :]


@triton.jit
def _int4_gemv_flat(x_ptr, q_ptr, s_ptr, y_ptr, N, G, KW,
                    BN: tl.constexpr, BW: tl.constexpr, STAGES: tl.constexpr):
    """The same product over 2-D (BN rows, BW words) tiles: per-word partial sums with the
    word's group scale applied elementwise, reduced over the row once at the end."""
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
