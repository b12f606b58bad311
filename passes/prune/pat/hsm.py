"""PAT's Hybrid Sparsification Modules (HSMs) and the Identity Loss (pat.md §3.2, §3.5).

An HSM sits after a residual-stream writer (o_proj, down_proj; optionally the embedding) and
transforms its d-wide output z before the shared mask M:

    reference form (reference code):  HSM(z) = M ⊙ s ⊙ (z + L1 L0 z)       T = diag(s)(I + L1 L0)
    paper form (Eq. 10):              HSM(z) = M ⊙ (z + L1 diag(v) L0 z)   T = I + L1 diag(v) L0

with L0 in R^{r x d}, L1 in R^{d x r}. Both start as the identity: reference form L0
Kaiming-uniform, L1 = 0, s = 1; paper form L0, L1 semi-orthogonal and v = 0. The transform T
folds into the writer at export, W' = T W and b' = T b, so the pruned model has no HSM.

Identity Loss, summed over every HSM (the reference code only kept the last layer's, pitfall 2):

    reference:  mean((L0 L0^T - I_r)^2)
    paper:      ||L0 L0^T - I_r||_F + ||L1^T L1 - I_r||_F
"""

from __future__ import annotations

import math

import torch
from torch import nn

FORMS = ("reference", "paper")


class HSM(nn.Module):
    def __init__(self, width: int, rank: int, form: str = "reference") -> None:
        super().__init__()
        if form not in FORMS:
            raise ValueError(f"hsm_form must be one of {', '.join(FORMS)}, got {form!r}")
        self.form = form
        self.l0 = nn.Parameter(torch.empty(rank, width))
        self.l1 = nn.Parameter(torch.zeros(width, rank))
        if form == "reference":
            nn.init.kaiming_uniform_(self.l0, a=math.sqrt(5))
            self.scale = nn.Parameter(torch.ones(width))
        else:
            nn.init.orthogonal_(self.l0)
            with torch.no_grad():
                self.l1.copy_(self.l0.t())
            self.v = nn.Parameter(torch.zeros(rank))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        low = z @ self.l0.t()
        if self.form == "paper":
            low = low * self.v
        out = z + low @ self.l1.t()
        return out * self.scale if self.form == "reference" else out

    def matrix(self) -> torch.Tensor:
        """T (d x d) with HSM(z) = T z before the mask."""
        eye = torch.eye(self.l0.shape[1], dtype=self.l0.dtype, device=self.l0.device)
        if self.form == "paper":
            return eye + self.l1 @ torch.diag(self.v) @ self.l0
        return torch.diag(self.scale) @ (eye + self.l1 @ self.l0)

    def identity_loss(self) -> torch.Tensor:
        eye = torch.eye(self.l0.shape[0], dtype=self.l0.dtype, device=self.l0.device)
        if self.form == "reference":
            return ((self.l0 @ self.l0.t() - eye) ** 2).mean()
        return torch.linalg.matrix_norm(self.l0 @ self.l0.t() - eye) \
            + torch.linalg.matrix_norm(self.l1.t() @ self.l1 - eye)


def fold_into_linear(linear: nn.Linear, transform: torch.Tensor) -> None:
    """In place: W <- T W, b <- T b (the HSM after the linear becomes part of it)."""
    with torch.no_grad():
        t = transform.to(torch.float64)
        linear.weight.copy_((t @ linear.weight.to(torch.float64)).to(linear.weight.dtype))
        if linear.bias is not None:
            linear.bias.copy_((t @ linear.bias.to(torch.float64)).to(linear.bias.dtype))


def fold_into_embedding(embedding: nn.Embedding, transform: torch.Tensor) -> None:
    """In place: E <- E T^T (row e of the table is the embedding z of one token)."""
    with torch.no_grad():
        t = transform.to(torch.float64)
        weight = embedding.weight
        weight.copy_((weight.to(torch.float64) @ t.t()).to(weight.dtype))
