"""Salient-channel detection (design: spike.md §3).

Activations, first order (SpikeLLM Theorem 1, read as the Taylor term g ⊙ x with
g = ∂(½‖Wx‖²)/∂x = WᵀW x), averaged over the N calibration tokens:

    score_j = (1/N) Σ_t x_tj (x_t WᵀW)_j = diag(XᵀX · WᵀW)_j / N = Σ_k G_jk (WᵀW)_jk / N

since WᵀW is symmetric. Only the Gram matrix G = XᵀX is accumulated (GPTQ needs it too). Linears
that read the same input (q/k/v, gate/up) share one mask: their score uses Σ_ℓ W_ℓᵀW_ℓ, the
Gram of the stacked weight. The score is signed (no abs), as in the paper.

Weights, second order (OBS column score in GPTQ's sequential problem):

    score_j = Σ_i w_ij² / U_jj²,   U = cholesky(H⁻¹, upper),  H = 2G/N + λ mean(diag H) I

The salient set is the top ⌈p · d_in⌉ channels; `random` draws as many uniformly (the
ablation that shows the score matters).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ember.passes.spike.quantizers import inverse_hessian_factor


class GramCollector:
    """Forward hooks that add xᵀx (float64) and the token count of each linear's input."""

    def __init__(self, linears: dict[str, nn.Linear]) -> None:
        self.gram: dict[str, torch.Tensor] = {}
        self.tokens: dict[str, int] = {}
        self._handles = [linear.register_forward_hook(self._hook(name))
                         for name, linear in linears.items()]

    def _hook(self, name: str):
        def record(module: nn.Module, args: tuple, output: torch.Tensor) -> None:
            x = args[0].detach().reshape(-1, args[0].shape[-1]).to(torch.float64)
            if name in self.gram:
                self.gram[name] += x.T @ x
            else:
                self.gram[name] = x.T @ x
            self.tokens[name] = self.tokens.get(name, 0) + x.shape[0]
        return record

    def close(self) -> None:
        for handle in self._handles:
            handle.remove()


def activation_saliency(gram: torch.Tensor, tokens: int,
                        weights: list[torch.Tensor]) -> torch.Tensor:
    """diag(G · Σ_ℓ W_ℓᵀW_ℓ) / N, one score per input channel."""
    wtw = sum(w.to(torch.float64).T @ w.to(torch.float64) for w in weights)
    return (gram.to(torch.float64) * wtw).sum(dim=1) / max(tokens, 1)


def weight_saliency(weight: torch.Tensor, gram: torch.Tensor, tokens: int) -> torch.Tensor:
    """Σ_i w_ij² / U_jj² per input column (OBS term of GPTQ's sequential problem)."""
    upper = inverse_hessian_factor(gram, tokens)
    return (weight.to(torch.float64) ** 2).sum(dim=0) / torch.diagonal(upper) ** 2


def salient_count(d_in: int, fraction: float) -> int:
    return math.ceil(fraction * d_in - 1e-9)


def top_channels(score: torch.Tensor, fraction: float) -> torch.Tensor:
    """Sorted indices of the ⌈p · d⌉ highest scores."""
    count = salient_count(score.numel(), fraction)
    return torch.sort(torch.topk(score, count).indices).values


def random_channels(d_in: int, fraction: float, generator: torch.Generator) -> torch.Tensor:
    count = salient_count(d_in, fraction)
    return torch.sort(torch.randperm(d_in, generator=generator)[:count]).values
