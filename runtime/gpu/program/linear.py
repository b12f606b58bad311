"""The projections of a `gpu` program, each built once on its device from the program's
tensors (targets/gpu/program.py) and called on activations (..., K).

    dense        y = x W^T + b                       cuBLAS in the engine's dtype
    spike        SpikeLinear (passes/spike/linear.py): per token and input-channel group g
                 (plain, salient), codes q_g = clamp(round(x_g / Δ_g) + z_g, 0, top_g), then
                 y = (Σ_g Δ_g (q_g · W_g^T - z_g rowsum(W_g))) ⊙ s + b
    weight_only  y = x (Wq ⊙ s)^T + b                float activations, integer weights

How each runs:
- prefill (more than one token) of a spike layer: one int8 GEMM over both groups with their
  scales and zero points in the epilogue (int8_gemm_two_group). The input channels are
  permuted offline so the plain ones come first, and each group is padded with zero columns
  to a multiple of 128 (the kernel's split granularity; zero columns add nothing).
- decode (one token) where the weight codes fit 4 bits (w_bits <= 4, ternary): the
  activations are fake-quantized, x̂_g = Δ_g (q_g - z_g), which is the same product, and the
  packed 4-bit GEMV (int4_gemv) reads a quarter of fp16's bytes. The per-row scale becomes
  the packing's per-128 group scale (in fp16).
- codes that do not fit int8 (a_bits = 8, or T_s (2^a - 1) > 127): the fake-quantized
  product in the engine's dtype.
- `reference=True` (CPU): the same codes through the kernels' float64 references, exact
  against SpikeLinear up to fp32 rounding, which is how a CPU-only machine verifies a
  program.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from ember.runtime.gpu.int4.pack import GROUP, PackedInt4, pack_nibbles
from ember.runtime.gpu.int8.gemm import SEGMENT_ALIGN, int8_gemm_two_group
from ember.runtime.gpu.int8.quant import int8_gemm_two_group_reference
from ember.spike_codes import activation_codes, amplitude, group_ranges, weight_steps

INT8_TOP = 127


def make_linear(entry: dict[str, Any], tensors: dict[str, torch.Tensor], prefix: str,
                dtype: torch.dtype, reference: bool) -> torch.nn.Module:
    kind = entry["kind"]
    get = lambda name: tensors.get(f"{prefix}.{name}")  # noqa: E731
    if kind == "dense":
        return DenseLinear(get("weight"), get("bias"), dtype)
    if kind == "weight_only":
        return WeightOnlyLinear(get("codes_t"), get("weight_scale"), get("bias"), dtype)
    if kind == "spike":
        return SpikeGpuLinear(get, entry, dtype, reference)
    raise ValueError(f"{prefix}: unknown projection kind {kind!r}")


class DenseLinear(torch.nn.Module):
    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None,
                 dtype: torch.dtype) -> None:
        super().__init__()
        self.weight = weight.to(dtype)
        self.bias = None if bias is None else bias.to(dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight, self.bias)


class WeightOnlyLinear(torch.nn.Module):
    def __init__(self, codes_t: torch.Tensor, scale: torch.Tensor, bias: torch.Tensor,
                 dtype: torch.dtype) -> None:
        super().__init__()
        codes = codes_t.T.contiguous()  # (N, K) int8
        self.weight = (codes.float() * weight_steps(scale.float(), codes.shape[1])).to(dtype)
        self.bias = bias.to(dtype)
        # the int4 GEMV repacks per-row steps; block-wise steps (in / g, out) run dequantized
        per_row = scale.dim() == 1
        self.packed = packed_rows(codes, scale) if per_row and _decode_kernels(codes, dtype) \
            else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.packed is not None and x.is_cuda and _tokens(x) == 1:
            return _gemv(x, self.packed, self.bias)
        return F.linear(x, self.weight, self.bias)


class SpikeGpuLinear(torch.nn.Module):
    def __init__(self, get, entry: dict[str, Any], dtype: torch.dtype, reference: bool) -> None:
        super().__init__()
        self.dtype, self.reference = dtype, reference
        self.decoupled = bool(entry["decoupled"])
        top = amplitude(int(entry["a_bits"]))
        self.tops = (top, int(entry["steps"]) * top)
        plain_t, salient_t = get("plain_t"), get("salient_t")
        self.plain_idx, self.salient_idx = get("plain_idx"), get("salient_idx")
        self.k_plain = plain_t.shape[0]
        padded_plain = _round_up(plain_t.shape[0])
        padded_salient = _round_up(salient_t.shape[0])
        self.k_split = padded_plain
        n = plain_t.shape[1]
        w = torch.zeros(n, padded_plain + padded_salient, dtype=torch.int8, device=plain_t.device)
        w[:, : plain_t.shape[0]] = plain_t.T
        w[:, padded_plain: padded_plain + salient_t.shape[0]] = salient_t.T
        self.weight_codes = w  # (N, K') int8: plain columns, zeros, salient columns, zeros
        self.row_sums = torch.stack([plain_t.to(torch.int32).sum(0),
                                     salient_t.to(torch.int32).sum(0)], 1).to(torch.int32)
        self.scale = get("weight_scale").float()
        self.bias = get("bias").float()
        self.fits_int8 = max(self.tops) <= INT8_TOP
        self.packed = packed_rows(w, self.scale) if _decode_kernels(w, dtype) else None
        self._dequantized: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        flat = x.reshape(-1, shape[-1]).float()
        codes, deltas, zeros = self.activation_codes(flat)
        if self.reference:
            y = int8_gemm_two_group_reference(codes, deltas, self.weight_codes, self.scale,
                                              self.k_split, zeros, self.row_sums,
                                              out_dtype=torch.float32) + self.bias
        elif self.packed is not None and flat.shape[0] == 1:
            y = _gemv(self.fake_quantized(codes, deltas, zeros), self.packed, self.bias)
        elif self.fits_int8:
            y = int8_gemm_two_group(codes.to(torch.int8), deltas, self.weight_codes,
                                    self.scale, self.k_split, zeros.to(torch.int32),
                                    self.row_sums, out_dtype=torch.float32) + self.bias
        else:
            y = F.linear(self.fake_quantized(codes, deltas, zeros), self.dequantized(),
                         self.bias.to(self.dtype))
        return y.to(x.dtype).reshape(*shape[:-1], -1)

    def activation_codes(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor,
                                                          torch.Tensor]:
        """(codes (M, K') in the permuted, padded column order, Δ (M, 2), z (M, 2)), as
        float tensors holding integers."""
        parts = (x.index_select(-1, self.plain_idx), x.index_select(-1, self.salient_idx))
        ranges = group_ranges(x, parts[0], parts[1], self.decoupled)
        codes = x.new_zeros(x.shape[0], self.weight_codes.shape[1])
        deltas, zeros = x.new_ones(x.shape[0], 2), x.new_zeros(x.shape[0], 2)
        starts = (0, self.k_split)
        for g, (name, part) in enumerate(zip(("plain", "salient"), parts, strict=True)):
            if part.shape[-1] == 0:
                continue
            q, delta, zero = activation_codes(part, *ranges[name], self.tops[g])
            codes[:, starts[g]: starts[g] + part.shape[-1]] = q
            deltas[:, g:g + 1], zeros[:, g:g + 1] = delta, zero
        return codes, deltas, zeros

    def fake_quantized(self, codes: torch.Tensor, deltas: torch.Tensor,
                       zeros: torch.Tensor) -> torch.Tensor:
        """x̂ = Δ_g (q_g - z_g) per group, zero on the padding columns, in the engine dtype."""
        group = torch.zeros(codes.shape[1], dtype=torch.long, device=codes.device)
        group[self.k_split:] = 1
        x_hat = deltas[:, group] * (codes - zeros[:, group])
        x_hat[:, self.k_plain: self.k_split] = 0
        x_hat[:, self.k_split + self.salient_idx.numel():] = 0
        return x_hat.to(self.dtype)

    def dequantized(self) -> torch.Tensor:
        if self._dequantized is None:
            self._dequantized = (self.weight_codes.float() * self.scale[:, None]).to(self.dtype)
        return self._dequantized


def packed_rows(codes: torch.Tensor, scale: torch.Tensor) -> PackedInt4:
    """4-bit packing of integer codes (N, K) in [-8, 7] with one scale per row (as the
    packing's per-128 group scale, fp16)."""
    groups = codes.shape[1] // GROUP
    scales = scale.float()[:, None].expand(-1, groups).to(torch.float16).contiguous()
    return PackedInt4(pack_nibbles(codes), scales)


def _decode_kernels(codes: torch.Tensor, dtype: torch.dtype) -> bool:
    """Whether the 4-bit GEMV applies: half-precision activations (its kernel's), codes in
    [-8, 7] and K a multiple of 128."""
    return dtype in (torch.float16, torch.bfloat16) and codes.shape[1] % GROUP == 0 and \
        int(codes.min()) >= -8 and int(codes.max()) <= 7


def _gemv(x: torch.Tensor, packed: PackedInt4, bias: torch.Tensor) -> torch.Tensor:
    from ember.runtime.gpu.int4.gemv import int4_gemv

    flat = x.reshape(1, -1)
    return (int4_gemv(flat, packed).float() + bias.float()).to(x.dtype).reshape(
        *x.shape[:-1], -1)


def _tokens(x: torch.Tensor) -> int:
    return x.numel() // x.shape[-1]


def _round_up(k: int) -> int:
    """k rounded up to the split granularity, at least one block (an empty group gets one
    zero block so both groups exist)."""
    return max(SEGMENT_ALIGN, -(-k // SEGMENT_ALIGN) * SEGMENT_ALIGN)
