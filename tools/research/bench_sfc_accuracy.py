"""Accuracy of the sfc pass on `builtin:digits-cnn` (BatchNorm folded): top-1 on the 1000
held-out digits and agreement with the original's predictions, for fp32 and quantized
lowerings next to int8 direct convolution.

"int8 direct" is the pass's lossless mode (`bits=int16`), which equals the direct
convolution of int8 data (per-tensor scale) with int8 weights (per output channel) bit for
bit. Quantized rows calibrate on 256 training digits. Every conv the pass takes is lowered
(the first, 1 -> 16 channels, included).

    python -m ember.tools.research.bench_sfc_accuracy        (prints a markdown table)
"""

from __future__ import annotations

import numpy as np
import torch

from ember.compiler.config import ExampleSpec
from ember.compiler.data.mnist import load_mnist5k
from ember.compiler.models.digits import digits_cnn
from ember.passes import PassContext
from ember.passes.fold_bn import FoldBatchNorm
from ember.passes.sfc.lower import SFCLowering

ROWS = [  # label, sfc pass settings (None: no lowering)
    ("fp32 original", None),
    ("fp32 SFC-6(6x6) symbolic", {}),
    ("fp32 SFC-6(7x7) symbolic", {"algorithm": "sfc6_7x7"}),
    ("fp32 Winograd F(4x4)", {"algorithm": "winograd_4x4"}),
    ("int8 direct (lossless int16 mode)", {"bits": "int16"}),
    ("int8 SFC-6(6x6)", {"bits": 8}),
    ("int8 SFC-6(7x7)", {"algorithm": "sfc6_7x7", "bits": 8}),
    ("int8 SFC-4(4x4)", {"algorithm": "sfc4_4x4", "bits": 8}),
    ("int8 Winograd F(2x2)", {"algorithm": "winograd_2x2", "bits": 8}),
    ("int8 Winograd F(4x4)", {"algorithm": "winograd_4x4", "bits": 8}),
    ("int6 SFC-6(6x6)", {"bits": 6}),
    ("int4 SFC-6(6x6)", {"bits": 4}),
]


def main() -> str:
    train, test = load_mnist5k()
    loaded = digits_cnn("builtin:digits-cnn", ExampleSpec(), seed=0)
    ctx = PassContext(example_inputs={"image": torch.from_numpy(loaded.inputs["image"])},
                      calibration=[{"image": torch.from_numpy(train.images[:256])}])
    base = FoldBatchNorm()(loaded.module.eval(), ctx).model
    images = torch.from_numpy(test.images)
    original = _predict(base, images)
    lines = ["| model | top-1 (1000 held-out) | same prediction as fp32 original |",
             "|---|---:|---:|"]
    for label, settings in ROWS:
        model = base if settings is None else SFCLowering(**settings)(base, ctx).model
        predicted = _predict(model, images)
        top1 = float((predicted == test.labels).mean())
        same = float((predicted == original).mean())
        lines.append(f"| {label} | {top1:.3f} | {same:.3f} |")
    return "\n".join(lines)


def _predict(model: torch.nn.Module, images: torch.Tensor) -> np.ndarray:
    with torch.no_grad():
        return model(images).argmax(1).numpy()


if __name__ == "__main__":
    print(main())
