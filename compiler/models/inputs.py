"""Seeded example inputs for tensor and token models."""

from __future__ import annotations

import inspect
import math
import os

import numpy as np
from torch import nn

from ember.errors import ConfigError

#: an example input may take this fraction of the available memory: the model's activations,
#: the reference run and the verification run all scale with it
EXAMPLE_MEMORY_SHARE = 1 / 16


def random_tokens(vocab_size: int, tokens: int, seed: int, batch: int = 1) -> np.ndarray:
    """Token ids uniform in [0, vocab_size), shape (batch, tokens), int64."""
    check_example_size([batch, tokens], 8)
    return np.random.default_rng(seed).integers(0, vocab_size, (batch, tokens), dtype=np.int64)


def random_tensor(shape: list[int], seed: int) -> np.ndarray:
    """Standard-normal float32 tensor of the given shape."""
    check_example_size(shape, 4)
    return np.random.default_rng(seed).standard_normal(shape, dtype=np.float32)


def check_example_size(shape: list[int], itemsize: int) -> None:
    """ConfigError, before anything is allocated, for an example input larger than
    EXAMPLE_MEMORY_SHARE of this machine's available memory."""
    needed = math.prod(shape) * itemsize
    available = available_memory()
    if needed > available * EXAMPLE_MEMORY_SHARE:
        raise ConfigError(f"example shape {list(shape)} needs {needed / 2**30:.3g} GiB per "
                          f"input; this machine has {available / 2**30:.3g} GiB available, and "
                          f"the compile needs many times the input (at most "
                          f"{available * EXAMPLE_MEMORY_SHARE / 2**30:.3g} GiB)")


def available_memory() -> int:
    """Bytes of memory available now (Linux MemAvailable; else free physical pages)."""
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def first_argument_name(module: nn.Module, default: str = "input") -> str:
    """The name of `module.forward`'s first parameter: the exported input's name."""
    params = [
        p for p in inspect.signature(module.forward).parameters.values()
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
    ]
    return params[0].name if params else default
