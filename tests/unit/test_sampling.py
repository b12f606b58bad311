"""Choosing the next token (runtime/sampling.py): greedy is the first argmax; sampling draws
from softmax(logits / temperature) restricted to the top-k and the top-p nucleus."""

from __future__ import annotations

import numpy as np
import pytest

from ember.errors import InputError
from ember.runtime.sampling import Sampling, next_token

PROBS = np.array([0.5, 0.3, 0.15, 0.05])
LOGITS = np.log(PROBS).astype(np.float32)


def _frequencies(sampling: Sampling, draws: int = 8000) -> np.ndarray:
    rng = np.random.default_rng(0)
    counts = np.bincount([next_token(LOGITS, sampling, rng) for _ in range(draws)], minlength=4)
    return counts / draws


def test_greedy_takes_the_first_largest_logit():
    assert next_token(np.array([1.0, 3.0, 3.0, 0.0]), Sampling(), np.random.default_rng()) == 1


def test_sampling_follows_the_softmax():
    assert np.allclose(_frequencies(Sampling(do_sample=True)), PROBS, atol=0.025)


def test_temperature_sharpens_and_flattens():
    sharp = PROBS ** 2 / (PROBS ** 2).sum()  # temperature 0.5 squares the probabilities
    assert np.allclose(_frequencies(Sampling(do_sample=True, temperature=0.5)), sharp,
                       atol=0.025)


def test_top_k_and_top_p_cut_the_tail_and_renormalize():
    top2 = _frequencies(Sampling(do_sample=True, top_k=2))
    assert top2[2:].sum() == 0 and np.allclose(top2[:2], [0.625, 0.375], atol=0.025)
    nucleus = _frequencies(Sampling(do_sample=True, top_p=0.8))  # 0.5 + 0.3 reaches 0.8
    assert nucleus[2:].sum() == 0 and np.allclose(nucleus[:2], [0.625, 0.375], atol=0.025)
    assert _frequencies(Sampling(do_sample=True, top_p=0.4), 200)[0] == 1.0


@pytest.mark.parametrize("settings", [{"temperature": 0}, {"temperature": -1.0},
                                      {"top_k": -1}, {"top_k": 1.5}, {"top_p": 0},
                                      {"top_p": 1.5}])
def test_bad_settings_are_input_errors(settings):
    with pytest.raises(InputError):
        Sampling(do_sample=True, **settings)
