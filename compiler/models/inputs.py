"""Seeded example inputs for tensor and token models."""

from __future__ import annotations

import inspect

import numpy as np
from torch import nn


def random_tokens(vocab_size: int, tokens: int, seed: int, batch: int = 1) -> np.ndarray:
    """Token ids uniform in [0, vocab_size), shape (batch, tokens), int64."""
    return np.random.default_rng(seed).integers(0, vocab_size, (batch, tokens), dtype=np.int64)


def random_tensor(shape: list[int], seed: int) -> np.ndarray:
    """Standard-normal float32 tensor of the given shape."""
    return np.random.default_rng(seed).standard_normal(shape, dtype=np.float32)


def first_argument_name(module: nn.Module, default: str = "input") -> str:
    """The name of `module.forward`'s first parameter: the exported input's name."""
    params = [
        p for p in inspect.signature(module.forward).parameters.values()
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
    ]
    return params[0].name if params else default
