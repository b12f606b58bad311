"""Spiking neurons as quantizers (design: spike.md §2).

Multi-level GIF neuron, burst form: an integer code q enters as current at t = 1 and the
neuron emits T steps of at most A = 2^a - 1 each (threshold 1 LSB, soft reset):

    mem = q;  for t in 1..T:  s_t = min(mem, A);  mem -= s_t        sum_t s_t == q  iff  q <= T*A

which is why the salient quantizer's top code is T*A (30 at a = 4, T = 2), not
2^(a + log2 T) - 1 (31): the larger code cannot be emitted as T spikes of a bits.

One GIF step with membrane offset 1/2 is the uniform quantizer itself: with current x/Δ + z,
s = clip(floor(x/Δ + z + 1/2), 0, L) = clamp(round(x/Δ) + z, 0, L) (away from ties).

Ternary (bidirectional) GIF over T steps represents the integers -T..T; in burst form the
planes of a code q are S_τ = sign(q) * [|q| >= τ], τ = 1..T, each in {-1, 0, 1}, and
sum_τ S_τ == q. Planes τ >= 2 are non-zero only where |q| >= τ (sparse).
"""

from __future__ import annotations

import torch

from ember.spike_codes import amplitude


def burst(codes: torch.Tensor, steps: int, a_bits: int) -> torch.Tensor:
    """(steps, *codes.shape) spikes of at most 2^a - 1 whose sum over steps is `codes`
    (non-negative integer-valued codes <= steps * (2^a - 1); larger ones raise)."""
    top = amplitude(a_bits)
    if bool((codes > steps * top).any()) or bool((codes < 0).any()):
        raise ValueError(f"codes must lie in 0..{steps * top} for {steps} spikes of {a_bits} bits")
    mem = codes.clone()
    spikes = []
    for _ in range(steps):
        spike = torch.minimum(mem, torch.full_like(mem, top))
        mem = mem - spike
        spikes.append(spike)
    return torch.stack(spikes)


def gif_step(current: torch.Tensor, levels: int, membrane: float = 0.5) -> torch.Tensor:
    """One multi-level GIF step with threshold 1: s = clip(floor(v + I), 0, L)."""
    return torch.clamp(torch.floor(membrane + current), 0, levels)


def ternary_planes(codes: torch.Tensor, steps: int) -> torch.Tensor:
    """(steps, *codes.shape) planes in {-1, 0, 1} with sum == codes, |codes| <= steps."""
    if bool((codes.abs() > steps).any()):
        raise ValueError(f"ternary codes must lie in -{steps}..{steps}")
    magnitude = codes.abs()
    return torch.stack([torch.sign(codes) * (magnitude >= tau).to(codes.dtype)
                        for tau in range(1, steps + 1)])
