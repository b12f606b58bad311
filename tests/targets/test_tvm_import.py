"""The tvm target keeps only float weights as parameters (shape vectors become constants)."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from ember.targets.tvm.prep import prepare_for_tvm


def test_shape_vectors_become_constants_and_weights_stay():
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])
    inits = [
        numpy_helper.from_array(np.ones((3, 4), np.float32), "w"),
        numpy_helper.from_array(np.array([4, 2], np.int64), "shape"),
        numpy_helper.from_array(np.array(2.0, np.float32), "scale"),
    ]
    nodes = [helper.make_node("MatMul", ["x", "w"], ["y"]),
             helper.make_node("Mul", ["y", "scale"], ["z"]),
             helper.make_node("Reshape", ["z", "shape"], ["out"])]
    model = helper.make_model(helper.make_graph(
        nodes, "g", [x], [helper.make_tensor_value_info("out", TensorProto.FLOAT, [4, 2])], inits))
    rewritten = prepare_for_tvm(model).model
    assert [t.name for t in rewritten.graph.initializer] == ["w"]
    constants = [n.output[0] for n in rewritten.graph.node if n.op_type == "Constant"]
    assert sorted(constants) == ["scale", "shape"]
    onnx.checker.check_model(rewritten)
    assert len(model.graph.initializer) == 3  # the input model is not modified
