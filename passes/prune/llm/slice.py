"""Mask, slice and verify a Llama-family causal LM (design: pat.md §5, §9.3, §9.4).

A `KeepSet` names what stays in each channel group (passes/prune/llm/groups.py). Two models
come from it:

- the **hard-masked** model (`apply_hard_mask`): the original, with hooks that zero the pruned
  channels. It is the reference: whatever a pruning method trained or scored, this is the
  function it chose.
- the **sliced** model (`slice_decoder`): a new stock model, built from a rewritten config, with
  physically smaller tensors. `check_equivalence` compares the two.

Slicing the hidden dimension is exact only with the RMSNorm rescale. With `x` zero outside the
kept set `K` (`|K| = d'`), `mean_d(x²) = (d'/d)·mean_{d'}(x_K²)`, so

    sqrt(mean_d(x²) + eps) = sqrt(d'/d) · sqrt(mean_{d'}(x_K²) + eps·d/d')

and the norm `g·x / sqrt(mean_d(x²) + eps)` restricted to `K` equals
`(g_K·sqrt(d/d'))·x_K / sqrt(mean_{d'}(x_K²) + eps·d/d')`: every gain is multiplied by
`sqrt(d/d')` and the config's `rms_norm_eps` by `d/d'`. Leaving eps unscaled is not exact
(at eps = 0.1 the logits move by about 0.1 of their range; pat.md §5.1).

Widths must stay uniform across layers (the stock config has one `num_attention_heads`, one
`num_key_value_heads`, one `intermediate_size`), and transformers' `LlamaConfig` also insists
that `hidden_size` be a multiple of `num_attention_heads`, even with `head_dim` written out:
a `d'` that is not is refused with `PruneError` rather than written as an unloadable config.

LayerNorm families (GPT-2, OPT) slice the FFN group only: their rules name the FFN linears,
and every other tensor stays whole (nothing else reads or writes an FFN channel).
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from huggingface_hub.errors import StrictDataclassError
from torch import nn
from torch.utils.hooks import RemovableHandle

from ember.passes.decoders.conv1d import linearize
from ember.passes.prune.llm.groups import DecoderGroups, PruneError, decoder_groups, norm_modules

if TYPE_CHECKING:
    from transformers import PretrainedConfig, PreTrainedModel


@dataclass(frozen=True)
class KeepSet:
    """Sorted int64 indices of what stays; None keeps the whole group.

    `hidden`: residual-stream channels. `heads`: per layer, kept query heads (the same count in
    every layer; within a layer every KV group keeps the same count or none, and every layer
    keeps the same number of KV groups). `ffn`: per layer, kept intermediate channels (the
    same count in every layer).
    """

    hidden: torch.Tensor | None = None
    heads: list[torch.Tensor] | None = None
    ffn: list[torch.Tensor] | None = None


@dataclass(frozen=True)
class _Plan:
    """A validated keep set, every group explicit (full index ranges where nothing goes)."""

    groups: DecoderGroups
    vocab: int
    hidden: torch.Tensor
    q_heads: list[torch.Tensor]   # kept query heads, per layer
    kv_heads: list[torch.Tensor]  # kept KV heads (groups with a kept query head), per layer
    ffn: list[torch.Tensor]

    @property
    def hidden_size(self) -> int:
        return len(self.hidden)


def round_keep(n: int, ratio: float, multiple: int) -> int:
    """Kept width when removing `ratio` of `n`: `n·(1 - ratio)` rounded to the nearest
    multiple of `multiple` (halves up), clamped to `[multiple, n]`; `n` itself if
    `n < multiple`. SmolLM2's d = 576 at multiple 16: 0.2 → 464, 0.25 → 432, 0.3 → 400.

    The result need not suit the stock config: for heads, pass `multiple` = a multiple of
    `num_attention_heads` as well (lcm), or `slice_decoder` refuses the width (see module doc).
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    if not 0.0 <= ratio < 1.0:
        raise ValueError(f"ratio must be in [0, 1), got {ratio}")
    if multiple < 1:
        raise ValueError(f"multiple must be >= 1, got {multiple}")
    if n < multiple:
        return n
    kept = math.floor(n * (1.0 - ratio) / multiple + 0.5) * multiple
    return min(max(kept, multiple), n)


def rescaled_eps(eps: float, hidden: int, kept: int) -> float:
    """RMSNorm eps for the sliced width: `eps·d/d'` (module doc)."""
    return eps * hidden / kept


def apply_hard_mask(lm: nn.Module, keep: KeepSet) -> list[RemovableHandle]:
    """Hooks on `lm` (in place) that zero every pruned channel; remove them via the handles.

    Hidden: the output of every residual writer (embedding, `o_proj`, `down_proj`, biases
    included) is multiplied by the 0/1 mask, so the stream is zero outside `K` at every depth.
    Heads: a pre-hook zeroes the pruned heads' slices of the `o_proj` input (a removed KV head
    is then read only by removed query heads). FFN: a pre-hook zeroes the pruned channels of
    the `down_proj` input. Groups left as None get no hooks.
    """
    plan = _resolve(lm, keep)
    groups = plan.groups
    roles = groups.layout.prune
    like = lm.get_submodule(groups.layout.embed).weight
    handles: list[RemovableHandle] = []
    if keep.hidden is not None:
        mask = _mask(plan.hidden, groups.hidden, like)
        writers = [groups.layout.embed]
        for i in range(groups.num_layers):
            writers += [groups.block(i, roles.attention_out), groups.block(i, roles.ffn_out)]
        for name in writers:
            handles.append(lm.get_submodule(name).register_forward_hook(_zero_output(mask)))
    for i in range(groups.num_layers):
        if keep.heads is not None:
            q_width = groups.num_heads * groups.head_dim
            mask = _mask(_per_head(plan.q_heads[i], groups.head_dim), q_width, like)
            out = lm.get_submodule(groups.block(i, roles.attention_out))
            handles.append(out.register_forward_pre_hook(_zero_input(mask)))
        if keep.ffn is not None:
            mask = _mask(plan.ffn[i], groups.intermediate, like)
            down = lm.get_submodule(groups.block(i, roles.ffn_out))
            handles.append(down.register_forward_pre_hook(_zero_input(mask)))
    return handles


def slice_decoder(lm: PreTrainedModel, keep: KeepSet) -> PreTrainedModel:
    """A new, physically smaller model of the same stock class; `lm` is left untouched.

    Hidden `K`: embedding `E[:, K]`, writers' rows `W[K, :]` and biases `b[K]`, readers'
    columns `W[:, K]` (q/k/v, gate/up, lm_head), every RMSNorm gain `g[K]·sqrt(d/d')`; config
    `hidden_size = d'`, `rms_norm_eps = eps·d/d'`, `head_dim` written explicitly.
    Heads: `q_proj` rows and `o_proj` columns of the kept query heads; `k/v_proj` rows of the
    kept KV heads (those with a kept query head); config `num_attention_heads`,
    `num_key_value_heads`. Indices stay in order, so the kept query heads of a group stay
    contiguous and HF's `h // num_key_value_groups` still finds each head's KV head.
    FFN: `gate/up_proj` rows, `down_proj` columns; config `intermediate_size`.
    A tied embedding stays tied (one sliced tensor); untied Parameters give
    `tie_word_embeddings = False`. The model is `type(lm)(new_config)` loaded with a strict
    state dict, so it reloads with `from_pretrained`.
    """
    plan = _resolve(lm, keep)
    config = _sliced_config(lm, plan)
    state = _sliced_state(lm, plan)
    return _rebuild(lm, config, state, plan.groups)


@torch.no_grad()
def check_equivalence(reference: nn.Module, candidate: nn.Module,
                      input_ids: torch.Tensor) -> float:
    """`max |Δlogits| / max |reference logits|`, logits in fp32, eval mode, `use_cache=False`.

    The models run in their own dtype: pass fp32 models for the 1e-5 (toy) / 1e-4 (real)
    bounds. A correct slice gives ~1e-7; a missing fold or rescale gives 1e-3 to 1.
    """
    reference_logits = _logits(reference, input_ids)
    difference = (reference_logits - _logits(candidate, input_ids)).abs().max()
    scale = reference_logits.abs().max()
    return float(difference / scale) if scale > 0 else float(difference)


def _logits(lm: nn.Module, input_ids: torch.Tensor) -> torch.Tensor:
    training = lm.training
    lm.eval()  # attention dropout off
    try:
        return lm(input_ids=input_ids, use_cache=False).logits.float()
    finally:
        lm.train(training)


# --- validation ---------------------------------------------------------------------------

def _resolve(lm: nn.Module, keep: KeepSet) -> _Plan:
    groups = decoder_groups(lm)
    for scope, reason in groups.unsliceable.items():
        if getattr(keep, scope) is not None:
            raise PruneError(f"model type {groups.family!r} cannot slice scope {scope}: "
                             f"{reason}")
    layers = groups.num_layers
    hidden = _indices(keep.hidden, groups.hidden, "hidden")
    heads = _per_layer(keep.heads, groups.num_heads, layers, "heads")
    ffn = _per_layer(keep.ffn, groups.intermediate, layers, "ffn")
    _same_count(ffn, "ffn")
    _same_count(heads, "heads")
    kv_heads = [_kv_heads(h, groups, i) for i, h in enumerate(heads)]
    _same_count(kv_heads, "heads (kept KV groups)")
    vocab = lm.get_submodule(groups.layout.embed).num_embeddings
    return _Plan(groups, vocab, hidden, heads, kv_heads, ffn)


def _indices(values: torch.Tensor | None, n: int, what: str) -> torch.Tensor:
    """Sorted, unique, in range, non-empty int64 indices (all of `range(n)` for None)."""
    if values is None:
        return torch.arange(n)
    index = torch.as_tensor(values).detach().cpu()
    if index.dim() != 1 or index.is_floating_point() or index.is_complex():
        raise PruneError(f"{what}: expected a 1-D integer index tensor, got {index.dtype} "
                         f"{tuple(index.shape)}")
    index = index.long().sort().values
    if len(index) == 0:
        raise PruneError(f"{what}: keeps nothing (zero-width groups are not allowed)")
    if index[0] < 0 or index[-1] >= n:
        raise PruneError(f"{what}: indices must be in [0, {n}), got {int(index[0])}.."
                         f"{int(index[-1])}")
    if len(index.unique()) != len(index):
        raise PruneError(f"{what}: repeated indices")
    return index


def _per_layer(values: list[torch.Tensor] | None, n: int, layers: int,
               what: str) -> list[torch.Tensor]:
    if values is None:
        return [torch.arange(n) for _ in range(layers)]
    if len(values) != layers:
        raise PruneError(f"{what}: {len(values)} entries for {layers} layers")
    return [_indices(v, n, f"{what}[{i}]") for i, v in enumerate(values)]


def _same_count(per_layer: list[torch.Tensor], what: str) -> None:
    counts = sorted({len(index) for index in per_layer})
    if len(counts) > 1:
        raise PruneError(f"{what}: non-uniform kept counts per layer {counts}; the stock "
                         "config holds one width for all layers")


def _kv_heads(q_heads: torch.Tensor, groups: DecoderGroups, layer: int) -> torch.Tensor:
    """KV heads still read by a kept query head; each must keep the same number of them,
    so the new config's `num_attention_heads / num_key_value_heads` is an integer."""
    owner = q_heads // groups.heads_per_group()
    counts = torch.bincount(owner, minlength=groups.num_kv_heads)
    kept = counts.nonzero().flatten()
    if len(set(counts[kept].tolist())) > 1:
        raise PruneError(f"heads[{layer}]: KV groups keep different numbers of query heads "
                         f"{counts.tolist()}; GQA needs the same count in every kept group")
    return kept


# --- slicing ------------------------------------------------------------------------------

def _sliced_config(lm: PreTrainedModel, plan: _Plan) -> PretrainedConfig:
    """The old config with the new widths; built by its class, so its validators run now."""
    old = lm.config
    groups = plan.groups
    values = old.to_dict()
    if not groups.unsliceable:  # the Llama layout: every width may have changed
        values.update(
            hidden_size=plan.hidden_size,
            num_attention_heads=len(plan.q_heads[0]),
            num_key_value_heads=len(plan.kv_heads[0]),
            head_dim=groups.head_dim,  # no longer hidden_size // num_attention_heads
            rms_norm_eps=rescaled_eps(old.rms_norm_eps, groups.hidden, plan.hidden_size),
        )
    values.update({groups.layout.prune.ffn_key: len(plan.ffn[0]),
                   "tie_word_embeddings": groups.tied})
    try:
        config = type(old).from_dict(values)
    except (ValueError, TypeError, StrictDataclassError) as error:
        reason = " ".join(str(error).split())
        raise PruneError(f"{type(old).__name__} rejects the sliced widths: {reason}") from error
    config._attn_implementation = old._attn_implementation  # compare like with like
    return config


def _sliced_state(lm: nn.Module, plan: _Plan) -> dict[str, torch.Tensor]:
    """Every state-dict entry indexed by its (rows, columns) rule; norm gains rescaled."""
    rules = _rules(plan)
    gain = math.sqrt(plan.groups.hidden / plan.hidden_size)
    norms = set(norm_modules(lm, plan.groups.num_layers))
    state = {}
    for key, tensor in lm.state_dict().items():
        module, _, _ = key.rpartition(".")
        if module not in rules and "hidden" in plan.groups.unsliceable:
            state[key] = tensor.detach()  # the FFN rules name every reader and writer
            continue
        if module not in rules:
            raise PruneError(f"no slicing rule for {key}")
        rows, columns = rules[module]
        sliced = tensor.detach().index_select(0, rows.to(tensor.device))
        if columns is not None and tensor.dim() == 2:
            sliced = sliced.index_select(1, columns.to(tensor.device))
        state[key] = sliced * gain if module in norms else sliced
    return state


def _rules(plan: _Plan) -> dict[str, tuple[torch.Tensor, torch.Tensor | None]]:
    """Module name -> (kept output rows, kept input columns) of its weight; a 1-D bias or gain
    takes the rows. Embedding and lm_head weights are (vocab, d): all rows, columns `K`."""
    groups = plan.groups
    if groups.unsliceable:
        return _ffn_rules(plan)
    hidden = plan.hidden
    vocab = torch.arange(plan.vocab)
    head = torch.arange(groups.head_dim)  # per-head norms (Qwen3's q_norm, k_norm) stay whole
    rules = {"model.embed_tokens": (vocab, hidden), "lm_head": (vocab, hidden),
             "model.norm": (hidden, None)}
    for i in range(groups.num_layers):
        prefix = f"model.layers.{i}"
        q = _per_head(plan.q_heads[i], groups.head_dim)
        kv = _per_head(plan.kv_heads[i], groups.head_dim)
        ffn = plan.ffn[i]
        rules.update({
            f"{prefix}.self_attn.q_proj": (q, hidden),
            f"{prefix}.self_attn.k_proj": (kv, hidden),
            f"{prefix}.self_attn.v_proj": (kv, hidden),
            f"{prefix}.self_attn.o_proj": (hidden, q),
            f"{prefix}.mlp.gate_proj": (ffn, hidden),
            f"{prefix}.mlp.up_proj": (ffn, hidden),
            f"{prefix}.mlp.down_proj": (hidden, ffn),
            f"{prefix}.input_layernorm": (hidden, None),
            f"{prefix}.post_attention_layernorm": (hidden, None),
            f"{prefix}.self_attn.q_norm": (head, None),
            f"{prefix}.self_attn.k_norm": (head, None),
        })
    return rules


def _ffn_rules(plan: _Plan) -> dict[str, tuple[torch.Tensor, torch.Tensor | None]]:
    """The FFN readers' rows and the writer's columns (its bias, on the stream, stays whole)."""
    groups = plan.groups
    roles = groups.layout.prune
    everything = torch.arange(groups.hidden)
    rules = {}
    for i, ffn in enumerate(plan.ffn):
        rules.update({groups.block(i, name): (ffn, None) for name in roles.ffn_in})
        rules[groups.block(i, roles.ffn_out)] = (everything, ffn)
    return rules


def _rebuild(lm: PreTrainedModel, config: PretrainedConfig, state: dict[str, torch.Tensor],
             groups: DecoderGroups) -> PreTrainedModel:
    """`type(lm)(config)` with `state` loaded strictly: what `from_pretrained` will do."""
    layout, tied = groups.layout, groups.tied
    embed_name = layout.embed
    weight = lm.get_submodule(embed_name).weight
    sliced = type(lm)(config).to(device=weight.device, dtype=weight.dtype)
    if layout.conv1d:
        linearize(sliced)  # the canonical form's nn.Linear (passes/decoders/conv1d.py)
    try:
        sliced.load_state_dict(state, strict=True)
    except RuntimeError as error:  # e.g. biases the config's flags do not describe
        reason = " ".join(str(error).split())
        raise PruneError(f"the sliced weights do not fit {type(lm).__name__}: {reason}"
                         ) from error
    embed = sliced.get_submodule(embed_name).weight
    if (sliced.get_submodule("lm_head").weight is embed) != tied:
        raise PruneError(f"{type(lm).__name__} did not reproduce the embedding tying "
                         f"(tied={tied})")
    if getattr(lm, "generation_config", None) is not None:
        sliced.generation_config = copy.deepcopy(lm.generation_config)
    return sliced.train(lm.training)


def _per_head(heads: torch.Tensor, head_dim: int) -> torch.Tensor:
    """Channel indices of whole heads: head h owns `h*hd : (h+1)*hd`."""
    return (heads[:, None] * head_dim + torch.arange(head_dim)).flatten()


def _mask(keep: torch.Tensor, n: int, like: torch.Tensor) -> torch.Tensor:
    mask = torch.zeros(n, dtype=like.dtype, device=like.device)
    mask[keep.to(like.device)] = 1
    return mask


def _zero_output(mask: torch.Tensor):
    def hook(module: nn.Module, args: tuple, output: torch.Tensor) -> torch.Tensor:
        return output * mask.to(output.dtype)
    return hook


def _zero_input(mask: torch.Tensor):
    def hook(module: nn.Module, args: tuple) -> tuple:
        return (args[0] * mask.to(args[0].dtype), *args[1:])
    return hook
