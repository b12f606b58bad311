"""Seeded random-weight models for tests: a small CNN and a two-layer Llama."""

from __future__ import annotations

import torch
from torch import nn

from ember.compiler.config import ExampleSpec
from ember.compiler.models.inputs import random_tensor
from ember.compiler.models.language import CausalLMLogits, language_model
from ember.compiler.models.loaded import LoadedModel
from ember.errors import ConfigError


class TinyCNN(nn.Module):
    """Conv-BN-ReLU x3 with pooling and a linear head; 3x16x16 images -> 10 logits."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
            nn.Conv2d(8, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(16, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU(),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        )
        self.head = nn.Linear(16, 10)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(image))


def _randomize_batchnorm(model: nn.Module, generator: torch.Generator) -> None:
    """Non-trivial running statistics, so folding BN actually changes weights."""
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            n = module.num_features
            module.running_mean.copy_(torch.randn(n, generator=generator) * 0.5)
            module.running_var.copy_(torch.rand(n, generator=generator) + 0.5)
            module.weight.data.copy_(torch.rand(n, generator=generator) + 0.5)
            module.bias.data.copy_(torch.randn(n, generator=generator) * 0.1)


@torch.no_grad()
def tiny_cnn(spec: str, example: ExampleSpec, seed: int) -> LoadedModel:
    if example.tokens is not None:
        raise ConfigError(f"{spec} takes images: give example: {{shape: [N, 3, H, W]}}")
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = TinyCNN()
    _randomize_batchnorm(model, generator)
    shape = example.shape or [1, 3, 16, 16]
    if len(shape) != 4 or shape[1] != 3:
        raise ConfigError(f"{spec} takes (N, 3, H, W) images, got shape {shape}")
    return LoadedModel(
        spec=spec, kind="vision", module=model.eval(), inputs={"image": random_tensor(shape, seed)},
        output_names=["logits"], description="tiny CNN, seeded random weights (tests)",
    )


def tiny_llama(spec: str, example: ExampleSpec, seed: int) -> LoadedModel:
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=256, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
        tie_word_embeddings=True,
    )
    torch.manual_seed(seed)
    lm = LlamaForCausalLM(config).eval()
    return language_model(
        spec, CausalLMLogits(lm), config.vocab_size, example, seed, default_tokens=16,
        description="tiny Llama (2 layers, GQA 4/2 heads), seeded random weights (tests)",
    )
