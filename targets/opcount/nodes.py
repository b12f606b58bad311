"""Exact arithmetic counts per ONNX node, from inferred static shapes.

For an output element of a dot-product op with reduction length K, there are K
multiplications and K - 1 additions (plus one for a bias). So, with `out` output elements:

    Conv       K = (C_in / groups) * prod(kernel)   MACs = out * K
               mults = out * K                      adds = out * (K - 1) [+ out with bias]
    MatMul     K = A.shape[-1]                      mults = out * K, adds = out * (K - 1)
               with a constant 2-D operand, per output element: one multiplication per entry
               of its row/column that is not 0 or +-1, (non-zeros - 1) additions
    Gemm       as MatMul, [+ out with C]; alpha != 1 adds `out` multiplications, beta != 1
               with C adds `out` more
    Mul, Div   mults = out        Add, Sub   adds = out    (elementwise, after broadcast)
    BatchNormalization   mults = out, adds = out (folded scale and shift)
    AveragePool / GlobalAveragePool / ReduceMean   adds = out * (window - 1), mults = out

A node of a counted kind whose shapes shape inference cannot resolve (an unknown rank, a
dimension only known at run time) is listed with `unknown: true` and counts zero; the totals
say how many such layers there are (`unknown_layers`), so a total is a lower bound then.

MACs are the multiply-accumulates of Conv, MatMul and Gemm only. Other ops (ReLU,
comparisons, data movement) count zero arithmetic. Parameters are floating-point
initializer elements (not shape or axis vectors), each counted once at its first consumer.
ConvInteger and MatMulInteger count the same way (their zero points are folded into the
integer accumulation) and are costed as int8 arithmetic.

The energy figure is an estimate from 45 nm per-operation energies (Horowitz, ISSCC
2014): fp32 multiply 3.7 pJ and add 0.9 pJ (so an fp32 MAC is 4.6 pJ), int8 multiply 0.2 pJ
and add 0.03 pJ, DRAM read 160 pJ per byte (weights read once); it is labelled an estimate
everywhere.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import asdict, dataclass
from typing import Any

from ember.targets.onnx_io import infer_shapes
from ember.targets.opcount.lowered import lowered_convs

ENERGY_PJ = {"mult": 3.7, "add": 0.9, "int8_mult": 0.2, "int8_add": 0.03, "dram_byte": 160.0}
ENERGY_MODEL = ("estimate: 45 nm (Horowitz, ISSCC 2014): fp32 mult 3.7 pJ, add 0.9 pJ; "
                "int8 mult 0.2 pJ, add 0.03 pJ; DRAM 160 pJ/B")
INT8_OPS = ("ConvInteger", "MatMulInteger")
COUNTED_OPS = ("Conv", "ConvInteger", "MatMul", "Gemm", "MatMulInteger", "Mul", "Div", "Add",
               "Sub", "BatchNormalization", "AveragePool", "GlobalAveragePool", "ReduceMean")


@dataclass
class LayerCount:
    name: str
    op: str
    params: int = 0
    bytes: int = 0
    macs: int = 0
    mults: int = 0
    adds: int = 0
    unknown: bool = False  # a counted kind of op whose shapes are not known statically

    @property
    def energy_uj(self) -> float:
        prefix = "int8_" if self.op in INT8_OPS else ""
        picojoules = (self.mults * ENERGY_PJ[f"{prefix}mult"]
                      + self.adds * ENERGY_PJ[f"{prefix}add"]
                      + self.bytes * ENERGY_PJ["dram_byte"])
        return picojoules * 1e-6


def count_ops(model, dims: dict[str, int] | None = None) -> dict[str, Any]:
    """{"layers": [...], "totals": {...}, "energy_model": ...} for an ONNX ModelProto; `dims`
    gives symbolic input dims a size for the count (a generation graph's prefill: its
    tokens, and an empty cache)."""
    from onnx import numpy_helper

    with _sized(model, dims or {}):
        inferred = _inferred(model, symbolic=bool(dims))
    shapes = _known_shapes(inferred)
    weights = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    # weights: floats and 8-bit integers; not int64 shape or axis vectors
    weights = {k: v for k, v in weights.items() if v.dtype.kind == "f" or v.dtype.itemsize == 1}
    seen: set[str] = set()
    counted = []
    for node in inferred.graph.node:
        layer = LayerCount(name=_layer_name(node), op=node.op_type)
        for name in node.input:
            if name in weights and name not in seen:
                seen.add(name)
                layer.params += int(weights[name].size)
                layer.bytes += stored_bytes(weights[name])
        layer.unknown = node.op_type in COUNTED_OPS and not _arithmetic(node, shapes, weights,
                                                                         layer)
        counted.append((node, layer))
    layers = [layer for _, layer in counted
              if layer.params or layer.mults or layer.adds or layer.unknown]
    return {"layers": [{**asdict(x), "energy_uj": x.energy_uj} for x in layers],
            "totals": _totals(layers), "energy_model": ENERGY_MODEL,
            "lowered_convs": lowered_convs(counted, shapes, weights)}


def stored_bytes(array) -> int:
    """Bytes on disk: 4-bit tensors (INT4/UINT4) pack two values per byte."""
    if array.dtype.name in ("int4", "uint4"):
        return (int(array.size) + 1) // 2
    return int(array.nbytes)


@contextlib.contextmanager
def _sized(model, dims: dict[str, int]):
    """The graph inputs' symbolic dims named in `dims` set to those sizes, for the block."""
    changed = []
    for value in model.graph.input:
        for dim in value.type.tensor_type.shape.dim:
            if dim.HasField("dim_param") and dim.dim_param in dims:
                changed.append((dim, dim.dim_param))
                dim.dim_value = dims[dim.dim_param]
    try:
        yield
    finally:
        for dim, name in changed:
            dim.dim_param = name


def _inferred(model, symbolic: bool = False):
    """The model with inferred value shapes; as it is when shape inference rejects it (then
    only declared shapes are known, and the rest is counted as unknown)."""
    from onnx.shape_inference import InferenceError

    try:
        return infer_shapes(model, data_prop=True, symbolic=symbolic)
    except (InferenceError, ValueError, RuntimeError):
        return model
    except Exception:  # ONNX Runtime's symbolic inference also raises asserts and KeyErrors
        if not symbolic:
            raise
        return model


def _known_shapes(model) -> dict[str, list[int]]:
    """Fully static shapes by value name (a value without a shape has an unknown rank)."""
    shapes = {}
    for value in [*model.graph.input, *model.graph.value_info, *model.graph.output]:
        tensor_type = value.type.tensor_type
        dims = tensor_type.shape.dim
        if tensor_type.HasField("shape") and all(d.HasField("dim_value") for d in dims):
            shapes[value.name] = [d.dim_value for d in dims]
    for tensor in model.graph.initializer:
        shapes[tensor.name] = list(tensor.dims)
    return shapes


def _layer_name(node) -> str:
    """The torch module path the exporter recorded for the node, else the node name."""
    for prop in node.metadata_props:
        if prop.key == "pkg.torch.onnx.name_scopes":
            scopes = [s.strip("' ") for s in prop.value.strip("[]").split(",")]
            modules = [s for s in scopes[:-1] if s]
            if modules:
                return modules[-1]
    return node.name or node.op_type


def _attr(node, name: str, default: Any) -> Any:
    from onnx import helper

    for attribute in node.attribute:
        if attribute.name == name:
            return helper.get_attribute_value(attribute)
    return default


def _arithmetic(node, shapes: dict[str, list[int]], weights, layer: LayerCount) -> bool:
    """Fill in the node's arithmetic; False when a shape it needs is not known."""
    out_shape = shapes.get(node.output[0]) if node.output else None
    if out_shape is None:
        return False
    out = math.prod(out_shape)
    op = node.op_type
    if op in ("Conv", "ConvInteger"):
        return _conv(node, shapes, out, layer)
    if op == "MatMul" and _constant_matrix(node, weights) is not None:
        _constant_product(node, out_shape, weights, layer)
    elif op in ("MatMul", "Gemm", "MatMulInteger"):
        return _matmul(node, shapes, out, layer)
    elif op in ("Mul", "Div"):
        layer.mults = out
    elif op in ("Add", "Sub"):
        layer.adds = out
    elif op == "BatchNormalization":
        layer.mults = layer.adds = out
    elif op in ("AveragePool", "GlobalAveragePool", "ReduceMean"):
        inp = shapes.get(node.input[0])
        if inp is None:
            return False
        window = math.prod(inp) // max(out, 1)
        layer.adds, layer.mults = out * (window - 1), out
    return True


def _conv(node, shapes: dict[str, list[int]], out: int, layer: LayerCount) -> bool:
    w = shapes.get(node.input[1])
    if not w:
        return False
    k = math.prod(w[1:])
    layer.macs = layer.mults = out * k
    # ConvInteger's third input is a zero point, not a bias
    has_bias = node.op_type == "Conv" and len(node.input) > 2 and bool(node.input[2])
    layer.adds = out * (k - 1) + (out if has_bias else 0)
    return True


def _matmul(node, shapes: dict[str, list[int]], out: int, layer: LayerCount) -> bool:
    a = shapes.get(node.input[0])
    if not a:  # unknown, or a rank MatMul cannot take
        return False
    op = node.op_type
    k = a[0] if op == "Gemm" and _attr(node, "transA", 0) else a[-1]
    layer.macs = layer.mults = out * k
    layer.adds = out * (k - 1)
    if op == "Gemm":
        has_c = len(node.input) > 2 and bool(node.input[2])
        layer.adds += out if has_c else 0
        layer.mults += out if _attr(node, "alpha", 1.0) != 1.0 else 0
        layer.mults += out if has_c and _attr(node, "beta", 1.0) != 1.0 else 0
    return True


def _constant_matrix(node, weights) -> tuple[int, Any] | None:
    """(side, matrix) when one MatMul operand is a constant 2-D matrix: 0 left, 1 right."""
    for side in (0, 1):
        matrix = weights.get(node.input[side])
        if matrix is not None and matrix.ndim == 2 and matrix.dtype.kind == "f":
            return side, matrix
    return None


def _constant_product(node, out_shape: list[int], weights, layer: LayerCount) -> None:
    """A product with a constant matrix costs, per output element, one multiplication for
    each entry that is not 0 or +-1 and (non-zeros - 1) additions: SFC's ternary transforms
    are additions only, dense weights count as usual (K mults, K - 1 adds)."""
    import numpy as np

    side, matrix = _constant_matrix(node, weights)
    lines = matrix if side == 0 else matrix.T  # one line per output row (left) or column
    nonzero = np.count_nonzero(lines, axis=1)
    unit = np.count_nonzero(np.abs(lines) == 1, axis=1)
    repeats = math.prod(out_shape) // max(lines.shape[0], 1)  # output elements per line
    layer.mults = layer.macs = int((nonzero - unit).sum()) * repeats
    layer.adds = int(np.maximum(nonzero - 1, 0).sum()) * repeats


def _totals(layers: list[LayerCount]) -> dict[str, Any]:
    keys = ("params", "bytes", "macs", "mults", "adds")
    totals: dict[str, Any] = {k: sum(getattr(x, k) for x in layers) for k in keys}
    totals["energy_uj"] = sum(x.energy_uj for x in layers)
    totals["unknown_layers"] = sum(x.unknown for x in layers)
    return totals
