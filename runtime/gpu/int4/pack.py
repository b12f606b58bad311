"""4-bit weights for the decode GEMV: symmetric group-wise quantization and its packing.

Quantization (symmetric, no zero points), per output row n and group g of 128 inputs:

    s[n, g] = fp16(max_k |W[n, k]| / 7)            k in group g (s = 1 for an all-zero group)
    q[n, k] = clamp(round(W[n, k] / s[n, g]), -8, 7)
    W[n, k] ~ s[n, g] * q[n, k]

Packing: qweight (N, K/8) int32. Group g of a row is 16 words; nibble j (bits 4j..4j+3) of
word i holds q + 8 for k = 128 g + 16 j + i. The "planar" order lets the kernel read, for
each nibble position j, 16 consecutive activations of the group with one vector load; see
int4/_kernels.py for how the kernels unpack with two shifts per word (not one per nibble).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

GROUP = 128
WORDS_PER_GROUP = GROUP // 8  # 16 int32 words, 8 nibbles each


@dataclass(frozen=True)
class PackedInt4:
    qweight: torch.Tensor  # (N, K/8) int32
    scales: torch.Tensor  # (N, K/128) fp16

    @property
    def shape(self) -> tuple[int, int]:  # (N, K) = (out, in)
        return self.qweight.shape[0], self.qweight.shape[1] * 8

    def to(self, device: torch.device | str) -> PackedInt4:
        return PackedInt4(self.qweight.to(device), self.scales.to(device))


def quantize_int4(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(q (N, K) int8 in [-8, 7], scales (N, K/128) fp16) for weight (N, K), K % 128 == 0."""
    n, k = weight.shape
    if k % GROUP:
        raise ValueError(f"in_features must be a multiple of {GROUP}, got {k}")
    groups = weight.detach().float().reshape(n, k // GROUP, GROUP)
    scales = (groups.abs().amax(-1) / 7).to(torch.float16)
    scales = torch.where(scales == 0, torch.ones_like(scales), scales)  # all-zero groups
    q = torch.round(groups / scales.float()[..., None]).clamp(-8, 7)
    return q.reshape(n, k).to(torch.int8), scales


def pack_int4(weight: torch.Tensor) -> PackedInt4:
    """Quantize and pack weight (N, K) (any float dtype and device)."""
    q, scales = quantize_int4(weight)
    return PackedInt4(pack_nibbles(q), scales)


def pack_nibbles(q: torch.Tensor) -> torch.Tensor:
    """(N, K) int values in [-8, 7] -> (N, K/8) int32 in the planar group order."""
    n, k = q.shape
    u = (q.to(torch.int64) + 8).reshape(n, k // GROUP, 8, WORDS_PER_GROUP)  # [.., j, i]
    shifts = 4 * torch.arange(8, device=q.device).view(1, 1, 8, 1)
    words = (u << shifts).sum(2)  # (N, G, 16), < 2^32
    words = torch.where(words >= 2**31, words - 2**32, words)  # the same bits as int32
    return words.reshape(n, k // 8).to(torch.int32)


def unpack_int4(packed: PackedInt4) -> torch.Tensor:
    """(N, K) int8 in [-8, 7]: the inverse of `pack_nibbles`."""
    n, k = packed.shape
    words = packed.qweight.to(torch.int64).reshape(n, k // GROUP, 1, WORDS_PER_GROUP)
    shifts = 4 * torch.arange(8, device=words.device).view(1, 1, 8, 1)
    u = (words >> shifts) & 0xF  # arithmetic shift of the sign-extended word: masked anyway
    return (u - 8).reshape(n, k).to(torch.int8)


def dequantize_int4(packed: PackedInt4, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """s[n, g] * q[n, k] as (N, K) in `dtype`."""
    n, k = packed.shape
    q = unpack_int4(packed).to(torch.float32).reshape(n, k // GROUP, GROUP)
    return (q * packed.scales.float()[..., None]).reshape(n, k).to(dtype)


def int4_gemv_reference(x: torch.Tensor, packed: PackedInt4) -> torch.Tensor:
    """x (1, K) or (K,) -> x @ dequant(W)^T as (1, N), computed in float32."""
    w = dequantize_int4(packed, torch.float32)
    return x.reshape(1, -1).float() @ w.T
