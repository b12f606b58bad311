"""SFC layers on the `tvm` target: the generated transform kernels compute the convolution,
the input transform is additions only, and compiled models take the kernels and stay exact."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
import torch
from torch import nn

import ember
import ember.runtime as rt
from ember.compiler.export import export_onnx
from ember.passes import PassContext
from ember.passes.sfc.lower import SFCLowering
from ember.sfc_algorithms import ALGORITHMS, algorithm, transformed_weights
from ember.targets.tvm.sfc import kernels

pytestmark = pytest.mark.usefixtures("tvm_available")


def _run_kernels(alg, x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None,
                 pads: tuple[int, int]) -> np.ndarray:
    """Input kernel -> slot GEMM kernel -> output kernel, built for this host."""
    import tvm

    n, c, h, w = x.shape
    k = weight.shape[0]
    out_hw = (h + 2 * pads[0] - 2, w + 2 * pads[1] - 2)
    th, tw = kernels.tiles(*out_hw, alg.m)
    rows, kt = kernels.padded_rows(n * th * tw), k  # one packed tile of all K columns
    module = tvm.IRModule({
        "sfc_input": kernels.parse(kernels.input_transform_source(alg, x.shape, pads, 16)),
        "sfc_products": kernels.parse(kernels.products_source(alg.slots, rows, c, k, kt)),
        "sfc_output": kernels.parse(kernels.output_transform_source(
            alg, n, k, out_hw, kt, bias is not None, 16)),
    })
    lib = tvm.compile(module, target=tvm.target.Target({"kind": "llvm"}))
    slots = tvm.runtime.tensor(np.full((alg.slots, rows, c), np.nan, np.float32))
    lib["sfc_input"](tvm.runtime.tensor(x), slots)
    assert not np.isnan(slots.numpy()).any()  # the padding rows are written (zeros)
    u = transformed_weights(torch.from_numpy(weight), alg).numpy()  # (P, C, K)
    products = tvm.runtime.tensor(np.zeros((alg.slots, 1, rows, k), np.float32))
    lib["sfc_products"](slots, tvm.runtime.tensor(u.astype(np.float32)[:, None]), products)
    y = tvm.runtime.tensor(np.zeros((n, k, *out_hw), np.float32))
    extra = [tvm.runtime.tensor(bias)] if bias is not None else []
    lib["sfc_output"](products, *extra, y)
    return y.numpy()


@pytest.mark.parametrize("name", ALGORITHMS)
@pytest.mark.parametrize("pads,bias", [((1, 1), True), ((0, 2), False)])
def test_kernels_compute_the_convolution(name, pads, bias):
    rng = np.random.default_rng(0)
    # 24 input channels (8-lane blocks), 20 outputs (4-lane blocks), sizes that are not a
    # multiple of any tile, and a batch of 2
    x = rng.standard_normal((2, 24, 13, 11), dtype=np.float32)
    weight = rng.standard_normal((20, 24, 3, 3), dtype=np.float32)
    b = rng.standard_normal(20, dtype=np.float32) if bias else None
    for form in ("symbolic", "integrated"):
        got = _run_kernels(algorithm(name, form), x, weight, b, pads)
        ref = torch.nn.functional.conv2d(
            torch.from_numpy(x).double(), torch.from_numpy(weight).double(),
            None if b is None else torch.from_numpy(b).double(), padding=pads).numpy()
        assert got.shape == ref.shape
        assert np.abs(got - ref).max() / np.abs(ref).max() <= 1e-5


def _run_fused(alg, x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None,
               pads: tuple[int, int], kt: int, block: int, split: bool) -> np.ndarray:
    import tvm

    n, c, h, w = x.shape
    k = weight.shape[0]
    out_hw = (h + 2 * pads[0] - 2, w + 2 * pads[1] - 2)
    source = kernels.fused_source(alg, x.shape, k, pads, kt, bias is not None, 16, block, split)
    lib = tvm.compile(tvm.IRModule({"sfc_conv": kernels.parse(source)}),
                      target=tvm.target.Target({"kind": "llvm"}))
    u = transformed_weights(torch.from_numpy(weight), alg).numpy()  # (P, C, K)
    packed = u.reshape(alg.slots, c, k // kt, kt).transpose(0, 2, 1, 3).astype(np.float32)
    y = tvm.runtime.tensor(np.zeros((n, k, *out_hw), np.float32))
    extra = [tvm.runtime.tensor(bias)] if bias is not None else []
    lib["sfc_conv"](tvm.runtime.tensor(x), tvm.runtime.tensor(packed.copy()), *extra, y)
    return y.numpy()


@pytest.mark.parametrize("name", ["sfc6_6x6", "sfc4_4x4", "winograd_4x4"])
@pytest.mark.parametrize("kt,block,bias,split", [(16, 4, True, False), (8, 8, False, True)])
def test_fused_kernel_computes_the_convolution(name, kt, block, bias, split):
    """Tile counts that do not fill the last block, two column tiles of the weights."""
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 24, 13, 11), dtype=np.float32)
    weight = rng.standard_normal((32, 24, 3, 3), dtype=np.float32) if kt == 16 else \
        rng.standard_normal((16, 24, 3, 3), dtype=np.float32)
    b = rng.standard_normal(weight.shape[0], dtype=np.float32) if bias else None
    got = _run_fused(algorithm(name), x, weight, b, (1, 1), kt, block, split)
    ref = torch.nn.functional.conv2d(
        torch.from_numpy(x).double(), torch.from_numpy(weight).double(),
        None if b is None else torch.from_numpy(b).double(), padding=1).numpy()
    assert np.abs(got - ref).max() / np.abs(ref).max() <= 1e-5


@pytest.mark.parametrize("name", ["sfc6_6x6", "sfc6_7x7", "sfc4_4x4", "winograd_2x2"])
def test_input_transform_is_additions_only(name):
    """SFC's transforms (and F(2x2)'s) have coefficients 0 and +-1: the generated kernel
    holds additions and subtractions and no multiplication."""
    source = kernels.input_transform_source(algorithm(name), (1, 16, 12, 12), (1, 1), 16)
    body = [line for line in source.splitlines() if line.strip().startswith(("a1[", "z[", "V["))]
    assert body and not any("*" in line.split("=", 1)[1] for line in body)
    assert any(" - " in line for line in body)


class ThreeConvs(nn.Module):  # two layers the kernels take, one grouped layer they do not
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(16, 32, 3, padding=1)
        self.b = nn.Conv2d(32, 32, 3, padding=1, groups=2, bias=False)
        self.c = nn.Conv2d(32, 16, 3, padding=0)

    def forward(self, x):
        return self.c(torch.relu(self.b(torch.relu(self.a(x)))))


@pytest.mark.parametrize("alg_name,kernels_mode", [("sfc6_6x6", "fused"), ("sfc4_4x4", "auto"),
                                                   ("winograd_4x4", "split")])
def test_compiled_model_uses_the_kernels_and_matches_torch(alg_name, kernels_mode, tmp_path):
    torch.manual_seed(0)
    model = ThreeConvs().eval()
    lowered = SFCLowering(algorithm=alg_name)(model, PassContext()).model
    x = np.random.default_rng(1).standard_normal((2, 16, 15, 13), dtype=np.float32)
    path = tmp_path / "sfc.onnx"
    onnx.save(export_onnx(lowered, {"x": x}, ["y"], {}), str(path))
    out = ember.compile({"model": f"onnx:{path}", "target": "tvm", "output": str(tmp_path / "a"),
                         "target_options": {"tuning": False, "sfc": kernels_mode}})
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["verification"]["status"] == "passed"
    record = manifest["target_info"]["schedule"]["sfc_layers"]
    kinds = {"fused": 2, "split": 0} if kernels_mode != "split" else {"fused": 0, "split": 2}
    assert record == {"kernels": kernels_mode, **kinds}  # not the grouped one (small: fused)
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).numpy()
    got = rt.load(out).run({"x": x})["y"]
    assert np.abs(got - ref).max() / np.abs(ref).max() <= 1e-5


def test_auto_picks_the_split_kernels_for_large_transformed_weights():
    """128 -> 128 channels: U is 88 x 128 x 128 floats (5.8 MB), re-read per block by the
    fused kernel, so `auto` splits; 16 -> 32 channels (0.2 MB) stays fused."""
    from ember.targets.tvm.sfc.rewrite import fuse_sfc_layers

    model = nn.Sequential(nn.Conv2d(16, 128, 3, padding=1), nn.ReLU(),
                          nn.Conv2d(128, 128, 3, padding=1)).eval()
    lowered = SFCLowering(min_channels=16)(model, PassContext()).model
    x = np.zeros((1, 16, 12, 12), np.float32)
    exported = export_onnx(lowered, {"x": x}, ["y"], {})
    assert fuse_sfc_layers(exported, 16, "auto") == {"fused": 1, "split": 1}
    ops = [node.op_type for node in exported.graph.node if node.domain == "ember"]
    assert ops == ["EmberSFCConv", "EmberSFCInput", "EmberSFCProducts", "EmberSFCOutput"]
