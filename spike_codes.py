"""The codes of a spiking layer: what the spike pass's SpikeLinear computes and every engine
that runs it (ONNX lowering, gpu programs, the fpga golden model) must reproduce.

An a-bit spike carries at most A = 2^a - 1. Activations are coded per token from a range that
always holds zero, [lo, hi] = [min(x, 0), max(x, 0)] over the group's channels:

    Δ = max((hi - lo) / top, EPS),   z = round(-lo / Δ),   q = clamp(round(x / Δ) + z, 0, top)

with top = A for plain channels and T·A for salient ones (T spikes of A each). With
`decoupled` the plain and salient channel groups each get their own range; otherwise both
share the token's range over all channels.

Weights are integer codes times a step per output row, or (weight-only layers) per output and
block of g consecutive inputs: `weight_steps` spreads either onto every weight.
"""

from __future__ import annotations

import torch

EPS = 1e-8  # smallest step: a constant token quantizes to its zero point instead of NaN


def amplitude(a_bits: int) -> int:
    """A = 2^a - 1: the largest spike a bits carry."""
    return 2 ** a_bits - 1


def activation_codes(x: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor,
                     top: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(codes, Δ, z) for x with per-token range [lo, hi] (keepdim) and codes 0..top."""
    delta = torch.clamp((hi - lo) / top, min=EPS)
    zero = torch.round(-lo / delta)
    codes = torch.clamp(torch.round(x / delta) + zero, 0, top)
    return codes, delta, zero


def token_range_with_zero(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token [min(x, 0), max(x, 0)] over the last axis (keepdim)."""
    zero = torch.zeros((), dtype=x.dtype)
    return (torch.minimum(x.amin(dim=-1, keepdim=True), zero),
            torch.maximum(x.amax(dim=-1, keepdim=True), zero))


def group_ranges(x: torch.Tensor, plain: torch.Tensor, salient: torch.Tensor,
                 decoupled: bool) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Each channel group's per-token range: shared over all channels, or (`decoupled`) its
    own; an empty group gets none."""
    if not decoupled:
        shared = token_range_with_zero(x)
        return {"plain": shared, "salient": shared}
    return {name: token_range_with_zero(part) for name, part in
            (("plain", plain), ("salient", salient)) if part.shape[-1]}


def weight_steps(scale: torch.Tensor, d_in: int) -> torch.Tensor:
    """Each weight's step (out, in): a row's (`scale` (out,)) or its block's (`scale`
    (in / g, out), block k holding inputs k·g..(k+1)·g - 1)."""
    if scale.dim() == 1:
        return scale[:, None].expand(-1, d_in)
    return scale.T.repeat_interleave(d_in // scale.shape[0], dim=1)
