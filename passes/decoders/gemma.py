"""Gemma as an exact Llama model, and back.

Gemma differs from Llama in two places, both foldable into weights:

- its RMSNorm multiplies by `(1 + w)` where Llama's multiplies by `g`: the view stores
  `g = 1 + w` (the same fp32 sum Gemma forms on the fly);
- it scales the embedding output by `s = sqrt(d)` (`d` = hidden_size): the view's embedding
  is `s·E` and its `lm_head` is `E`, untied.

Back at width `d'` (scale `s' = sqrt(d')`), Gemma's embedding is `E_view / s'`. When the
original was tied and the view's embedding is still `s·lm_head` (tuning never touches either),
the tied tensor `T = E_view / s'` is `r·lm_head` with `r = s/s'`; logits `n(h)·Tᵀ` then carry
a factor `r`, which the final norm absorbs: `(1 + w_final) = g_final / r`. Otherwise the
result is untied.
"""

from __future__ import annotations

import torch
from transformers import LlamaForCausalLM, PreTrainedModel

from ember.errors import UnsupportedModelError
from ember.passes.decoders.loading import llama_config_like, load_like

_EMBED = "model.embed_tokens.weight"
_FINAL_NORM = "model.norm.weight"


def gemma_to_llama(lm: PreTrainedModel) -> LlamaForCausalLM:
    """The Llama model that computes what `lm` computes (module doc)."""
    config = lm.config
    if getattr(config, "use_bidirectional_attention", False):
        raise UnsupportedModelError("gemma with use_bidirectional_attention is not a causal "
                                    "LM; the Llama view is causal")
    view_config = llama_config_like(config, config.head_dim,
                                    attention_bias=config.attention_bias,
                                    tie_word_embeddings=False)  # lm_head is E, the input s·E
    state = {}
    for key, tensor in lm.state_dict().items():
        state[key] = (tensor.float() + 1.0).to(tensor.dtype) if _is_norm(key) else tensor
    embedding = state[_EMBED]
    state[_EMBED] = embedding * _scale(config.hidden_size, embedding.dtype)
    state["lm_head.weight"] = embedding.clone()
    return load_like(LlamaForCausalLM, view_config, state, lm)


def llama_to_gemma(view: PreTrainedModel, original: PreTrainedModel) -> PreTrainedModel:
    """A model of `original`'s class with `view`'s widths and weights (module doc)."""
    widths = view.config
    state = view.state_dict()
    embedding, head = state[_EMBED], state["lm_head.weight"]
    scale = _scale(original.config.hidden_size, embedding.dtype)
    new_scale = _scale(widths.hidden_size, embedding.dtype)
    tied = bool(original.config.tie_word_embeddings) and torch.allclose(
        embedding, head * scale, rtol=1e-6, atol=0.0)
    ratio = (scale / new_scale) if tied else torch.ones((), dtype=embedding.dtype)
    out = {}
    for key, tensor in state.items():
        if key == _FINAL_NORM:
            out[key] = (tensor.float() / ratio.float() - 1.0).to(tensor.dtype)
        elif _is_norm(key):
            out[key] = (tensor.float() - 1.0).to(tensor.dtype)
        elif key != "lm_head.weight" or not tied:
            out[key] = tensor
    out[_EMBED] = embedding / new_scale
    if tied:
        out["lm_head.weight"] = out[_EMBED]
    values = original.config.to_dict()
    values.update(hidden_size=widths.hidden_size, intermediate_size=widths.intermediate_size,
                  num_attention_heads=widths.num_attention_heads,
                  num_key_value_heads=widths.num_key_value_heads, head_dim=widths.head_dim,
                  rms_norm_eps=widths.rms_norm_eps, tie_word_embeddings=tied)
    return load_like(type(original), type(original.config).from_dict(values), out, view)


def _is_norm(key: str) -> bool:
    """Gemma's RMSNorm gains: two per layer and the final one."""
    return key.endswith("layernorm.weight") or key == _FINAL_NORM


def _scale(hidden: int, dtype: torch.dtype) -> torch.Tensor:
    """Gemma's embedding multiplier, rounded to the weights' dtype as Gemma rounds it."""
    return torch.tensor(hidden ** 0.5).to(dtype)
