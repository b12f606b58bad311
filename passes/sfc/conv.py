"""`SFCConv2d`: a 3x3 stride-1 convolution computed by a fast algorithm (sfc_algorithms.py).

The data flow is the design's execution template, written with ops that export to standard
ONNX (gathers, reshapes, transposes, matmuls with constant left operands):

    x (N, C, H, W) -> channels last, padded to (th*m + 2, tw*m + 2)
    gather L rows per tile row, S along H; gather L columns per tile column, S along W
        -> Z (R, R, tiles, C)                   tiles = N * th * tw
    V = slot_map . Z                            (P, tiles, C)   additions only
    M = V @ U                                   (P, tiles, K)   P batched GEMMs
    Z' = unslot_map . M                         (R, R, tiles, K)
    Y = Lam . Z' . Lam^T                        (m, m, tiles, K) -> (N, K, Ho, Wo) + bias

U = slots(Sg . W . Sg^T) is computed once (in float64) from the layer's weights. Grouped
convolutions run each group's GEMMs as one more batch dimension.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from ember.sfc_algorithms import Algorithm, group_weights, transformed_weights


class SFCConv2d(nn.Module):
    def __init__(self, conv: nn.Conv2d, alg: Algorithm) -> None:
        super().__init__()
        self.algorithm = alg.name
        self.symbolic = alg.symbolic
        self.m, self.size = alg.m, alg.tile
        self.in_channels, self.out_channels = conv.in_channels, conv.out_channels
        self.groups = conv.groups
        self.padding = _pair(conv.padding)
        dtype = conv.weight.dtype
        self.register_buffer("S", _tensor(alg.S, dtype))
        self.register_buffer("Lam", _tensor(alg.Lam, dtype))
        if alg.symbolic:
            self.register_buffer("slot_map", _tensor(alg.slot_map, dtype))
            self.register_buffer("unslot_map", _tensor(alg.unslot_map, dtype))
        u = group_weights(transformed_weights(conv.weight, alg), self.groups)
        self.register_buffer("U", u.to(dtype))
        bias = conv.bias.detach().clone() if conv.bias is not None else None
        self.bias = nn.Parameter(bias) if bias is not None else None

    def extra_repr(self) -> str:
        form = "symbolic" if self.symbolic else "integrated"
        return (f"{self.in_channels}, {self.out_channels}, algorithm={self.algorithm} ({form}), "
                f"padding={self.padding}, groups={self.groups}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        v, geometry = self.transform_input(x)
        return self._finish(self._products(v), geometry)

    def transform_input(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, ...]]:
        """V (P, tiles, C): the slots each GEMM reads, and the geometry `_finish` needs."""
        n, _, h, w = x.shape
        out_h, out_w = h + 2 * self.padding[0] - 2, w + 2 * self.padding[1] - 2
        th, tw = math.ceil(out_h / self.m), math.ceil(out_w / self.m)
        z = self._input_transform(x, th, tw)  # (R*R, tiles, C)
        if self.symbolic:
            r = self.S.shape[0]
            z = (self.slot_map @ z.reshape(r * r, -1)).reshape(-1, z.shape[1], z.shape[2])
        return z, (n, th, tw, out_h, out_w)

    def _finish(self, products: torch.Tensor, geometry: tuple[int, ...]) -> torch.Tensor:
        """Products (P, tiles, K) -> unslotted -> output transform -> (N, K, Ho, Wo) + bias."""
        r = self.S.shape[0]
        if self.symbolic:
            products = self.unslot_map @ products.reshape(products.shape[0], -1)
        return self._output_transform(products.reshape(r, r, -1), *geometry)

    def _input_transform(self, x: torch.Tensor, th: int, tw: int) -> torch.Tensor:
        m, size, r = self.m, self.size, self.S.shape[0]
        n, c, h, w = x.shape
        pad_h, pad_w = self.padding
        extra_h, extra_w = th * m + 2 - h - 2 * pad_h, tw * m + 2 - w - 2 * pad_w
        x = nn.functional.pad(x, (pad_w, pad_w + extra_w, pad_h, pad_h + extra_h))
        x = x.permute(2, 3, 0, 1)  # (Hp, Wp, N, C): channels innermost
        rows = _tile_index(size, th, m, x.device)  # (L, th)
        x = x[rows]  # (L, th, Wp, N, C)
        x = (self.S @ x.reshape(size, -1)).reshape(r, th, tw * m + 2, n, c)
        cols = _tile_index(size, tw, m, x.device)
        x = x[:, :, cols]  # (R, th, L, tw, N, C)
        x = self.S @ x.reshape(r * th, size, -1)  # (R*th, R, tw*N*C)
        x = x.reshape(r, th, r, tw, n, c).permute(0, 2, 4, 1, 3, 5)  # (R, R, N, th, tw, C)
        return x.reshape(r * r, n * th * tw, c)

    def _products(self, v: torch.Tensor) -> torch.Tensor:
        """M[p] = V[p] @ U[p] for every slot (and group)."""
        if self.groups == 1:
            return v @ self.U  # U: (P, C, K)
        p, tiles, _ = v.shape
        v = v.reshape(p, tiles, self.groups, -1).permute(0, 2, 1, 3)  # (P, G, tiles, C/G)
        out = v @ self.U  # U: (P, G, C/G, K/G)
        return out.permute(0, 2, 1, 3).reshape(p, tiles, self.out_channels)

    def _output_transform(self, z: torch.Tensor, n: int, th: int, tw: int, out_h: int,
                          out_w: int) -> torch.Tensor:
        m, r, k = self.m, self.S.shape[0], self.out_channels
        y = (self.Lam @ z.reshape(r, -1)).reshape(m, r, -1)
        y = self.Lam @ y  # (m, m, tiles*K): Lam broadcast over the first axis
        y = y.reshape(m, m, n, th, tw, k).permute(2, 5, 3, 0, 4, 1)  # (N, K, th, m, tw, m)
        y = y.reshape(n, k, th * m, tw * m)[:, :, :out_h, :out_w]
        return y if self.bias is None else y + self.bias.view(1, -1, 1, 1)


def _tile_index(size: int, tiles: int, step: int, device) -> torch.Tensor:
    """idx[a, i] = step * i + a: the L positions of each of `tiles` overlapping tiles."""
    return (torch.arange(size, device=device)[:, None]
            + step * torch.arange(tiles, device=device)[None, :])


def _tensor(matrix: np.ndarray, dtype: torch.dtype) -> torch.Tensor:
    return torch.from_numpy(matrix.astype(np.float64)).to(dtype)


def _pair(value) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else tuple(value)
