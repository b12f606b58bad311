"""Task metrics, computed the same way for a candidate and its baseline.

Perplexity over fixed windows: the token stream is cut into non-overlapping windows of the
artifact's sequence length T; in each window the logits at position t score token t + 1, so
a window contributes T - 1 predictions:

    PPL = exp( sum_windows sum_{t<T-1} -log softmax(logits_t)[x_{t+1}] / (windows * (T - 1)) )

The evaluation slice is the second half of the corpus's tokens (the first half is reserved
for calibration and tuning data), from its start, up to `max_windows` windows.

Top-1: fraction of images whose argmax logit equals the label.

Agreement with the baseline: fraction of positions where the argmax over the last axis
agrees, and the mean cosine similarity of the output vectors over the last axis.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np


def log_softmax(logits: np.ndarray) -> np.ndarray:
    x = logits.astype(np.float64)
    x = x - x.max(axis=-1, keepdims=True)
    return x - np.log(np.exp(x).sum(axis=-1, keepdims=True))


def heldout_windows(tokens: np.ndarray, window: int, max_windows: int) -> np.ndarray:
    """(n, window) int64 windows from the second half of `tokens`."""
    tail = tokens[len(tokens) // 2:]
    n = min(max_windows, len(tail) // window)
    if n == 0:
        raise ValueError(f"the held-out half has {len(tail)} tokens, fewer than one window "
                         f"of {window}")
    return tail[: n * window].reshape(n, window).astype(np.int64)


def heldout_text_windows(corpus: str, tokenizer, window: int, max_windows: int) -> np.ndarray:
    """Held-out windows of a local corpus (compiler/data/datasets.py), tokenized without
    special tokens: what the prune and spike quality benchmarks score perplexity on."""
    from ember.compiler.data.datasets import text_corpus

    ids = tokenizer(text_corpus(corpus), add_special_tokens=False)["input_ids"]
    return heldout_windows(np.asarray(ids, np.int64), window, max_windows)


def perplexity(logits_of: Callable[[np.ndarray], np.ndarray], windows: np.ndarray) -> float:
    """`logits_of(ids (1, T)) -> (1, T, vocab)`; windows (n, T)."""
    nll, count = 0.0, 0
    for window in windows:
        logp = log_softmax(logits_of(window[None])[0])  # (T, vocab)
        targets = window[1:]
        nll -= float(logp[np.arange(len(targets)), targets].sum())
        count += len(targets)
    return float(np.exp(nll / count))


def top1(logits_of: Callable[[np.ndarray], np.ndarray], images: np.ndarray, labels: np.ndarray,
         batch: int) -> float:
    """Images are scored `batch` at a time (the artifact's fixed batch); a short last batch is
    padded with zeros and the padding's predictions are ignored."""
    correct = 0
    for start in range(0, len(images), batch):
        chunk = images[start:start + batch]
        padded = np.zeros((batch, *images.shape[1:]), images.dtype)
        padded[: len(chunk)] = chunk
        predicted = logits_of(padded)[: len(chunk)].argmax(-1)
        correct += int((predicted == labels[start:start + batch]).sum())
    return correct / len(images)


def agreement(candidate: np.ndarray, baseline: np.ndarray) -> tuple[float | None, float]:
    """(top-1 agreement over the last axis or None for non-float outputs, mean cosine)."""
    a = candidate.astype(np.float64).reshape(-1, candidate.shape[-1] if candidate.ndim else 1)
    b = baseline.astype(np.float64).reshape(a.shape)
    top = float((a.argmax(-1) == b.argmax(-1)).mean()) if np.issubdtype(
        candidate.dtype, np.floating) and candidate.ndim else None
    norms = np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1)
    cos = np.where(norms > 0, (a * b).sum(-1) / np.where(norms > 0, norms, 1.0), 1.0)
    return top, float(cos.mean())
