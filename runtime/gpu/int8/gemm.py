"""`int8_gemm` and `int8_gemm_two_group`: W8A8 prefill products with fp16 output.

Backends:
- "triton": runtime/gpu/int8/_kernels.py, scales (and the two groups' zero points) applied
  in the epilogue, so one kernel writes fp16. Its block shape is picked per (M, N, K) at
  run time among four candidates (128x256, 256x128, 128x128 with BK 128 or 64).
- "torch": `torch._int_mm` (cuBLASLt int8 -> int32) followed by an elementwise scale; kept
  as the stock alternative that gpu_check times next to Triton.
- "reference": int8/quant.py in float64 (exact integer sums).
"auto" is "triton" on CUDA tensors (and "reference" elsewhere). Measured on an H200 (torch
2.11, Triton 3.6) at M, K, N = 2048, 4096, 4096 / 11008: Triton 0.066 / 0.17 ms, 1.40x /
1.49x faster than cuBLAS fp16; `torch._int_mm` alone 0.080 / 0.25 ms and with its separate
scaling 0.17 / 0.49 ms (0.53x), so no run-time choice is made; "torch" stays selectable.

Shapes: a (M, K) int8 row-major, w (N, K) int8 row-major (K-major, as nn.Linear stores it),
a_scale (M,) or a_scales (M, 2) float32, w_scale (N,) float32; y (M, N) fp16.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ember.runtime.gpu import tuning
from ember.runtime.gpu.device import use_triton
from ember.runtime.gpu.int8.quant import (
    group_row_sums,
    int8_gemm_reference,
    int8_gemm_two_group_reference,
)

SEGMENT_ALIGN = 128  # the two-group split must fall on a multiple of every candidate's BK


@dataclass(frozen=True)
class GemmConfig:
    bm: int
    bn: int
    bk: int
    group_m: int
    warps: int
    stages: int


GEMM_CONFIGS = (GemmConfig(128, 256, 128, 8, 8, 3), GemmConfig(256, 128, 128, 8, 8, 3),
                GemmConfig(128, 128, 128, 8, 8, 4), GemmConfig(128, 128, 64, 8, 4, 4))


def int8_gemm(a: torch.Tensor, a_scale: torch.Tensor, w: torch.Tensor, w_scale: torch.Tensor,
              backend: str = "auto", config: GemmConfig | None = None) -> torch.Tensor:
    """y[m, n] = a_scale[m] w_scale[n] sum_k a[m, k] w[n, k] as fp16 (M, N)."""
    _check(a, w, a_scale, w_scale, groups=1)
    if backend == "torch":
        return _int_mm(a, a_scale, w, w_scale)
    if not use_triton(backend, a, w):
        return int8_gemm_reference(a, a_scale, w, w_scale)
    return _launch(a, a_scale.float().contiguous(), w, w_scale.float().contiguous(), None, None,
                   a.shape[1], config)


def int8_gemm_two_group(a: torch.Tensor, a_scales: torch.Tensor, w: torch.Tensor,
                        w_scale: torch.Tensor, k_split: int,
                        a_zeros: torch.Tensor | None = None,
                        w_row_sums: torch.Tensor | None = None, backend: str = "auto",
                        config: GemmConfig | None = None,
                        out_dtype: torch.dtype = torch.float16) -> torch.Tensor:
    """Two activation scale groups, columns [0, k_split) and [k_split, K) (int8/quant.py);
    the result in `out_dtype` (fp16 by default; fp32 where fp16's range is not enough).

    The Triton path needs k_split % 128 == 0: pad the groups with zero columns
    (`pad_groups`) offline for the weights and in the producer for the activations.
    """
    _check(a, w, a_scales, w_scale, groups=2)
    if a_zeros is not None and w_row_sums is None:
        w_row_sums = group_row_sums(w, k_split)
    if not use_triton(backend, a, w):
        return int8_gemm_two_group_reference(a, a_scales, w, w_scale, k_split, a_zeros,
                                             w_row_sums, out_dtype)
    if k_split % SEGMENT_ALIGN or not 0 < k_split < a.shape[1]:
        raise ValueError(f"k_split must be a multiple of {SEGMENT_ALIGN} inside (0, K), "
                         f"got {k_split} (see pad_groups)")
    zeros = None if a_zeros is None else a_zeros.to(torch.int32).contiguous()
    sums = None if a_zeros is None else w_row_sums.to(torch.int32).contiguous()
    return _launch(a, a_scales.float().contiguous(), w, w_scale.float().contiguous(), zeros,
                   sums, k_split, config, out_dtype)


def pad_groups(x: torch.Tensor, k_split: int, align: int = SEGMENT_ALIGN
               ) -> tuple[torch.Tensor, int]:
    """Zero columns appended to each of the two column groups so both lengths are multiples
    of `align`: (padded x, new k_split). For the weights offline and the activations in
    their producer; zero columns change no sum (nor the row sums rs)."""
    pad_1, pad_2 = -k_split % align, -(x.shape[1] - k_split) % align
    if pad_1 == pad_2 == 0:
        return x, k_split
    parts = [x[:, :k_split], x.new_zeros(x.shape[0], pad_1), x[:, k_split:],
             x.new_zeros(x.shape[0], pad_2)]
    return torch.cat(parts, 1), k_split + pad_1


def _check(a: torch.Tensor, w: torch.Tensor, sa: torch.Tensor, sw: torch.Tensor,
           groups: int) -> None:
    if a.dtype != torch.int8 or w.dtype != torch.int8:
        raise ValueError(f"a and w must be int8, got {a.dtype} and {w.dtype}")
    if a.dim() != 2 or w.dim() != 2 or a.shape[1] != w.shape[1]:
        raise ValueError(f"a (M, K) and w (N, K) expected, got {tuple(a.shape)}, "
                         f"{tuple(w.shape)}")
    want = (a.shape[0],) if groups == 1 else (a.shape[0], 2)
    if tuple(sa.shape) != want or tuple(sw.shape) != (w.shape[0],):
        raise ValueError(f"scales must be {want} and ({w.shape[0]},), got "
                         f"{tuple(sa.shape)} and {tuple(sw.shape)}")


def _int_mm(a: torch.Tensor, sa: torch.Tensor, w: torch.Tensor, sw: torch.Tensor
            ) -> torch.Tensor:
    """cuBLASLt's int8 GEMM (w^T as a column-major view: no copy), then the scales."""
    acc = torch._int_mm(a, w.T)
    return (acc.float() * sa.float()[:, None] * sw.float()[None, :]).to(torch.float16)


def _launch(a, sa, w, sw, za, rs, k_split: int, config: GemmConfig | None,
            out_dtype: torch.dtype = torch.float16) -> torch.Tensor:
    from ember.runtime.gpu.int8._kernels import _int8_gemm as kernel

    (m, k), n = a.shape, w.shape[0]
    if max(m, n) * k >= 2**31 or m * n >= 2**31:
        raise ValueError("the problem is too large for the kernel's int32 offsets")
    a, w = a.contiguous(), w.contiguous()
    y = torch.empty(m, n, device=a.device, dtype=out_dtype)
    two = k_split < k

    def launch(cfg: GemmConfig) -> None:
        grid = (-(-m // cfg.bm) * -(-n // cfg.bn),)
        even = k % cfg.bk == 0 and k_split % cfg.bk == 0
        kernel[grid](a, w, sa, sw, za if za is not None else sa, rs if rs is not None else sw,
                     y, m, n, k, k_split, BM=cfg.bm, BN=cfg.bn, BK=cfg.bk,
                     GROUP_M=cfg.group_m, EVEN_K=even, TWO_GROUPS=two, HAS_ZP=za is not None,
                     num_warps=cfg.warps, num_stages=cfg.stages)

    if config is None:
        key = ("int8_gemm", m, n, k, two, za is not None)
        config = tuning.pick(key, GEMM_CONFIGS, launch, on_cuda=a.is_cuda)
    launch(config)
    return y
