"""Transformers models as single-tensor modules: token ids in, logits (or hidden states) out."""

from __future__ import annotations

import torch
from torch import nn

from ember.compiler.config import ExampleSpec
from ember.compiler.models.inputs import random_tokens
from ember.compiler.models.loaded import EXACT_FP32_DEEP, LoadedModel
from ember.errors import ConfigError


class CausalLMLogits(nn.Module):
    """Prefill of a causal LM without KV cache: (batch, seq) int64 ids -> (batch, seq, vocab)."""

    def __init__(self, lm: nn.Module) -> None:
        super().__init__()
        self.lm = lm

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.lm(input_ids=input_ids, use_cache=False).logits


class EncoderHidden(nn.Module):
    """An encoder's last hidden state: (batch, seq) ids -> (batch, seq, hidden)."""

    def __init__(self, encoder: nn.Module) -> None:
        super().__init__()
        self.encoder = encoder

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.encoder(input_ids=input_ids).last_hidden_state


def language_model(
    spec: str, wrapped: nn.Module, vocab_size: int, example: ExampleSpec, seed: int,
    default_tokens: int, description: str, output_name: str = "logits",
) -> LoadedModel:
    """A LoadedModel for a token model with `example.tokens` seeded random ids."""
    if example.shape is not None:
        raise ConfigError(f"{spec} is a language model: give example: {{tokens: N}}, not shape")
    tokens = example.tokens or default_tokens
    limit = _max_positions(wrapped)
    if limit is not None and tokens > limit:
        raise ConfigError(f"{spec}: tokens {tokens} is more than the model's "
                          f"max_position_embeddings {limit}")
    dynamic = {"input_ids": {1: "seq"}} if example.dynamic else {}
    return LoadedModel(
        spec=spec, kind="language", module=wrapped.eval(),
        inputs={"input_ids": random_tokens(vocab_size, tokens, seed)},
        output_names=[output_name], dynamic_dims=dynamic, tolerance=EXACT_FP32_DEEP,
        description=description, info={"tokens": tokens, "vocab_size": vocab_size},
    )


def _max_positions(wrapped: nn.Module) -> int | None:
    """The longest sequence the wrapped transformers model is configured for, if it says."""
    inner = getattr(wrapped, "lm", None) or getattr(wrapped, "encoder", None)
    limit = getattr(getattr(inner, "config", None), "max_position_embeddings", None)
    return limit if isinstance(limit, int) and limit > 0 else None
