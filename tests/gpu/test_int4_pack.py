"""int4 packing: the planar layout is what the docstring says, pack/unpack round-trips, the
quantization error is at most half a step, and the reference GEMV is the dequantized product."""

from __future__ import annotations

import pytest
import torch

from ember.runtime.gpu.int4.gemv import int4_gemv
from ember.runtime.gpu.int4.pack import (
    PackedInt4,
    dequantize_int4,
    int4_gemv_reference,
    pack_int4,
    pack_nibbles,
    quantize_int4,
    unpack_int4,
)


@pytest.mark.parametrize("shape", [(1, 128), (5, 256), (16, 1152)])
def test_round_trip(shape: tuple[int, int]) -> None:
    q = torch.randint(-8, 8, shape, dtype=torch.int8, generator=torch.Generator().manual_seed(0))
    packed = PackedInt4(pack_nibbles(q), torch.ones(shape[0], shape[1] // 128, dtype=torch.half))
    assert packed.qweight.dtype == torch.int32 and packed.qweight.shape == (shape[0], shape[1] // 8)
    assert torch.equal(unpack_int4(packed), q)


def test_planar_layout() -> None:
    """Nibble j of word i of group g holds k = 128 g + 16 j + i, as q + 8."""
    q = torch.zeros(1, 256, dtype=torch.int8)
    q[0, 128 + 16 * 7 + 3] = -8  # group 1, nibble 7 (the sign bits), word 3: stored 0
    q[0, 16 * 2 + 5] = 7  # group 0, nibble 2, word 5: stored 15
    words = pack_nibbles(q)[0]
    eights = sum(8 << (4 * j) for j in range(8))  # every nibble 8 = a zero weight
    assert words[5].item() == _signed(eights + (7 << 8))
    assert words[16 + 3].item() == _signed(eights - (8 << 28))
    assert words[0].item() == _signed(eights)


def test_quantization_error_is_half_a_step() -> None:
    w = torch.randn(8, 512, generator=torch.Generator().manual_seed(1)) * 3
    q, scales = quantize_int4(w)
    assert int(q.min()) >= -8 and int(q.max()) <= 7
    step = scales.float().repeat_interleave(128, dim=1)
    err = (dequantize_int4(pack_int4(w)) - w).abs()
    assert bool((err <= step / 2 + 1e-6).all())


def test_zero_group_and_bad_width() -> None:
    w = torch.zeros(2, 128)
    assert torch.equal(dequantize_int4(pack_int4(w)), w)
    with pytest.raises(ValueError, match="multiple of 128"):
        pack_int4(torch.zeros(2, 100))


def test_reference_gemv_is_the_dequantized_product() -> None:
    gen = torch.Generator().manual_seed(2)
    w, x = torch.randn(24, 384, generator=gen), torch.randn(384, generator=gen)
    packed = pack_int4(w)
    expected = x.double() @ dequantize_int4(packed, torch.float64).T
    torch.testing.assert_close(int4_gemv_reference(x, packed)[0].double(), expected,
                               rtol=1e-5, atol=1e-5)
    out = int4_gemv(x.half(), packed, backend="reference")
    assert out.shape == (1, 24) and out.dtype == torch.float16


def _signed(word: int) -> int:
    word &= 0xFFFFFFFF
    return word - 2**32 if word >= 2**31 else word
