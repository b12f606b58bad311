"""Reading the torch model after passes, for the targets that lower it (fpga, gpu).

Two shapes of model are read:
- a Llama-style causal LM inside ember's CausalLMLogits wrapper: `causal_lm` finds it and
  `check_decoder` declines blocks the targets cannot express; each target then reads the
  decoder's structure (embedding, blocks, norm, head) itself;
- anything else as a graph: `read_graph` folds BatchNorm into the conv or linear that feeds it
  (the fold_bn pass) and traces the model with torch.fx into a list of supported operations,
  each with its per-image output shape.

Supported graph operations: Conv2d (any stride, padding, groups), SFCConv2d, Linear,
ReLU/ReLU6, MaxPool2d, AvgPool2d, AdaptiveAvgPool2d to 1x1, Flatten, residual add, and
Identity/Dropout (which vanish in eval mode); BatchNorm that is not folded only on float
targets. Anything else is declined with a message naming the node and the op, before any
work starts.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import fx, nn

from ember.passes.sfc.conv import SFCConv2d
from ember.passes.sfc.quant import QuantizedSFCConv2d

LEAVES = (nn.Conv2d, nn.Linear, nn.ReLU, nn.ReLU6, nn.MaxPool2d, nn.AvgPool2d,
          nn.AdaptiveAvgPool2d, nn.Flatten, nn.Identity, nn.Dropout, nn.BatchNorm2d,
          nn.BatchNorm1d, SFCConv2d)
ADD = (operator.add, torch.add)
RELU = (torch.relu, nn.functional.relu)
FLATTEN = (torch.flatten,)


class UnsupportedModule(ValueError):
    """The model has a layer or an operation the target cannot express."""


def causal_lm(module: Any) -> Any | None:
    """The Llama-style transformers model inside ember's CausalLMLogits wrapper, or None."""
    lm = getattr(module, "lm", None)
    body = getattr(lm, "model", None)
    if body is None or not all(hasattr(body, a) for a in ("embed_tokens", "layers", "norm")):
        return None
    return lm


def check_decoder(lm: Any, target: str = "fpga") -> None:
    """UnsupportedModule unless every block is Llama-style (q/k/v/o, gate/up/down) with SiLU."""
    config = lm.config
    if getattr(config, "hidden_act", "silu") != "silu":
        raise UnsupportedModule(f"activation {config.hidden_act} has {_no_kernel(target)} "
                                f"(SiLU only)")
    for i, layer in enumerate(lm.model.layers):
        parts = [(layer.self_attn, ("q_proj", "k_proj", "v_proj", "o_proj")),
                 (layer.mlp, ("gate_proj", "up_proj", "down_proj"))]
        for owner, names in parts:
            missing = [n for n in names if not hasattr(owner, n)]
            if missing:
                raise UnsupportedModule(f"layer {i}: no {missing[0]}; only Llama-style blocks "
                                        f"lower")
            if target == "fpga" and any(_block_steps(getattr(owner, n)) for n in names):
                raise UnsupportedModule("block-wise weight steps (spike w_group) have "
                                        f"{_no_kernel(target)} (one step per output row)")
    if not isinstance(lm.lm_head, nn.Linear):
        raise UnsupportedModule(f"a quantized LM head (spike lm_head=true) has "
                                f"{_no_kernel(target)}")


def read_graph(module: nn.Module, input_name: str, example: np.ndarray,
               target: str = "fpga") -> tuple[list[Node], str, int]:
    """(nodes, output node, BatchNorms folded) of a one-input, one-output model."""
    model, folded = fold_batchnorm(module, input_name, example)
    nodes, output = capture(model, torch.from_numpy(example), target)
    return nodes, output, folded


def fold_batchnorm(module: nn.Module, input_name: str,
                   example: np.ndarray) -> tuple[nn.Module, int]:
    """The fold_bn pass, so models with BatchNorm after a conv or linear lower as they are."""
    from ember.passes.contract import PassContext
    from ember.passes.fold_bn import FoldBatchNorm

    ctx = PassContext(example_inputs={input_name: torch.from_numpy(example)})
    result = FoldBatchNorm()(module.eval(), ctx)
    return result.model, int(result.stats.get("folded", 0))


def _block_steps(module: nn.Module) -> bool:
    scale = getattr(module, "weight_scale", None)
    return isinstance(scale, torch.Tensor) and scale.dim() == 2


def _no_kernel(target: str) -> str:
    return "no integer kernel on the fpga target" if target == "fpga" else \
        f"no kernel on the {target} target"


@dataclass
class Node:
    name: str
    kind: str  # input | conv | sfc | linear | relu | relu6 | maxpool | avgpool | add | flatten
    inputs: list[str]
    shape: tuple[int, ...]  # one image
    module: Any = None
    info: dict[str, Any] = field(default_factory=dict)


class _Tracer(fx.Tracer):
    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return isinstance(m, LEAVES) or super().is_leaf_module(m, qualname)


def capture(model: nn.Module, example: torch.Tensor,
            target: str = "fpga") -> tuple[list[Node], str]:
    """(nodes in execution order, the output node's name) for a one-input, one-output model;
    `target` names the target in decline messages."""
    model = model.eval()
    try:
        graph = _Tracer().trace(model)
    except Exception as exc:  # fx raises many kinds on data-dependent control flow
        first = str(exc).splitlines()[0][:120]
        raise UnsupportedModule(f"the model cannot be traced into a static graph "
                                f"({type(exc).__name__}: {first})") from None
    module = fx.GraphModule(model, graph)
    shapes = _shapes(module, example)
    nodes: list[Node] = []
    alias: dict[str, str] = {}  # nodes that vanish (identity, dropout) -> their input
    output = None
    for node in graph.nodes:
        if node.op == "output":
            output = _single_output(node, alias, target)
            continue
        lowered = _node(node, module, shapes, alias, target)
        if lowered is None:
            continue
        nodes.append(lowered)
    if sum(n.kind == "input" for n in nodes) != 1:
        raise UnsupportedModule(f"the {target} target takes models with exactly one input")
    return nodes, output


def _shapes(module: fx.GraphModule, example: torch.Tensor) -> dict[str, tuple[int, ...]]:
    shapes: dict[str, tuple[int, ...]] = {}

    class Recorder(fx.Interpreter):
        def run_node(self, n: fx.Node) -> Any:
            out = super().run_node(n)
            if isinstance(out, torch.Tensor):
                shapes[n.name] = tuple(out.shape[1:])
            return out

    with torch.no_grad():
        Recorder(module).run(example[:1])
    return shapes


def _node(node: fx.Node, module: fx.GraphModule, shapes: dict[str, tuple[int, ...]],
          alias: dict[str, str], target: str) -> Node | None:
    args = [alias.get(a.name, a.name) for a in node.args if isinstance(a, fx.Node)]
    shape = shapes.get(node.name, ())
    if node.op == "placeholder":
        return Node(node.name, "input", [], shape)
    if node.op == "call_module":
        return _module_node(node, module.get_submodule(node.target), args, shape, alias,
                            target)
    if node.op == "call_function" and node.target in ADD and len(args) == 2:
        return Node(node.name, "add", args, shape)
    if node.op == "call_function" and node.target in RELU or \
            node.op == "call_method" and node.target == "relu":
        return Node(node.name, "relu", args[:1], shape)
    if node.op == "call_function" and node.target in FLATTEN or \
            node.op == "call_method" and node.target in ("flatten", "view", "reshape"):
        return _flatten(node, args, shape)
    what = node.target if isinstance(node.target, str) else getattr(node.target, "__name__",
                                                                     str(node.target))
    raise UnsupportedModule(f"node {node.name}: operation {what} ({node.op}) has "
                            f"{_no_kernel(target)}")


def _module_node(node: fx.Node, m: nn.Module, args: list[str], shape: tuple[int, ...],
                 alias: dict[str, str], target: str) -> Node | None:
    where = f"layer {node.target} ({type(m).__name__})"
    if isinstance(m, (nn.Identity, nn.Dropout)):
        alias[node.name] = args[0]
        return None
    if isinstance(m, QuantizedSFCConv2d):
        raise UnsupportedModule(f"{where}: the {target} target takes float SFC layers; run "
                                f"the sfc pass without bits=")
    if isinstance(m, SFCConv2d):
        if m.groups != 1:
            raise UnsupportedModule(f"{where}: grouped SFC convolutions are not supported")
        return Node(node.name, "sfc", args, shape, m)
    if isinstance(m, (nn.BatchNorm2d, nn.BatchNorm1d)):
        if target != "fpga":  # float targets run it; the fpga design has no float path
            return Node(node.name, "batchnorm", args, shape, m)
        raise UnsupportedModule(f"{where}: BatchNorm has no integer kernel; it folds only into "
                                f"a conv or linear that feeds it, and none feeds this one")
    if isinstance(m, nn.Conv2d):
        if m.padding_mode != "zeros" or m.dilation != (1, 1) or isinstance(m.padding, str):
            raise UnsupportedModule(f"{where}: only zero padding, no dilation, numeric padding")
        return Node(node.name, "conv", args, shape, m)
    if isinstance(m, nn.Linear):
        return Node(node.name, "linear", args, shape, m)
    if isinstance(m, (nn.ReLU, nn.ReLU6)):
        return Node(node.name, "relu" if isinstance(m, nn.ReLU) else "relu6", args, shape, m)
    if isinstance(m, nn.Flatten):
        if m.start_dim != 1 or m.end_dim != -1:
            raise UnsupportedModule(f"{where}: only flattening everything but the batch")
        return Node(node.name, "flatten", args, shape, m)
    if isinstance(m, (nn.MaxPool2d, nn.AvgPool2d)):
        return _pool(node, m, args, shape, where)
    if isinstance(m, nn.AdaptiveAvgPool2d):
        if tuple(shape[1:]) != (1, 1):
            raise UnsupportedModule(f"{where}: only global average pooling (output 1x1)")
        return Node(node.name, "avgpool", args, shape, m, {"global": True})
    raise UnsupportedModule(f"{where}: {_no_kernel(target)}")


def _pool(node: fx.Node, m: nn.Module, args: list[str], shape: tuple[int, ...],
          where: str) -> Node:
    kernel, stride = _pair(m.kernel_size), _pair(m.stride or m.kernel_size)
    if _pair(m.padding) != (0, 0) or getattr(m, "ceil_mode", False) or \
            _pair(getattr(m, "dilation", 1)) != (1, 1):
        raise UnsupportedModule(f"{where}: only unpadded pooling without dilation or ceil_mode")
    kind = "maxpool" if isinstance(m, nn.MaxPool2d) else "avgpool"
    return Node(node.name, kind, args, shape, m, {"kernel": kernel, "stride": stride})


def _flatten(node: fx.Node, args: list[str], shape: tuple[int, ...]) -> Node:
    if len(shape) != 1:
        raise UnsupportedModule(f"node {node.name}: only reshapes to (batch, features) are "
                                f"supported")
    return Node(node.name, "flatten", args[:1], shape)


def _single_output(node: fx.Node, alias: dict[str, str], target: str) -> str:
    out = node.args[0]
    if not isinstance(out, fx.Node):
        raise UnsupportedModule(f"the {target} target takes models with exactly one output "
                                f"tensor")
    return alias.get(out.name, out.name)


def _pair(value: Any) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else tuple(value)
