"""Op counts are exact: expected numbers below are worked out by hand from the layer sizes."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper
from torch import nn

from ember.compiler.export import export_onnx
from ember.targets.opcount.nodes import count_ops


class ConvNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)  # 224 params
        self.act = nn.ReLU()
        self.fc = nn.Linear(8 * 8 * 8, 10)  # 5130 params

    def forward(self, image):
        return self.fc(self.act(self.conv(image)).flatten(1))


def test_conv_and_linear_counts_are_exact():
    x = np.zeros((1, 3, 8, 8), np.float32)
    model = export_onnx(ConvNet().eval(), {"image": x}, ["logits"], {})
    totals = count_ops(model)["totals"]
    # conv: 512 outputs (8 ch x 8 x 8), K = 3*3*3 = 27: 13824 MACs, 512*26 + 512 (bias) adds
    # fc: 10 outputs, K = 512: 5120 MACs, 10*511 + 10 (bias) adds
    assert totals["params"] == 224 + 5130
    assert totals["bytes"] == (224 + 5130) * 4
    assert totals["macs"] == 13824 + 5120
    assert totals["mults"] == 13824 + 5120
    assert totals["adds"] == 512 * 26 + 512 + 10 * 511 + 10


def test_layer_names_come_from_torch_modules():
    x = np.zeros((1, 3, 8, 8), np.float32)
    layers = count_ops(export_onnx(ConvNet().eval(), {"image": x}, ["logits"], {}))["layers"]
    assert {layer["name"] for layer in layers} >= {"conv", "fc"}


def _graph(nodes, inputs, output, initializers=()):
    return helper.make_model(helper.make_graph(
        nodes, "g", inputs, [helper.make_tensor_value_info(output, TensorProto.FLOAT, None)],
        list(initializers)))


def test_elementwise_gemm_and_pooling_rules():
    a = helper.make_tensor_value_info("a", TensorProto.FLOAT, [4, 6])
    w = numpy_helper.from_array(np.ones((6, 5), np.float32), "w")
    c = numpy_helper.from_array(np.ones((5,), np.float32), "c")
    img = helper.make_tensor_value_info("img", TensorProto.FLOAT, [1, 2, 4, 4])
    nodes = [
        helper.make_node("Gemm", ["a", "w", "c"], ["g"], alpha=0.5),  # 4x5 outputs, K=6
        helper.make_node("Mul", ["g", "g"], ["m"]),  # 20 mults
        helper.make_node("Sub", ["m", "g"], ["s"]),  # 20 adds
        helper.make_node("GlobalAveragePool", ["img"], ["p"]),  # 2 outputs, window 16
        helper.make_node("Relu", ["s"], ["out"]),  # no arithmetic
    ]
    model = _graph(nodes, [a, img], "out", [w, c])
    layers = {x["op"]: x for x in count_ops(model)["layers"]}
    assert layers["Gemm"]["macs"] == 20 * 6
    assert layers["Gemm"]["mults"] == 20 * 6 + 20  # alpha != 1 scales every output
    assert layers["Gemm"]["adds"] == 20 * 5 + 20  # plus C
    assert layers["Gemm"]["params"] == 30 + 5
    assert (layers["Mul"]["mults"], layers["Mul"]["adds"]) == (20, 0)
    assert (layers["Sub"]["mults"], layers["Sub"]["adds"]) == (0, 20)
    assert (layers["GlobalAveragePool"]["adds"], layers["GlobalAveragePool"]["mults"]) == (30, 2)
    assert "Relu" not in layers


def test_energy_estimate_follows_the_stated_model():
    x = np.zeros((1, 3, 8, 8), np.float32)
    totals = count_ops(export_onnx(ConvNet().eval(), {"image": x}, ["logits"], {}))["totals"]
    expected_pj = totals["mults"] * 3.7 + totals["adds"] * 0.9 + totals["bytes"] * 160.0
    assert abs(totals["energy_uj"] - expected_pj * 1e-6) < 1e-9


def test_integer_matmul_counts_and_int8_energy():
    a = helper.make_tensor_value_info("a", TensorProto.UINT8, [4, 6])
    w = numpy_helper.from_array(np.ones((6, 5), np.int8), "w")
    node = helper.make_node("MatMulInteger", ["a", "w"], ["y"])
    model = helper.make_model(helper.make_graph(
        [node], "g", [a], [helper.make_tensor_value_info("y", TensorProto.INT32, None)], [w]))
    (layer,) = count_ops(model)["layers"]
    assert (layer["macs"], layer["mults"], layer["adds"]) == (120, 120, 20 * 5)
    assert (layer["params"], layer["bytes"]) == (30, 30)
    assert layer["energy_uj"] == pytest.approx((120 * 0.2 + 100 * 0.03 + 30 * 160.0) * 1e-6)


RATIOS = {("sfc6_6x6", "symbolic"): (36, 88), ("sfc6_6x6", "integrated"): (36, 100),
          ("sfc6_7x7", "symbolic"): (49, 132), ("sfc4_4x4", "symbolic"): (16, 46),
          ("winograd_4x4", "integrated"): (16, 36), ("winograd_2x2", "integrated"): (4, 16)}


@pytest.mark.parametrize(("name", "form"), list(RATIOS))
def test_lowered_conv_counts(name, form):
    """Output 84x84 (a multiple of 2, 4, 6 and 7): GEMM multiplications P * tiles * C * K
    exactly, so direct / lowered = 9 m^2 / P; the ternary input transforms multiply nothing."""
    from ember.passes import PassContext
    from ember.passes.sfc.lower import SFCLowering

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(16, 24, 3, padding=1)).eval()
    x = np.random.default_rng(0).standard_normal((1, 16, 84, 84), dtype=np.float32)
    lowered = SFCLowering(algorithm=name, form=form)(model, PassContext()).model
    report = count_ops(export_onnx(lowered, {"x": x}, ["y"], {}))
    (record,) = report["lowered_convs"]
    square, slots = RATIOS[(name, form)]
    tiles = (84 * 84) // square
    assert record["slots"] == slots and record["output"] == [1, 24, 84, 84]
    assert record["direct_mults"] == 84 * 84 * 24 * 16 * 9
    assert record["gemm_mults"] == slots * tiles * 16 * 24
    assert record["mult_ratio"] == pytest.approx(9 * square / slots, rel=1e-12)
    input_side = [x for x in report["layers"] if x["op"] == "MatMul" and x["params"] == 0]
    assert input_side and record["adds"] > record["gemm_mults"]


def test_unknown_shapes_are_marked_not_raised():
    """A MatMul and a Gemm on an input of unknown rank: both are listed as unknown and count
    zero; the known ones (the Add on a declared shape) still count exactly."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, None)  # no shape at all
    b = helper.make_tensor_value_info("b", TensorProto.FLOAT, [2, 3])
    w = numpy_helper.from_array(np.ones((4, 3), np.float32), "w")
    w2 = numpy_helper.from_array(np.ones((3, 2), np.float32), "w2")
    nodes = [helper.make_node("MatMul", ["x", "w"], ["h"]),
             helper.make_node("Gemm", ["h", "w2"], ["y"]),
             helper.make_node("Add", ["b", "b"], ["z"])]
    graph = helper.make_graph(nodes, "g", [x, b],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None),
                               helper.make_tensor_value_info("z", TensorProto.FLOAT, [2, 3])],
                              [w, w2])
    report = count_ops(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]))
    assert [(layer["op"], layer["unknown"]) for layer in report["layers"]] == [
        ("MatMul", True), ("Gemm", True), ("Add", False)]
    assert report["totals"]["unknown_layers"] == 2
    assert report["totals"]["params"] == 12 + 6
    assert (report["totals"]["macs"], report["totals"]["adds"]) == (0, 6)
