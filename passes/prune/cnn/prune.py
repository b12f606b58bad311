"""`prune_cnn`: post-hoc dependency-graph channel pruning for CNNs (pat.md 8.3, 9, 10.2).

The coupled channel groups come from passes/prune/cnn/groups.py. Each prunable group loses
the same fraction `ratio` of its channels (uniform), chosen by a per-channel score:

    magnitude   sum over members m of  n_m(c) / mean_c' n_m(c'),  n_m(c) = ||W_m[slice c]||_2
                over producers (output-channel slice) and consumers (input slice; after
                flatten, the H*W block of channel c). Dividing by the member's mean makes
                layers with different fan-in count alike.
    taylor      sum over calibration batches and over every member's weight (and producer
                or carried bias) slices of |w * dL/dw|: the first-order estimate of the loss
                change when the channel goes. L is cross-entropy to the labels, or without
                labels to the unpruned model's argmax: the KL to the model's own predictions
                is at its minimum there and its gradient is exactly zero.
    bn          |gamma_c| of the BatchNorm right after each producer (divided by its mean),
                summed; the magnitude score for groups whose producers have none.

Kept per group (a multiple of `round_to` where the group is large enough, never 0):

    keep = min(size, max(round_to, round_to * round_half_up((1 - ratio) * size / round_to)))

A group smaller than `round_to` keeps all its channels (counted in the stats).

A removed channel is defined as what the network computes with the channel's producer
weights at zero (cnn/groups.py): a per-channel constant `v_c` at each consumer. The
sliced model folds its contribution into the consumer's bias, giving the consumer a bias if
it had none,

    b'_o = b_o + sum_{c removed} v_c * sum_k W[o, c, k]      (k: kernel taps or H*W block)

then keeps `W[K_out, :][:, K_in]`, `b'[K_out]`, BatchNorm `gamma, beta, mu, var [K]` and
depthwise filters `[K]` (groups = the new width). The masked model is a copy of the original
with the same bias fold and `W[:, removed] = 0` in every consumer, shapes unchanged; the
two must agree to `max |masked - sliced| / max |masked| <= 1e-4` (fp32, eval mode) on the
example and the first calibration batch, before any fine-tuning.

Fine-tuning (optional) is Adam on the sliced model, cross-entropy to labels or KL to the
unpruned model at temperature 1, in eval mode: BatchNorm statistics stay frozen, so a few
small calibration batches cannot pull them away from the teacher's.
"""

from __future__ import annotations

import copy
import math
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ember.passes.modules import replace_module
from ember.passes.prune.cnn.groups import (
    ChannelGroup,
    GroupAnalysis,
    Member,
    PruneError,
    analyse,
)
from ember.progress import QUIET, Progress

__all__ = ["METHODS", "PruneError", "PrunePlan", "check_equivalence", "finetune",
           "group_scores", "keep_count", "mask_model", "plan_pruning", "prune_cnn",
           "slice_model"]

METHODS = ("magnitude", "taylor", "bn")
Batch = tuple[torch.Tensor, torch.Tensor | None]

# max |masked - sliced| / max |masked|: fp32 rounding of the sliced sums, with a margin
_TOLERANCE = {torch.float64: 1e-9, torch.float32: 1e-4, torch.float16: 1e-2,
              torch.bfloat16: 3e-2}


def prune_cnn(
    model: nn.Module,
    example: torch.Tensor,
    *,
    ratio: float,
    method: str,
    round_to: int = 8,
    batches: Iterable[Batch] = (),
    steps: int = 0,
    lr: float = 1e-3,
    progress: Progress = QUIET,
) -> tuple[nn.Module, dict]:
    """Remove `ratio` of the channels of every prunable group of `model` (not modified);
    fine-tune for `steps` Adam steps on `batches` if `steps > 0`. Returns the new model and
    its stats."""
    _validate(ratio, method, round_to, steps)
    batches = list(batches)
    if steps > 0 and not batches:
        raise ValueError("steps > 0 needs calibration batches to fine-tune on")
    plan = plan_pruning(model, example, ratio=ratio, method=method, round_to=round_to,
                        batches=batches, progress=progress)
    sliced, masked = slice_model(model, plan), mask_model(model, plan)
    inputs = [example, batches[0][0]] if batches else [example]
    with _eval_mode(sliced), _eval_mode(masked):
        rel = check_equivalence(masked, sliced, inputs)
    tolerance = _TOLERANCE.get(_dtype(model), 1e-4)
    if not rel <= tolerance:  # also catches NaN
        raise PruneError(f"sliced model differs from the masked one: max relative "
                         f"difference {rel:.3g} > {tolerance:g}")
    stats: Counter = Counter(f"declined:{r}" for r in plan.declined.values())
    stats["kept_all:smaller_than_round_to"] = sum(g.size < round_to for g in plan.groups)
    if steps > 0:
        before = _mean_loss(sliced, model, batches)
        sliced = finetune(sliced, model, batches, steps, lr, progress)
        stats["finetune_loss_before"] = before
        stats["finetune_loss_after"] = _mean_loss(sliced, model, batches)
    stats.update({
        "groups": len(plan.groups),
        "channels_before": sum(g.size for g in plan.groups),
        "channels_after": sum(len(k) for k in plan.kept),
        "params_before": _params(model),
        "params_after": _params(sliced),
        "equivalence_max_rel": rel,
    })
    return sliced, {k: v for k, v in stats.items() if v or not k.startswith("kept_all")}


@dataclass(frozen=True)
class PrunePlan:
    """What to remove: the prunable groups with their kept channel indices (ascending), the
    declined groups, and per module the kept output / input indices as boolean masks and the
    bias fold of the removed channels' constant values (consumers only)."""

    groups: list[ChannelGroup]
    kept: list[torch.Tensor]
    declined: dict[str, str]
    keep_out: dict[str, torch.Tensor]
    keep_in: dict[str, torch.Tensor]
    bias_delta: dict[str, torch.Tensor]


def plan_pruning(
    model: nn.Module,
    example: torch.Tensor,
    *,
    ratio: float,
    method: str,
    round_to: int = 8,
    batches: Sequence[Batch] = (),
    progress: Progress = QUIET,
) -> PrunePlan:
    """Find the groups, score their channels and choose what each keeps."""
    _validate(ratio, method, round_to, 0)
    batches = list(batches)
    with progress.stage("channel groups"):
        analysis = analyse(model, example)
    with progress.stage(f"scoring ({method})"):
        scores = group_scores(model, analysis.groups, method, batches or [(example, None)])
    kept = [_top(s, keep_count(g.size, ratio, round_to))
            for g, s in zip(analysis.groups, scores, strict=True)]
    return _plan(model, analysis, kept)


def _validate(ratio: float, method: str, round_to: int, steps: int) -> None:
    if not 0.0 <= ratio < 1.0:
        raise ValueError(f"ratio must be in [0, 1), got {ratio}")
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    if round_to < 1:
        raise ValueError(f"round_to must be >= 1, got {round_to}")
    if steps < 0:
        raise ValueError(f"steps must be >= 0, got {steps}")


def keep_count(size: int, ratio: float, round_to: int = 8) -> int:
    """Channels kept of a group of `size`: (1 - ratio) * size rounded half up to a multiple
    of `round_to`, at least `round_to`, at most `size` (so a group smaller than `round_to`
    keeps everything). Half up, not Python's half-to-even: 40 channels at 0.5 keep 24."""
    multiples = math.floor((1.0 - ratio) * size / round_to + 0.5)
    return min(size, max(round_to, round_to * multiples))


def _top(scores: torch.Tensor, keep: int) -> torch.Tensor:
    """Indices of the `keep` highest scores, ascending (ties: the lower index stays)."""
    order = torch.argsort(scores, descending=True, stable=True)
    return order[:keep].sort().values


# --- scores ---

def group_scores(model: nn.Module, groups: Sequence[ChannelGroup], method: str,
                 batches: Sequence[Batch]) -> list[torch.Tensor]:
    """One float64 score per channel of each group; higher is kept."""
    if method == "taylor":
        return taylor_scores(model, groups, batches)
    if method == "bn":
        return [bn_scores(model, g) for g in groups]
    return [magnitude_scores(model, g) for g in groups]


def _slice_sum(tensor: torch.Tensor, dim: int, member: Member, size: int) -> torch.Tensor:
    """Per group channel c: the sum of `tensor` over the member's slice for c along `dim`
    (indices offset + c*spatial ... + spatial - 1) and over every other axis."""
    block = tensor.detach().to("cpu", torch.float64).movedim(dim, 0)
    block = block[member.offset:member.offset + size * member.spatial]
    return block.reshape(size, -1).sum(dim=1)


def _normalised(score: torch.Tensor) -> torch.Tensor:
    mean = score.mean()
    return score / mean if mean > 0 else score


def magnitude_scores(model: nn.Module, group: ChannelGroup) -> torch.Tensor:
    """Sum of each producer's and consumer's per-channel L2 norm, each over its mean."""
    score = torch.zeros(group.size, dtype=torch.float64)
    for dim, members in ((0, group.producers), (1, group.consumers)):
        for member in members:
            weight = model.get_submodule(member.module).weight
            score += _normalised(_slice_sum(weight.square(), dim, member, group.size).sqrt())
    return score


def bn_scores(model: nn.Module, group: ChannelGroup) -> torch.Tensor:
    """Sum of |gamma| (over its mean) of the BatchNorms right after the producers."""
    gammas = [model.get_submodule(p.bn).weight for p in group.producers if p.bn]
    gammas = [g for g in gammas if g is not None]  # affine=False BatchNorm has no gamma
    if not gammas:
        return magnitude_scores(model, group)
    return sum(_normalised(g.detach().to("cpu", torch.float64).abs()) for g in gammas)


def taylor_scores(model: nn.Module, groups: Sequence[ChannelGroup],
                  batches: Sequence[Batch]) -> list[torch.Tensor]:
    """Sum over batches of |w * dL/dw| over every member's slices of each channel."""
    work = copy.deepcopy(model).eval()  # eval: the deployed function, BN statistics fixed
    for p in work.parameters():
        p.requires_grad_(True)
    scores = [torch.zeros(g.size, dtype=torch.float64) for g in groups]
    for inputs, labels in batches:
        work.zero_grad(set_to_none=True)
        logits = _logits(work(inputs))
        # without labels: the model's own argmax (the KL to itself has zero gradient)
        target = labels if labels is not None else logits.detach().argmax(dim=1)
        F.cross_entropy(logits, target).backward()
        for group, score in zip(groups, scores, strict=True):
            score += _saliency(work, group)
    return scores


def _saliency(model: nn.Module, group: ChannelGroup) -> torch.Tensor:
    score = torch.zeros(group.size, dtype=torch.float64)
    roles = ((group.producers, 0, True), (group.carried, 0, True), (group.consumers, 1, False))
    for members, dim, with_bias in roles:
        for member in members:
            module = model.get_submodule(member.module)
            params = [(module.weight, dim)] + ([(module.bias, 0)] if with_bias else [])
            for param, axis in params:
                if param is not None and param.grad is not None:
                    score += _slice_sum((param * param.grad).abs(), axis, member, group.size)
    return score


# --- slicing and masking ---

def _width(module: nn.Module, axis: str) -> int:
    if isinstance(module, nn.Conv2d):
        return module.out_channels if axis == "out" else module.in_channels
    if isinstance(module, nn.Linear):
        return module.out_features if axis == "out" else module.in_features
    return module.num_features


def _indices(member: Member, channels: torch.Tensor) -> torch.Tensor:
    """The member's axis indices of group channels `channels` (blocks of `spatial`)."""
    within = torch.arange(member.spatial)
    return (member.offset + channels[:, None] * member.spatial + within).reshape(-1)


def _plan(model: nn.Module, analysis: GroupAnalysis, kept: list[torch.Tensor]
          ) -> PrunePlan:
    keep_out: dict[str, torch.Tensor] = {}
    keep_in: dict[str, torch.Tensor] = {}
    for group, keep in zip(analysis.groups, kept, strict=True):
        removed = torch.ones(group.size, dtype=torch.bool)
        removed[keep] = False
        removed = removed.nonzero().flatten()
        if not len(removed):
            continue
        for masks, axis, members in ((keep_out, "out", group.producers + group.carried),
                                     (keep_in, "in", group.consumers)):
            for member in members:
                module = model.get_submodule(member.module)
                mask = masks.setdefault(member.module,
                                        torch.ones(_width(module, axis), dtype=torch.bool))
                mask[_indices(member, removed)] = False
    deltas = {name: _bias_delta(model.get_submodule(name), ~mask,
                                analysis.removed_values[name])
              for name, mask in keep_in.items()}
    return PrunePlan(analysis.groups, kept, analysis.declined, keep_out, keep_in,
                     {k: d for k, d in deltas.items() if d is not None})


def _bias_delta(consumer: nn.Module, removed: torch.Tensor,
                values: torch.Tensor) -> torch.Tensor | None:
    """sum over removed inputs i of v_i * sum_k W[o, i, k]: what the removed channels' constant
    values contributed; None when it is zero (no bias needed)."""
    weight = consumer.weight.detach().to(torch.float64)
    taps = weight.sum(dim=tuple(range(2, weight.dim()))) if weight.dim() > 2 else weight
    delta = taps[:, removed] @ values[removed].to(taps.device)
    return delta.to(consumer.weight.dtype) if bool(delta.ne(0).any()) else None


def slice_model(model: nn.Module, plan: PrunePlan) -> nn.Module:
    """A deep copy of `model` with the planned modules replaced by smaller ones."""
    sliced = copy.deepcopy(model)
    for name in dict.fromkeys([*plan.keep_out, *plan.keep_in]):
        old = sliced.get_submodule(name)
        new = _sliced(old, plan.keep_out.get(name), plan.keep_in.get(name),
                      plan.bias_delta.get(name))
        new.train(old.training)
        replace_module(sliced, name, new)
    return sliced


def _sliced(module: nn.Module, keep_out: torch.Tensor | None, keep_in: torch.Tensor | None,
            delta: torch.Tensor | None) -> nn.Module:
    """A new Conv2d / Linear / BatchNorm with the kept rows, columns and entries."""
    kw = {"device": _device(module), "dtype": _dtype(module)}
    if isinstance(module, nn.modules.batchnorm._BatchNorm):
        new = type(module)(int(keep_out.sum()), module.eps, module.momentum, module.affine,
                           module.track_running_stats, **kw)
        _copy_state(new, module, lambda t: t[keep_out] if t.dim() else t)
        return new
    out = keep_out if keep_out is not None else torch.ones(_width(module, "out"), dtype=bool)
    inp = keep_in if keep_in is not None else torch.ones(_width(module, "in"), dtype=bool)
    bias = module.bias
    if delta is not None:
        bias = (bias.detach() if bias is not None else torch.zeros_like(delta)) + delta
    has_bias = bias is not None
    if isinstance(module, nn.Linear):
        new = nn.Linear(int(inp.sum()), int(out.sum()), bias=has_bias, **kw)
    else:
        depthwise = module.groups > 1  # the groups analysis admits depthwise convs only
        width_in = int(out.sum()) if depthwise else int(inp.sum())
        new = nn.Conv2d(width_in, int(out.sum()), module.kernel_size, module.stride,
                        module.padding, module.dilation, int(out.sum()) if depthwise else 1,
                        has_bias, module.padding_mode, **kw)
        inp = slice(None) if depthwise else inp  # a depthwise weight is (C, 1, kh, kw)
    with torch.no_grad():
        new.weight.copy_(module.weight[out][:, inp])
        new.weight.requires_grad_(module.weight.requires_grad)
        if has_bias:
            new.bias.copy_(bias[out])
    return new


def _copy_state(new: nn.Module, old: nn.Module, select) -> None:
    with torch.no_grad():
        for name, tensor in old.state_dict().items():
            getattr(new, name).copy_(select(tensor))


def mask_model(model: nn.Module, plan: PrunePlan) -> nn.Module:
    """A deep copy of `model`, same shapes, where consumers ignore removed channels (zero
    input weights) and carry their folded constant contribution in the bias."""
    masked = copy.deepcopy(model)
    with torch.no_grad():
        for name, keep in plan.keep_in.items():
            consumer = masked.get_submodule(name)
            consumer.weight[:, ~keep] = 0
            delta = plan.bias_delta.get(name)
            if delta is None:
                continue
            if consumer.bias is None:
                consumer.bias = nn.Parameter(torch.zeros_like(delta))
            consumer.bias += delta
    return masked


def check_equivalence(masked: nn.Module, sliced: nn.Module,
                      inputs: Iterable[torch.Tensor]) -> float:
    """max over inputs of max |masked(x) - sliced(x)| / max |masked(x)|, in full fp32 (TF32
    rounds CUDA matmuls and convolutions to 10 mantissa bits, ~1e-3)."""
    worst = 0.0
    with torch.no_grad(), _no_tf32():
        for x in inputs:
            for a, b in zip(_tensors(masked(x)), _tensors(sliced(x)), strict=True):
                scale = float(a.abs().max()) or 1.0
                worst = max(worst, float((a - b).abs().max()) / scale)
    return worst


@contextmanager
def _no_tf32() -> Iterator[None]:
    matmul, cudnn = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = matmul, cudnn


def _tensors(output) -> list[torch.Tensor]:
    if isinstance(output, torch.Tensor):
        return [output]
    if isinstance(output, dict):
        output = list(output.values())
    return [t for item in output for t in _tensors(item)]


# --- fine-tuning ---

def finetune(model: nn.Module, teacher: nn.Module, batches: Sequence[Batch], steps: int,
             lr: float, progress: Progress = QUIET) -> nn.Module:
    """`steps` Adam steps cycling over `batches`: cross-entropy to labels, or KL(teacher ||
    model) at temperature 1 without. Eval mode throughout (BatchNorm statistics frozen);
    returns `model`, trained in place, in eval mode."""
    model.eval()
    teacher.eval()
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=lr)
    with progress.bar(steps, "fine-tuning") as bar:
        for step in range(steps):
            loss = _loss(model, teacher, batches[step % len(batches)])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            bar.update(1)
            bar.set_postfix(loss=f"{loss.item():.4f}")
    return model.eval()


def _loss(model: nn.Module, teacher: nn.Module, batch: Batch) -> torch.Tensor:
    inputs, labels = batch
    logits = _logits(model(inputs))
    if labels is not None:
        return F.cross_entropy(logits, labels)
    with torch.no_grad():
        target = _logits(teacher(inputs)).log_softmax(dim=1)
    return F.kl_div(logits.log_softmax(dim=1), target, log_target=True, reduction="batchmean")


def _mean_loss(model: nn.Module, teacher: nn.Module, batches: Sequence[Batch]) -> float:
    with torch.no_grad(), _eval_mode(model):
        return sum(float(_loss(model, teacher, b)) for b in batches) / len(batches)


def _logits(output) -> torch.Tensor:
    if not isinstance(output, torch.Tensor):
        raise PruneError("taylor scores and fine-tuning need a model that returns one "
                         f"logits tensor, got {type(output).__name__}")
    return output


# --- small helpers ---

@contextmanager
def _eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    modes = {m: m.training for m in model.modules()}
    model.eval()
    try:
        yield model
    finally:
        for m, training in modes.items():
            m.train(training)


def _params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _dtype(module: nn.Module) -> torch.dtype:
    return next((p.dtype for p in module.parameters()), torch.float32)


def _device(module: nn.Module) -> torch.device:
    return next((p.device for p in module.parameters()), torch.device("cpu"))
