"""SFC layers on the `tvm` target: ember's generated kernels (one fused kernel, or three:
input transform, slot GEMMs, output transform) instead of the exported chain of gathers and
dense transform MatMuls.

The exporter writes an `SFCConv2d` as standard ONNX (passes/sfc/conv.py): ~30 nodes whose
transforms are MatMuls by constant matrices (S, the slot map, Lam). Run as dense products
those cost as much as the slot GEMMs themselves (the slot map alone is an 88 x 64 product per
tile and channel). Here each such layer, recognised by the module scope the exporter records
on its nodes and by its constant matrices (which must equal one of ember's algorithms
exactly), is replaced by

    V = EmberSFCInput(x)                         (P, tiles, C)   additions only
    M = EmberSFCProducts(V, Up)                  M[p, j] = V[p] @ Up[p, j],
                                                 Up[p, j, c, v] = U[p, c, j * kt + v]
    y = EmberSFCOutput(M[, bias])                (N, K, Ho, Wo)

and the three `ember` ops are imported into Relax (targets/tvm/sfc/relax_import.py) as calls of
the TIR kernels of targets/tvm/sfc/kernels.py (`sfc=split`); or (`sfc=fused`) by one
`EmberSFCConv(x, Up[, bias])` node whose kernel does all three steps block by block, so the
transform domain stays in cache; `sfc=auto` (the default) picks per layer by the size of the
transformed weights. The rewrite changes no arithmetic: the result equals the exported graph
up to floating-point summation order.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

import numpy as np

from ember.sfc_algorithms import ALGORITHMS, FORMS, Algorithm, algorithm
from ember.targets.onnx_io import exported_module_path, infer_shapes

DOMAIN = "ember"
MAX_TILE_VECTORS = 4
MODES = ("auto", "fused", "split", "off")  # target option `sfc`; "off" keeps the exported ops
# `auto`: the fused kernel re-reads the transformed weights for every block of tiles, the
# split GEMM once per call, so fused only where they stay in a core's L2 (measured in
# BENCHMARKS.md: fused 2x faster on 64 channels at batch 8, split faster from 128 channels)
FUSED_MAX_WEIGHT_BYTES = 2 * 1024 * 1024


@dataclass
class _Layer:
    nodes: list[Any]
    x: str
    y: str
    matrices: list[np.ndarray]  # constant left operands of its MatMuls
    weight: str  # U (P, C, K)
    bias: str | None
    pads: tuple[int, int]


def fuse_sfc_layers(model: Any, lanes: int, mode: str = "auto") -> dict[str, int]:
    """Rewrite every recognised SFC layer of `model` in place; returns how many layers got
    which kernels ({"fused": n, "split": m})."""
    counts = {"fused": 0, "split": 0}
    if mode == "off":
        return counts
    from onnx import helper, numpy_helper

    graph = model.graph
    shapes = _static_shapes(model)
    initializers = {t.name: t for t in graph.initializer}
    layers = [layer for layer in _layers(model, initializers) if layer.x in shapes]
    replaced: dict[int, list[Any]] = {}
    for index, layer in enumerate(layers):
        alg = _algorithm(layer.matrices)
        if alg is None:
            continue
        u = numpy_helper.to_array(initializers[layer.weight])
        kt = _output_tile(u.shape[2], lanes)
        packed = f"{layer.weight}.sfc{kt}"
        if packed not in initializers:
            p, c, k = u.shape
            array = u.reshape(p, c, k // kt, kt).transpose(0, 2, 1, 3).copy()
            initializers[packed] = numpy_helper.from_array(array, packed)
            graph.initializer.append(initializers[packed])
        kind = mode if mode != "auto" else \
            "fused" if u.nbytes <= FUSED_MAX_WEIGHT_BYTES else "split"
        build = _fused_node if kind == "fused" else _split_nodes
        replaced[id(layer.nodes[0])] = build(helper, layer, alg, packed, shapes, index)
        counts[kind] += 1
        for node in layer.nodes[1:]:
            replaced[id(node)] = []
    nodes = [new for node in graph.node for new in replaced.get(id(node), [node])]
    del graph.node[:]
    graph.node.extend(nodes)
    _drop_unused_initializers(graph)
    if replaced and not any(o.domain == DOMAIN for o in model.opset_import):
        model.opset_import.append(helper.make_opsetid(DOMAIN, 1))
    return counts


def _fused_node(helper: Any, layer: _Layer, alg: Algorithm, packed: str,
                shapes: dict[str, list[int]], index: int) -> list[Any]:
    form = "symbolic" if alg.symbolic else "integrated"
    inputs = [layer.x, packed] + ([layer.bias] if layer.bias else [])
    return [helper.make_node("EmberSFCConv", inputs, [layer.y], name=f"sfc_conv_{index}",
                             domain=DOMAIN, algorithm=alg.name, form=form,
                             pads=list(layer.pads))]


def _split_nodes(helper: Any, layer: _Layer, alg: Algorithm, packed: str,
                 shapes: dict[str, list[int]], index: int) -> list[Any]:
    n, _, h, w = shapes[layer.x]
    form = "symbolic" if alg.symbolic else "integrated"
    out_h, out_w = h + 2 * layer.pads[0] - 2, w + 2 * layer.pads[1] - 2
    v, products = f"{layer.y}.sfc_slots", f"{layer.y}.sfc_products"
    common = {"algorithm": alg.name, "form": form}
    return [
        helper.make_node("EmberSFCInput", [layer.x], [v], name=f"sfc_input_{index}",
                         domain=DOMAIN, pads=list(layer.pads), **common),
        helper.make_node("EmberSFCProducts", [v, packed], [products],
                         name=f"sfc_products_{index}", domain=DOMAIN),
        helper.make_node("EmberSFCOutput", [products] + ([layer.bias] if layer.bias else []),
                         [layer.y], name=f"sfc_output_{index}", domain=DOMAIN,
                         batch=n, out_shape=[out_h, out_w], **common),
    ]


def _layers(model: Any, initializers: dict[str, Any]) -> list[_Layer]:
    """Every SFCConv2d scope whose nodes form a single-input, single-output subgraph."""
    scopes: dict[tuple[str, ...], list[Any]] = {}
    for node in model.graph.node:
        scope = _sfc_scope(node)
        if scope is not None:
            scopes.setdefault(scope, []).append(node)
    constants = {o for node in model.graph.node if node.op_type == "Constant" for o in node.output}
    consumers = Counter(i for node in model.graph.node for i in node.input)
    outputs = {o.name for o in model.graph.output}
    layers = []
    for nodes in scopes.values():
        layer = _layer(nodes, initializers, constants, consumers, outputs)
        if layer is not None:
            layers.append(layer)
    return layers


def _layer(nodes: list[Any], initializers: dict[str, Any], constants: set[str],
           consumers: Counter, outputs: set[str]) -> _Layer | None:
    from onnx import numpy_helper

    produced = {o for node in nodes for o in node.output}
    used_inside = Counter(i for node in nodes for i in node.input)
    inputs = {i for node in nodes for i in node.input
              if i and i not in produced and i not in initializers and i not in constants}
    leaving = [o for o in produced if o in outputs or consumers[o] > used_inside[o]]
    weights = [n.input[1] for n in nodes if n.op_type == "MatMul" and n.input[1] in initializers
               and len(initializers[n.input[1]].dims) == 3]
    pads = [n for n in nodes if n.op_type == "Pad"]
    if len(inputs) != 1 or len(leaving) != 1 or len(weights) != 1 or len(pads) != 1:
        return None  # grouped (4-D weights) or an unexpected shape of graph: left as exported
    pad_values = numpy_helper.to_array(initializers[pads[0].input[1]]) \
        if pads[0].input[1] in initializers else None
    if pad_values is None or len(pad_values) != 8:
        return None
    matrices = [numpy_helper.to_array(initializers[n.input[0]]) for n in nodes
                if n.op_type == "MatMul" and n.input[0] in initializers]
    return _Layer(nodes, inputs.pop(), leaving[0], matrices, weights[0],
                  _bias(nodes, initializers, produced), (int(pad_values[2]), int(pad_values[3])))


def _bias(nodes: list[Any], initializers: dict[str, Any], produced: set[str]) -> str | None:
    adds = [n for n in nodes if n.op_type == "Add"]
    for node in adds:
        outside = [i for i in node.input if i not in produced and i in initializers]
        if outside:
            return outside[0]
    return None


def _sfc_scope(node: Any) -> tuple[str, ...] | None:
    """The module path of an SFCConv2d the node was exported from; None for other nodes (the
    quantized subclass included: its float64 golden is not this rewrite's arithmetic)."""
    from ember.passes.sfc.conv import SFCConv2d

    path = exported_module_path(node, SFCConv2d)
    return tuple(path) if path is not None else None


def _algorithm(matrices: list[np.ndarray]) -> Algorithm | None:
    """The algorithm whose S, Lam (and slot maps) are exactly the layer's constant matrices."""
    for name in ALGORITHMS:
        for form in FORMS:
            alg = algorithm(name, form)
            expected = [alg.as_float("S"), alg.as_float("Lam")]
            if alg.symbolic:
                expected += [alg.as_float("slot_map"), alg.as_float("unslot_map")]
            if _same_set(matrices, expected):
                return alg
    return None


def _same_set(found: list[np.ndarray], expected: list[np.ndarray]) -> bool:
    def match(a: np.ndarray, b: np.ndarray) -> bool:
        return a.shape == b.shape and np.allclose(a, b, rtol=1e-6, atol=1e-7)

    return (all(any(match(f, e) for e in expected) for f in found)
            and all(any(match(f, e) for f in found) for e in expected))


def _output_tile(k: int, lanes: int) -> int:
    """Columns per packed GEMM tile: the widest multiple of the vector width (<= 4 vectors)
    dividing K, else K itself."""
    for vectors in range(MAX_TILE_VECTORS, 0, -1):
        if k % (vectors * lanes) == 0:
            return vectors * lanes
    return k


def _static_shapes(model: Any) -> dict[str, list[int]]:
    inferred = infer_shapes(model)
    values = [*inferred.graph.input, *inferred.graph.value_info, *inferred.graph.output]
    shapes = {}
    for value in values:
        dims = value.type.tensor_type.shape.dim
        if len(dims) == 4 and all(d.HasField("dim_value") for d in dims):
            shapes[value.name] = [d.dim_value for d in dims]
    return shapes


def _drop_unused_initializers(graph: Any) -> None:
    used = {i for node in graph.node for i in node.input} | {o.name for o in graph.output}
    kept = [t for t in graph.initializer if t.name in used]
    del graph.initializer[:]
    graph.initializer.extend(kept)
