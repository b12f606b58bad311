"""Phi-3 as an exact Llama model, and back.

Phi-3 is the Llama block with two projections fused: `qkv_proj` stacks the rows of `q_proj`
(`H·hd`), `k_proj` and `v_proj` (`H_kv·hd` each), and `gate_up_proj` stacks `gate_proj` over
`up_proj` (`I` rows each; the MLP computes `up ⊙ act(gate)` from its two halves). Splitting
the rows gives the same function in `LlamaForCausalLM`; fusing them again gives a Phi-3 of
whatever widths the Llama model has.
"""

from __future__ import annotations

import torch
from transformers import LlamaForCausalLM, PreTrainedModel

from ember.errors import UnsupportedModelError
from ember.passes.decoders.loading import llama_config_like, load_like


def phi3_to_llama(lm: PreTrainedModel) -> LlamaForCausalLM:
    """The Llama model that computes what `lm` computes (rows split, nothing else changed)."""
    config = lm.config
    if getattr(config, "partial_rotary_factor", 1.0) != 1.0:
        raise UnsupportedModelError(
            f"phi3 with partial_rotary_factor {config.partial_rotary_factor} rotates only part "
            "of each head, which the Llama view (and so the pruning rules) does not")
    head_dim = _head_dim(config)
    view_config = llama_config_like(config, head_dim, attention_bias=False)
    q_rows = config.num_attention_heads * head_dim
    kv_rows = config.num_key_value_heads * head_dim
    state = {}
    for key, tensor in lm.state_dict().items():
        if key.endswith("self_attn.qkv_proj.weight"):
            prefix = key.removesuffix("qkv_proj.weight")
            q, k, v = tensor.split([q_rows, kv_rows, kv_rows])
            state.update({f"{prefix}q_proj.weight": q, f"{prefix}k_proj.weight": k,
                          f"{prefix}v_proj.weight": v})
        elif key.endswith("mlp.gate_up_proj.weight"):
            prefix = key.removesuffix("gate_up_proj.weight")
            gate, up = tensor.chunk(2)
            state.update({f"{prefix}gate_proj.weight": gate, f"{prefix}up_proj.weight": up})
        else:
            state[key] = tensor
    return load_like(LlamaForCausalLM, view_config, state, lm)


def llama_to_phi3(view: PreTrainedModel, original: PreTrainedModel) -> PreTrainedModel:
    """A model of `original`'s class with `view`'s widths and weights, projections fused."""
    widths = view.config
    values = original.config.to_dict()
    values.update(hidden_size=widths.hidden_size, intermediate_size=widths.intermediate_size,
                  num_attention_heads=widths.num_attention_heads,
                  num_key_value_heads=widths.num_key_value_heads,
                  rms_norm_eps=widths.rms_norm_eps,
                  tie_word_embeddings=widths.tie_word_embeddings)
    if widths.head_dim != widths.hidden_size // widths.num_attention_heads:
        values["head_dim"] = widths.head_dim  # Phi-3 reads it when present
    config = type(original.config).from_dict(values)
    state = {}
    parts = view.state_dict()
    for key, tensor in parts.items():
        if key.endswith("self_attn.q_proj.weight"):
            prefix = key.removesuffix("q_proj.weight")
            state[f"{prefix}qkv_proj.weight"] = torch.cat(
                [tensor, parts[f"{prefix}k_proj.weight"], parts[f"{prefix}v_proj.weight"]])
        elif key.endswith("mlp.gate_proj.weight"):
            prefix = key.removesuffix("gate_proj.weight")
            state[f"{prefix}gate_up_proj.weight"] = torch.cat(
                [tensor, parts[f"{prefix}up_proj.weight"]])
        elif not key.endswith(("k_proj.weight", "v_proj.weight", "up_proj.weight")):
            state[key] = tensor
    return load_like(type(original), config, state, view)


def _head_dim(config) -> int:
    return getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
