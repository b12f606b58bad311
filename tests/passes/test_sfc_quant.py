"""Quantized SFC: the int16 mode is lossless (equals direct integer convolution), int8
slot requantization costs about 1.5x the direct-int8 error for SFC-6 while Winograd F(4x4)
costs several times more, and the pass calibrates from data."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from ember.passes import PassContext
from ember.passes.sfc.lower import SFCLowering, calibrate
from ember.passes.sfc.quant import QuantizedSFCConv2d
from ember.sfc_algorithms import algorithm


def _layer(c=32, k=16, groups=1, seed=0) -> nn.Conv2d:
    torch.manual_seed(seed)
    conv = nn.Conv2d(c, k, 3, padding=1, groups=groups).double()
    with torch.no_grad():
        conv.weight.normal_(0, (1 / (9 * c)) ** 0.5)
    return conv


def _rms_error(out: torch.Tensor, ref: torch.Tensor) -> float:
    return float((out - ref).pow(2).mean().sqrt() / ref.pow(2).mean().sqrt())


@pytest.mark.parametrize(("name", "groups"), [("sfc6_6x6", 1), ("sfc6_7x7", 1),
                                              ("sfc4_4x4", 2), ("winograd_4x4", 1)])
def test_int16_mode_equals_direct_integer_convolution(name, groups):
    conv = _layer(groups=groups)
    x = torch.randn(2, 32, 19, 23, dtype=torch.float64)
    scale, slots = calibrate(conv, algorithm(name), [x])
    module = QuantizedSFCConv2d(conv, algorithm(name), "int16", scale, slots)
    with torch.no_grad():
        out = module(x) - conv.bias.detach().view(1, -1, 1, 1)
    x_int = torch.clamp(torch.round(x / scale), -127, 127)
    weight = conv.weight.detach()
    w_scale = weight.abs().amax(dim=(1, 2, 3)) / 127
    w_int = torch.round(weight / w_scale.view(-1, 1, 1, 1))
    direct = nn.functional.conv2d(x_int.long(), w_int.long(), padding=1, groups=groups)
    integer = out / (scale * w_scale.view(1, -1, 1, 1))
    assert torch.equal(torch.round(integer).long(), direct)
    assert float((integer - direct).abs().max()) < 1e-6


def _smooth_relu(shape, seed=0) -> torch.Tensor:
    """Design section 6.3's realistic data: Gaussian noise blurred twice, ReLU'd, scaled."""
    torch.manual_seed(seed)
    x = torch.randn(shape, dtype=torch.float64)
    blur = torch.full((shape[1], 1, 3, 3), 1 / 9, dtype=torch.float64)
    for _ in range(2):
        x = nn.functional.conv2d(x, blur, padding=1, groups=shape[1])
    x = torch.relu(x)
    return x / x.std()


@pytest.mark.parametrize(("data", "bound"), [("gaussian", 2.0), ("smooth_relu", 1.7)])
def test_int8_error_against_direct_int8(data, bound):
    """Design section 6.3: SFC-6(6x6) about 1.5x the direct-int8 error, F(4x4) 4.5-9x."""
    conv = _layer(c=64, k=32)
    shape = (1, 64, 44, 44)
    x = torch.randn(shape, dtype=torch.float64) if data == "gaussian" else _smooth_relu(shape)
    with torch.no_grad():
        ref = conv(x)
        scale = float(x.abs().max()) / 127
        x_q = torch.clamp(torch.round(x / scale), -127, 127) * scale
        w_scale = conv.weight.abs().amax(dim=(1, 2, 3), keepdim=True) / 127
        w_q = torch.round(conv.weight / w_scale) * w_scale
        direct = _rms_error(nn.functional.conv2d(x_q, w_q, conv.bias, padding=1), ref)
        ratios = {}
        for name in ("sfc6_6x6", "winograd_4x4"):
            alg = algorithm(name)
            module = QuantizedSFCConv2d(conv, alg, 8, *calibrate(conv, alg, [x]))
            ratios[name] = _rms_error(module(x), ref) / direct
    assert 1.0 < ratios["sfc6_6x6"] <= bound
    assert ratios["winograd_4x4"] >= 3 * ratios["sfc6_6x6"]


@pytest.mark.parametrize("bits", [8, 6, 4])
def test_fewer_bits_more_error(bits):
    conv = _layer()
    x = torch.randn(1, 32, 24, 24, dtype=torch.float64)
    alg = algorithm("sfc6_6x6")
    module = QuantizedSFCConv2d(conv, alg, bits, *calibrate(conv, alg, [x]))
    with torch.no_grad():
        error = _rms_error(module(x), conv(x))
    assert {8: 0.005, 6: 0.02, 4: 0.08}[bits] < error < {8: 0.05, 6: 0.2, 4: 0.8}[bits]


def test_pass_calibrates_from_context_data():
    model = nn.Sequential(nn.Conv2d(16, 16, 3, padding=1), nn.ReLU(),
                          nn.Conv2d(16, 16, 3, padding=1)).eval()
    batches = [{"x": torch.randn(2, 16, 12, 12)} for _ in range(3)]
    result = SFCLowering(bits=8)(model, PassContext(calibration=batches))
    assert result.stats["lowered"] == 2
    first = result.model[0]
    assert isinstance(first, QuantizedSFCConv2d) and first.bits == 8
    expected = max(float(b["x"].abs().max()) for b in batches) / 127
    assert float(first.input_scale) == pytest.approx(expected)
    x = torch.randn(2, 16, 12, 12)
    with torch.no_grad():
        assert _rms_error(result.model(x).double(), model(x).double()) < 0.05


def test_quantized_pass_needs_data():
    model = nn.Sequential(nn.Conv2d(16, 16, 3, padding=1)).eval()
    with pytest.raises(ValueError, match="calibration data"):
        SFCLowering(bits=8)(model, PassContext())
    with pytest.raises(ValueError, match="bits must be one of"):
        SFCLowering(bits=3)
