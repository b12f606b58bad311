"""Weight-only 4-bit products rewritten to ONNX Runtime's MatMulNBits: the packing against the
plain product, the exact op counts, and graphs that must stay as they are."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from ember.targets.onnxruntime_nbits import ACTIVATION_ERROR, nbits_products

RNG = np.random.default_rng(7)


def _weight_only(codes: np.ndarray, steps: np.ndarray, int4: bool = True) -> onnx.ModelProto:
    """y = x · W, W = (Q (in, out) as float, by blocks) ⊙ s: the spike lowering's chain, with
    the codes stored as INT4 behind a Cast to int8 as the exporter writes them."""
    d_in, d_out = codes.shape
    dtype = TensorProto.INT4 if int4 else TensorProto.INT8
    codes_init = helper.make_tensor("codes", dtype, codes.shape, codes.flatten().tolist())
    nodes = [helper.make_node("Cast", ["codes"], ["c8"], to=TensorProto.INT8),
             helper.make_node("Cast", ["c8"], ["cf"], to=TensorProto.FLOAT)]
    inits = [codes_init]
    if steps.ndim == 1:
        nodes.append(helper.make_node("Mul", ["cf", "steps"], ["w"]))
        inits.append(numpy_helper.from_array(steps, "steps"))
    else:
        blocks = steps.shape[0]
        inits += [numpy_helper.from_array(steps[:, None, :], "steps"),
                  numpy_helper.from_array(np.array([blocks, d_in // blocks, d_out]), "blocked"),
                  numpy_helper.from_array(np.array([d_in, d_out]), "flat")]
        nodes += [helper.make_node("Reshape", ["cf", "blocked"], ["cb"]),
                  helper.make_node("Mul", ["cb", "steps"], ["wb"]),
                  helper.make_node("Reshape", ["wb", "flat"], ["w"])]
    nodes.append(helper.make_node("MatMul", ["x", "w"], ["y"], name="product"))
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["b", "t", d_in])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["b", "t", d_out])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)])


def _run(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    return ort.InferenceSession(model.SerializeToString(),
                                providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]


def _dense(codes: np.ndarray, steps: np.ndarray) -> np.ndarray:
    if steps.ndim == 1:
        return codes.astype(np.float64) * steps
    blocks, d_out = steps.shape
    return (codes.astype(np.float64).reshape(blocks, -1, d_out) * steps[:, None, :]).reshape(
        codes.shape)


@pytest.mark.parametrize(("d_in", "blocks"), [(64, 2), (256, 2), (96, 1), (40, 1)])
def test_matmul_nbits_computes_the_weight_only_product(d_in, blocks):
    """Block-wise steps (blocks of 32 and 128) and per-row steps (blocks of 32 of one step, the
    last one padded when 32 does not divide the inputs)."""
    codes = RNG.integers(-7, 8, (d_in, 24)).astype(np.int8)
    steps = RNG.uniform(0.01, 0.1, (blocks, 24) if blocks > 1 else (24,)).astype(np.float32)
    model = _weight_only(codes, steps)
    assert nbits_products(model, "float") == 1
    ops = [node.op_type for node in model.graph.node]
    assert ops == ["MatMulNBits"]  # the chain is gone, and nothing else was added
    assert {init.name for init in model.graph.initializer} == {"w.nbits", "w.nbits_scales"}
    node = model.graph.node[0]
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    assert attrs["block_size"] == (d_in // blocks if blocks > 1 else 32)
    assert (attrs["K"], attrs["N"], attrs["bits"], attrs["accuracy_level"]) == (d_in, 24, 4, 0)
    x = RNG.standard_normal((2, 3, d_in)).astype(np.float32)
    expected = x.astype(np.float64) @ _dense(codes, steps)
    np.testing.assert_allclose(_run(model, x), expected, rtol=1e-5,
                               atol=1e-5 * np.abs(expected).max())


def test_int8_activation_blocks_stay_within_the_stated_error():
    codes = RNG.integers(-7, 8, (128, 64)).astype(np.int8)
    steps = RNG.uniform(0.01, 0.1, (4, 64)).astype(np.float32)
    model = _weight_only(codes, steps)
    assert nbits_products(model, "int8") == 1
    x = RNG.standard_normal((1, 8, 128)).astype(np.float32)
    expected = x.astype(np.float64) @ _dense(codes, steps)
    error = np.abs(_run(model, x) - expected).max() / np.abs(expected).max()
    assert 0 < error < ACTIVATION_ERROR[0]  # quantized activations: close, not equal


@pytest.mark.parametrize("case", ["eight_bit_codes", "two_float_tensors", "weight_is_output"])
def test_other_products_are_left_alone(case):
    codes = RNG.integers(-7, 8, (64, 16)).astype(np.int8)
    steps = RNG.uniform(0.01, 0.1, (2, 16)).astype(np.float32)
    if case == "eight_bit_codes":  # 8-bit weight-only codes do not fit 4 bits
        codes[3, 5] = 100
        model = _weight_only(codes, steps, int4=False)
    else:
        model = _weight_only(codes, steps)
    if case == "two_float_tensors":  # the weight also adds a float tensor: not Q ⊙ s
        model.graph.initializer.append(numpy_helper.from_array(
            np.ones((64, 16), np.float32), "offset"))
        model.graph.node.insert(len(model.graph.node) - 1,
                                helper.make_node("Mul", ["w", "offset"], ["w2"]))
        model.graph.node[-1].input[1] = "w2"
    if case == "weight_is_output":  # another consumer sees the float weight itself
        model.graph.output.append(helper.make_tensor_value_info("w", TensorProto.FLOAT, None))
    before = model.SerializeToString()
    assert nbits_products(model, "int8") == 0
    assert model.SerializeToString() == before


def test_shared_shape_constants_stay_for_their_other_readers():
    codes = RNG.integers(-7, 8, (64, 16)).astype(np.int8)
    steps = RNG.uniform(0.01, 0.1, (2, 16)).astype(np.float32)
    model = _weight_only(codes, steps)
    model.graph.node.append(helper.make_node("Reshape", ["y", "flat"], ["z"]))
    model.graph.output.append(helper.make_tensor_value_info("z", TensorProto.FLOAT, None))
    assert nbits_products(model, "float") == 1
    assert "flat" in {init.name for init in model.graph.initializer}
    assert "codes" not in {init.name for init in model.graph.initializer}
    x = RNG.standard_normal((1, 64, 64)).astype(np.float32)  # 64 tokens: y fits "flat"
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    y, z = session.run(None, {"x": x})
    np.testing.assert_array_equal(z, y.reshape(64, 16))
