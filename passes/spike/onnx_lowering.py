"""ONNX lowering of SpikeLinear onto integer kernels (design: spike.md §9).

`ember::spike_linear` becomes, per channel group g (plain, salient):

    ReduceMin/ReduceMax over the token (with 0)        -> lo, hi        (per token: no
    Δ = Clip((hi - lo) / top, EPS), z = Round(-lo / Δ)                     DynamicQuantizeLinear,
    q = Clip(Round(x_g / Δ) + z, 0, top) -> uint8                         which is per tensor)
    acc = MatMulInteger(q, Wq_gᵀ) - Cast<int32>(z) * rowsum(Wq_g)        int32, exact
    y += Cast<float>(acc) * Δ

then y * w_scale + bias: the ops and order of `spike_linear`'s torch implementation, so the
codes and accumulators agree bit for bit. Minima and maxima against constants are written as
Clip (TVM's importer turns the variadic Min/Max into a stack its layout pass rejects).
Salient codes above 255 (a = 8 with T_s >= 2) are emitted as T_s burst spikes concatenated
along K against T_s copies of Wq_Sᵀ (channel expansion): one uint8 MatMulInteger with
K = T_s |S|. `ember::weight_only_linear` becomes
Cast(Wqᵀ) * s -> MatMul -> Add (block-wise steps: Cast -> Reshape (blocks, g, out) -> Mul by
s (blocks, 1, out) -> Reshape (in, out)): weight-only work that runtimes fold at load, and that
the `cpu` target turns into ONNX Runtime's 4-bit MatMulNBits (targets/onnxruntime_nbits.py). (Not
DequantizeLinear -> MatMul: ONNX Runtime rewrites that pair into a product that quantizes the
activations too, 0.09 off on a 64-wide layer.)

`pack_low_bit_weights` then stores every int8 weight initializer whose values fit in -8..7
as INT4 (two per byte) behind a Cast to int8, which ONNX Runtime folds once at load: 4-bit
weights take 1/8 of their fp32 bytes on disk.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ember.spike_codes import EPS

UINT8_TOP = 255
INT4_OPSET = 21  # Cast from INT4 (ONNX 1.16)
WEIGHT_INPUT = {"MatMulInteger": 1, "Cast": 0, "Tile": 0}  # op -> the weight's input slot
_DOMAIN = ""


def translation_table() -> dict[Any, Any]:
    import torch

    import ember.passes.spike.linear  # noqa: F401  (registers the ops)

    return {torch.ops.ember.spike_linear.default: _spike_linear,
            torch.ops.ember.weight_only_linear.default: _weight_only_linear}


def _const(value: float) -> Any:
    from onnxscript import ir
    from onnxscript import opset18 as op

    return op.Constant(value=ir.tensor(np.array(value, dtype=np.float32)))


def _spike_linear(x, plain_t, salient_t, plain_idx, salient_idx, plain_sums, salient_sums,
                  weight_scale, bias, a_bits: int, steps: int, decoupled: bool):
    from onnxscript import opset18 as op

    top = 2 ** a_bits - 1
    salient_channels = salient_t.shape[0] if salient_t.shape is not None else 0
    # with no salient channels the plain group is every channel in order: no Gather
    plain = op.Gather(x, plain_idx, axis=-1) if salient_channels else x
    groups = [("plain", plain, plain_t, plain_sums, top)]
    if salient_channels:
        groups.append(("salient", op.Gather(x, salient_idx, axis=-1), salient_t, salient_sums,
                       steps * top))
    shared = None if decoupled else _range_with_zero(x)
    y = None
    for name, part, weight_t, sums, group_top in groups:
        lo, hi = shared if shared is not None else _range_with_zero(part)
        delta = op.Clip(op.Div(op.Sub(hi, lo), _const(group_top)), _const(EPS))
        zero = op.Round(op.Div(op.Neg(lo), delta))
        codes = op.Clip(op.Add(op.Round(op.Div(part, delta)), zero), _const(0.0),
                        _const(group_top))
        if name == "salient" and group_top > UINT8_TOP:
            codes, weight_t = _burst(codes, weight_t, steps, top)
        acc = op.MatMulInteger(op.Cast(codes, to=2), weight_t)  # 2: UINT8
        corrected = op.Sub(acc, op.Mul(op.Cast(zero, to=6), sums))  # 6: INT32
        part_y = op.Mul(op.Cast(corrected, to=1), delta)  # 1: FLOAT
        y = part_y if y is None else op.Add(y, part_y)
    return op.Add(op.Mul(y, weight_scale), bias)


def _range_with_zero(x):
    from onnxscript import ir
    from onnxscript import opset18 as op

    axes = op.Constant(value=ir.tensor(np.array([-1], dtype=np.int64)))
    zero = _const(0.0)
    return (op.Clip(op.ReduceMin(x, axes, keepdims=1), None, zero),
            op.Clip(op.ReduceMax(x, axes, keepdims=1), zero))


def _burst(codes, weight_t, steps: int, top: int):
    """T_s spikes s_t = min(mem, A), mem -= s_t, side by side along K, and Wq_Sᵀ repeated."""
    from onnxscript import ir
    from onnxscript import opset18 as op

    mem, spikes = codes, []
    for _ in range(steps):
        spike = op.Clip(mem, None, _const(float(top)))
        mem = op.Sub(mem, spike)
        spikes.append(spike)
    repeats = op.Constant(value=ir.tensor(np.array([steps, 1], dtype=np.int64)))
    return op.Concat(*spikes, axis=-1), op.Tile(weight_t, repeats)


def _weight_only_linear(x, codes_t, weight_scale, bias):
    from onnxscript import ir
    from onnxscript import opset18 as op

    weight = op.Cast(codes_t, to=1)  # 1: FLOAT; the chain is folded once at load
    if len(weight_scale.shape) == 1:
        return op.Add(op.MatMul(x, op.Mul(weight, weight_scale)), bias)
    (d_in, d_out), blocks = codes_t.shape, weight_scale.shape[0]
    shape = op.Constant(value=ir.tensor(np.array([blocks, d_in // blocks, d_out], np.int64)))
    steps = op.Unsqueeze(weight_scale, op.Constant(value=ir.tensor(np.array([1], np.int64))))
    weight = op.Reshape(op.Mul(op.Reshape(weight, shape), steps),
                        op.Constant(value=ir.tensor(np.array([d_in, d_out], np.int64))))
    return op.Add(op.MatMul(x, weight), bias)


def pack_low_bit_weights(model: Any) -> int:
    """Store int8 weights that fit 4 bits as INT4 + Cast; returns the
    count. The opset is raised to 21 where needed (Cast from INT4)."""
    import ml_dtypes
    import onnx
    from onnx import helper, numpy_helper

    graph = model.graph
    consumers = {node.input[WEIGHT_INPUT[node.op_type]] for node in graph.node
                 if node.op_type in WEIGHT_INPUT}
    packed = 0
    nodes = []
    for init in graph.initializer:
        if init.data_type != onnx.TensorProto.INT8 or init.name not in consumers:
            continue
        values = numpy_helper.to_array(init)
        if values.size < 64 or values.min() < -8 or values.max() > 7:
            continue
        original, packed_name = init.name, f"{init.name}__int4"
        # raw bytes, two values each (make_tensor's int32_data costs ~1.5x that as varints)
        init.CopyFrom(numpy_helper.from_array(values.astype(ml_dtypes.int4), packed_name))
        _rename_uses(graph, original, f"{packed_name}_int8")
        nodes.append(helper.make_node("Cast", [packed_name], [f"{packed_name}_int8"],
                                      to=onnx.TensorProto.INT8))
        packed += 1
    for node in reversed(nodes):
        graph.node.insert(0, node)
    if packed:
        _raise_opset(model, INT4_OPSET)
    return packed


def _rename_uses(graph: Any, old: str, new: str) -> None:
    for node in graph.node:
        for i, name in enumerate(node.input):
            if name == old:
                node.input[i] = new


def _raise_opset(model: Any, version: int) -> None:
    for entry in model.opset_import:
        if entry.domain == _DOMAIN and entry.version < version:
            entry.version = version


def pack_half_precision_weights(model: Any, min_size: int = 65536) -> int:
    """Store large fp32 initializers whose every value is exactly an fp16 value as FLOAT16
    behind a Cast to float: lossless (the values are unchanged), half the bytes. The spike
    pass rounds the embedding (and LM head) to fp16 for this; other fp32 weights are almost
    never exactly fp16 and stay as they are. Returns how many were stored so."""
    import onnx
    from onnx import helper, numpy_helper

    graph, nodes = model.graph, []
    for init in graph.initializer:
        if init.data_type != onnx.TensorProto.FLOAT or _size(init) < min_size:
            continue
        values = numpy_helper.to_array(init)
        half = values.astype(np.float16)
        if not np.array_equal(half.astype(np.float32), values):
            continue
        original, packed_name = init.name, f"{init.name}__fp16"
        init.CopyFrom(numpy_helper.from_array(half, packed_name))
        _rename_uses(graph, original, f"{packed_name}_fp32")
        nodes.append(helper.make_node("Cast", [packed_name], [f"{packed_name}_fp32"],
                                      to=onnx.TensorProto.FLOAT))
    for node in reversed(nodes):
        graph.node.insert(0, node)
    return len(nodes)


def unpack_weights(model: Any) -> Any:
    """A copy of `model` with its INT4 and FLOAT16-behind-a-Cast initializers back as int8 and
    float (their Casts removed), for importers without INT4 support and for graph rewrites
    that look for weights as initializers (TVM 0.27); `model` itself when it has none."""
    import onnx
    from onnx import numpy_helper

    widen = {onnx.TensorProto.INT4: np.int8, onnx.TensorProto.FLOAT16: np.float32}
    casts = {node.input[0]: node for node in model.graph.node if node.op_type == "Cast"}
    packed = {init.name for init in model.graph.initializer
              if init.data_type in widen and init.name in casts}
    if not packed:
        return model
    model = copy_model(model)
    graph = model.graph
    for init in graph.initializer:
        if init.name in packed:
            values = numpy_helper.to_array(init).astype(widen[init.data_type])
            init.CopyFrom(numpy_helper.from_array(values, init.name))
    for node in [n for n in graph.node if n.op_type == "Cast" and n.input[0] in packed]:
        _rename_uses(graph, node.output[0], node.input[0])
        graph.node.remove(node)
    return model


def _size(init: Any) -> int:
    return int(np.prod(init.dims)) if init.dims else 1


def copy_model(model: Any) -> Any:
    import onnx

    clone = onnx.ModelProto()
    clone.CopyFrom(model)
    return clone
