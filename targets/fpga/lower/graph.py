"""Integer lowering: the traced float network (targets/module_reader.py) -> int8 layers with
calibrated scales (targets/fpga/integer/layers.py, sfc.py), and the golden model that runs
them.

Scales: every int8 tensor t gets s_t = max |t| / 127 over the calibration images, measured on
the float model; weights get one scale per output channel, s_w[k] = max |W[k]| / 127. A ReLU
that is the only consumer of a conv/linear output fuses into its requantization (clamp at 0).
Max pooling, flatten and standalone ReLU keep their input's scale; average pooling divides
in fixed point and keeps it too. A network output taken from a conv or linear layer stays in
its int32 accumulators (scale s_x s_w[k]), so the last layer loses nothing to requantization.
SFC layers calibrate their slot exponents on the integer data that reaches them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ember.runtime.engines.fpga_io import dequantize_output, quantize_input
from ember.sfc_algorithms import algorithm
from ember.targets.fpga.fixed import check_headroom, fixed_point
from ember.targets.fpga.integer.layers import (
    INT8,
    AddLayer,
    ClampLayer,
    ConvLayer,
    FlattenLayer,
    Layer,
    LinearLayer,
    PoolLayer,
    Requant,
    TensorSpec,
)
from ember.targets.fpga.integer.sfc import build_sfc_layer
from ember.targets.module_reader import Node


@dataclass
class IntNetwork:
    input: TensorSpec
    layers: list[Layer]
    tensors: dict[str, TensorSpec]
    output: str

    @property
    def output_spec(self) -> TensorSpec:
        return self.tensors[self.output]

    def run(self, x_q: np.ndarray) -> np.ndarray:
        """Integer outputs (batch-first) of int8 inputs."""
        values = {self.input.name: x_q.astype(np.int64)}
        for layer in self.layers:
            values[layer.output] = layer.run(*(values[i] for i in layer.inputs))
        return values[self.output]

    def golden(self, x: np.ndarray) -> np.ndarray:
        """float32 in -> float32 out, exactly as the fpga engine computes it."""
        y = self.run(self.quantize(x))
        spec = self.output_spec
        return dequantize_output(y, spec.scale, spec.channel_axis)

    def quantize(self, x: np.ndarray) -> np.ndarray:
        """Host-side input conversion: int8 codes of float inputs; token ids pass as int32."""
        if self.input.kind == "int32":
            return np.asarray(x).astype(np.int32)
        return quantize_input(x, float(self.input.scale[0]))


def lower(nodes: list[Node], output: str, calibration: np.ndarray) -> IntNetwork:
    """The integer network of `nodes`, calibrated on float images `calibration` (N, ...)."""
    float_max = _float_ranges(nodes, calibration)
    consumers = _consumers(nodes, output)
    source = nodes[0]
    s_in = _scale(float_max[source.name])
    tensors = {source.name: TensorSpec(source.name, source.shape, "int8", np.array([s_in]))}
    ints = {source.name: quantize_input(calibration, s_in).astype(np.int64)}
    layers: list[Layer] = []
    fused: dict[str, str] = {}  # relu node -> the layer output it was folded into
    for i, node in enumerate(nodes[1:], start=1):
        if node.name in fused:
            continue
        nxt = nodes[i + 1] if i + 1 < len(nodes) else None
        relu = nxt if nxt is not None and nxt.kind == "relu" and nxt.inputs == [node.name] \
            and consumers.get(node.name) == 1 and node.kind in ("conv", "linear", "sfc") else None
        if relu is not None:
            fused[relu.name] = node.name
        out_name = relu.name if relu is not None else node.name
        layer, spec = _lower_node(node, out_name, relu is not None, output, tensors, float_max,
                                  ints)
        layers.append(layer)
        tensors[out_name] = spec
        ints[out_name] = layer.run(*(ints[n] for n in layer.inputs))
    return IntNetwork(tensors[source.name], layers, tensors, output)


def _lower_node(node: Node, out_name: str, relu: bool, output: str,
                tensors: dict[str, TensorSpec], float_max: dict[str, float],
                ints: dict[str, np.ndarray]) -> tuple[Layer, TensorSpec]:
    x = tensors[node.inputs[0]]
    s_x = float(x.scale[0])
    raw = out_name == output and node.kind in ("conv", "linear")  # keep the accumulators
    s_y = _scale(float_max[out_name])
    int8 = TensorSpec(out_name, node.shape, "int8", np.array([s_y]))
    if node.kind in ("conv", "linear"):
        w, s_w = _weights(node.module.weight)
        bias = _bias(node.module.bias, s_x * s_w)
        requant = Requant(None, None) if raw else Requant(*fixed_point(s_x * s_w / s_y),
                                                          lo=0 if relu else INT8[0])
        if requant.mult is not None:
            check_headroom(_acc_bound(w, bias), requant.mult, f"layer {node.name}")
        common = dict(name=out_name, op=type(node.module).__name__, inputs=[x.name],
                      output=out_name, out_shape=node.shape, weight=w, bias=bias,
                      requant=requant)
        layer = ConvLayer(**common, stride=tuple(node.module.stride),
                          padding=tuple(node.module.padding), groups=node.module.groups) \
            if node.kind == "conv" else LinearLayer(**common)
        spec = TensorSpec(out_name, node.shape, "int32", s_x * s_w,
                          1 if node.kind == "conv" else -1) if raw else int8
        return layer, spec
    if node.kind == "sfc":
        return _sfc(node, out_name, x, s_y, relu, ints), int8
    return _simple(node, out_name, x, tensors, float_max)


def _simple(node: Node, out_name: str, x: TensorSpec, tensors: dict[str, TensorSpec],
            float_max: dict[str, float]) -> tuple[Layer, TensorSpec]:
    """Layers without weights: pooling, add, clamps, flatten."""
    same = TensorSpec(out_name, node.shape, "int8", x.scale)
    base = dict(name=out_name, inputs=list(node.inputs), output=out_name, out_shape=node.shape)
    s_x = float(x.scale[0])
    if node.kind == "maxpool":
        return PoolLayer(**base, op="MaxPool2d", kind="max", kernel=node.info["kernel"],
                         stride=node.info["stride"]), same
    if node.kind == "avgpool":
        kernel = x.shape[1:] if node.info.get("global") else node.info["kernel"]
        stride = kernel if node.info.get("global") else node.info["stride"]
        mult, shift = fixed_point(1.0 / (kernel[0] * kernel[1]))
        return PoolLayer(**base, op="AvgPool2d", kind="avg", kernel=tuple(kernel),
                         stride=tuple(stride), mult=int(mult[0]), shift=int(shift[0])), same
    if node.kind in ("relu", "relu6"):
        hi = INT8[1] if node.kind == "relu" else min(INT8[1], round(6.0 / s_x))
        return ClampLayer(**base, op=node.kind.upper(), lo=0, hi=hi), same
    if node.kind == "flatten":
        return FlattenLayer(**base, op="Flatten"), same
    if node.kind == "add":
        return _add(base, tensors[node.inputs[0]], tensors[node.inputs[1]],
                    _scale(float_max[out_name]))
    raise AssertionError(f"unhandled node kind {node.kind}")


def _add(base: dict[str, Any], a: TensorSpec, b: TensorSpec,
         s_y: float) -> tuple[Layer, TensorSpec]:
    """y = a s_a / s_y + b s_b / s_y with one shift: both multipliers in 15 bits."""
    ratios = np.array([float(a.scale[0]) / s_y, float(b.scale[0]) / s_y])
    _, shift = fixed_point(ratios.max())
    mults = np.rint(ratios * 2.0 ** int(shift[0])).astype(np.int64)
    layer = AddLayer(**base, op="Add", mult_a=int(mults[0]), mult_b=int(mults[1]),
                     shift=int(shift[0]))
    return layer, TensorSpec(base["output"], base["out_shape"], "int8", np.array([s_y]))


def _sfc(node: Node, out_name: str, x: TensorSpec, s_y: float, relu: bool,
         ints: dict[str, np.ndarray]) -> Layer:
    m = node.module
    alg = algorithm(m.algorithm, "symbolic" if m.symbolic else "integrated")
    u = m.U.detach().double().numpy()  # (P, C, K): slots(Sg W Sg^T)
    bias = None if m.bias is None else m.bias.detach().double().numpy()
    return build_sfc_layer(out_name, x.name, out_name, node.shape, alg, u, bias,
                           tuple(m.padding), float(x.scale[0]), s_y, relu, ints[x.name])


def _weights(weight: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    w = weight.detach().double().numpy()
    top = np.abs(w.reshape(w.shape[0], -1)).max(axis=1)
    s_w = np.where(top > 0, top / INT8[1], 1.0)
    q = np.rint(w / s_w.reshape(-1, *([1] * (w.ndim - 1))))
    return np.clip(q, *INT8).astype(np.int8), s_w


def _bias(bias: torch.Tensor | None, scale: np.ndarray) -> np.ndarray:
    if bias is None:
        return np.zeros(len(scale), np.int32)
    q = np.rint(bias.detach().double().numpy() / scale)
    if np.abs(q).max(initial=0) > 2**30:
        raise ValueError("a bias is too large for its int32 accumulator")
    return q.astype(np.int32)


def _acc_bound(w: np.ndarray, bias: np.ndarray) -> int:
    per_channel = np.abs(w.reshape(w.shape[0], -1).astype(np.int64)).sum(axis=1) * INT8[1]
    return int((per_channel + np.abs(bias.astype(np.int64))).max())


def _scale(max_abs: float) -> float:
    return max_abs / INT8[1] if max_abs > 0 else 1.0


def _consumers(nodes: list[Node], output: str) -> dict[str, int]:
    counts: dict[str, int] = {output: 1}
    for node in nodes:
        for name in node.inputs:
            counts[name] = counts.get(name, 0) + 1
    return counts


def _float_ranges(nodes: list[Node], calibration: np.ndarray) -> dict[str, float]:
    """max |t| of every node's float output over the calibration images."""
    values: dict[str, torch.Tensor] = {}
    ranges: dict[str, float] = {}
    with torch.no_grad():
        for node in nodes:
            if node.kind == "input":
                out = torch.from_numpy(np.asarray(calibration, np.float32))
            else:
                out = _float_node(node, [values[i] for i in node.inputs])
            values[node.name] = out
            ranges[node.name] = float(out.abs().max())
    return ranges


def _float_node(node: Node, args: list[torch.Tensor]) -> torch.Tensor:
    if node.module is not None:
        return node.module(*args)
    if node.kind == "add":
        return args[0] + args[1]
    if node.kind == "relu":
        return torch.relu(args[0])
    if node.kind == "flatten":
        return args[0].flatten(1)
    raise AssertionError(f"unhandled node kind {node.kind}")
