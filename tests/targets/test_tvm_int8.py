"""The VNNI int8 path: the kernel equals integer matmul exactly, uses vpdpbusd, and ONNX
MatMulInteger products reach it through the tvm target."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

import ember
import ember.runtime as rt

pytestmark = pytest.mark.usefixtures("tvm_available")


@pytest.fixture(scope="module")
def vnni_target():
    import tvm

    from ember.targets.host import cpu_features
    from ember.targets.tvm.int8 import has_vnni

    target = tvm.target.Target({"kind": "llvm",
                                "mcpu": tvm.target.codegen.llvm_get_system_cpu()})
    if not has_vnni(tvm, target) or "avx512_vnni" not in cpu_features():
        pytest.skip("this CPU has no AVX-512 VNNI")
    return target


def _integers(dtype: str, shape, seed: int) -> np.ndarray:
    info = np.iinfo(dtype)
    return np.random.default_rng(seed).integers(info.min, info.max + 1, shape).astype(dtype)


@pytest.mark.parametrize(("m", "k", "n", "dtype", "zero_point"), [
    (1, 4, 16, "int8", 0), (7, 64, 32, "int8", 0), (12, 576, 48, "int8", 0),
    (5, 128, 64, "uint8", 0), (9, 32, 16, "uint8", 131),
])
def test_kernel_is_exact(vnni_target, m, k, n, dtype, zero_point):
    import tvm

    from ember.targets.tvm import int8 as tvm_int8

    a, w = _integers(dtype, (m, k), 1), _integers("int8", (k, n), 2)
    lib = tvm.compile(tvm.IRModule({"main": tvm_int8.matmul_func(m, k, n, dtype)}),
                      target=vnni_target).mod
    out = tvm.runtime.tensor(np.zeros((m, n), np.int32))
    lib["main"](*(tvm.runtime.tensor(x) for x in (
        a, tvm_int8.pack_weight(w), tvm_int8.column_sums(w),
        np.array([tvm_int8.offset(dtype, zero_point)], np.int32))), out)
    expected = (a.astype(np.int64) - zero_point) @ w.astype(np.int64)
    np.testing.assert_array_equal(out.numpy(), expected)


def test_kernel_uses_vpdpbusd(vnni_target):
    import tvm

    from ember.targets.tvm import int8 as tvm_int8

    lib = tvm.compile(tvm.IRModule({"main": tvm_int8.matmul_func(8, 64, 32, "int8")}),
                      target=vnni_target).mod
    assert "vpdpbusd" in lib.inspect_source("asm")


def test_pack_weight_layout():
    from ember.targets.tvm.int8 import pack_weight

    w = np.arange(8 * 32).reshape(8, 32).astype(np.int8)
    packed = pack_weight(w)
    assert packed.shape == (2, 2, 16, 4)
    j, q, v, r = 1, 1, 3, 2
    assert packed[j, q, v, r] == w[4 * q + r, 16 * j + v]


def _matmul_integer_model(path, a_type, zero_point: bool, k=64, n=32):
    w = _integers("int8", (k, n), 3)
    inputs, inits = ["A", "W"], [numpy_helper.from_array(w, "W")]
    if zero_point:
        inputs.append("azp")
        inits.append(numpy_helper.from_array(np.array(7, np.uint8), "azp"))
    graph = helper.make_graph(
        [helper.make_node("MatMulInteger", inputs, ["Y"])], "g",
        [helper.make_tensor_value_info("A", a_type, [2, 8, k])],
        [helper.make_tensor_value_info("Y", TensorProto.INT32, [2, 8, n])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    path.write_bytes(model.SerializeToString())
    return model


@pytest.mark.parametrize(("a_type", "dtype", "zero_point", "k", "n"), [
    (TensorProto.INT8, "int8", False, 64, 32), (TensorProto.UINT8, "uint8", True, 64, 32),
    # K not a multiple of 4 (the spike pass's channel groups, e.g. 576 - 58): zero-padded
    (TensorProto.UINT8, "uint8", False, 57, 32), (TensorProto.UINT8, "uint8", False, 518, 192)])
def test_matmul_integer_reaches_vnni(vnni_target, tmp_path, a_type, dtype, zero_point, k, n):
    model = _matmul_integer_model(tmp_path / "mmi.onnx", a_type, zero_point, k, n)
    art = ember.compile({"model": f"onnx:{tmp_path / 'mmi.onnx'}", "target": "tvm",
                         "output": str(tmp_path / "art")})
    session = rt.load(art)
    assert session.manifest["target_info"]["schedule"]["int8_products_vnni"] == 1
    a = _integers(dtype, (2, 8, k), 4)
    expected = ort.InferenceSession(model.SerializeToString()).run(None, {"A": a})[0]
    np.testing.assert_array_equal(session.run({"A": a})["Y"], expected)
