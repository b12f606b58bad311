"""Choosing the next token from a step's logits: greedy, or sampled with temperature,
top-k and top-p (nucleus), as transformers' `generate` does.

Sampling: p = softmax(logits / temperature); keep the top_k most likely tokens (0: all);
of those, keep the smallest set, most likely first, whose probability sums to at least
top_p; renormalize and draw. Greedy takes the first index of the largest logit, like
`argmax` in torch and numpy.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ember.errors import InputError


@dataclass(frozen=True)
class Sampling:
    do_sample: bool = False
    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0

    def __post_init__(self) -> None:
        if not (isinstance(self.temperature, (int, float)) and self.temperature > 0):
            raise InputError(f"temperature must be a number > 0, got {self.temperature!r}")
        if not (isinstance(self.top_k, int) and self.top_k >= 0):
            raise InputError(f"top_k must be an integer >= 0, got {self.top_k!r}")
        if not (isinstance(self.top_p, (int, float)) and 0 < self.top_p <= 1):
            raise InputError(f"top_p must be in (0, 1], got {self.top_p!r}")


def next_token(logits: np.ndarray, sampling: Sampling, rng: np.random.Generator) -> int:
    if not sampling.do_sample:
        return int(np.argmax(logits))
    scaled = logits.astype(np.float64) / sampling.temperature
    order = np.argsort(-scaled, kind="stable")
    if sampling.top_k:
        order = order[:sampling.top_k]
    probs = np.exp(scaled[order] - scaled[order[0]])
    probs /= probs.sum()
    if sampling.top_p < 1:
        keep = int(np.searchsorted(np.cumsum(probs), sampling.top_p)) + 1
        order, probs = order[:keep], probs[:keep] / probs[:keep].sum()
    return int(order[rng.choice(len(order), p=probs)])
