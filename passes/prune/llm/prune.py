"""Structural pruning of a decoder LM, end to end (pat.md §1, §5):

0. the canonical form (passes/decoders/views.py): Phi-3 and Gemma become their exact Llama
   models, GPT-2 trades `Conv1D` for `nn.Linear`; the form is checked against the model;
1. groups and kept widths (`keep_counts`): hidden rounded to a multiple of
   lcm(round_to, query heads after pruning) (transformers' LlamaConfig requires
   hidden_size % num_attention_heads == 0), heads the same count in every KV group, FFN
   rounded to round_to;
2. choose: `pat` learns the masks during tuning; `magnitude` / `taylor` score the channels
   first and tune under the fixed hard mask (P -> FT), with the same budget;
3. tune with LoRA on every linear (passes/prune/llm/tune.py);
4. export: merge LoRA, fold the HSMs into their writers, slice (passes/prune/llm/slice.py);
5. back to the user's class, then check: the hard-masked tuning graph (LoRA unmerged, HSM
   hooks live) and the pruned model give the same logits, max |Δ| <= 1e-4 of max |logit| in
   fp32 (or NOISE_FACTOR x the pruned model's own fp32 error, where larger), else the pass
   fails.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ember.passes.decoders.views import canonical_form, check_view
from ember.passes.prune.llm.groups import DecoderGroups, PruneError, decoder_groups
from ember.passes.prune.llm.scores import keep_from_scores, score_channels
from ember.passes.prune.llm.slice import round_keep, slice_decoder
from ember.passes.prune.llm.tune import TuneSettings, tune
from ember.passes.prune.lora import add_lora, merge_lora
from ember.passes.prune.pat.model import MaskedDecoder
from ember.progress import QUIET, Progress

EQUIVALENCE_BOUND = 1e-4
#: the masked and the sliced model are both fp32 approximations of one function: the bound
#: grows to this many times the sliced model's own fp32 error (against float64) where that is
#: larger, as the compile's verification does (a pruned residual stream grows activations)
NOISE_FACTOR = 8
SCORING_WINDOWS = 16  # windows for taylor scores, from the tuning data


@dataclass(frozen=True)
class LLMPlan:
    method: str
    ratio: float
    scopes: tuple[str, ...]
    round_to: int
    lora_rank: int
    lora_alpha: float
    hsm_rank: int
    hsm_form: str
    embedding: str
    tune: TuneSettings
    #: pat: proxies start from post-hoc scores (taylor, magnitude) or at 0 (zero, the
    #: reference code's); from scores the gate is near its hard projection when a short run
    #: freezes it (SmolLM2, 150 steps: the freeze moved the loss 3.59 -> 3.96 instead of
    #: 2.99 -> 5.75), and the result beat Taylor + LoRA in and out of domain (BENCHMARKS.md)
    mask_init: str = "zero"


def keep_counts(groups: DecoderGroups, scopes: tuple[str, ...], ratio: float,
                round_to: int) -> dict[str, int]:
    """Kept width per pruned scope; empty for ratio 0 (dense tuning). PruneError for a scope
    the family cannot slice."""
    for scope in scopes:
        if scope in groups.unsliceable:
            can = [s for s in ("hidden", "heads", "ffn") if s not in groups.unsliceable]
            raise PruneError(f"model type {groups.family!r} cannot prune scope {scope}: "
                             f"{groups.unsliceable[scope]} (scopes it prunes: "
                             f"{', '.join(can)})")
    if ratio == 0:
        return {}
    keep: dict[str, int] = {}
    heads = groups.num_heads
    if "heads" in scopes:
        per_group = max(1, round((1 - ratio) * groups.heads_per_group()))
        keep["heads"] = heads = per_group * groups.num_kv_heads
    if "ffn" in scopes:
        keep["ffn"] = round_keep(groups.intermediate, ratio, round_to)
    if "hidden" in scopes:
        multiple = math.lcm(round_to, heads)
        if multiple > groups.hidden:
            raise PruneError(f"hidden width must be a multiple of lcm({round_to}, {heads} "
                             f"query heads) = {multiple}, more than d = {groups.hidden}")
        keep["hidden"] = round_keep(groups.hidden, ratio, multiple)
    return keep


def prune_llm(lm: nn.Module, plan: LLMPlan, windows: torch.Tensor, example: torch.Tensor,
              checkpoint_dir: Path | None, progress: Progress = QUIET
              ) -> tuple[nn.Module, dict[str, Any]]:
    """(pruned and tuned LM of `lm`'s class, stats). `lm` is left untouched. Deterministic:
    every random draw (LoRA and HSM initialization, dropout) comes from torch's generator
    seeded with the plan's seed, inside a fork that leaves the caller's generator as it was."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(plan.tune.seed)
        return _prune_llm(lm, plan, windows, example, checkpoint_dir, progress)


def _prune_llm(lm: nn.Module, plan: LLMPlan, windows: torch.Tensor, example: torch.Tensor,
               checkpoint_dir: Path | None, progress: Progress
               ) -> tuple[nn.Module, dict[str, Any]]:
    canonical = canonical_form(lm)
    view_error = check_view(lm, canonical.model, example)
    source = canonical.model
    groups = decoder_groups(source)
    keep = keep_counts(groups, plan.scopes, plan.ratio, plan.round_to)
    if plan.method == "pat" and plan.tune.steps < 1:
        raise PruneError("method=pat learns its mask while tuning: give steps >= 1")
    work = copy.deepcopy(source)
    if plan.embedding == "hsm" and groups.tied:
        _untie(work, groups)
    graph = MaskedDecoder(groups, keep, plan.hsm_rank if plan.method == "pat" else 0,
                          plan.hsm_form, plan.embedding)
    scorer = plan.method if plan.method != "pat" else plan.mask_init
    if scorer != "zero" and keep:
        with progress.stage(f"scoring channels ({scorer})"):
            batches = list(windows[:SCORING_WINDOWS].split(plan.tune.batch))
            scores = score_channels(scorer, work, groups, keep, batches)
        if plan.method == "pat":
            graph.initialize(scores)
        else:
            graph.harden(keep_from_scores(scores, keep, groups))
    log = None
    if plan.tune.steps:
        add_lora(work, groups.layout.linear_names(groups.num_layers), plan.lora_rank,
                 plan.lora_alpha)
    graph.attach(work)
    if plan.tune.steps:
        fingerprint = {"method": plan.method, "ratio": plan.ratio, "scopes": plan.scopes,
                       "keep": keep, "lora": [plan.lora_rank, plan.lora_alpha],
                       "hsm": [plan.hsm_rank, plan.hsm_form, plan.embedding],
                       "mask_init": plan.mask_init}
        log = tune(work, graph, windows, plan.tune, checkpoint_dir, fingerprint, progress,
                   teacher=source.eval())
    # the reference is the final hard mask (a ramp that outlasts a short run is cut there)
    graph.set_step(plan.tune.steps, replace(plan.tune.schedule(), ramp=0.0))
    with torch.no_grad():
        reference = work(input_ids=example, use_cache=False).logits
    pruned_canonical = _export(work, graph, keep)
    after = decoder_groups(pruned_canonical)  # before restore, which may work in place
    pruned = canonical.restore(pruned_canonical)
    error = _relative_error(reference, pruned, example)
    bound = EQUIVALENCE_BOUND
    if error > bound:
        bound = max(bound, NOISE_FACTOR * _fp32_noise(pruned, example))
    if error > bound:
        raise PruneError(f"the sliced model differs from the masked tuning graph by {error:.2e} "
                         f"of the logit range (bound {bound:.2e})")
    stats = _stats(lm, pruned, groups, after, keep, plan, log, error)
    stats["canonical_form_max_rel"] = float(f"{view_error:.3g}")
    return pruned.eval(), stats


def _export(work: nn.Module, graph: MaskedDecoder, keep: dict[str, int]) -> nn.Module:
    """Merge LoRA, fold the HSMs, slice (pitfall 14: in this order)."""
    graph.detach()
    merge_lora(work)
    graph.fold(work)
    if not keep:
        return work
    return slice_decoder(work, graph.keep_set())


def _untie(lm: nn.Module, groups: DecoderGroups) -> None:
    """Give lm_head its own copy of the embedding (an embedding HSM folds into E only)."""
    embedding = lm.get_submodule(groups.layout.embed).weight
    lm.lm_head.weight = nn.Parameter(embedding.detach().clone())
    lm.config.tie_word_embeddings = False


@torch.no_grad()
def _relative_error(reference: torch.Tensor, pruned: nn.Module, example: torch.Tensor) -> float:
    logits = pruned(input_ids=example, use_cache=False).logits
    scale = float(reference.abs().max()) or 1.0
    return float((logits.float() - reference.float()).abs().max()) / scale


@torch.no_grad()
def _fp32_noise(model: nn.Module, example: torch.Tensor) -> float:
    """`max |fp32 - float64| / max |float64|` of `model`'s logits: its own rounding error."""
    exact = copy.deepcopy(model).double()
    reference = exact(input_ids=example, use_cache=False).logits
    logits = model(input_ids=example, use_cache=False).logits.double()
    return float((logits - reference).abs().max() / reference.abs().max().clamp_min(1e-300))


def _params(model: nn.Module) -> int:
    return sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())


def _stats(lm: nn.Module, pruned: nn.Module, before: DecoderGroups, after: DecoderGroups,
           keep: dict[str, int], plan: LLMPlan, log, error: float) -> dict[str, Any]:
    return {
        "method": plan.method, "scopes": "+".join(plan.scopes), "ratio": plan.ratio,
        "hidden": [before.hidden, after.hidden],
        "heads": [before.num_heads, after.num_heads],
        "kv_heads": [before.num_kv_heads, after.num_kv_heads],
        "intermediate": [before.intermediate, after.intermediate],
        "params": [_params(lm), _params(pruned)],
        "equivalence_max_rel": float(f"{error:.3g}"),
        "tuning": log.as_dict() if log is not None else None,
        "kept": {scope: count for scope, count in keep.items()},
    }
