"""Building a stock transformers model from a config and a state dict, like another one, and
the Llama config a family's view is built from."""

from __future__ import annotations

import copy

import torch
from transformers import PretrainedConfig, PreTrainedModel


def load_like(model_class: type[PreTrainedModel], config: PretrainedConfig,
              state: dict[str, torch.Tensor], like: PreTrainedModel) -> PreTrainedModel:
    """`model_class(config)` in `like`'s dtype, device, mode and attention implementation,
    with `state` loaded strictly (what `from_pretrained` would load) and `like`'s generation
    config."""
    config._attn_implementation = like.config._attn_implementation
    weight = next(like.parameters())
    model = model_class(config).to(device=weight.device, dtype=weight.dtype)
    model.load_state_dict(state, strict=True)
    if getattr(like, "generation_config", None) is not None:
        model.generation_config = copy.deepcopy(like.generation_config)
    return model.train(like.training)


def llama_config_like(config: PretrainedConfig, head_dim: int, **overrides: object
                      ) -> PretrainedConfig:
    """A LlamaConfig with `config`'s widths, activation, positions, norm eps and special
    tokens; `overrides` set what the family does differently (biases, tying)."""
    from transformers import LlamaConfig

    values = dict(
        vocab_size=config.vocab_size, hidden_size=config.hidden_size,
        intermediate_size=config.intermediate_size, num_hidden_layers=config.num_hidden_layers,
        num_attention_heads=config.num_attention_heads,
        num_key_value_heads=config.num_key_value_heads, head_dim=head_dim,
        hidden_act=config.hidden_act, max_position_embeddings=config.max_position_embeddings,
        rms_norm_eps=config.rms_norm_eps, rope_parameters=config.rope_parameters,
        mlp_bias=False, tie_word_embeddings=config.tie_word_embeddings,
        bos_token_id=config.bos_token_id, eos_token_id=config.eos_token_id,
        pad_token_id=config.pad_token_id)
    return LlamaConfig(**{**values, **overrides})
