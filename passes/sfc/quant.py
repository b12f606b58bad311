"""Quantized SFC convolutions: int8 spatial data, exact integer transforms, transform-domain
requantization, integer per-slot products.

With x_q = clamp(round(x / s_x), -127, 127) (one scale per tensor), the input transform and
slot map are exact on integers (|V| <= 36 * 127 for SFC-6, 16 * 127 for SFC-4; int16
holds them). Then, for `bits` b in (8, 6, 4) and q = 2^(b-1) - 1:

    Vq[p, t, c] = clamp(round(V[p, t, c] * s_x / s_v[p]), -q, q)        one scale per slot
    Uq[p, c, k] = clamp(round(U[p, c, k] / s_u[p, k]), -q, q)           per (slot, out channel)
    M[p, t, k]  = s_v[p] * s_u[p, k] * sum_c Vq[p, t, c] * Uq[p, c, k]  integer GEMMs

Both scales factor out of the channel sum, which is why there is no per-input-channel scale.
s_v comes from calibration data (max-abs of each slot), s_u from the weights (max-abs over
input channels), U from the fp32 weights. `bits="int16"` is the lossless mode: weights are
int8 per output channel in the spatial domain, V and U stay unrounded integers (|U| <= 9 *
127), and M = s_x * s_w[k] * sum_c V U equals the direct convolution of x_q and w_q exactly.

Rounding is half-to-even (torch.round, as ONNX QuantizeLinear). The integer sums run in
float64, which holds them exactly (|sum| <= 4572 * 1143 * C < 2^53), so this module is the
golden model that integer kernels must match bit for bit.
"""

from __future__ import annotations

import torch
from torch import nn

from ember.passes.sfc.conv import SFCConv2d
from ember.sfc_algorithms import Algorithm, group_weights, transformed_weights

BITS = (8, 6, 4, "int16")
INPUT_LEVELS = 127  # int8 spatial data, symmetric


def levels(bits: int) -> int:
    return 2 ** (bits - 1) - 1


class QuantizedSFCConv2d(SFCConv2d):
    def __init__(self, conv: nn.Conv2d, alg: Algorithm, bits: int | str, input_scale: float,
                 slot_max: torch.Tensor | None) -> None:
        """`input_scale`: s_x; `slot_max`: calibrated max |V * s_x| per slot (unused for
        int16)."""
        super().__init__(conv, alg)
        self.to(torch.float64)  # integers and their sums stay exact (module docstring)
        self.bits = bits
        self.register_buffer("input_scale", torch.tensor(float(input_scale), dtype=torch.float64))
        weight = conv.weight.detach().to(torch.float64)
        if bits == "int16":
            self._lossless_weights(weight, alg)
        else:
            self._requantized_weights(weight, alg, slot_max)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, bits={self.bits}"

    def _requantized_weights(self, weight: torch.Tensor, alg: Algorithm,
                             slot_max: torch.Tensor) -> None:
        q = levels(self.bits)
        u = transformed_weights(weight, alg)  # (P, C/G, K)
        u_scale = u.abs().amax(dim=1).clamp_min(1e-30) / q  # (P, K)
        u_int = torch.clamp(torch.round(u / u_scale[:, None]), -q, q)
        self.register_buffer("U", group_weights(u_int, self.groups))
        slot_scale = slot_max.to(torch.float64).clamp_min(1e-30) / q  # (P,)
        self.register_buffer("slot_scale", slot_scale)
        self.register_buffer("product_scale", slot_scale[:, None] * u_scale)  # (P, K)

    def _lossless_weights(self, weight: torch.Tensor, alg: Algorithm) -> None:
        w_scale = weight.abs().amax(dim=(1, 2, 3)).clamp_min(1e-30) / INPUT_LEVELS  # (K,)
        w_int = torch.clamp(torch.round(weight / w_scale[:, None, None, None]),
                            -INPUT_LEVELS, INPUT_LEVELS)
        u = transformed_weights(w_int, alg)  # exact integers
        self.register_buffer("U", group_weights(u, self.groups))
        scale = (self.input_scale * w_scale).expand(u.shape[0], -1)  # (P, K)
        self.register_buffer("product_scale", scale.contiguous())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x_int = torch.clamp(torch.round(x.to(torch.float64) / self.input_scale),
                            -INPUT_LEVELS, INPUT_LEVELS)
        return super().forward(x_int).to(x.dtype)

    def _products(self, v: torch.Tensor) -> torch.Tensor:
        """Integer GEMMs on the (requantized) slots, dequantized per (slot, out channel)."""
        if self.bits != "int16":
            q = levels(self.bits)
            ratio = (self.input_scale / self.slot_scale)[:, None, None]
            v = torch.clamp(torch.round(v * ratio), -q, q)
        return super()._products(v) * self.product_scale[:, None, :]

