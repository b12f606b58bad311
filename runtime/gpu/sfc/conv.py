"""`sfc_conv2d`: the SFC (or Winograd) 3x3 convolution on the GPU, or its torch reference.

The Triton path runs three kernels (runtime/gpu/sfc/_kernels.py): input transform -> V
(P, T, C) fp16, P batched GEMMs -> M (P, T, K) fp16, output transform with bias and crop ->
y. The input may be NCHW or channels-last (the kernels read through strides); the output
has the input's memory format.

Blocks: the transforms move 128 (tile, channel) columns per program (64 channels x 2 tiles
when C >= 64) and 64 (input) or 32 (output) slots per dot; the slot GEMM picks its
(BM, BN, BK, warps, stages) at run time from four candidates (runtime/gpu/tuning.py).

Measured (H200, batch 32, NCHW fp16, tools/gpu_check/main.py): SFC-6 runs at 0.65x / 0.69x /
0.85x / 0.96x of cuDNN's speed for 64@56, 128@28, 256@14, 512@7 (Winograd F(4x4) through
the same kernels: 0.67x / 0.78x / 1.01x / 1.71x); against channels-last cuDNN, 0.38-0.58x.
The three kernels take about equal time and are bound by memory traffic: V and M are 2.4x
the size of the input and output each (P/m^2 = 88/36), so large maps need the output
transform fused into the GEMM (design sfc.md 8.4, "GPU, fused") to compete, and at 512@7
the 46 MB of transformed weights (9.8x the 3x3 weights) bound the slot GEMM.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ember.runtime.gpu import tuning
from ember.runtime.gpu.device import use_triton
from ember.runtime.gpu.sfc.plan import SFCPlan, tile_grid
from ember.runtime.gpu.sfc.reference import sfc_conv2d_reference

COLUMNS = 128  # (tile, channel) columns per transform program


@dataclass(frozen=True)
class GemmConfig:
    bm: int
    bn: int
    bk: int
    warps: int
    stages: int


GEMM_CONFIGS = (GemmConfig(128, 128, 64, 8, 3), GemmConfig(128, 64, 64, 4, 4),
                GemmConfig(64, 128, 64, 4, 4), GemmConfig(64, 64, 64, 4, 3))


def sfc_conv2d(x: torch.Tensor, plan: SFCPlan, backend: str = "auto") -> torch.Tensor:
    """conv2d(x, W, bias, padding) for the plan's W: (N, C, H, W) -> (N, K, Ho, Wo)."""
    if not use_triton(backend, x, plan.u):
        return sfc_conv2d_reference(x, plan, torch.float32).to(x.dtype)
    _check_inputs(x, plan)
    n, c, h, w = x.shape
    out_h, out_w, th, tw = tile_grid(plan, h, w)
    tiles, k = n * th * tw, plan.out_channels
    if plan.slots * tiles * max(c, k) >= 2**31 or x.numel() >= 2**31:
        raise ValueError("the problem is too large for the kernels' int32 offsets")
    v = torch.empty(plan.slots, tiles, c, device=x.device, dtype=x.dtype)
    _input_transform(x, plan, v, th, tw)
    products = torch.empty(plan.slots, tiles, k, device=x.device, dtype=x.dtype)
    _slot_gemm(v, plan.u, products)
    fmt = torch.channels_last if _is_channels_last(x) else torch.contiguous_format
    y = torch.empty(n, k, out_h, out_w, device=x.device, dtype=x.dtype, memory_format=fmt)
    _output_transform(products, plan, y, th, tw)
    return y


def _check_inputs(x: torch.Tensor, plan: SFCPlan) -> None:
    if x.dim() != 4 or x.shape[1] != plan.in_channels:
        raise ValueError(f"input must be (N, {plan.in_channels}, H, W), got {tuple(x.shape)}")
    if x.dtype not in (torch.float16, torch.bfloat16) or x.dtype != plan.u.dtype:
        raise ValueError(f"the kernels take fp16 or bf16 input in the plan's dtype "
                         f"({plan.u.dtype}), got {x.dtype}")
    if x.device != plan.u.device:
        raise ValueError(f"input on {x.device}, plan on {plan.u.device}: move one (plan.to)")


def _input_transform(x: torch.Tensor, plan: SFCPlan, v: torch.Tensor, th: int, tw: int) -> None:
    from ember.runtime.gpu.sfc._kernels import _input_transform as kernel

    n, c, h, w = x.shape
    l2p = pow2(plan.tile**2)
    b = plan.padded_matrix("b", plan.slots, l2p)
    bc = min(64, pow2(c))
    bt = COLUMNS // bc
    tiles = v.shape[1]
    grid = (_cdiv(tiles, bt), _cdiv(c, bc))
    kernel[grid](x, b, v, c, h, w, th, tw, tiles, plan.slots, plan.padding, *x.stride(),
                 M=plan.m, L=plan.tile, L2P=l2p, P_CHUNK=min(64, pow2(plan.slots)), BT=bt,
                 BC=bc, num_warps=4)


def _slot_gemm(v: torch.Tensor, u: torch.Tensor, products: torch.Tensor) -> None:
    from ember.runtime.gpu.sfc._kernels import _slot_gemm as kernel

    slots, tiles, c = v.shape
    k = u.shape[2]

    def launch(cfg: GemmConfig) -> None:
        grid = (_cdiv(tiles, cfg.bm) * _cdiv(k, cfg.bn), slots)
        kernel[grid](v, u, products, tiles, c, k, BM=cfg.bm, BN=cfg.bn, BK=cfg.bk,
                     num_warps=cfg.warps, num_stages=cfg.stages)

    key = ("sfc_gemm", slots, tiles, c, k, v.dtype)
    launch(tuning.pick(key, GEMM_CONFIGS, launch, on_cuda=v.is_cuda))


def _output_transform(products: torch.Tensor, plan: SFCPlan, y: torch.Tensor, th: int,
                      tw: int) -> None:
    from ember.runtime.gpu.sfc._kernels import _output_transform as kernel

    slots, tiles, k = products.shape
    p_chunk, m2p = 32, pow2(plan.m**2)
    a = plan.padded_matrix("a", m2p, _cdiv(slots, p_chunk) * p_chunk)  # (M2P, PP)
    bk = min(64, pow2(k))
    bt = COLUMNS // bk
    bias = plan.bias if plan.bias is not None else products  # unread when HAS_BIAS is False
    grid = (_cdiv(tiles, bt), _cdiv(k, bk))
    kernel[grid](products, a, bias, y, k, y.shape[2], y.shape[3], th, tw, tiles, slots,
                 1.0 / plan.denominator, *y.stride(), M=plan.m, M2P=m2p, PP=a.shape[1],
                 P_CHUNK=p_chunk, BT=bt, BK=bk, HAS_BIAS=plan.bias is not None, num_warps=4)


def _is_channels_last(x: torch.Tensor) -> bool:
    return x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()


def pow2(n: int, floor: int = 16) -> int:
    """The smallest power of two >= max(n, floor): Triton block sizes (floor 16 for dots)."""
    return max(floor, 1 << (n - 1).bit_length())


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)
