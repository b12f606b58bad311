"""The SFC kernels' data flow in plain torch: the reference the Triton kernels must match.

    tiles X (L^2, T, C)    T = N * th * tw overlapping L x L patches (stride m) of the
                           zero-padded input, read with unfold
    V = B X                (P, T, C)
    M = V @ U              (P, T, K)          P batched GEMMs
    Y = (A M) / den        (m^2, T, K) -> (N, K, Ho, Wo), cropped, + bias

`storage_dtype` rounds V and M to the dtype the kernels keep them in (fp16), so a kernel can
be compared with the reference at accumulation-order tolerance rather than fp16-storage
tolerance.
"""

from __future__ import annotations

import torch
from torch.nn import functional

from ember.runtime.gpu.sfc.plan import SFCPlan, tile_grid


def sfc_conv2d_reference(x: torch.Tensor, plan: SFCPlan,
                         compute_dtype: torch.dtype = torch.float64,
                         storage_dtype: torch.dtype | None = None) -> torch.Tensor:
    """(N, C, H, W) -> (N, K, Ho, Wo) in `compute_dtype`, computed as the kernels do."""
    n, c, h, w = x.shape
    if c != plan.in_channels:
        raise ValueError(f"input has {c} channels, the plan expects {plan.in_channels}")
    out_h, out_w, th, tw = tile_grid(plan, h, w)
    patches = input_tiles(x.to(compute_dtype), plan, th, tw)  # (L^2, T, C)
    v = _stored(plan.b.to(compute_dtype) @ patches.flatten(1), storage_dtype)
    v = v.reshape(plan.slots, -1, c)
    products = _stored(torch.bmm(v, plan.u.to(compute_dtype)), storage_dtype)  # (P, T, K)
    y = plan.a.to(compute_dtype) @ products.flatten(1) / plan.denominator
    k, m = plan.out_channels, plan.m
    y = y.reshape(m, m, n, th, tw, k).permute(2, 5, 3, 0, 4, 1).reshape(n, k, th * m, tw * m)
    y = y[:, :, :out_h, :out_w]
    return y if plan.bias is None else y + plan.bias.to(compute_dtype).view(1, -1, 1, 1)


def input_tiles(x: torch.Tensor, plan: SFCPlan, th: int, tw: int) -> torch.Tensor:
    """(L^2, N*th*tw, C): tile t = (n*th + i)*tw + j starts at row i*m, column j*m of the
    input padded by `padding` (and by zeros to th*m + 2 rows, tw*m + 2 columns)."""
    n, c, h, w = x.shape
    m, size, pad = plan.m, plan.tile, plan.padding
    x = functional.pad(x, (pad, tw * m + 2 - w - pad, pad, th * m + 2 - h - pad))
    tiles = x.unfold(2, size, m).unfold(3, size, m)  # (N, C, th, tw, L, L)
    return tiles.permute(4, 5, 0, 2, 3, 1).reshape(size * size, n * th * tw, c)


def _stored(t: torch.Tensor, dtype: torch.dtype | None) -> torch.Tensor:
    return t if dtype is None else t.to(dtype).to(t.dtype)
