"""LoRA adapters on a model's linear layers, and their merge back into plain `nn.Linear`s.

    y = x W^T + b + (alpha / r) * x A^T B^T,     A in R^{r x in}, B in R^{out x r}

A starts Kaiming-uniform (a = sqrt 5) and B at zero, so an adapted model starts equal to the
original; the base weight is frozen. Merging gives W <- W + (alpha / r) B A, exactly the
adapted function (no dropout: the tuning runs here are short and dropout would make the
soft-vs-hard and resume checks noisy).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ember.passes.modules import replace_module


class LoRALinear(nn.Module):
    def __init__(self, base: nn.Linear, rank: int, alpha: float) -> None:
        super().__init__()
        self.base = base
        for p in base.parameters():
            p.requires_grad_(False)
        self.scaling = alpha / rank
        self.lora_a = nn.Parameter(torch.empty(rank, base.in_features))
        self.lora_b = nn.Parameter(torch.zeros(base.out_features, rank))
        nn.init.kaiming_uniform_(self.lora_a, a=math.sqrt(5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base(x) + (x @ self.lora_a.t() @ self.lora_b.t()) * self.scaling

    def merged(self) -> nn.Linear:
        """A plain Linear computing the same function."""
        linear = nn.Linear(self.base.in_features, self.base.out_features,
                           bias=self.base.bias is not None)
        with torch.no_grad():
            delta = (self.lora_b @ self.lora_a) * self.scaling
            linear.weight.copy_(self.base.weight + delta)
            if self.base.bias is not None:
                linear.bias.copy_(self.base.bias)
        return linear.to(self.base.weight.dtype)


def add_lora(model: nn.Module, names: list[str], rank: int, alpha: float) -> list[LoRALinear]:
    """Replace each named Linear by a LoRALinear wrapping it; returns the adapters."""
    adapters = []
    for name in names:
        adapter = LoRALinear(model.get_submodule(name), rank, alpha)
        replace_module(model, name, adapter)
        adapters.append(adapter)
    return adapters


def merge_lora(model: nn.Module) -> int:
    """Replace every LoRALinear in `model` by its merged Linear; returns how many."""
    names = [name for name, m in model.named_modules() if isinstance(m, LoRALinear)]
    for name in names:
        replace_module(model, name, model.get_submodule(name).merged())
    return len(names)
