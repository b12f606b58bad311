"""Dependency analysis for CNN channel pruning: which channels must be removed together.

Removing output channel `c` of a convolution also removes input channel `c` of every layer
that reads it, the BatchNorm entry that normalises it, the depthwise filter that carries it,
and, across a residual `add`, channel `c` of every other tensor added to it. Such a set of
coupled channels is a `ChannelGroup`: `size` channels, indexed alike in every member.

The model is traced with `torch.fx` and shapes are propagated from the example input. Every
tensor with a channel axis (axis 1) gets a layout: a sequence of segments, each naming an
*atom* (the channels one producer created) and its `spatial` block length (1 on feature maps;
H*W after `flatten`, where channel `c` of a segment is features `[c*H*W, (c+1)*H*W)`).

    Conv2d (groups=1), Linear     read the input layout (consumer), create a new atom (producer)
    depthwise Conv2d, BatchNorm   carry the input layout (in = out)
    activations, Dropout, pools   keep the layout
    flatten / view / reshape      keep it, or multiply `spatial` by H*W when (N,C,H,W)->(N,CHW)
    add / sub / mul / div         unite the operands' atoms (union-find); scalars pass
    cat along dim 1               concatenate the operands' segments (members get offsets)

A group is the union-find class of atoms. It is declined, with a reason, when it touches the
network input, reaches the model output (classifier outputs), crosses an op without a rule
(named), a grouped non-depthwise convolution, a module called twice or sharing parameters,
or broadcasting by a non-channel tensor.

Removed-channel values. A pruned channel is defined as what the network computes when its
producers' weights are zero: the producer emits its bias `b_c` (0 without bias), and the
per-channel ops on the way to a consumer map that constant on,

    v_c = f(gamma_c * (b_c - mu_c) / sqrt(var_c + eps) + beta_c)      (conv -> BN -> f)

(depthwise: `v * sum(kernel) + bias`; pools and reshapes: unchanged; residual add: the sum of
both operands' constants). Folding `W[:, c] * v_c` into each consumer's bias is then exact
for 1x1 convolutions, Linear layers and unpadded convolutions; at zero-padded borders the
fold treats the padding as if it also carried `v_c`, which is the pruned model's definition.
`analyse` returns `v` per consumer input index as `removed_values`.
"""

from __future__ import annotations

import math
import operator
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import fx, nn
from torch.fx.node import _get_qualified_name
from torch.fx.passes.shape_prop import ShapeProp, TensorMetadata

from ember.errors import first_line
from ember.passes.prune.cnn.trace import (
    _BINARY_FUNCTIONS,
    _BINARY_METHODS,
    _CAT_FUNCTIONS,
    _ELEMENTWISE_FUNCTIONS,
    _ELEMENTWISE_METHODS,
    _ELEMENTWISE_MODULES,
    _PARAMETERISED,
    _REDUCE_FUNCTIONS,
    _REDUCE_METHODS,
    _RESHAPE_FUNCTIONS,
    _RESHAPE_METHODS,
    _SPATIAL_FUNCTIONS,
    _SPATIAL_MODULES,
    trace,
)
from ember.passes.prune.errors import PruneError


@dataclass(frozen=True)
class Member:
    """One module's share of a group: channel `c` of the group is index
    `offset + c * spatial + s` (s < spatial) on the module's channel axis (out-channels for
    producers and carried modules, in-channels / in-features for consumers). `bn` names the
    BatchNorm that directly normalises a producer's output, if any."""

    module: str
    offset: int = 0
    spatial: int = 1
    bn: str | None = None


@dataclass(frozen=True)
class ChannelGroup:
    size: int
    producers: tuple[Member, ...]
    consumers: tuple[Member, ...]
    carried: tuple[Member, ...]
    description: str = field(default="", compare=False)


@dataclass(frozen=True)
class GroupAnalysis:
    groups: list[ChannelGroup]  # prunable
    declined: dict[str, str]  # group description -> reason
    removed_values: dict[str, torch.Tensor]  # consumer -> value per input index (float64)


def channel_groups(
    model: nn.Module, example: torch.Tensor
) -> tuple[list[ChannelGroup], dict[str, str]]:
    """The prunable channel groups of `model`, and `{description: reason}` for the others."""
    analysis = analyse(model, example)
    return analysis.groups, analysis.declined


def analyse(model: nn.Module, example: torch.Tensor) -> GroupAnalysis:
    """Trace a copy of `model` in eval mode (the original is not touched: shape propagation
    would update BatchNorm statistics in training mode) and build its channel groups."""
    graph_module = trace(model)
    args = example if isinstance(example, tuple) else (example,)
    try:
        with torch.no_grad():
            ShapeProp(graph_module).propagate(*args)
    except Exception as exc:
        raise PruneError(f"shape propagation on the example failed: {first_line(exc)}") from exc
    return _Analyser(graph_module).run()


@dataclass(frozen=True)
class _Segment:
    atom: int
    size: int
    spatial: int = 1


_Layout = tuple[_Segment, ...]


def _shape(node: Any) -> tuple[int, ...] | None:
    meta = node.meta.get("tensor_meta") if isinstance(node, fx.Node) else None
    return tuple(meta.shape) if isinstance(meta, TensorMetadata) else None


def _op_name(node: fx.Node, modules: dict[str, nn.Module]) -> str:
    if node.op == "call_module":
        return f"{type(modules[node.target]).__name__} ({node.target})"
    if node.op == "call_method":
        return f"Tensor.{node.target}"
    return _get_qualified_name(node.target) if callable(node.target) else str(node.target)


def _cpu64(tensor: torch.Tensor) -> torch.Tensor:
    """Removed-channel values are small vectors: kept in float64 on the CPU whatever the
    model's device and dtype."""
    return tensor.detach().to("cpu", torch.float64)


def _flat_nodes(args: Any) -> list[fx.Node]:
    found: list[fx.Node] = []
    fx.node.map_arg(args, found.append)
    return found


class _Analyser:
    """One walk over the graph in order, assigning layouts and removed-channel values."""

    def __init__(self, graph_module: fx.GraphModule) -> None:
        self.graph = graph_module.graph
        self.modules = dict(graph_module.named_modules())
        self.calls = Counter(n.target for n in self.graph.nodes if n.op == "call_module")
        counts = Counter(id(p) for _, p in graph_module.named_parameters(remove_duplicate=False))
        self.shared = {pid for pid, n in counts.items() if n > 1}
        self.parent: list[int] = []
        self.sizes: list[int] = []
        self.origins: list[str] = []
        self.reasons: dict[int, list[str]] = {}
        self.members: dict[int, list[tuple[str, Member]]] = {}
        self.layouts: dict[fx.Node, _Layout] = {}
        self.values: dict[fx.Node, torch.Tensor] = {}  # float64, one entry per layout channel
        self.opaque: dict[fx.Node, str] = {}  # non-tensor outputs of declined ops
        self.bn_after: dict[str, str] = {}
        self.removed_values: dict[str, torch.Tensor] = {}

    # --- union-find over atoms ---

    def _atom(self, size: int, origin: str, reason: str | None = None) -> int:
        self.parent.append(len(self.parent))
        self.sizes.append(size)
        self.origins.append(origin)
        if reason:
            self.reasons.setdefault(len(self.parent) - 1, []).append(reason)
        return len(self.parent) - 1

    def _find(self, atom: int) -> int:
        while self.parent[atom] != atom:
            self.parent[atom] = self.parent[self.parent[atom]]
            atom = self.parent[atom]
        return atom

    def _union(self, a: int, b: int) -> None:
        ra, rb = self._find(a), self._find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)  # the older atom stays the root

    def _decline(self, layout: _Layout, reason: str) -> None:
        for seg in layout:
            self.reasons.setdefault(seg.atom, []).append(reason)

    def _add_members(self, layout: _Layout, role: str, module: str) -> None:
        offset = 0
        for seg in layout:
            self.members.setdefault(seg.atom, []).append(
                (role, Member(module, offset, seg.spatial)))
            offset += seg.size * seg.spatial

    # --- the walk ---

    def run(self) -> GroupAnalysis:
        for node in self.graph.nodes:
            self._visit(node)
        return self._groups()

    def _visit(self, node: fx.Node) -> None:
        if node.op == "placeholder":
            shape = _shape(node)
            if shape is not None and len(shape) >= 2:
                atom = self._atom(shape[1], f"input {node.name}", "network input")
                self._set(node, (_Segment(atom, shape[1]),), torch.zeros(shape[1]))
        elif node.op == "output":
            for arg in _flat_nodes(node.args):
                if arg in self.layouts:
                    self._decline(self.layouts[arg], "reaches the model output")
        elif node.op == "call_module":
            self._module(node, self.modules[node.target])
        elif node.op in ("call_function", "call_method"):
            self._function(node)

    def _set(self, node: fx.Node, layout: _Layout, value: torch.Tensor) -> None:
        self.layouts[node] = layout
        self.values[node] = _cpu64(value).reshape(-1)

    def _opaque(self, node: fx.Node, reason: str) -> None:
        """An op without a rule: decline everything it reads and what it makes."""
        for arg in _flat_nodes((node.args, node.kwargs)):
            if arg in self.layouts:
                self._decline(self.layouts[arg], reason)
        shape = _shape(node)
        if shape is not None and len(shape) >= 2:
            atom = self._atom(shape[1], f"output of {node.name}", reason)
            self._set(node, (_Segment(atom, shape[1]),), torch.zeros(shape[1]))
        elif "tensor_meta" in node.meta and shape is None:
            self.opaque[node] = reason  # a tuple of tensors: getitem inherits the reason

    def _passthrough(self, node: fx.Node, source: fx.Node, value: torch.Tensor | None = None,
                     layout: _Layout | None = None) -> None:
        self._set(node, layout or self.layouts[source],
                  self.values[source] if value is None else value)

    def _unsupported(self, node: fx.Node) -> None:
        self._opaque(node, f"unsupported op {_op_name(node, self.modules)}")

    # --- modules ---

    def _module(self, node: fx.Node, module: nn.Module) -> None:
        kind = type(module)
        source = node.args[0] if node.args else None
        if not isinstance(source, fx.Node) or source not in self.layouts:
            source = None
        if kind in _PARAMETERISED:
            reason = self._why_not_member(node, module)
            if reason:
                return self._opaque(node, reason)
        if kind is nn.Conv2d:
            return self._conv(node, module, source)
        if kind is nn.Linear:
            return self._linear(node, module, source)
        if source is None or not self._operands_known(node):
            return self._unsupported(node) if self._touches_channels(node) else None
        if kind in (nn.BatchNorm1d, nn.BatchNorm2d):
            return self._batchnorm(node, module, source)
        if kind in _ELEMENTWISE_MODULES:
            return self._passthrough(node, source, module(self._view(source)))
        if kind in _SPATIAL_MODULES:
            return self._spatial(node, source)
        if kind is nn.Flatten:
            return self._reshape(node, source)
        return self._unsupported(node)

    def _why_not_member(self, node: fx.Node, module: nn.Module) -> str | None:
        if self.calls[node.target] > 1:
            return f"module {node.target} called {self.calls[node.target]} times"
        if any(id(p) in self.shared for p in module.parameters(recurse=False)):
            return f"module {node.target} shares parameters"
        if isinstance(module, nn.modules.batchnorm._BatchNorm) and module.running_mean is None:
            return f"batchnorm {node.target} without running statistics"
        return None

    def _conv(self, node: fx.Node, conv: nn.Conv2d, source: fx.Node | None) -> None:
        if source is not None and len(_shape(source) or ()) != 4:
            return self._opaque(node, f"conv {node.target} on an unbatched input")
        depthwise = conv.groups == conv.in_channels == conv.out_channels and conv.groups > 1
        if conv.groups > 1 and not depthwise:
            return self._opaque(node, f"grouped conv {node.target} (groups={conv.groups})")
        weight = _cpu64(conv.weight)
        bias = (_cpu64(conv.bias) if conv.bias is not None
                else torch.zeros(conv.out_channels, dtype=torch.float64))
        if depthwise:
            if source is None or any(seg.spatial != 1 for seg in self.layouts[source]):
                return self._unsupported(node)
            self._add_members(self.layouts[source], "carried", node.target)
            # a constant channel v comes out as v * sum(kernel) + bias (away from padding)
            value = self.values[source] * weight.sum(dim=(1, 2, 3)) + bias
            return self._passthrough(node, source, value)
        self._produce(node, source, conv.out_channels, bias)

    def _linear(self, node: fx.Node, linear: nn.Linear, source: fx.Node | None) -> None:
        if source is not None and len(_shape(source) or ()) != 2:
            return self._opaque(node, f"linear {node.target} on a non-channel axis")
        bias = (_cpu64(linear.bias) if linear.bias is not None
                else torch.zeros(linear.out_features))
        self._produce(node, source, linear.out_features, bias)

    def _produce(self, node: fx.Node, source: fx.Node | None, width: int,
                 bias: torch.Tensor) -> None:
        """A consumer of its input's groups and the producer of a new one, whose removed
        channels emit the bias (the weights are what pruning zeroes)."""
        if source is not None:
            self._add_members(self.layouts[source], "consumers", node.target)
            self.removed_values[node.target] = torch.cat([
                value.repeat_interleave(seg.spatial)
                for seg, value in zip(self.layouts[source], self._split(source), strict=True)])
        atom = self._atom(width, node.target)
        self.members[atom] = [("producers", Member(node.target))]
        self._set(node, (_Segment(atom, width),), bias)

    def _split(self, node: fx.Node) -> tuple[torch.Tensor, ...]:
        return self.values[node].split([seg.size for seg in self.layouts[node]])

    def _batchnorm(self, node: fx.Node, bn: nn.modules.batchnorm._BatchNorm,
                   source: fx.Node | None) -> None:
        if any(seg.spatial != 1 for seg in self.layouts[source]):
            return self._opaque(node, f"batchnorm {node.target} on flattened features")
        self._add_members(self.layouts[source], "carried", node.target)
        if source.op == "call_module" and type(self.modules[source.target]) in (nn.Conv2d,
                                                                                 nn.Linear):
            self.bn_after[source.target] = node.target
        # eval-mode BatchNorm is the affine map gamma * (v - mu) / sqrt(var + eps) + beta
        scale = torch.rsqrt(_cpu64(bn.running_var) + bn.eps)
        if bn.affine:
            scale = scale * _cpu64(bn.weight)
        value = (self.values[source] - _cpu64(bn.running_mean)) * scale
        if bn.affine:
            value = value + _cpu64(bn.bias)
        self._passthrough(node, source, value)

    def _view(self, node: fx.Node) -> torch.Tensor:
        """The node's removed-channel values as a tensor its ops broadcast like the real one
        (a copy: in-place activations must not rewrite the stored values)."""
        rank = len(_shape(node) or (0, 0))
        return self.values[node].clone().reshape(1, -1, *([1] * (rank - 2)))

    # --- functions and methods ---

    def _function(self, node: fx.Node) -> None:
        target = node.target
        is_method = node.op == "call_method"
        source = node.args[0] if node.args else None
        known_source = isinstance(source, fx.Node) and source in self.layouts
        if (target in _BINARY_METHODS) if is_method else (target in _BINARY_FUNCTIONS):
            return self._binary(node)
        if not is_method and target in _CAT_FUNCTIONS:
            return self._cat(node)
        if target is operator.getitem and isinstance(source, fx.Node) and source in self.opaque:
            return self._opaque(node, self.opaque[source])
        if "tensor_meta" not in node.meta and target is not operator.setitem:
            return None  # no tensor out (x.size(), x.dim()): no channels flow on
        if not known_source or not self._operands_known(node):
            if self._touches_channels(node):
                self._unsupported(node)
            return None
        if (target in _ELEMENTWISE_METHODS) if is_method else (target in _ELEMENTWISE_FUNCTIONS):
            return self._passthrough(node, source, self._call(node))
        if (target in _RESHAPE_METHODS) if is_method else (target in _RESHAPE_FUNCTIONS):
            return self._reshape(node, source)
        if not is_method and target in _SPATIAL_FUNCTIONS:
            return self._spatial(node, source)
        if (target in _REDUCE_METHODS) if is_method else (target in _REDUCE_FUNCTIONS):
            return self._reduce(node, source)
        return self._unsupported(node)

    def _touches_channels(self, node: fx.Node) -> bool:
        shape = _shape(node)
        return (any(a in self.layouts for a in _flat_nodes((node.args, node.kwargs)))
                or (shape is not None and len(shape) >= 2))

    def _operands_known(self, node: fx.Node) -> bool:
        """Every tensor operand has a layout (and so a removed-channel value)."""
        return all(a in self.layouts for a in _flat_nodes((node.args, node.kwargs)))

    def _call(self, node: fx.Node) -> torch.Tensor:
        """Run the node's own op on the removed-channel values of its channel operands."""
        args, kwargs = fx.node.map_arg((node.args, node.kwargs), self._view)
        if node.op == "call_method":
            return getattr(args[0], node.target)(*args[1:], **kwargs)
        return node.target(*args, **kwargs)

    def _spatial(self, node: fx.Node, source: fx.Node) -> None:
        shape, in_shape = _shape(node), _shape(source)
        if (shape is None or len(shape) < 3 or shape[:2] != in_shape[:2]
                or any(seg.spatial != 1 for seg in self.layouts[source])):
            return self._unsupported(node)
        self._passthrough(node, source)  # pooling or resizing a constant map keeps it

    def _reduce(self, node: fx.Node, source: fx.Node) -> None:
        rank = len(_shape(source) or ())
        dims = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim")
        dims = (dims,) if isinstance(dims, int) else dims
        if not dims or rank < 3 or {d % rank for d in dims} & {0, 1}:
            return self._unsupported(node)
        self._passthrough(node, source)  # the mean or max of a constant map is the constant

    def _reshape(self, node: fx.Node, source: fx.Node) -> None:
        """Axis 1 unchanged keeps the layout; (N, C, H, W) -> (N, C*H*W) is a flatten."""
        shape, in_shape = _shape(node), _shape(source)
        if shape is None or len(shape) < 2 or shape[0] != in_shape[0]:
            return self._unsupported(node)
        if shape[1] == in_shape[1]:
            return self._passthrough(node, source)
        block = math.prod(in_shape[2:])
        if len(shape) == 2 and shape[1] == in_shape[1] * block:
            layout = tuple(_Segment(s.atom, s.size, s.spatial * block)
                           for s in self.layouts[source])
            return self._passthrough(node, source, layout=layout)
        return self._unsupported(node)

    def _binary(self, node: fx.Node) -> None:
        """Elementwise ops couple channel c of every full-width operand: one group."""
        name = _op_name(node, self.modules)
        shape = _shape(node)
        if shape is None or len(shape) < 2:
            return self._unsupported(node) if self._touches_channels(node) else None
        channel_operands = []
        for arg in _flat_nodes((node.args, node.kwargs)):
            arg_shape = _shape(arg)
            if (arg in self.layouts and arg_shape is not None and len(arg_shape) == len(shape)
                    and arg_shape[1] == shape[1]):
                channel_operands.append(arg)
            else:  # a broadcast or computed operand would make removed channels vary
                return self._opaque(node, f"{name} with an operand that is not a channel map")
        if not channel_operands:
            return self._unsupported(node)
        layouts = [self.layouts[a] for a in channel_operands]
        pattern = [(s.size, s.spatial) for s in layouts[0]]
        if any([(s.size, s.spatial) for s in lay] != pattern for lay in layouts[1:]):
            return self._opaque(node, f"{name} of differently concatenated tensors")
        for lay in layouts[1:]:
            for a, b in zip(layouts[0], lay, strict=True):
                self._union(a.atom, b.atom)
        self._passthrough(node, channel_operands[0], self._call(node))

    def _cat(self, node: fx.Node) -> None:
        tensors = node.args[0] if node.args else node.kwargs.get("tensors", ())
        dim = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim", 0)
        rank = len(_shape(node) or ())
        if rank < 2 or dim % rank != 1:
            return self._opaque(node, f"{_op_name(node, self.modules)} along dim {dim}")
        if not all(isinstance(t, fx.Node) and t in self.layouts for t in tensors):
            return self._unsupported(node)
        layout = tuple(seg for t in tensors for seg in self.layouts[t])
        value = torch.cat([self.values[t] for t in tensors])
        self._set(node, layout, value)

    # --- groups ---

    def _groups(self) -> GroupAnalysis:
        classes: dict[int, list[int]] = {}
        for atom in range(len(self.parent)):
            classes.setdefault(self._find(atom), []).append(atom)
        groups: list[ChannelGroup] = []
        declined: dict[str, str] = {}
        for root, atoms in classes.items():
            group = self._group(root, atoms)
            reasons = [r for a in atoms for r in self.reasons.get(a, ())]
            if not reasons and not group.producers:
                reasons = ["no producer"]
            if reasons:
                key, n = group.description, 2
                while key in declined:
                    key, n = f"{group.description} #{n}", n + 1
                declined[key] = reasons[0]
            else:
                groups.append(group)
        return GroupAnalysis(groups, declined, self.removed_values)

    def _group(self, root: int, atoms: list[int]) -> ChannelGroup:
        roles: dict[str, list[Member]] = {"producers": [], "consumers": [], "carried": []}
        for atom in atoms:
            for role, member in self.members.get(atom, ()):
                if role == "producers":
                    member = Member(member.module, bn=self.bn_after.get(member.module))
                roles[role].append(member)
        size = self.sizes[root]
        description = f"{' + '.join(self.origins[a] for a in atoms)} ({size} ch)"
        return ChannelGroup(size, tuple(roles["producers"]), tuple(roles["consumers"]),
                            tuple(roles["carried"]), description)
