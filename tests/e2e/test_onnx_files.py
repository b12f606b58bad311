"""What real ONNX files contain, compiled and verified: weights declared as inputs, weights as
Constant nodes, an old opset, external data, several inputs and outputs, integer inputs."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import ember
import ember.runtime as rt

RNG = np.random.default_rng(0)
W = RNG.standard_normal((4, 3)).astype(np.float32)
B = RNG.standard_normal((3,)).astype(np.float32)


def _mlp(opset: int = 17, ir_version: int = 8, weights_as_inputs: bool = False,
         constants: bool = False) -> onnx.ModelProto:
    """y = relu(x @ W + B), W and B as initializers (optionally also declared as graph
    inputs), or as Constant nodes."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3])
    nodes = [helper.make_node("MatMul", ["x", "W"], ["h"]),
             helper.make_node("Add", ["h", "B"], ["z"]),
             helper.make_node("Relu", ["z"], ["y"])]
    weights = [numpy_helper.from_array(W, "W"), numpy_helper.from_array(B, "B")]
    inputs = [x]
    if constants:
        nodes[:0] = [helper.make_node("Constant", [], [t.name], value=t) for t in weights]
        weights = []
    if weights_as_inputs:
        inputs += [helper.make_tensor_value_info(t.name, TensorProto.FLOAT, list(t.dims))
                   for t in weights]
    graph = helper.make_graph(nodes, "mlp", inputs, [y], weights)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)],
                             ir_version=ir_version)


def _compile(tmp_path, model: onnx.ModelProto, target: str = "cpu", name: str = "m"):
    path = tmp_path / f"{name}.onnx"
    onnx.save(model, str(path))
    out = ember.compile({"model": f"onnx:{path}", "target": target,
                         "output": str(tmp_path / f"{name}-{target}")})
    return out, json.loads((out / "manifest.json").read_text())


def _expected(x: np.ndarray) -> np.ndarray:
    return np.maximum(x @ W + B, 0)


@pytest.mark.parametrize("target", ["cpu", pytest.param("tvm", marks=pytest.mark.tvm)])
def test_weights_declared_as_inputs_stay_weights(tmp_path, target):
    if target == "tvm":
        pytest.importorskip("tvm")
    out, manifest = _compile(tmp_path, _mlp(ir_version=3, opset=9, weights_as_inputs=True),
                             target)
    assert [i["name"] for i in manifest["signature"]["inputs"]] == ["x"]
    assert "2 weights declared as inputs kept as weights" in manifest["model"]["info"][
        "normalized"]
    x = RNG.standard_normal((2, 4)).astype(np.float32)
    np.testing.assert_allclose(rt.load(out).run({"x": x})["y"], _expected(x), atol=1e-5)


def test_constant_node_weights_are_lifted_and_counted(tmp_path):
    out, manifest = _compile(tmp_path, _mlp(constants=True))
    assert "2 Constant nodes lifted to initializers" in manifest["model"]["info"]["normalized"]
    assert manifest["ops"]["totals"]["params"] == W.size + B.size
    x = RNG.standard_normal((2, 4)).astype(np.float32)
    np.testing.assert_allclose(rt.load(out).run({"x": x})["y"], _expected(x), atol=1e-5)


def test_an_old_opset_is_upgraded_when_exact(tmp_path):
    out, manifest = _compile(tmp_path, _mlp(opset=9))
    assert "opset 9 upgraded to 13" in manifest["model"]["info"]["normalized"]
    model = onnx.load(str(out / "model.onnx"))
    assert [o.version for o in model.opset_import if o.domain == ""] == [13]


def test_external_data_loads(tmp_path):
    model = _mlp()
    onnx.save(model, str(tmp_path / "ext.onnx"), save_as_external_data=True,
              all_tensors_to_one_file=True, location="ext.data", size_threshold=0)
    assert (tmp_path / "ext.data").stat().st_size == (W.size + B.size) * 4
    out = ember.compile({"model": f"onnx:{tmp_path / 'ext.onnx'}", "target": "cpu",
                         "output": str(tmp_path / "a")})
    x = RNG.standard_normal((2, 4)).astype(np.float32)
    np.testing.assert_allclose(rt.load(out).run({"x": x})["y"], _expected(x), atol=1e-5)


def test_several_inputs_and_outputs_with_integer_inputs(tmp_path):
    """A gather by int64 indices and a sum, two outputs: both verified."""
    table = helper.make_tensor_value_info("table", TensorProto.FLOAT, [5, 3])
    idx = helper.make_tensor_value_info("idx", TensorProto.INT64, [2])
    nodes = [helper.make_node("Gather", ["table", "idx"], ["rows"]),
             helper.make_node("ReduceSum", ["rows"], ["total"], keepdims=0)]
    graph = helper.make_graph(nodes, "g", [table, idx], [
        helper.make_tensor_value_info("rows", TensorProto.FLOAT, [2, 3]),
        helper.make_tensor_value_info("total", TensorProto.FLOAT, [])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    out, manifest = _compile(tmp_path, model)
    assert [o["name"] for o in manifest["signature"]["outputs"]] == ["rows", "total"]
    t = RNG.standard_normal((5, 3)).astype(np.float32)
    got = rt.load(out).run({"table": t, "idx": np.array([4, 1], np.int64)})
    np.testing.assert_allclose(got["rows"], t[[4, 1]])
    np.testing.assert_allclose(got["total"], t[[4, 1]].sum(), rtol=1e-6)


def _reshape_by_input() -> onnx.ModelProto:
    """Reshape whose target shape is a graph input: zeros would make it invalid."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 6])
    shape = helper.make_tensor_value_info("shape", TensorProto.INT64, [2])
    graph = helper.make_graph([helper.make_node("Reshape", ["x", "shape"], ["y"])], "r",
                              [x, shape], [helper.make_tensor_value_info("y", TensorProto.FLOAT,
                                                                         [None, None])])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_example_inputs_from_a_file(tmp_path):
    """Shape vectors as graph inputs: the user's own example inputs make the model run (the
    generated zeros cannot), and they are the artifact's reference inputs."""
    onnx.save(_reshape_by_input(), str(tmp_path / "r.onnx"))
    x = RNG.standard_normal((2, 6)).astype(np.float32)
    np.savez(tmp_path / "in.npz", x=x, shape=np.array([3, 4], np.int64))
    out = ember.compile({"model": f"onnx:{tmp_path / 'r.onnx'}", "target": "cpu",
                         "example": {"inputs": str(tmp_path / "in.npz")},
                         "output": str(tmp_path / "a")})
    session = rt.load(out)
    inputs, expected = session.reference_io()
    np.testing.assert_array_equal(inputs["shape"], [3, 4])
    np.testing.assert_array_equal(expected["y"], x.reshape(3, 4))


@pytest.mark.parametrize(("arrays", "message"), [
    ({"x": np.zeros((2, 6), np.float32)}, r"hold \['x'\]; the graph's inputs are"),
    ({"x": np.zeros((2, 6), np.float64), "shape": np.array([3, 4], np.int64)},
     "example input x is float64 \\[2, 6\\]; the graph declares float32"),
    ({"x": np.zeros((3, 6), np.float32), "shape": np.array([3, 4], np.int64)},
     "example input x is float32 \\[3, 6\\]"),
])
def test_example_inputs_that_do_not_fit_are_one_line_errors(tmp_path, arrays, message):
    from ember.errors import ModelSpecError

    onnx.save(_reshape_by_input(), str(tmp_path / "r.onnx"))
    np.savez(tmp_path / "in.npz", **arrays)
    with pytest.raises(ModelSpecError, match=message):
        ember.compile({"model": f"onnx:{tmp_path / 'r.onnx'}", "target": "cpu",
                       "example": {"inputs": str(tmp_path / "in.npz")},
                       "output": str(tmp_path / "a")})


def _uint16_max() -> onnx.ModelProto:
    """Max on uint16: onnx's standard allows it; ONNX Runtime has no kernel for it."""
    a = helper.make_tensor_value_info("a", TensorProto.UINT16, [3])
    b = helper.make_tensor_value_info("b", TensorProto.UINT16, [3])
    graph = helper.make_graph([helper.make_node("Max", ["a", "b"], ["m"])], "m", [a, b],
                              [helper.make_tensor_value_info("m", TensorProto.UINT16, [3])])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


@pytest.mark.tvm
def test_a_model_onnxruntime_cannot_run_verifies_against_onnx_reference(tmp_path):
    """tvm builds it and verifies against onnx's reference evaluator (recorded); cpu, whose
    engine is ONNX Runtime, declines in one line naming ONNX Runtime's reason."""
    from ember.errors import UnsupportedModelError

    pytest.importorskip("tvm")
    onnx.save(_uint16_max(), str(tmp_path / "m.onnx"))
    np.savez(tmp_path / "in.npz", a=np.array([1, 9, 3], np.uint16),
             b=np.array([4, 2, 65535], np.uint16))
    config = {"model": f"onnx:{tmp_path / 'm.onnx'}",
              "example": {"inputs": str(tmp_path / "in.npz")}}
    out = ember.compile({**config, "target": "tvm", "output": str(tmp_path / "t")})
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["verification"]["reference"].startswith("onnx's reference evaluator")
    got = rt.load(out).run({"a": np.array([5, 0, 7], np.uint16),
                            "b": np.array([1, 8, 7], np.uint16)})["m"]
    np.testing.assert_array_equal(got, [5, 8, 7])
    with pytest.raises(UnsupportedModelError, match="ONNX Runtime cannot run the source model"):
        ember.compile({**config, "target": "cpu", "output": str(tmp_path / "c")})
    assert not (tmp_path / "c").exists()


def _cast_to(to: int, elem: int) -> onnx.ModelProto:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [4])
    graph = helper.make_graph([helper.make_node("Cast", ["x"], ["y"], to=to)], "c", [x],
                              [helper.make_tensor_value_info("y", elem, [4])])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 19)])


def test_float8_outputs_keep_their_type(tmp_path):
    """ONNX Runtime hands float8 over as raw bytes; the artifact's outputs are float8, in a
    fresh process too (the runtime registers the type names itself)."""
    import subprocess
    import sys

    out, manifest = _compile(tmp_path, _cast_to(TensorProto.FLOAT8E4M3FN,
                                                 TensorProto.FLOAT8E4M3FN))
    assert manifest["signature"]["outputs"][0]["dtype"] == "float8_e4m3fn"
    code = (f"import numpy as np, ember.runtime as rt\n"
            f"y = rt.load({str(out)!r}).run({{'x': np.array([0.5, -2, 300, 1e4], "
            f"np.float32)}})['y']\nprint(y.dtype, y.astype(np.float32).tolist())")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.stdout.split(None, 1) == ["float8_e4m3fn", "[0.5, -2.0, 288.0, 448.0]\n"], \
        done.stderr


def test_string_tensors_are_declined_in_one_line(tmp_path):
    from ember.errors import UnsupportedModelError

    with pytest.raises(UnsupportedModelError, match="y is a string tensor"):
        _compile(tmp_path, _cast_to(TensorProto.STRING, TensorProto.STRING))


@pytest.mark.tvm
def test_read_only_inputs_reach_tvm(tmp_path):
    pytest.importorskip("tvm")
    out, _ = _compile(tmp_path, _mlp(), "tvm")
    x = RNG.standard_normal((2, 4)).astype(np.float32)
    x.flags.writeable = False
    np.testing.assert_allclose(rt.load(out).run({"x": x})["y"], _expected(x), atol=1e-5)


def test_metadata_that_is_not_utf8_is_dropped_and_recorded(tmp_path):
    """Protobuf parses such strings and hands them out as bytes; they used to crash op
    counting. They are annotations, not the graph: dropped, and the manifest says so."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])
    model = helper.make_model(helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g",
                                                [x], [y]),
                              opset_imports=[helper.make_opsetid("", 17)])
    model.graph.node[0].metadata_props.add(key="note", value="MARK")
    model.metadata_props.add(key="author", value="MARK")
    path = tmp_path / "latin1.onnx"
    path.write_bytes(model.SerializeToString().replace(b"MARK", b"\xe9t\xe9\xff"))
    out = ember.compile({"model": f"onnx:{path}", "target": "cpu",
                         "output": str(tmp_path / "out")})
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["model"]["info"]["normalized"] == [
        "metadata and doc strings that are not UTF-8 dropped (2 places)"]
    assert manifest["verification"]["status"] == "passed"
