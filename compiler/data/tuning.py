"""Tuning and calibration data for passes, from local corpora only (nothing is downloaded).

The compiler hands a `LocalData` to the passes in their context (PassContext.data); passes
ask it by spec:
- `text:NAME` (pydoc, jargon, kjv, or a file path; compiler/data/datasets.py) is tokenized
  with the model's tokenizer and its **first half** cut into windows of `seq` tokens: `ember
  bench --data text:NAME` scores perplexity on the second half, so tuning never sees the
  evaluation slice.
- `digits` is the MNIST-5k training split the digits CNN was trained on (the held-out 1,000
  images are the evaluation split).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from ember.errors import ConfigError


@dataclass(frozen=True)
class LocalData:
    """The passes' data source (passes/contract.py, TuningData) for one model."""

    tokenizer: Any = None  # the model's, for text; None for models without one

    def text_windows(self, spec: str, seq: int) -> torch.Tensor:
        """(n, seq) int64 windows from the first half of the corpus's tokens."""
        from ember.compiler.data.datasets import text_corpus

        if self.tokenizer is None:
            raise ConfigError(f"data {spec}: the model has no tokenizer to read text with")
        ids = self.tokenizer(text_corpus(spec[len("text:"):]),
                             add_special_tokens=False)["input_ids"]
        half = torch.tensor(ids[: len(ids) // 2], dtype=torch.int64)
        n = len(half) // seq
        if n == 0:
            raise ConfigError(f"data {spec}: the tuning half has {len(half)} tokens, fewer "
                              f"than one window of {seq}")
        return half[: n * seq].reshape(n, seq)

    def digit_batches(self, batch: int, seed: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """The MNIST-5k training split in shuffled batches of (images, labels)."""
        from ember.compiler.data.mnist import load_mnist5k

        train, _ = load_mnist5k()
        images, labels = torch.from_numpy(train.images), torch.from_numpy(train.labels)
        order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))
        return [(images[idx], labels[idx]) for idx in order.split(batch)]
