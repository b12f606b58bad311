"""The sfc pass: lowered convolutions equal direct ones (fp64 to 1e-10, fp32 to 1e-5) over
random shapes, paddings, batches, groups and bias; ineligible layers are declined with a
counted reason; `auto` picks the tile by map size; the lowered model exports to ONNX."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from ember.compiler.export import export_onnx
from ember.passes import PASSES, PassContext
from ember.passes.sfc.conv import SFCConv2d
from ember.passes.sfc.lower import SFCLowering
from ember.sfc_algorithms import ALGORITHMS, algorithm


def _relative_error(out: torch.Tensor, ref: torch.Tensor) -> float:
    return float((out - ref).abs().max() / ref.abs().max().clamp_min(1e-30))


@settings(max_examples=40, deadline=None)
@given(name=st.sampled_from(ALGORITHMS), form=st.sampled_from(["symbolic", "integrated"]),
       groups=st.sampled_from([1, 2]), per_group=st.integers(1, 6), out_per_group=st.integers(1, 6),
       height=st.integers(1, 17), width=st.integers(1, 17), padding=st.sampled_from([0, 1, 2]),
       batch=st.integers(1, 3), bias=st.booleans(), seed=st.integers(0, 2**16))
def test_fp64_equals_direct(name, form, groups, per_group, out_per_group, height, width,
                            padding, batch, bias, seed):
    if height + 2 * padding < 3 or width + 2 * padding < 3:
        return  # no output
    torch.manual_seed(seed)
    conv = nn.Conv2d(groups * per_group, groups * out_per_group, 3, padding=padding,
                     groups=groups, bias=bias).double()
    x = torch.randn(batch, groups * per_group, height, width, dtype=torch.float64)
    with torch.no_grad():
        out, ref = SFCConv2d(conv, algorithm(name, form))(x), conv(x)
    assert out.shape == ref.shape
    assert _relative_error(out, ref) <= 1e-10


@pytest.mark.parametrize("name", ALGORITHMS)
def test_fp32_equals_direct(name):
    torch.manual_seed(0)
    conv = nn.Conv2d(32, 48, 3, padding=1)
    x = torch.randn(2, 32, 30, 23)
    with torch.no_grad():
        out, ref = SFCConv2d(conv, algorithm(name))(x), conv(x)
    assert _relative_error(out, ref) <= 1e-5


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lowered = nn.Conv2d(16, 32, 3, padding=1)
        self.grouped = nn.Conv2d(32, 32, 3, padding=1, groups=2)
        self.strided = nn.Conv2d(32, 32, 3, stride=2, padding=1)
        self.dilated = nn.Conv2d(32, 32, 3, padding=2, dilation=2)
        self.five = nn.Conv2d(32, 32, 5, padding=2)
        self.depthwise = nn.Conv2d(32, 32, 3, padding=1, groups=32)
        self.narrow = nn.Conv2d(32, 4, 1)
        self.tiny = nn.Conv2d(4, 4, 3, padding=1)
        self.reflect = nn.Conv2d(4, 16, 3, padding=1, padding_mode="reflect")

    def forward(self, x):
        x = self.depthwise(self.five(self.dilated(self.strided(self.grouped(self.lowered(x))))))
        return self.reflect(self.tiny(self.narrow(x)))


def test_declines_with_counted_reasons():
    torch.manual_seed(0)
    model = Net().eval()
    x = torch.randn(1, 16, 20, 20)
    result = SFCLowering()(model, PassContext(example_inputs={"x": x}))
    assert result.modified
    assert result.stats == {"lowered": 2, "algorithm:sfc6_6x6": 2, "skipped:stride_not_1": 1,
                            "skipped:dilated": 1, "skipped:kernel_not_3x3": 2,
                            "skipped:depthwise": 1, "skipped:few_channels": 1,
                            "skipped:padding_mode": 1}
    assert isinstance(result.model.grouped, SFCConv2d)
    assert isinstance(model.lowered, nn.Conv2d)  # the input model is left alone
    with torch.no_grad():
        assert _relative_error(result.model(x), model(x)) <= 1e-5
    again = SFCLowering()(result.model, PassContext())
    assert not again.modified and again.stats["lowered"] == 0


@pytest.mark.parametrize(("size", "expected"), [(56, "sfc6_7x7"), (28, "sfc6_7x7"),
                                                (14, "sfc6_7x7"), (10, "sfc6_6x6"),
                                                (4, "sfc4_4x4")])
def test_auto_picks_the_tile_by_map_size(size, expected):
    model = nn.Sequential(nn.Conv2d(16, 16, 3, padding=1)).eval()
    ctx = PassContext(example_inputs={"x": torch.randn(1, 16, size, size)})
    stats = SFCLowering(algorithm="auto")(model, ctx).stats
    assert stats[f"algorithm:{expected}"] == 1


def test_a_bare_convolution_is_lowered():
    conv = nn.Conv2d(16, 16, 3, padding=1).eval()
    result = SFCLowering()(conv, PassContext())
    assert isinstance(result.model, SFCConv2d) and isinstance(conv, nn.Conv2d)
    x = torch.randn(1, 16, 9, 9)
    with torch.no_grad():
        assert _relative_error(result.model(x), conv(x)) <= 1e-5


def test_bad_config_is_rejected():
    with pytest.raises(ValueError, match="algorithm must be"):
        PASSES["sfc"](algorithm="sfc9")
    with pytest.raises(ValueError, match="form must be"):
        PASSES["sfc"](form="fast")


@pytest.mark.parametrize("form", ["symbolic", "integrated"])
def test_lowered_model_exports_to_onnx(form):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(16, 24, 3, padding=1), nn.ReLU(),
                          nn.Conv2d(24, 16, 3, padding=0)).eval()
    x = np.random.default_rng(0).standard_normal((2, 16, 13, 11), dtype=np.float32)
    lowered = SFCLowering(form=form)(model, PassContext()).model
    onnx_model = export_onnx(lowered, {"x": x}, ["y"], {})
    ops = {node.op_type for node in onnx_model.graph.node}
    assert "Conv" not in ops and "MatMul" in ops
    out = ort.InferenceSession(onnx_model.SerializeToString()).run(None, {"x": x})[0]
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).numpy()
    assert np.abs(out - ref).max() / np.abs(ref).max() <= 1e-5
