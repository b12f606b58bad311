"""Fixed-point requantization, the only way a real scale enters the integer design.

A real multiplier m > 0 becomes an integer `mult` in [2^14, 2^15) and a right shift n >= 1
with m ~= mult / 2^n (relative error <= 2^-15). An accumulator then requantizes as

    y = clamp((acc * mult + 2^(n-1)) >> n, lo, hi)          (>> arithmetic: floor)

i.e. round half up of acc * m. numpy (int64 `>>` floors) and C++ (`>>` on int64_t, arithmetic
in g++ and defined so in C++20) compute the same integers; `check_headroom` makes sure
acc * mult cannot overflow int64.
"""

from __future__ import annotations

import math

import numpy as np

MULT_BITS = 15  # mult < 2^15: a 16-bit signed operand, one DSP port
MAX_SHIFT = 62


def fixed_point(real: np.ndarray | float) -> tuple[np.ndarray, np.ndarray]:
    """(mult, shift) int64 arrays with real ~= mult / 2^shift elementwise; a zero multiplier
    (a channel whose weights are all zero) becomes mult 0, shift 1."""
    real = np.atleast_1d(np.asarray(real, np.float64))
    if np.any(real < 0) or not np.all(np.isfinite(real)):
        raise ValueError("requantization multipliers must be finite and >= 0")
    mult = np.zeros(real.shape, np.int64)
    shift = np.ones(real.shape, np.int64)
    for i, m in np.ndenumerate(real):
        if m == 0:
            continue
        n = MULT_BITS - 1 - math.floor(math.log2(m))
        q = round(m * 2.0 ** n)
        if q == 1 << MULT_BITS:  # rounding reached the next power of two
            q, n = q >> 1, n - 1
        if not 1 <= n <= MAX_SHIFT:
            raise ValueError(f"requantization multiplier {m:.3g} is out of the fixed-point range")
        mult[i], shift[i] = q, n
    return mult, shift


def requantize(acc: np.ndarray, mult: np.ndarray, shift: np.ndarray, lo: int, hi: int,
               axis: int = 1) -> np.ndarray:
    """clamp((acc * mult + 2^(shift-1)) >> shift, lo, hi), per channel along `axis`."""
    acc = np.asarray(acc, np.int64)
    shape = [1] * acc.ndim
    if np.size(mult) > 1:
        shape[axis] = np.size(mult)
    mult = np.asarray(mult, np.int64).reshape(shape)
    shift = np.asarray(shift, np.int64).reshape(shape)
    y = (acc * mult + (np.int64(1) << (shift - 1))) >> shift
    return np.clip(y, lo, hi)


def check_headroom(bound: int, mult: np.ndarray, what: str) -> None:
    """Refuse a layer whose |acc| <= bound could overflow int64 once multiplied."""
    if bound * int(np.max(mult, initial=0)) >= 1 << 62:
        raise ValueError(f"{what}: accumulators up to {bound} overflow the 64-bit requantizer")


def bits_for(bound: int) -> int:
    """Signed bits that hold every integer in [-bound, bound]."""
    return max(2, int(bound).bit_length() + 1)
