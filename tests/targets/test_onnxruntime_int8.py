"""8-bit integer products that ONNX Runtime computes exactly without VNNI: the rewrite to
u8 x u8 with a weight zero point gives the exact int32 product where u8 x s8 saturates
(CPUs with AVX2 only), and leaves weights that cannot saturate alone."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from ember.targets.onnxruntime_int8 import exact_int8_products


def _product(weights: np.ndarray, a_zero_point: bool = False) -> onnx.ModelProto:
    inputs = ["a", "w", "az"] if a_zero_point else ["a", "w"]
    inits = [numpy_helper.from_array(weights, "w")]
    if a_zero_point:
        inits.append(numpy_helper.from_array(np.array(3, np.uint8), "az"))
    graph = helper.make_graph(
        [helper.make_node("MatMulInteger", inputs, ["y"])], "product",
        [helper.make_tensor_value_info("a", TensorProto.UINT8, [4, weights.shape[0]])],
        [helper.make_tensor_value_info("y", TensorProto.INT32, [4, weights.shape[1]])],
        initializer=inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


def _run(model: onnx.ModelProto, a: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {"a": a})[0]


@pytest.mark.parametrize("a_zero_point", [False, True])
def test_full_range_int8_weights_give_the_exact_product(a_zero_point):
    rng = np.random.default_rng(0)
    weights = rng.integers(-128, 128, (64, 16)).astype(np.int8)
    weights[:8] = 127  # where u8 x s8 pairs saturate int16 without VNNI
    a = rng.integers(0, 256, (4, 64)).astype(np.uint8)
    a[:, :8] = 255
    exact = (a.astype(np.int64) - (3 if a_zero_point else 0)) @ weights.astype(np.int64)
    model = _product(weights, a_zero_point)
    assert exact_int8_products(model) == 1
    assert np.array_equal(_run(model, a), exact)
    node = model.graph.node[0]
    assert list(node.input)[2:] == ["az" if a_zero_point else "", "w__zero_point"]


def test_weights_that_cannot_saturate_are_left_alone():
    weights = np.full((64, 16), 64, np.int8)
    model = _product(weights)
    before = model.SerializeToString()
    assert exact_int8_products(model) == 0 and model.SerializeToString() == before
