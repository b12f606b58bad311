"""`SpikeLinear`: a linear layer on integer weights and spiking integer activations
(design: spike.md §5.3).

Input channels split into the plain group NS and the salient group S (static, from
calibration). Per token, with A = 2^a - 1 and the salient top code QH = T_s·A (decomposition
exact, spike/neurons.py):

    shared range (paper):    [lo, hi] = [min(x, 0), max(x, 0)] over all channels, both groups
    decoupled (spec §5.4):   each group its own range over its own channels
    q_NS = codes(x_NS; A),  q_S = codes(x_S; QH)               (spike_codes.activation_codes)
    acc_g = q_g · Wq_gᵀ - z_g · rowsum(Wq_g)                    int32, the group's own columns
    acc_S = Σ_t burst(q_S)_t · Wq_Sᵀ - z_S · rowsum(Wq_S)        T_s spikes of a bits each
    y = (Δ_NS · acc_NS + Δ_S · acc_S) ⊙ w_scale + bias

The range always contains 0 (a project choice): then z lies in 0..top and every integer above
fits int32 for a <= 8 (|acc| <= 510 · 127 · 1536 < 2^31), as the ONNX lowering computes it.

`exact=True` (the default, and what export and verification use) runs exactly that, with
integer-valued float64 sums (exact below 2^53) and the fp32 epilogue in the lowering's order,
so ONNX Runtime's integer kernels reproduce it. `exact=False` is the same function as fake
quantization, x̂ = Δ(q - z) per group and y = F.linear(x̂, Wq ⊙ s) (fp32, fast; calibration and
perplexity use it). `a_bits=0` means activations stay float (weight-only); such layers may
have one weight step per output and per block of g consecutive inputs, `weight_scale`
(in / g, out) instead of (out,).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ember.passes.spike.neurons import burst
from ember.spike_codes import activation_codes, amplitude, group_ranges, weight_steps

_SPLIT = ("plain", "salient")


@torch.library.custom_op("ember::spike_linear", mutates_args=())
def spike_linear(x: torch.Tensor, plain_t: torch.Tensor, salient_t: torch.Tensor,
                 plain_idx: torch.Tensor, salient_idx: torch.Tensor, plain_sums: torch.Tensor,
                 salient_sums: torch.Tensor, weight_scale: torch.Tensor, bias: torch.Tensor,
                 a_bits: int, steps: int, decoupled: bool) -> torch.Tensor:
    """The integer semantics of SpikeLinear (module docstring); `*_t` are int8 (K_g, out)."""
    top = amplitude(a_bits)
    xs = {"plain": x.index_select(-1, plain_idx), "salient": x.index_select(-1, salient_idx)}
    ranges = group_ranges(x, xs["plain"], xs["salient"], decoupled)
    weights = {"plain": plain_t, "salient": salient_t}
    sums = {"plain": plain_sums, "salient": salient_sums}
    y = None
    for group in _SPLIT:
        if weights[group].shape[0] == 0:
            continue
        group_top = top if group == "plain" else steps * top
        codes, delta, zero = activation_codes(xs[group], *ranges[group], group_top)
        weight = weights[group].to(torch.float64)
        if group == "salient":  # T_s spikes of a bits each: the decomposition is the reference
            acc = sum(spike.to(torch.float64) @ weight for spike in burst(codes, steps, a_bits))
        else:
            acc = codes.to(torch.float64) @ weight
        corrected = acc - zero.to(torch.float64) * sums[group].to(torch.float64)
        part = corrected.to(torch.float32) * delta
        y = part if y is None else y + part
    return y * weight_scale + bias


@spike_linear.register_fake
def _(x, plain_t, salient_t, plain_idx, salient_idx, plain_sums, salient_sums, weight_scale,
      bias, a_bits, steps, decoupled):
    return x.new_empty((*x.shape[:-1], weight_scale.shape[0]))


@torch.library.custom_op("ember::weight_only_linear", mutates_args=())
def weight_only_linear(x: torch.Tensor, codes_t: torch.Tensor, weight_scale: torch.Tensor,
                       bias: torch.Tensor) -> torch.Tensor:
    """y = x · (Wq ⊙ s)ᵀ + b with float activations; `codes_t` is int8 (in, out), `s` per
    output (out,) or per block of inputs and output (in / g, out)."""
    return x @ dequantized_t(codes_t, weight_scale) + bias


@weight_only_linear.register_fake
def _(x, codes_t, weight_scale, bias):
    return x.new_empty((*x.shape[:-1], weight_scale.shape[-1]))


def dequantized_t(codes_t: torch.Tensor, weight_scale: torch.Tensor) -> torch.Tensor:
    """(Wq ⊙ s)ᵀ in fp32 (in, out), each weight times its row's or its block's step."""
    return codes_t.to(torch.float32) * weight_steps(weight_scale, codes_t.shape[0]).T


class SpikeLinear(nn.Module):
    """Integer weights `codes` (out, in) with per-row `weight_scale`; `salient` input
    channels get `steps` spikes, the rest one. `a_bits=0`: float activations.
    `weight_grid="ternary"`: codes are ternary GIF steps, `weight_columns` (salient weight
    columns, up to `steps` steps each) are kept with the layer for reports and reloads."""

    def __init__(self, codes: torch.Tensor, weight_scale: torch.Tensor,
                 bias: torch.Tensor | None, salient: torch.Tensor, a_bits: int, steps: int,
                 decoupled: bool = False, weight_grid: str = "int",
                 weight_columns: torch.Tensor | None = None) -> None:
        super().__init__()
        if not a_bits and salient.numel():
            raise ValueError("float activations (a_bits=0) have no salient activation channels")
        d_out, d_in = codes.shape
        if weight_scale.dim() == 2 and (a_bits or d_in % weight_scale.shape[0]):
            raise ValueError("block-wise weight steps (in / g, out) need float activations "
                             "and g dividing the inputs")
        self.in_features, self.out_features = d_in, d_out
        self.a_bits, self.steps, self.decoupled = a_bits, steps, decoupled
        self.weight_grid = weight_grid  # "int" (w_bits) or "ternary": for reports only
        self.exact = True
        is_salient = torch.zeros(d_in, dtype=torch.bool)
        is_salient[salient] = True
        plain = torch.nonzero(~is_salient).flatten()
        salient = torch.nonzero(is_salient).flatten()
        codes = codes.to(torch.int8)
        self.register_buffer("plain_idx", plain)
        self.register_buffer("salient_idx", salient)
        self.register_buffer("plain_t", codes[:, plain].T.contiguous())
        self.register_buffer("salient_t", codes[:, salient].T.contiguous())
        for group in ("plain", "salient"):  # row sums of each group's own columns (pitfall 3)
            codes_t = getattr(self, f"{group}_t")
            sums = codes_t.to(torch.int32).sum(0, dtype=torch.int32)
            self.register_buffer(f"{group}_sums", sums)
        self.register_buffer("weight_scale", weight_scale.detach().to(torch.float32).clone())
        b = torch.zeros(d_out) if bias is None else bias.detach().to(torch.float32).clone()
        self.register_buffer("bias", b)
        columns = torch.empty(0, dtype=torch.long) if weight_columns is None else weight_columns
        self.register_buffer("salient_weight_columns", columns.to(torch.long).clone())
        self._dequantized: torch.Tensor | None = None  # fake-quant cache (weights are fixed)

    def extra_repr(self) -> str:
        acts = f"a_bits={self.a_bits}" if self.a_bits else "float activations"
        if self.weight_group:
            acts += f", weight blocks of {self.weight_group}"
        return (f"in={self.in_features}, out={self.out_features}, {acts}, "
                f"salient={self.salient_idx.numel()}x{self.steps}, "
                f"{'decoupled' if self.decoupled else 'shared'} ranges")

    @property
    def weight_group(self) -> int:
        """Inputs per weight step: 0 for one step per output row."""
        scale = self.weight_scale
        return self.in_features // scale.shape[0] if scale.dim() == 2 else 0

    def codes(self) -> torch.Tensor:
        """The integer weight matrix (out, in), int8."""
        codes = torch.empty(self.out_features, self.in_features, dtype=torch.int8)
        codes[:, self.plain_idx] = self.plain_t.T
        codes[:, self.salient_idx] = self.salient_t.T
        return codes

    def _load_from_state_dict(self, *args, **kwargs) -> None:
        self._dequantized = None  # new codes or scales: the fake-quant cache is stale
        super()._load_from_state_dict(*args, **kwargs)

    def dequantized_weight(self) -> torch.Tensor:
        if self._dequantized is None:
            self._dequantized = dequantized_t(self.codes().T, self.weight_scale).T
        return self._dequantized

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.a_bits:  # no salient channels: plain_t is the whole (in, out) matrix
            return weight_only_linear(x, self.plain_t, self.weight_scale, self.bias)
        if self.exact:
            return spike_linear(x, self.plain_t, self.salient_t, self.plain_idx,
                                self.salient_idx, self.plain_sums, self.salient_sums,
                                self.weight_scale, self.bias, self.a_bits, self.steps,
                                self.decoupled)
        return F.linear(self.fake_quantized_input(x), self.dequantized_weight(), self.bias)

    def fake_quantized_input(self, x: torch.Tensor) -> torch.Tensor:
        """x̂ = Δ_g (q_g - z_g) on each group's channels, in the original channel order."""
        top = amplitude(self.a_bits)
        plain, salient = x[..., self.plain_idx], x[..., self.salient_idx]
        ranges = group_ranges(x, plain, salient, self.decoupled)
        out = torch.empty_like(x)
        for group, part, group_top in (("plain", plain, top),
                                       ("salient", salient, self.steps * top)):
            if part.shape[-1] == 0:
                continue
            codes, delta, zero = activation_codes(part, *ranges[group], group_top)
            index = self.plain_idx if group == "plain" else self.salient_idx
            out[..., index] = delta * (codes - zero)
        return out
