"""GPT-2's `Conv1D` as `nn.Linear` and back.

`Conv1D(nf, nx)` computes `x @ W + b` with `W` stored (in, out); `nn.Linear` computes
`x @ Wᵀ + b` with `W` stored (out, in). The same function, the weight transposed: LoRA, the
spiking layers and the slicing rules all speak `nn.Linear`, so GPT-2 is worked on in that
form and written back as `Conv1D` for `from_pretrained`.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers.pytorch_utils import Conv1D


def linearize(model: nn.Module) -> list[str]:
    """Replace every `Conv1D` in `model` (in place) by the equal `nn.Linear`; their names."""
    names = [name for name, module in model.named_modules() if isinstance(module, Conv1D)]
    for name in names:
        conv = model.get_submodule(name)
        linear = nn.Linear(conv.nx, conv.nf, bias=conv.bias is not None,
                           device=conv.weight.device, dtype=conv.weight.dtype)
        with torch.no_grad():
            linear.weight.copy_(conv.weight.t())
            if conv.bias is not None:
                linear.bias.copy_(conv.bias)
        _replace(model, name, linear)
    return names


def restore_conv1d(model: nn.Module, names: list[str]) -> None:
    """Put `Conv1D` back (in place) where `linearize` put `nn.Linear`."""
    for name in names:
        linear = model.get_submodule(name)
        conv = Conv1D(linear.out_features, linear.in_features).to(
            device=linear.weight.device, dtype=linear.weight.dtype)
        with torch.no_grad():
            conv.weight.copy_(linear.weight.t())
            conv.bias.copy_(linear.bias)
        _replace(model, name, conv)


def _replace(model: nn.Module, name: str, module: nn.Module) -> None:
    parent, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, child, module)
