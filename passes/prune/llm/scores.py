"""Post-hoc importance of the channels of a decoder LM, per pruning scope (pat.md §8.3).

magnitude: the L2 norm of every weight slice that belongs to a channel, summed in squares.
    hidden channel i: embedding column E[:, i]; writer rows o_proj[i, :], down_proj[i, :];
        reader columns q/k/v/gate/up[:, i] times the RMSNorm gain g_i in front of them (the
        reader sees g_i x_i); lm_head[:, i] times the final norm's gain when untied
    query head h: its q_proj rows and o_proj columns
    FFN channel j: gate_proj[j, :], up_proj[j, :], down_proj[:, j] (GPT-2 / OPT: the single
        up projection's row and the down projection's column)

taylor (first order): a gate m = 1 multiplies each channel where the mask would (the residual
    stream at every writer, the o_proj input per head, the down_proj input per channel);
    removing a channel changes the loss by about -dL/dm, so the score is the sum over
    calibration batches of |dL/dm|, L the next-token loss.

Kept sets are the top scores: per layer for heads and FFN, and for heads the same count inside
every KV group (top_keep_mask with one block per KV head).
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from ember.passes.prune.llm.groups import DecoderGroups
from ember.passes.prune.llm.slice import KeepSet
from ember.passes.prune.llm.tune import lm_loss
from ember.passes.prune.pat.gate import GateSchedule, top_keep_mask
from ember.passes.prune.pat.model import MaskedDecoder

METHODS = ("magnitude", "taylor")


def score_channels(method: str, lm: nn.Module, groups: DecoderGroups, scopes: Iterable[str],
                   batches: list[torch.Tensor]) -> dict[str, torch.Tensor]:
    """Scores per scope: hidden (d,), heads (layers, heads), ffn (layers, intermediate).
    `batches`: (batch, seq) token windows for taylor."""
    if method == "magnitude":
        return {scope: _MAGNITUDE[scope](lm, groups) for scope in scopes}
    return _taylor(lm, groups, list(scopes), batches)


def keep_from_scores(scores: dict[str, torch.Tensor], keep: dict[str, int],
                     groups: DecoderGroups) -> KeepSet:
    def kept(scope: str, blocks: int = 1) -> list[torch.Tensor]:
        mask = top_keep_mask(scores[scope].reshape(-1, scores[scope].shape[-1]), keep[scope],
                             blocks)
        return [torch.nonzero(row > 0.5).flatten() for row in mask]
    return KeepSet(hidden=kept("hidden")[0] if "hidden" in scores else None,
                   heads=kept("heads", groups.num_kv_heads) if "heads" in scores else None,
                   ffn=kept("ffn") if "ffn" in scores else None)


def _sq_rows(weight: torch.Tensor) -> torch.Tensor:
    return weight.detach().double().pow(2).sum(dim=1)


def _sq_cols(weight: torch.Tensor) -> torch.Tensor:
    return weight.detach().double().pow(2).sum(dim=0)


def _hidden_magnitude(lm: nn.Module, groups: DecoderGroups) -> torch.Tensor:
    base = lm.model
    total = _sq_cols(base.embed_tokens.weight)
    for layer in base.layers:
        attn, mlp = layer.self_attn, layer.mlp
        total += _sq_rows(attn.o_proj.weight) + _sq_rows(mlp.down_proj.weight)
        g1 = layer.input_layernorm.weight.detach().double() ** 2
        g2 = layer.post_attention_layernorm.weight.detach().double() ** 2
        total += g1 * sum(_sq_cols(p.weight) for p in (attn.q_proj, attn.k_proj, attn.v_proj))
        total += g2 * sum(_sq_cols(p.weight) for p in (mlp.gate_proj, mlp.up_proj))
    if not groups.tied:
        total += base.norm.weight.detach().double() ** 2 * _sq_cols(lm.lm_head.weight)
    return total.sqrt()


def _heads_magnitude(lm: nn.Module, groups: DecoderGroups) -> torch.Tensor:
    rows = []
    for layer in lm.model.layers:
        q = _sq_rows(layer.self_attn.q_proj.weight).reshape(groups.num_heads, -1).sum(1)
        o = _sq_cols(layer.self_attn.o_proj.weight).reshape(groups.num_heads, -1).sum(1)
        rows.append((q + o).sqrt())
    return torch.stack(rows)


def _ffn_magnitude(lm: nn.Module, groups: DecoderGroups) -> torch.Tensor:
    roles = groups.layout.prune
    rows = []
    for i in range(groups.num_layers):
        total = _sq_cols(lm.get_submodule(groups.block(i, roles.ffn_out)).weight)
        for name in roles.ffn_in:
            total = total + _sq_rows(lm.get_submodule(groups.block(i, name)).weight)
        rows.append(total.sqrt())
    return torch.stack(rows)


_MAGNITUDE = {"hidden": _hidden_magnitude, "heads": _heads_magnitude, "ffn": _ffn_magnitude}


def _taylor(lm: nn.Module, groups: DecoderGroups, scopes: list[str],
            batches: list[torch.Tensor]) -> dict[str, torch.Tensor]:
    """|dL/dm| summed over batches, with every gate held at 1 (beta = 0.5 + sigmoid(0))."""
    if len(batches) == 0:
        raise ValueError("taylor scores need calibration data (data=...)")
    ones = {scope: 1 for scope in scopes}  # keep counts are irrelevant while scoring
    graph = MaskedDecoder(groups, ones)
    graph.attach(lm)
    scores = {scope: torch.zeros_like(m.proxy, dtype=torch.float64)
              for scope, m in graph.masks.items()}
    frozen = [p for p in lm.parameters() if p.requires_grad]
    for p in frozen:
        p.requires_grad_(False)
    try:
        for ids in batches:
            graph.set_step(0, GateSchedule(s0=1))  # sigmoid(0) + 0.5 = 1: the model unchanged
            grads = torch.autograd.grad(lm_loss(lm, ids),
                                        [m.proxy for m in graph.masks.values()])
            for scope, grad in zip(graph.masks, grads, strict=True):
                # d gate / d proxy = sigmoid'(0) = 1/4 at step 0, the same for every channel
                scores[scope] += grad.double().abs()
    finally:
        graph.detach()
        for p in frozen:
            p.requires_grad_(True)
    return scores
