"""A "llama" gpu program on its device: token ids (N, T) -> logits (N, T, V).

Per block, as transformers' Llama computes it:

    h = RMSNorm(x)            x · rsqrt(mean(x²) + eps) · g, in fp32, then the engine dtype
    q, k, v = h W_q^T, h W_k^T, h W_v^T;  RoPE on q and k: t cos + rotate_half(t) sin
    a = softmax(q k^T · scaling + causal mask) v      (SDPA, KV heads shared by their group)
    x = x + a W_o^T
    x = x + (SiLU(h' W_gate^T) ⊙ h' W_up^T) W_down^T,   h' = RMSNorm(x)

then the final RMSNorm and the LM head (tied to the embedding or its own weight). RoPE's
angles are positions x the model's inv_freq, scaled by its attention_scaling. Each
projection is a program/linear.py module (dense, spike or weight-only).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from ember.runtime.gpu.program.linear import make_linear

NAMES = ("q", "k", "v", "o", "gate", "up", "down")


class LlamaProgram(torch.nn.Module):
    def __init__(self, program: dict[str, Any], tensors: dict[str, torch.Tensor],
                 dtype: torch.dtype, reference: bool) -> None:
        super().__init__()
        self.dtype, self.head_dim = dtype, int(program["head_dim"])
        self.embed = tensors["embed"].to(dtype)
        self.head = self.embed if program["tied"] else tensors["lm_head"].to(dtype)
        self.norm, self.norm_eps = tensors["norm"].float(), float(program["norm_eps"])
        self.inv_freq = tensors["inv_freq"].float()
        self.rope_scale = float(program["rope_attention_scaling"])
        self.blocks = [_Block(i, layer, heads, tensors, dtype, reference)
                       for i, (layer, heads) in enumerate(zip(program["layers"], program["heads"],
                                                              strict=True))]

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        x = F.embedding(ids, self.embed)
        cos, sin = self.rope(ids.shape[1], ids.device)
        for block in self.blocks:
            x = block(x, cos, sin, self.head_dim)
        return F.linear(rms_norm(x, self.norm, self.norm_eps), self.head).float()

    def rope(self, tokens: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        angles = torch.arange(tokens, device=device, dtype=torch.float32)[:, None] * self.inv_freq
        angles = torch.cat([angles, angles], dim=-1)
        return ((angles.cos() * self.rope_scale).to(self.dtype),
                (angles.sin() * self.rope_scale).to(self.dtype))


class _Block:
    def __init__(self, i: int, layer: dict[str, Any], heads: list[int],
                 tensors: dict[str, torch.Tensor], dtype: torch.dtype, reference: bool) -> None:
        self.heads, self.kv_heads = int(heads[0]), int(heads[1])
        self.norm1, self.norm2 = tensors[f"l{i}.norm1"].float(), tensors[f"l{i}.norm2"].float()
        self.eps1, self.eps2 = (float(e) for e in layer["eps"])
        self.scaling = float(layer["scaling"])
        self.linears = {name: make_linear(layer["linears"][f"l{i}.{name}"], tensors,
                                          f"l{i}.{name}", dtype, reference) for name in NAMES}

    def __call__(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
                 head_dim: int) -> torch.Tensor:
        lin = self.linears
        n, t, _ = x.shape
        h = rms_norm(x, self.norm1, self.eps1)
        q = lin["q"](h).view(n, t, self.heads, head_dim).transpose(1, 2)
        k = lin["k"](h).view(n, t, self.kv_heads, head_dim).transpose(1, 2)
        v = lin["v"](h).view(n, t, self.kv_heads, head_dim).transpose(1, 2)
        q, k = rotate(q, cos, sin), rotate(k, cos, sin)
        a = F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=self.scaling,
                                           enable_gqa=self.heads != self.kv_heads)
        x = x + lin["o"](a.transpose(1, 2).reshape(n, t, self.heads * head_dim))
        h = rms_norm(x, self.norm2, self.eps2)
        return x + lin["down"](F.silu(lin["gate"](h)) * lin["up"](h))


def rms_norm(x: torch.Tensor, gain: torch.Tensor, eps: float) -> torch.Tensor:
    """x · rsqrt(mean(x²) + eps) in fp32, back to x's dtype, times the gain (as transformers'
    LlamaRMSNorm orders it)."""
    x32 = x.float()
    normed = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + eps)
    return (gain * normed.to(x.dtype)).to(x.dtype)


def rotate(t: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    half = t.shape[-1] // 2
    rotated = torch.cat([-t[..., half:], t[..., :half]], dim=-1)
    return t * cos + rotated * sin
