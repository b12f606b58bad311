"""PAT's shared trainable mask: the annealed sigmoid gate and its regularisers (pat.md §3.3-3.4).

One proxy vector `W_M` (initialised to 0) per mask; the gate is computed once per optimiser
step `s` from `(s, W_M)` and shared by every HSM that uses the mask:

    tau(s)  = 1 / (1 - ln max(1, s) / ln s0 + 1e-6)      s < s0 (reference code form)
    beta(s) = max(0, 0.5 - s / s0)
    M       = sigmoid(clamp(tau(s) * W_M, -clamp, clamp)) + beta(s)

so M = 1 at s = 0 (the model starts unchanged), tau grows toward a step function and the
offset is gone by s0/2. At `freeze_at * s0` the gate is projected onto an exact hard 0/1 mask
H that keeps the `keep` largest proxies (pitfalls 12-13: a short run cannot polarise W_M by
itself, so hard rounding would change the function; projecting at the freeze and tuning on
under the hard mask removes the soft/hard gap and fixes the width exactly).

With `ramp` > 0 the projection is eased in: for `ramp * s0` steps after the freeze the gate
moves linearly from its value at the freeze, M_f, to H,

    M(s) = H + (M_f - H) * max(0, 1 - (s - s_freeze) / (ramp * s0))

so the adapters follow the channels out instead of absorbing one jump (measured: a short
run's soft gate still sits near 0.3-0.7 at the freeze, BENCHMARKS.md).

Count regulariser with a straight-through estimator (reference code):

    count  = sum_i STE(W_M,i),   STE forward 1[W_M >= 0], backward identity
    L_mask = weight * |count - keep| / keep
           + mean_{W_M > 0} (W_M - 0.5)^2 + mean_{W_M <= 0} (W_M + 0.5)^2   (polarisation)

The polarisation means are guarded: an empty side contributes 0, not NaN (pitfall 4).

A mask may be `grouped`: a 2-D proxy (rows, n) whose rows are counted separately (per-layer
heads or FFN channels, so every layer keeps the same width and the stock config describes it).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class GateSchedule:
    """`s0`: the mask milestone in steps; `freeze_at`: fraction of s0 where the gate is
    projected to hard; `clamp`: bound on the sigmoid exponent (reference code: 10)."""

    s0: int
    freeze_at: float = 0.8
    clamp: float = 10.0
    ramp: float = 0.0

    @property
    def freeze_step(self) -> int:
        return max(1, int(self.freeze_at * self.s0))

    def ramp_left(self, step: int) -> float:
        """1 at the freeze, falling linearly to 0 over ramp * s0 steps (0 without a ramp)."""
        steps = round(self.ramp * self.s0)
        if steps < 1:
            return 0.0
        return max(0.0, 1.0 - (step - self.freeze_step) / steps)

    def tau(self, step: int) -> float:
        step = min(step, self.freeze_step)  # tau stays at tau(freeze) afterwards
        if self.s0 <= 1:
            return 1.0
        return 1.0 / (1.0 - math.log(max(1, step)) / math.log(self.s0) + 1e-6)

    def beta(self, step: int) -> float:
        return max(0.0, 0.5 - step / self.s0)


class SharedMask(nn.Module):
    """The trainable proxy W_M of one mask and its hard projection once frozen.

    `shape` is (n,) for a global mask or (rows, n) for a per-row mask; `keep` is the number of
    kept entries (per row for a 2-D mask). `blocks` > 1 keeps the same count inside each block
    of a row (query heads inside their KV group)."""

    def __init__(self, shape: tuple[int, ...], keep: int, blocks: int = 1) -> None:
        super().__init__()
        self.proxy = nn.Parameter(torch.zeros(shape))
        self.keep = keep
        self.blocks = blocks
        self.register_buffer("hard", torch.empty(0))  # filled at the freeze
        self.register_buffer("at_freeze", torch.empty(0))  # the soft gate then, for the ramp

    @property
    def frozen(self) -> bool:
        return self.hard.numel() > 0

    def initialize(self, scores: torch.Tensor) -> None:
        """Proxies from post-hoc channel scores (`proxies_from_scores`) instead of 0."""
        with torch.no_grad():
            self.proxy.copy_(proxies_from_scores(scores, self.keep, self.blocks))

    def gate(self, step: int, schedule: GateSchedule) -> torch.Tensor:
        """M for this step: soft before the freeze, the exact hard projection after (eased in
        over the ramp)."""
        if self.frozen:
            left = schedule.ramp_left(step) if self.at_freeze.numel() else 0.0
            return self.hard + (self.at_freeze - self.hard) * left if left > 0 else self.hard
        exponent = (schedule.tau(step) * self.proxy).clamp(-schedule.clamp, schedule.clamp)
        return torch.sigmoid(exponent) + schedule.beta(step)

    def freeze(self, soft_gate: torch.Tensor | None = None) -> None:
        """Project onto the exact top-`keep` hard mask (per row, per block); `soft_gate`, the
        gate just before, is where the ramp starts."""
        with torch.no_grad():
            self.hard = top_keep_mask(self.proxy.detach(), self.keep, self.blocks)
            if soft_gate is not None:
                self.at_freeze = soft_gate.detach().clone()

    def kept_indices(self) -> list[torch.Tensor]:
        """Sorted kept indices per row (one entry for a 1-D mask)."""
        hard = self.hard if self.frozen else top_keep_mask(self.proxy.detach(), self.keep,
                                                            self.blocks)
        rows = hard.reshape(-1, hard.shape[-1])
        return [torch.nonzero(row > 0.5).flatten() for row in rows]

    def regulariser(self, weight: float) -> torch.Tensor:
        """L_mask (module docstring); 0 once frozen."""
        if self.frozen:
            return self.proxy.sum() * 0.0
        proxy = self.proxy.reshape(-1, self.proxy.shape[-1])
        count = straight_through_step(proxy).sum(dim=-1)
        count_loss = (weight * (count - self.keep).abs() / self.keep).mean()
        return count_loss + _guarded_mean_sq(proxy, proxy > 0, 0.5) \
            + _guarded_mean_sq(proxy, proxy <= 0, -0.5)


def proxies_from_scores(scores: torch.Tensor, keep: int, blocks: int = 1) -> torch.Tensor:
    """Proxies whose sign is the top-`keep` choice of `scores` (per row, `keep / blocks` per
    block) and whose size grows with the distance from the cut in log score: in
    [INIT_LOW, INIT_HIGH], the polarisation targets' scale, so training can still swap
    channels near the cut while the gate starts near its hard projection (pitfall 12)."""
    rows = scores.reshape(-1, scores.shape[-1]).to(torch.float64)
    kept = top_keep_mask(rows, keep, blocks).bool()
    logs = rows.clamp_min(1e-30).log()
    cut = torch.stack([(logs[i][kept[i]].min() + logs[i][~kept[i]].max()) / 2
                       if (~kept[i]).any() else logs[i].min() - 1 for i in range(len(rows))])
    distance = (logs - cut[:, None]).abs()
    size = distance / distance.max(dim=-1, keepdim=True).values.clamp_min(1e-30)
    magnitude = INIT_LOW + (INIT_HIGH - INIT_LOW) * size
    return torch.where(kept, magnitude, -magnitude).to(torch.float32).reshape(scores.shape)


def straight_through_step(x: torch.Tensor) -> torch.Tensor:
    """Forward 1[x >= 0], backward identity."""
    hard = (x >= 0).to(x.dtype)
    return x + (hard - x).detach()


INIT_LOW, INIT_HIGH = 0.25, 0.5


def top_keep_mask(proxy: torch.Tensor, keep: int, blocks: int = 1) -> torch.Tensor:
    """0/1 mask of the `keep` largest entries of each row of `proxy`, `keep / blocks` in each
    of the row's `blocks` equal blocks. Ties go to the lower index (stable sort)."""
    rows = proxy.reshape(-1, blocks, proxy.shape[-1] // blocks)
    per_block = keep // blocks
    order = torch.sort(-rows, dim=-1, stable=True).indices[..., :per_block]
    mask = torch.zeros_like(rows).scatter_(-1, order, 1.0)
    return mask.reshape(proxy.shape)


def _guarded_mean_sq(x: torch.Tensor, where: torch.Tensor, centre: float) -> torch.Tensor:
    if not bool(where.any()):
        return x.sum() * 0.0
    return ((x[where] - centre) ** 2).mean()
