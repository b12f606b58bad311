"""Building a stock transformers model from a config and a state dict, like another one."""

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
