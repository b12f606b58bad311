"""The SFC kernels' data flow (transforms as integer matrices) in plain torch equals direct
convolution in float64 for every algorithm, and its fp16-storage error is the algorithm's."""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional

from ember.runtime.gpu.sfc.conv import sfc_conv2d
from ember.runtime.gpu.sfc.plan import make_plan, transform_matrices
from ember.runtime.gpu.sfc.reference import sfc_conv2d_reference
from ember.sfc_algorithms import ALGORITHMS, FORMS, algorithm

CASES = [(name, form) for name in ALGORITHMS for form in FORMS
         if form == "integrated" or algorithm(name, form).symbolic]


@pytest.mark.parametrize(("name", "form"), CASES)
def test_matrices_are_small_integers(name: str, form: str) -> None:
    alg = algorithm(name, form)
    b, a, den = transform_matrices(alg)
    assert b.shape == (alg.slots, alg.tile**2) and a.shape == (alg.m**2, alg.slots)
    for matrix in (b, a):
        assert torch.equal(matrix, matrix.round()) and float(matrix.abs().max()) <= 2048
    assert den in (1, 16, 36)


@pytest.mark.parametrize(("name", "form"), CASES)
@pytest.mark.parametrize(("shape", "padding"), [((2, 5, 7, 13, 11), 1), ((1, 3, 4, 2, 3), 2),
                                                ((3, 4, 4, 9, 9), 0), ((1, 2, 3, 1, 1), 1)])
def test_reference_equals_direct_convolution(name, form, shape, padding) -> None:
    n, c, k, h, w = shape
    gen = torch.Generator().manual_seed(h * w + c)
    x = torch.randn(n, c, h, w, dtype=torch.float64, generator=gen)
    weight = torch.randn(k, c, 3, 3, dtype=torch.float64, generator=gen)
    bias = torch.randn(k, dtype=torch.float64, generator=gen)
    plan = make_plan(weight, bias, name, form, padding, dtype=torch.float64)
    out = sfc_conv2d_reference(x, plan)
    expected = functional.conv2d(x, weight, bias, padding=padding)
    assert out.shape == expected.shape
    assert float((out - expected).abs().max() / expected.abs().max()) < 1e-12


@pytest.mark.parametrize(("name", "bound"), [("sfc6_6x6", 1.5e-3), ("winograd_4x4", 1e-2)])
def test_fp16_storage_error(name: str, bound: float) -> None:
    """V, M and U in fp16 (as on the GPU): SFC-6 stays near fp16 rounding, F(4x4) does not."""
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(1, 32, 20, 20, generator=gen).half()
    weight = torch.randn(32, 32, 3, 3, generator=gen) / 17
    plan = make_plan(weight, None, name, "symbolic")
    out = sfc_conv2d_reference(x, plan, storage_dtype=torch.float16)
    exact = functional.conv2d(x.double(), weight.double(), padding=1)
    assert float((out - exact).norm() / exact.norm()) < bound


def test_dispatch_runs_the_reference_on_cpu() -> None:
    weight = torch.randn(6, 4, 3, 3)
    x = torch.randn(2, 4, 8, 8).half()
    out = sfc_conv2d(x, make_plan(weight), backend="reference")
    expected = functional.conv2d(x.float(), weight, padding=1)
    assert out.dtype == torch.float16 and out.shape == expected.shape
    torch.testing.assert_close(out.float(), expected, rtol=1e-2, atol=1e-2)


def test_plan_rejects_bad_weights() -> None:
    with pytest.raises(ValueError, match="3, 3"):
        make_plan(torch.zeros(4, 4, 5, 5))
    with pytest.raises(ValueError, match="no output"):
        sfc_conv2d_reference(torch.zeros(1, 4, 1, 1), make_plan(torch.zeros(4, 4, 3, 3),
                                                                padding=0))
