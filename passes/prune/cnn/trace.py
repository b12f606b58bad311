"""Tracing a CNN for channel pruning (passes/prune/cnn/groups.py) and the op tables that say
how each op treats the channel layout: elementwise ops keep it, spatial ops keep it per
channel, reshapes may flatten it, binary ops unite operands, cat concatenates them."""

from __future__ import annotations

import copy
import operator

import torch
import torch.nn.functional as F
from torch import fx, nn

from ember.errors import first_line
from ember.passes.prune.errors import PruneError


class _NamingTracer(fx.Tracer):
    """A tracer that remembers which module it was inside, to name it when tracing fails."""

    def __init__(self) -> None:
        super().__init__()
        self.inside: list[str] = []

    def call_module(self, m, forward, args, kwargs):
        self.inside.append(self.path_of_module(m))
        out = super().call_module(m, forward, args, kwargs)
        self.inside.pop()  # not in `finally`: after a failure the stack names the culprit
        return out


def trace(model: nn.Module) -> fx.GraphModule:
    """`torch.fx` trace of an eval-mode deep copy; `PruneError` names what failed to trace."""
    root = copy.deepcopy(model).eval()
    tracer = _NamingTracer()
    try:
        graph = tracer.trace(root)
    except Exception as exc:
        where = tracer.inside[-1] if tracer.inside else ""
        what = (f"module '{where}' ({type(root.get_submodule(where)).__name__})" if where
                else f"{type(model).__name__}.forward")
        raise PruneError(f"cannot trace {what}: {first_line(exc)}") from exc
    return fx.GraphModule(root, graph)


# --- op tables: what keeps the channel layout, and how a constant channel passes through ---

_ELEMENTWISE_MODULES = (nn.ReLU, nn.ReLU6, nn.GELU, nn.SiLU, nn.Sigmoid, nn.Hardswish,
                        nn.Hardsigmoid, nn.Tanh, nn.LeakyReLU, nn.Identity, nn.Dropout,
                        nn.Dropout2d)
_SPATIAL_MODULES = (nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d,
                    nn.Upsample)
_ELEMENTWISE_FUNCTIONS = {torch.relu, torch.relu_, F.relu, F.relu_, F.relu6, F.gelu, F.silu,
                          torch.sigmoid, F.sigmoid, F.hardswish, F.hardsigmoid, torch.tanh,
                          F.tanh, F.leaky_relu, F.hardtanh, torch.clamp, F.dropout,
                          F.dropout2d}
_SPATIAL_FUNCTIONS = {F.max_pool2d, F.avg_pool2d, F.adaptive_avg_pool2d, F.adaptive_max_pool2d,
                      F.interpolate}
_RESHAPE_FUNCTIONS = {torch.flatten, torch.reshape, torch.squeeze, torch.unsqueeze}
_BINARY_FUNCTIONS = {operator.add, operator.iadd, torch.add, operator.sub, operator.isub,
                     torch.sub, operator.mul, operator.imul, torch.mul, operator.truediv,
                     operator.itruediv, torch.div}
_CAT_FUNCTIONS = {torch.cat, torch.concat}
_REDUCE_FUNCTIONS = {torch.mean, torch.amax}
_ELEMENTWISE_METHODS = {"relu", "relu_", "sigmoid", "sigmoid_", "tanh", "clamp", "clamp_",
                        "contiguous", "clone"}
_RESHAPE_METHODS = {"flatten", "view", "reshape", "squeeze", "unsqueeze"}
_BINARY_METHODS = {"add", "add_", "sub", "sub_", "mul", "mul_", "div", "div_"}
_REDUCE_METHODS = {"mean", "amax"}
_PARAMETERISED = (nn.Conv2d, nn.Linear, nn.BatchNorm1d, nn.BatchNorm2d)
