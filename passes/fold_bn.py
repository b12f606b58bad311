"""Fold BatchNorm into the convolution or linear layer that feeds it.

In inference mode BatchNorm is a per-channel affine map,

    BN(y)_c = gamma_c * (y_c - mean_c) / sqrt(var_c + eps) + beta_c = s_c * y_c + t_c,
    s_c = gamma_c / sqrt(var_c + eps),   t_c = beta_c - s_c * mean_c,

so when `y = W x + b` comes straight from a Conv or Linear layer whose output has no other
user, `BN(W x + b) = (s * W) x + (s * b + t)`: scale each output channel's weights by `s_c`
and set the bias to `s_c * b_c + t_c`. The BatchNorm module is replaced by `nn.Identity`.
The rewrite is exact up to fp32 rounding.

Pairs are found on a `torch.fx` trace with shapes propagated from the example inputs, so the
channel axis is checked, not assumed. What cannot be folded is counted under `skipped:*`,
including BatchNorm in training mode (it normalises with batch statistics, not the running
ones), producers whose weight or bias is shared with another module (rescaling it would
change the other module too) and parametrized weights (weight norm, spectral norm: the
stored tensor is recomputed, so an in-place rescale would not stick).
"""

from __future__ import annotations

import copy
from collections import Counter
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import fx, nn
from torch.fx.passes.shape_prop import ShapeProp
from torch.nn.utils import parametrize

from ember.passes.contract import PassContext, PassResult, Tolerance
from ember.passes.modules import replace_module

_CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_INTO = {"conv": _CONVS, "linear": (nn.Linear,), "all": (*_CONVS, nn.Linear)}


@dataclass(frozen=True)
class FoldBatchNorm:
    """`into`: which producers to fold into: "conv", "linear" or "all"."""

    into: str = "all"
    tolerance: ClassVar[Tolerance | None] = None

    def __post_init__(self) -> None:
        if self.into not in _INTO:
            raise ValueError(f"into must be one of {sorted(_INTO)}, got {self.into!r}")

    def __call__(self, model: nn.Module, ctx: PassContext) -> PassResult:
        batchnorms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        if not batchnorms:
            return PassResult(model, False, {"folded": 0})
        if any(m.training for m in model.modules()):  # shape propagation would update BN stats
            return PassResult(model, False, {"folded": 0, "skipped:training_mode": len(batchnorms)})
        try:
            pairs, skipped = _foldable_pairs(model, ctx, _INTO[self.into])
        except Exception:  # torch.fx cannot trace every model (data-dependent control flow)
            return PassResult(model, False, {"folded": 0, "skipped:untraceable": len(batchnorms)})
        if not pairs:
            return PassResult(model, False, {"folded": 0, **skipped})
        folded = copy.deepcopy(model)
        modules = dict(folded.named_modules())
        for producer_name, bn_name in pairs:
            _fold_into(modules[producer_name], modules[bn_name])
            replace_module(folded, bn_name, nn.Identity())
        return PassResult(folded, True, {"folded": len(pairs), **skipped})


def _foldable_pairs(
    model: nn.Module, ctx: PassContext, producers: tuple[type, ...]
) -> tuple[list[tuple[str, str]], dict[str, int]]:
    graph_module = fx.symbolic_trace(model)
    if ctx.example_inputs:
        with torch.no_grad():
            ShapeProp(graph_module).propagate(*ctx.example_inputs.values())
    modules = dict(model.named_modules())
    shared = _shared_parameter_ids(model)
    calls = Counter(n.target for n in graph_module.graph.nodes if n.op == "call_module")
    pairs: list[tuple[str, str]] = []
    skipped: Counter[str] = Counter()
    for node in graph_module.graph.nodes:
        if node.op == "call_module" and isinstance(
            modules[node.target], nn.modules.batchnorm._BatchNorm
        ):
            reason = _why_not_foldable(node, modules, calls, producers, shared)
            if reason:
                skipped[f"skipped:{reason}"] += 1
            else:
                pairs.append((node.args[0].target, node.target))
    return pairs, dict(skipped)


def _shared_parameter_ids(model: nn.Module) -> set[int]:
    """ids of parameters that more than one module holds."""
    counts = Counter(id(p) for _, p in model.named_parameters(remove_duplicate=False))
    return {pid for pid, n in counts.items() if n > 1}


def _why_not_foldable(
    bn_node: fx.Node, modules: dict[str, nn.Module], calls: Counter, producers: tuple[type, ...],
    shared: set[int],
) -> str | None:
    """The reason a BatchNorm cannot be folded into its input's producer, or None."""
    bn = modules[bn_node.target]
    src = bn_node.args[0] if bn_node.args else None
    if not (isinstance(src, fx.Node) and src.op == "call_module"):
        return "input_not_a_layer"
    producer = modules[src.target]
    if not isinstance(producer, producers):
        return "input_not_conv_or_linear"
    if len(src.users) != 1:
        return "producer_output_shared"
    if parametrize.is_parametrized(producer):
        return "parametrized_weight"
    if any(id(p) in shared for p in producer.parameters(recurse=False)):
        return "shared_weight"
    if calls[src.target] != 1 or calls[bn_node.target] != 1:
        return "module_called_twice"
    if bn.running_mean is None or bn.running_var is None:
        return "no_running_stats"
    out_channels = producer.out_channels if isinstance(producer, _CONVS) else producer.out_features
    if bn.num_features != out_channels:
        return "channel_mismatch"
    meta = src.meta.get("tensor_meta")
    if isinstance(producer, nn.Linear) and (meta is None or len(meta.shape) != 2):
        return "linear_channels_not_on_axis_1"  # BatchNorm normalises axis 1, Linear the last
    return None


@torch.no_grad()
def _fold_into(producer: nn.Module, bn: nn.modules.batchnorm._BatchNorm) -> None:
    scale = torch.rsqrt(bn.running_var + bn.eps)
    if bn.affine:
        scale = scale * bn.weight
    shift = -bn.running_mean * scale + (bn.bias if bn.affine else 0.0)
    weight = producer.weight
    weight.mul_(scale.reshape(-1, *([1] * (weight.dim() - 1))).to(weight.dtype))
    old_bias = producer.bias if producer.bias is not None else torch.zeros_like(scale)
    new_bias = (old_bias * scale + shift).to(weight.dtype)
    producer.bias = nn.Parameter(new_bias, requires_grad=weight.requires_grad)
