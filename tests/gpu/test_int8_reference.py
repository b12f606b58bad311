"""W8A8 references: the integer GEMM equals the float product of the dequantized operands,
and the two-scale-group form (SpikeLLM) equals it too, zero points included; padding the
groups with zero columns changes nothing."""

from __future__ import annotations

import pytest
import torch

from ember.runtime.gpu.int8.gemm import int8_gemm, int8_gemm_two_group, pad_groups
from ember.runtime.gpu.int8.quant import (
    group_row_sums,
    int8_gemm_reference,
    int8_gemm_two_group_reference,
    quantize_symmetric,
    quantize_two_groups,
)

GEN = torch.Generator().manual_seed(0)


def test_symmetric_quantization() -> None:
    x = torch.randn(6, 64, generator=GEN)
    q, s = quantize_symmetric(x)
    assert q.dtype == torch.int8 and s.shape == (6,)
    assert int(q.abs().max()) == 127
    assert bool(((q.float() * s[:, None] - x).abs() <= s[:, None] / 2 + 1e-6).all())


def test_int8_reference_is_the_dequantized_product() -> None:
    a, w = torch.randn(9, 96, generator=GEN), torch.randn(13, 96, generator=GEN)
    (qa, sa), (qw, sw) = quantize_symmetric(a), quantize_symmetric(w)
    expected = (qa.double() * sa.double()[:, None]) @ (qw.double() * sw.double()[:, None]).T
    out = int8_gemm_reference(qa, sa, qw, sw, torch.float64)
    torch.testing.assert_close(out, expected, rtol=1e-12, atol=1e-12)
    assert int8_gemm(qa, sa, qw, sw, backend="reference").dtype == torch.float16


def test_two_group_codes() -> None:
    x = torch.randn(5, 40, generator=GEN)
    codes, scales, zeros = quantize_two_groups(x, 30)
    assert int(codes[:, :30].max()) <= 15 and int(codes[:, 30:].max()) <= 30
    assert int(codes.min()) >= 0 and scales.shape == zeros.shape == (5, 2)
    with pytest.raises(ValueError, match="k_split"):
        quantize_two_groups(x, 40)


@pytest.mark.parametrize("with_zeros", [True, False])
def test_two_group_reference_is_the_dequantized_product(with_zeros: bool) -> None:
    x, w = torch.randn(7, 50, generator=GEN), torch.randn(11, 50, generator=GEN)
    x[:, 44:] *= 25  # outlier channels, last after the offline permutation
    codes, scales, zeros = quantize_two_groups(x, 44)
    if not with_zeros:
        zeros = torch.zeros_like(zeros)
    qw, sw = quantize_symmetric(w)
    deq = torch.cat([(codes[:, :44].double() - zeros[:, :1]) * scales[:, :1].double(),
                     (codes[:, 44:].double() - zeros[:, 1:]) * scales[:, 1:].double()], 1)
    expected = deq @ (qw.double() * sw.double()[:, None]).T
    out = int8_gemm_two_group_reference(codes, scales, qw, sw, 44, zeros, None, torch.float64)
    torch.testing.assert_close(out, expected, rtol=1e-12, atol=1e-12)


def test_two_groups_with_equal_scales_are_one_group() -> None:
    a, w = torch.randn(4, 64, generator=GEN), torch.randn(6, 64, generator=GEN)
    (qa, sa), (qw, sw) = quantize_symmetric(a), quantize_symmetric(w)
    two = int8_gemm_two_group_reference(qa, torch.stack([sa, sa], 1), qw, sw, 20,
                                        out_dtype=torch.float64)
    torch.testing.assert_close(two, int8_gemm_reference(qa, sa, qw, sw, torch.float64))


def test_padding_the_groups_changes_nothing() -> None:
    x, w = torch.randn(3, 300, generator=GEN), torch.randn(5, 300, generator=GEN)
    codes, scales, zeros = quantize_two_groups(x, 270)
    qw, sw = quantize_symmetric(w)
    sums = group_row_sums(qw, 270)
    padded, split = pad_groups(codes, 270)
    padded_w, _ = pad_groups(qw, 270)
    assert split == 384 and padded.shape[1] == 384 + 128
    expected = int8_gemm_two_group_reference(codes, scales, qw, sw, 270, zeros, sums)
    out = int8_gemm_two_group(padded, scales, padded_w, sw, split, zeros, sums,
                              backend="reference")
    torch.testing.assert_close(out, expected)
