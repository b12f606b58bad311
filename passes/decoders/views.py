"""Each family's canonical form for pruning, and the way back to the user's class.

- Phi-3 and Gemma: their exact Llama model (passes/decoders/phi3.py, gemma.py);
- GPT-2: a copy with `nn.Linear` in place of `Conv1D` (passes/decoders/conv1d.py);
- Llama, Mistral, Qwen2/3, OPT: the model itself.

A view is checked against the model it came from before any work (`check_view`): a config
the conversion does not cover shows up there as a measured difference, not later as a wrong
pruned model.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from ember.errors import UnsupportedModelError
from ember.passes.decoders.conv1d import linearize, restore_conv1d
from ember.passes.decoders.gemma import gemma_to_llama, llama_to_gemma
from ember.passes.decoders.layouts import decoder_layout, model_type
from ember.passes.decoders.phi3 import llama_to_phi3, phi3_to_llama

VIEW_BOUND = 1e-5  # max |Δlogits| / max |logits| between a model and its view, fp32


@dataclass(frozen=True)
class Canonical:
    """`model`: what pruning works on; `restore(pruned)`: the pruned canonical model as a
    model of the user's own class."""

    model: nn.Module
    restore: Callable[[nn.Module], nn.Module]


def canonical_form(lm: nn.Module) -> Canonical:
    """`lm`'s canonical form; `lm` itself is left untouched."""
    kind = model_type(lm)
    if kind == "phi3":
        return Canonical(phi3_to_llama(lm), lambda pruned: llama_to_phi3(pruned, lm))
    if kind == "gemma":
        return Canonical(gemma_to_llama(lm), lambda pruned: llama_to_gemma(pruned, lm))
    layout = decoder_layout(lm)
    if layout is not None and layout.conv1d:
        work = copy.deepcopy(lm)
        names = linearize(work)
        return Canonical(work, lambda pruned: _with_conv1d(pruned, names))
    return Canonical(lm, lambda pruned: pruned)


@torch.no_grad()
def check_view(lm: nn.Module, view: nn.Module, input_ids: torch.Tensor) -> float:
    """`max |Δlogits| / max |logits|` of the view against `lm` (eval mode, no cache);
    UnsupportedModelError above VIEW_BOUND."""
    if view is lm:
        return 0.0
    reference, candidate = (_logits(m, input_ids) for m in (lm, view))
    error = float((reference - candidate).abs().max() / reference.abs().max().clamp_min(1e-30))
    if error > VIEW_BOUND:
        raise UnsupportedModelError(
            f"the canonical form of this {model_type(lm)} model differs from it by {error:.1e} "
            f"of the logit range (bound {VIEW_BOUND:.0e}): its config uses something the "
            "conversion does not cover")
    return error


def _logits(lm: nn.Module, input_ids: torch.Tensor) -> torch.Tensor:
    training = lm.training
    lm.eval()
    try:
        return lm(input_ids=input_ids, use_cache=False).logits.float()
    finally:
        lm.train(training)


def _with_conv1d(pruned: nn.Module, names: list[str]) -> nn.Module:
    restore_conv1d(pruned, names)
    return pruned
