"""Each integer layer kernel: the g++ C simulation equals the numpy golden model exactly, the
golden model's integer arithmetic matches an independent computation, and the integer
network stays close to the float model it came from."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
import torch
from torch import nn

from ember.passes.contract import PassContext
from ember.passes.sfc.lower import SFCLowering
from ember.runtime.engines.fpga_io import dequantize_output, quantize_input
from ember.targets.fpga.fixed import fixed_point, requantize
from ember.targets.fpga.integer.layers import ConvLayer, LinearLayer, Requant
from ember.targets.fpga.integer.sfc import SFCLayer
from tests.targets.fpga_helpers import images, lowered, needs_gxx, simulate


class Plain(nn.Module):
    """Strided, grouped and depthwise-style convs, ReLU6, max and average pooling, linear."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.ReLU6(),
            nn.Conv2d(8, 8, 3, padding=1, groups=2), nn.ReLU(),
            nn.Conv2d(8, 8, 3, padding=1, groups=8, bias=False), nn.ReLU(),
            nn.MaxPool2d(2), nn.AvgPool2d(2), nn.Flatten(), nn.Linear(32, 5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class Residual(nn.Module):
    """A residual add, a standalone ReLU after it, global average pooling."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.branch = nn.Conv2d(8, 8, 3, padding=1)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.stem(x))
        y = torch.relu(self.branch(y) + y)
        return self.head(torch.flatten(self.pool(y), 1))


def _close_to_float(model: nn.Module, net, x: np.ndarray, share: float) -> None:
    """Dequantized golden outputs within `share` of the float output range."""
    with torch.no_grad():
        expected = model(torch.from_numpy(x)).numpy()
    got = net.golden(x)
    assert np.abs(got - expected).max() <= share * np.ptp(expected)


@needs_gxx
@pytest.mark.parametrize("factory", [Plain, Residual])
def test_csim_equals_golden(factory, tmp_path):
    torch.manual_seed(0)
    model = factory().eval()
    x = images((3, 16, 16))
    net = lowered(model, x)
    out, golden = simulate(net, x, tmp_path)
    np.testing.assert_array_equal(out, golden)
    _close_to_float(model, net, x, 0.05)


@needs_gxx
@pytest.mark.parametrize("algorithm,form,size", [
    ("sfc6_6x6", "symbolic", 14), ("sfc6_7x7", "symbolic", 14), ("sfc4_4x4", "symbolic", 10),
    ("sfc6_6x6", "integrated", 12), ("winograd_2x2", "symbolic", 8)])
def test_sfc_layer_csim_equals_golden(algorithm, form, size, tmp_path):
    torch.manual_seed(1)
    model = nn.Sequential(nn.Conv2d(16, 16, 3, padding=1), nn.ReLU(),
                          nn.Conv2d(16, 8, 3, padding=1)).eval()
    x = images((16, size, size))
    ctx = PassContext(example_inputs={"x": torch.from_numpy(x[:1])})
    lowered_model = SFCLowering(algorithm=algorithm, form=form)(model, ctx).model
    net = lowered(lowered_model, x)
    assert sum(isinstance(layer, SFCLayer) for layer in net.layers) == 2
    out, golden = simulate(net, x, tmp_path, lanes=64)
    np.testing.assert_array_equal(out, golden)
    _close_to_float(model, net, x, 0.05)


@needs_gxx
def test_sfc_transform_code_has_no_multiplications(tmp_path):
    torch.manual_seed(2)
    model = SFCLowering()(nn.Sequential(nn.Conv2d(16, 16, 3, padding=1)).eval(),
                          PassContext(example_inputs={"x": torch.zeros(1, 16, 12, 12)})).model
    x = images((16, 12, 12), count=8)
    simulate(lowered(model, x), x, tmp_path)
    code = (tmp_path / "model.cpp").read_text()
    transforms = [line for line in code.splitlines()
                  if line.strip().startswith(("const tdom_t", "wide_t u", "const wide_t y"))]
    assert len(transforms) > 100 and not any("*" in line for line in transforms)


def test_conv_accumulators_match_torch():
    torch.manual_seed(3)
    rng = np.random.default_rng(3)
    w = rng.integers(-127, 128, (6, 2, 3, 3)).astype(np.int8)
    b = rng.integers(-1000, 1000, 6).astype(np.int32)
    x = rng.integers(-127, 128, (2, 4, 9, 7)).astype(np.int64)
    layer = ConvLayer("c", "Conv2d", ["x"], "y", (6, 5, 4), weight=w, bias=b, stride=(2, 2),
                      padding=(1, 1), groups=2, requant=None)
    expected = torch.nn.functional.conv2d(torch.from_numpy(x).double(),
                                          torch.from_numpy(w.astype(np.float64)),
                                          torch.from_numpy(b.astype(np.float64)), stride=2,
                                          padding=1, groups=2).numpy()
    np.testing.assert_array_equal(layer.accumulate(x), expected.astype(np.int64))


def test_linear_accumulators_match_integer_matmul():
    rng = np.random.default_rng(4)
    w = rng.integers(-127, 128, (5, 300)).astype(np.int8)
    x = rng.integers(-127, 128, (3, 300))
    layer = LinearLayer("l", "Linear", ["x"], "y", (5,), weight=w, bias=np.zeros(5, np.int32),
                        requant=Requant(None, None))
    expected = [[sum(int(a) * int(c) for a, c in zip(row, col, strict=True)) for col in w]
                for row in x]
    np.testing.assert_array_equal(layer.run(x), np.array(expected))


def test_fixed_point_multipliers_and_rounding():
    reals = np.array([1e-4, 0.0031, 0.5, 0.7499, 1.0, 3.3, 977.0])
    mult, shift = fixed_point(reals)
    assert np.all((mult >= 1 << 14) & (mult < 1 << 15))
    np.testing.assert_allclose(mult / 2.0 ** shift, reals, rtol=2.0**-14)
    acc = np.arange(-5000, 5000, 7)
    for m, n in zip(mult, shift, strict=True):
        got = requantize(acc, np.array(m), np.array(n), -10**9, 10**9)
        exact = [math.floor(Fraction(int(a) * int(m), 1 << int(n)) + Fraction(1, 2)) for a in acc]
        np.testing.assert_array_equal(got, exact)  # floor(a m / 2^n + 1/2): round half up


def test_input_and_output_boundary():
    x = np.array([-3.0, -0.015, 0.005, 0.015, 2.0], np.float32)
    np.testing.assert_array_equal(quantize_input(x, 0.01), [-127, -2, 0, 2, 127])
    y = dequantize_output(np.array([[1, -2], [3, 4]], np.int32), np.array([0.5, 2.0]))
    np.testing.assert_array_equal(y, [[0.5, -4.0], [1.5, 8.0]])
