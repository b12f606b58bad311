"""The Triton kernels against their references, on small shapes, two ways:

- "cuda": compiled, on a CUDA device (skipped without one);
- "interpreter": Triton's CPU interpreter (TRITON_INTERPRET=1) on CPU tensors, which checks
  the kernels' logic (indexing, masks, unpacking, epilogues) where there is no GPU. Skipped
  without triton, and on a machine with CUDA, where the compiled run covers the same cases.
"""

from __future__ import annotations

import pytest
import torch

from ember.runtime.gpu.int4.gemv import GEMV_CONFIGS, int4_gemv
from ember.runtime.gpu.int4.pack import int4_gemv_reference, pack_int4
from ember.runtime.gpu.int8.gemm import GemmConfig, int8_gemm, int8_gemm_two_group, pad_groups
from ember.runtime.gpu.int8.quant import (
    group_row_sums,
    int8_gemm_reference,
    int8_gemm_two_group_reference,
    quantize_symmetric,
    quantize_two_groups,
)
from ember.runtime.gpu.sfc.conv import sfc_conv2d
from ember.runtime.gpu.sfc.plan import make_plan
from ember.runtime.gpu.sfc.reference import sfc_conv2d_reference

SMALL_INT8 = (GemmConfig(32, 32, 32, 2, 4, 2), GemmConfig(16, 64, 64, 1, 4, 2))


SFC_CASES = [  # algorithm, form, (N, C, K, H, W), padding, bias, channels_last
    ("sfc6_6x6", "symbolic", (2, 16, 24, 13, 11), 1, True, False),
    ("sfc6_6x6", "symbolic", (1, 20, 16, 7, 7), 1, False, True),
    ("sfc6_6x6", "symbolic", (2, 16, 16, 5, 9), 0, True, True),
    ("winograd_4x4", "integrated", (2, 16, 24, 13, 11), 1, True, False),
    ("sfc4_4x4", "integrated", (1, 16, 16, 6, 10), 2, False, True),
]


@pytest.mark.parametrize(("name", "form", "shape", "padding", "bias", "channels_last"),
                         SFC_CASES)
def test_sfc_conv(device, name, form, shape, padding, bias, channels_last) -> None:
    n, c, k, h, w = shape
    gen = torch.Generator().manual_seed(c * h + w)
    x = torch.randn(n, c, h, w, generator=gen).half().to(device)
    if channels_last:
        x = x.to(memory_format=torch.channels_last)
    weight = torch.randn(k, c, 3, 3, generator=gen) / (3 * c**0.5)
    plan = make_plan(weight, torch.randn(k, generator=gen) if bias else None, name, form,
                     padding).to(device)
    out = sfc_conv2d(x, plan, backend="triton")
    assert out.dtype == torch.float16
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    assert out.is_contiguous(memory_format=fmt)
    stored = sfc_conv2d_reference(x, plan, storage_dtype=torch.float16)
    assert _rel_rms(out, stored) < 1e-3  # accumulation order and fp16 output rounding only


@pytest.mark.parametrize(("n", "k"), [(40, 384), (64, 1024), (24, 128), (17, 1280), (9, 2560)])
def test_int4_gemv(device, n: int, k: int) -> None:
    gen = torch.Generator().manual_seed(n + k)
    packed = pack_int4(torch.randn(n, k, generator=gen)).to(device)
    x = torch.randn(k, generator=gen).half().to(device)
    ref = int4_gemv_reference(x, packed)
    configs = GEMV_CONFIGS if device == "cpu" else (None,)
    for config in configs:
        out = int4_gemv(x, packed, backend="triton", config=config)
        assert out.shape == (1, n) and out.dtype == torch.float16
        assert _rel_max(out, ref) < 2e-3, config
        assert _rel_rms(out, ref) < 1e-3, config


@pytest.mark.parametrize(("m", "n", "k"), [(40, 48, 96), (33, 17, 64), (64, 32, 100)])
def test_int8_gemm(device, m: int, n: int, k: int) -> None:
    gen = torch.Generator().manual_seed(m + n + k)
    qa, sa = quantize_symmetric(torch.randn(m, k, generator=gen))
    qw, sw = quantize_symmetric(torch.randn(n, k, generator=gen))
    qa, sa, qw, sw = (t.to(device) for t in (qa, sa, qw, sw))
    ref = int8_gemm_reference(qa, sa, qw, sw)
    for config in (*SMALL_INT8, None) if device == "cuda" else SMALL_INT8:
        out = int8_gemm(qa, sa, qw, sw, backend="triton", config=config)
        assert _rel_max(out, ref) < 2e-3, config


@pytest.mark.parametrize(("m", "n", "k", "split"), [(40, 48, 320, 200), (64, 32, 256, 128)])
@pytest.mark.parametrize("zero_points", [True, False])
def test_int8_gemm_two_group(device, m: int, n: int, k: int, split: int,
                             zero_points: bool) -> None:
    gen = torch.Generator().manual_seed(m + k)
    x = torch.randn(m, k, generator=gen)
    x[:, split:] *= 10
    codes, scales, zeros = quantize_two_groups(x, split)
    qw, sw = quantize_symmetric(torch.randn(n, k, generator=gen))
    sums = group_row_sums(qw, split)
    zeros = zeros if zero_points else None
    ref = int8_gemm_two_group_reference(codes, scales, qw, sw, split, zeros, sums)
    padded, new_split = pad_groups(codes, split)
    padded_w, _ = pad_groups(qw, split)
    args = (padded, scales, padded_w, sw, new_split, zeros, sums if zero_points else None)
    args = tuple(None if t is None else t.to(device) if torch.is_tensor(t) else t for t in args)
    for config in SMALL_INT8:
        out = int8_gemm_two_group(*args, backend="triton", config=config)
        assert _rel_max(out.cpu(), ref) < 2e-3, config


def _rel_max(out: torch.Tensor, ref: torch.Tensor) -> float:
    out, ref = out.double().cpu(), ref.double().cpu()
    return float((out - ref).abs().max() / ref.abs().max())


def _rel_rms(out: torch.Tensor, ref: torch.Tensor) -> float:
    out, ref = out.double().cpu(), ref.double().cpu()
    return float((out - ref).norm() / ref.norm())
