"""`int4_gemv`: y = x W^T for batch-1 decode with 4-bit group-quantized weights.

    y[n] = sum_g s[n, g] * sum_{k in g} q[n, k] x[k]        x fp16 (K,), y fp16 (N,)

Decode is bound by weight bandwidth: 4-bit weights plus one fp16 scale per 128 weights are
0.27x the bytes of fp16 weights, which bounds the speedup over cuBLAS fp16 at about 3.7x.
The kernels (runtime/gpu/_int4_kernels.py) accumulate in fp32; the block shape and kernel
variant are picked at run time per (N, K) among the candidates below.

Measured (H200, torch 2.11, Triton 3.6, 32-layer CUDA graphs, tools/gpu_check.py): 1.46x
(4096x4096), 1.25x (11008x4096) and 1.36x (4096x11008) faster than cuBLAS fp16, short of
the 1.8x / 2.5x aimed at. Every candidate landed within ~30 % of the others (11.6-17 us for
4096x4096 alone), pipelined or not, so the kernel is bound by instructions rather than by
loads in flight: each row's program re-loads, converts and scales the activations that its
words need (8 loads, 8 conversions, 7 multiplies per word, repeated for every row of the
tile). Next steps: take the multiply-adds to tensor cores (dequantize a (BN, BK) fp16 tile
and tl.dot it with x padded to 16 columns, as Marlin-style kernels do), or share one
pre-scaled copy of the activation planes among the projections that read the same x.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ember.runtime.gpu import tuning
from ember.runtime.gpu.device import use_triton
from ember.runtime.gpu.int4_pack import GROUP, PackedInt4, int4_gemv_reference


@dataclass(frozen=True)
class GemvConfig:
    bn: int  # output rows per program
    bg: int  # groups of 128 inputs (16 words) per step
    warps: int
    stages: int = 3  # steps in flight in the compiler's pipeline (1: none)
    prefetch: bool = False  # instead, prefetch one step by hand (3-D kernel only)
    flat: bool = False  # the 2-D kernel (per-word sums, one reduction at the end)


# Candidates: the 3-D kernel with a hand prefetch or the compiler's pipeline, and the flat
# 2-D kernel, including "wide" programs of 1-8 rows that load a whole K = 4096 row (32
# groups) in one step. On the H200 the flat (4, 32, 4 warps) won all three shapes.
GEMV_CONFIGS = (GemvConfig(16, 8, 8, prefetch=True), GemvConfig(4, 16, 4, 3),
                GemvConfig(4, 32, 4, 1), GemvConfig(4, 32, 4, 1, flat=True),
                GemvConfig(2, 32, 2, 1, flat=True), GemvConfig(8, 16, 4, 2, flat=True),
                GemvConfig(8, 8, 4, 3, flat=True), GemvConfig(16, 8, 8, 3, flat=True),
                GemvConfig(1, 32, 1, 1, flat=True), GemvConfig(8, 32, 8, 1, flat=True))


def int4_gemv(x: torch.Tensor, packed: PackedInt4, backend: str = "auto",
              config: GemvConfig | None = None) -> torch.Tensor:
    """x (K,) or (1, K) -> (1, N) in x's dtype (fp16 or bf16 on the Triton path)."""
    n, k = packed.shape
    if x.numel() != k:
        raise ValueError(f"x must hold K={k} values (batch 1), got shape {tuple(x.shape)}")
    if not use_triton(backend, x, packed.qweight):
        return int4_gemv_reference(x, packed).to(x.dtype)
    if x.dtype not in (torch.float16, torch.bfloat16):
        raise ValueError(f"the kernel takes fp16 or bf16 activations, got {x.dtype}")
    x = x.reshape(-1).contiguous()
    y = torch.empty(1, n, device=x.device, dtype=x.dtype)
    launch = _launcher(x, packed, y)
    if config is None:
        key = ("int4_gemv", n, k, x.dtype)
        config = tuning.pick(key, GEMV_CONFIGS, launch, on_cuda=x.is_cuda)
    launch(config)
    return y


def _launcher(x: torch.Tensor, packed: PackedInt4, y: torch.Tensor):
    from ember.runtime.gpu._int4_kernels import _int4_gemv, _int4_gemv_flat

    n, k = packed.shape
    q, s = packed.qweight, packed.scales
    if not (q.is_contiguous() and s.is_contiguous()):
        raise ValueError("packed weights must be contiguous")

    def launch(cfg: GemvConfig) -> None:
        grid = (-(-n // cfg.bn),)
        if cfg.flat:
            _int4_gemv_flat[grid](x, q, s, y, n, k // GROUP, k // 8, BN=cfg.bn, BW=16 * cfg.bg,
                                  STAGES=cfg.stages, num_warps=cfg.warps)
        else:
            _int4_gemv[grid](x, q, s, y, n, k // GROUP, k // 8, BN=cfg.bn, BG=cfg.bg,
                             STAGES=cfg.stages, PREFETCH=cfg.prefetch, num_warps=cfg.warps)

    return launch
