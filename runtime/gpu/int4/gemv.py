"""`int4_gemv`: y = x W^T for batch-1 decode with 4-bit group-quantized weights.

    y[n] = sum_g s[n, g] * sum_{k in g} q[n, k] x[k]        x fp16 (K,), y fp16 (N,)

Decode is bound by weight bandwidth: 4-bit weights plus one fp16 scale per 128 weights are
0.27x the bytes of fp16 weights, which bounds the speedup over cuBLAS fp16 at about 3.7x.
The kernels (runtime/gpu/int4/_kernels.py) accumulate in fp32; the block shape and kernel
variant are picked at run time per (N, K) among the candidates below.

The rows kernel is built against the instruction count, which bounded the previous (flat)
kernel: per weight it spends one LOP3 and one FFMA (plus 2 shifts and a 16-byte load's
share per word of 8 weights), and the activations' loads, conversions and scalings are
shared by the R rows of a program instead of repeated for every row.

Measured (H200, torch 2.11, Triton 3.6, 32-layer CUDA graphs, tools/gpu_check/main.py, four
machine starts on 2026-11-26; the last run's figures first): 2.27x (4096x4096, rows 4x16,
2 warps: 5.6 us against 12.7 us), 2.20x (11008x4096, rows 8x8, 1 warp: 11.2 us against
24.6 us) and 2.35x (4096x11008, rows 8x32, 4 warps: 11.9 us against 28.0 us) faster than
cuBLAS fp16; over the four runs 2.03-2.28x, 1.98-2.23x and 2.17-2.35x (the first run,
on another machine start, gave the lowest of each). The 1.8x aimed at for 4096x4096 is
met; the 2.5x for the 11008 shapes is not. In the tuner's single launches (after an L2
flush, launch included) the flat kernel took 11.5-12.0, 22.8-23.4 and 23.7-24.3 us, the
rows kernel 8.3-9.6, 14.7-15.9 and 15.0-16.5 us.

Now bound by latency, not by instructions or bandwidth: the weights stream at 1.5-2.1 TB/s
of the ~4.3 TB/s a copy reaches. Nsight Compute on 11008x4096 (rows 8x8, 1 warp): 12.1 us,
DRAM at 40 % of peak, 0.51 instructions issued per scheduler cycle, 2.5 warps resident
per scheduler (1376 one-warp programs, 0.65 waves of 16 warps an SM), the top stall
waiting on loads (L1TEX scoreboard, 44 %); on 4096x4096 (rows 4x16): 6.6 us, DRAM 28 %,
3.7 warps per scheduler, 0.50 issued. Each warp holds one step of words in registers
(4 KB), loads, then computes. Tried and slower in the tuner on every shape (hence not
kept): a register double buffer of the weights (+9-14 %); a persistent kernel for K =
4096 with the activations pre-scaled once and row blocks double-buffered (+4-20 %);
Triton's cp.async pipeline, 2-4 stages (+37-118 %); 16 rows a program (spills even at
255 registers). Next: more bytes in flight per SM than registers allow, e.g. multi-KB weight
tiles several stages deep in shared memory by the bulk copy engine (TMA descriptors),
computed from there.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ember.runtime.gpu import tuning
from ember.runtime.gpu.device import use_triton
from ember.runtime.gpu.int4.pack import GROUP, PackedInt4, int4_gemv_reference


@dataclass(frozen=True)
class GemvConfig:
    kernel: str  # "rows" (activations shared by the R rows of a program) or "flat"
    bn: int  # output rows per program
    bg: int  # groups of 128 inputs (16 words) per step; rows: 8 * warps (4 words a thread)
    warps: int
    stages: int = 1  # steps in flight in the compiler's software pipeline (1: none)
    maxnreg: int | None = None  # register cap per thread (128: 16 warps an SM)


# Candidates: the rows kernel with 4 or 8 rows and 1-4 warps a program (BG = 8 warps puts
# 4 words of each row in every thread, the whole (4, BG, R, 4) tile being one load), and
# the previous best, the flat (4, 32, 4 warps) kernel. Left alone, ptxas takes up to 255
# registers, which halves the warps an SM holds; capped at 128 (96) these fit unspilled.
_ROWS = ((4, 16, 2, 128), (8, 8, 1, 128), (8, 32, 4, 128), (4, 16, 2, 96), (4, 8, 1, 96))
GEMV_CONFIGS = (*(GemvConfig("rows", r, bg, w, 1, cap) for r, bg, w, cap in _ROWS),
                GemvConfig("flat", 4, 32, 4))
MAGIC = 0x4B000000  # the fp32 exponent field of 2^23 (see int4/_kernels.py)


def int4_gemv(x: torch.Tensor, packed: PackedInt4, backend: str = "auto",
              config: GemvConfig | None = None, out: torch.Tensor | None = None) -> torch.Tensor:
    """x (K,) or (1, K) -> (1, N) in x's dtype (fp16 or bf16 on the Triton path), written
    into `out` (contiguous, N values of x's dtype) when given on the Triton path."""
    n, k = packed.shape
    if x.numel() != k:
        raise ValueError(f"x must hold K={k} values (batch 1), got shape {tuple(x.shape)}")
    if not use_triton(backend, x, packed.qweight):
        return int4_gemv_reference(x, packed).to(x.dtype)
    if x.dtype not in (torch.float16, torch.bfloat16):
        raise ValueError(f"the kernel takes fp16 or bf16 activations, got {x.dtype}")
    x = x.reshape(-1).contiguous()
    y = torch.empty(1, n, device=x.device, dtype=x.dtype) if out is None else out.view(1, n)
    launch = _launcher(x, packed, y)
    if config is None:
        key = ("int4_gemv", n, k, x.dtype)
        config = tuning.pick(key, GEMV_CONFIGS, launch, on_cuda=x.is_cuda)
    launch(config)
    return y


def _launcher(x: torch.Tensor, packed: PackedInt4, y: torch.Tensor):
    from ember.runtime.gpu.int4._kernels import _int4_gemv_flat, _int4_gemv_rows

    n, k = packed.shape
    q, s = packed.qweight, packed.scales
    if not (q.is_contiguous() and s.is_contiguous()):
        raise ValueError("packed weights must be contiguous")
    args = (x, q, s, y, n, k // GROUP, k // 8)

    def launch(cfg: GemvConfig) -> None:
        grid = (-(-n // cfg.bn),)
        options = {"num_warps": cfg.warps, "STAGES": cfg.stages}
        if cfg.maxnreg is not None:
            options["maxnreg"] = cfg.maxnreg
        if cfg.kernel == "rows":
            _int4_gemv_rows[grid](*args, MAGIC, R=cfg.bn, BG=cfg.bg, **options)
        else:
            _int4_gemv_flat[grid](*args, BN=cfg.bn, BW=16 * cfg.bg, **options)

    return launch
