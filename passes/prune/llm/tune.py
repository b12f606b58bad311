"""Tuning a Llama-family LM under pruning masks: next-token loss on local text, LoRA on every
linear, PAT's regularisers, progress with the loss, and checkpoints to resume from.

Every method gets the same budget: `steps` optimiser steps of `batch` windows of `seq` tokens
from the tuning half of the corpus, in an order fixed by the seed (window order is a function
of the step, so a resumed run sees the same batches as an uninterrupted one).

    loss = task + sum_masks L_mask + identity_weight * sum_HSMs L_identity
    task = CE(next token)                                  (loss="ce", the paper's)
         = KL(p_teacher || p_student) per token, T = 1      (loss="distill": the unpruned
           model is the teacher, so tuning on one corpus keeps the model's behaviour on others)

PAT's masks start soft; at the gate's freeze step they are projected onto the exact top-keep
hard mask (passes/prune/pat/gate.py) and the soft- and hard-gate losses of that step's batch are
logged (pitfall 12: the gap tells whether the short schedule polarised the gate). Post-hoc
methods tune with the hard mask from step 0.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ember.passes.prune.pat.gate import GateSchedule
from ember.passes.prune.pat.model import MaskedDecoder
from ember.progress import QUIET, Progress

CHECKPOINT = "tuning.pt"


@dataclass(frozen=True)
class TuneSettings:
    steps: int
    batch: int = 4
    lr: float = 3e-4
    lr_mask: float | None = None  # None: 0.5 / freeze_step, so W_M can travel ~0.5 (pitfall 12)
    s0_fraction: float = 1 / 3
    freeze_at: float = 0.8
    ramp: float = 0.0  # fraction of s0 over which the hard projection is eased in
    clamp: float = 10.0
    count_weight: float = 10.0
    identity_weight: float = 1.0
    loss: str = "ce"  # or "distill"
    seed: int = 0
    checkpoint_every: int = 10

    def schedule(self) -> GateSchedule:
        return GateSchedule(s0=max(2, round(self.s0_fraction * self.steps)),
                            freeze_at=self.freeze_at, clamp=self.clamp, ramp=self.ramp)

    def mask_lr(self) -> float:
        return self.lr_mask if self.lr_mask is not None else 0.5 / self.schedule().freeze_step


@dataclass
class TuneLog:
    losses: list[float] = field(default_factory=list)  # task loss per step
    resumed_at: int | None = None
    soft_hard_gap: tuple[float, float] | None = None  # (soft, hard) loss at the freeze

    def as_dict(self) -> dict[str, Any]:
        tail = self.losses[-10:]
        return {"steps": len(self.losses), "first_loss": _round(self.losses[:1]),
                "last_loss": _round([sum(tail) / len(tail)] if tail else []),
                "resumed_at": self.resumed_at,
                "freeze_loss_soft_hard": None if self.soft_hard_gap is None
                else [round(v, 4) for v in self.soft_hard_gap]}


def tune(lm: nn.Module, graph: MaskedDecoder, windows: torch.Tensor, settings: TuneSettings,
         checkpoint_dir: Path | None, fingerprint: dict[str, Any],
         progress: Progress = QUIET, teacher: nn.Module | None = None) -> TuneLog:
    """Tune `lm` (LoRA attached, graph hooked in) in place; returns the log. `teacher`: the
    unpruned model, needed for loss="distill"."""
    if settings.loss == "distill" and teacher is None:
        raise ValueError("loss=distill needs the unpruned model as teacher")
    task_loss = _distill_loss(teacher) if settings.loss == "distill" else lm_loss
    schedule = settings.schedule()
    optimizer = _optimizer(lm, graph, settings)
    log, start = TuneLog(), 0
    key = _fingerprint_hash(fingerprint, settings, windows)
    if checkpoint_dir is not None:
        start = _resume(checkpoint_dir, key, lm, graph, optimizer, log)
    lm.train()
    with progress.bar(settings.steps, "tuning under pruning masks") as bar:
        bar.update(start)
        for step in range(start, settings.steps):
            ids = _batch(windows, step, settings)
            if step == schedule.freeze_step and not _all_frozen(graph):
                log.soft_hard_gap = _freeze(lm, graph, ids, step, schedule, task_loss)
            graph.set_step(step, schedule)
            task = task_loss(lm, ids)
            loss = task + graph.regulariser(settings.count_weight, settings.identity_weight)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            log.losses.append(float(task.detach()))
            bar.update(1)
            bar.set_postfix(loss=f"{log.losses[-1]:.3f}", **_mask_counts(graph))
            if checkpoint_dir is not None and _due(step, settings):
                _save(checkpoint_dir, key, step + 1, lm, graph, optimizer, log)
    if not _all_frozen(graph):  # a run shorter than the freeze still ends hard
        graph.freeze()
    lm.eval()
    return log


def _optimizer(lm: nn.Module, graph: MaskedDecoder, settings: TuneSettings):
    proxies = [m.proxy for m in graph.masks.values()]
    proxy_ids = {id(p) for p in proxies}
    others = [p for p in list(lm.parameters()) + list(graph.parameters())
              if p.requires_grad and id(p) not in proxy_ids]
    groups = [{"params": others, "lr": settings.lr}]
    if proxies:
        groups.append({"params": proxies, "lr": settings.mask_lr()})
    return torch.optim.AdamW(groups, weight_decay=0.0)


def _batch(windows: torch.Tensor, step: int, settings: TuneSettings) -> torch.Tensor:
    """Windows for `step`: epoch e visits a seeded permutation of all windows."""
    n = len(windows)
    first = step * settings.batch
    picks = []
    for position in range(first, first + settings.batch):
        epoch, offset = divmod(position, n)
        order = torch.randperm(n, generator=torch.Generator().manual_seed(settings.seed + epoch))
        picks.append(int(order[offset]))
    return windows[picks]


def lm_loss(lm: nn.Module, ids: torch.Tensor) -> torch.Tensor:
    """Mean next-token cross-entropy: the logits at position t score token t + 1."""
    logits = lm(input_ids=ids, use_cache=False).logits
    return nn.functional.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]),
                                       ids[:, 1:].reshape(-1))


def _distill_loss(teacher: nn.Module):
    def loss(lm: nn.Module, ids: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            target = teacher(input_ids=ids, use_cache=False).logits
        logits = lm(input_ids=ids, use_cache=False).logits
        return nn.functional.kl_div(nn.functional.log_softmax(logits, -1).flatten(0, 1),
                                    nn.functional.log_softmax(target, -1).flatten(0, 1),
                                    log_target=True, reduction="batchmean")
    return loss


def _freeze(lm: nn.Module, graph: MaskedDecoder, ids: torch.Tensor, step: int,
            schedule: GateSchedule, task_loss) -> tuple[float, float]:
    with torch.no_grad():
        graph.set_step(step, schedule)
        soft = float(task_loss(lm, ids))
        graph.freeze()
        graph.set_step(step, replace(schedule, ramp=0.0))  # the projection itself, un-eased
        hard = float(task_loss(lm, ids))
    return soft, hard


def _all_frozen(graph: MaskedDecoder) -> bool:
    return all(m.frozen for m in graph.masks.values())


def _mask_counts(graph: MaskedDecoder) -> dict[str, str]:
    """count(W_M >= 0) per soft mask (what the count regulariser sees), for the bar."""
    return {name: str(int((m.proxy >= 0).sum())) for name, m in graph.masks.items()
            if not m.frozen}


def _due(step: int, settings: TuneSettings) -> bool:
    return (step + 1) % settings.checkpoint_every == 0 or step + 1 == settings.steps


# -- checkpoints ----------------------------------------------------------------------------

def _trainable_state(lm: nn.Module, graph: MaskedDecoder) -> dict[str, torch.Tensor]:
    state = {f"lm.{n}": p.detach() for n, p in lm.named_parameters() if p.requires_grad}
    state.update({f"graph.{n}": t.detach() for n, t in graph.state_dict().items()})
    return state


def _save(folder: Path, key: str, step: int, lm: nn.Module, graph: MaskedDecoder,
          optimizer: torch.optim.Optimizer, log: TuneLog) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".{CHECKPOINT}.tmp"
    torch.save({"key": key, "step": step, "state": _trainable_state(lm, graph),
                "optimizer": optimizer.state_dict(), "losses": log.losses,
                "gap": log.soft_hard_gap}, tmp)
    os.replace(tmp, folder / CHECKPOINT)  # a kill mid-write leaves the previous checkpoint


def _resume(folder: Path, key: str, lm: nn.Module, graph: MaskedDecoder,
            optimizer: torch.optim.Optimizer, log: TuneLog) -> int:
    """Load a checkpoint made by the same run (same key); returns the step to go on from."""
    path = folder / CHECKPOINT
    if not path.exists():
        return 0
    saved = torch.load(path, weights_only=True)
    if saved.get("key") != key:
        return 0
    state = saved["state"]
    for name, tensor in state.items():  # buffers filled at the freeze: give them their shape
        owner, _, buffer = name[len("graph."):].rpartition(".")
        if buffer in ("hard", "at_freeze"):
            setattr(graph.get_submodule(owner), buffer, tensor.clone())
    graph.load_state_dict({n[len("graph."):]: t for n, t in state.items()
                           if n.startswith("graph.")})
    params = dict(lm.named_parameters())
    with torch.no_grad():
        for name, tensor in state.items():
            if name.startswith("lm."):
                params[name[len("lm."):]].copy_(tensor)
    optimizer.load_state_dict(saved["optimizer"])
    log.losses = list(saved["losses"])
    log.soft_hard_gap = saved["gap"]
    log.resumed_at = saved["step"]
    return saved["step"]


def _fingerprint_hash(fingerprint: dict[str, Any], settings: TuneSettings,
                      windows: torch.Tensor) -> str:
    digest = hashlib.sha256(json.dumps({**fingerprint, **asdict(settings)}, sort_keys=True,
                                       default=str).encode())
    digest.update(windows.numpy().tobytes())
    return digest.hexdigest()


def _round(values: list[float]) -> float | None:
    return round(values[0], 4) if values and math.isfinite(values[0]) else None
