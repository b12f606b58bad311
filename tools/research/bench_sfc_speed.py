"""Per-layer speed of SFC-lowered 3x3 convolutions against direct convolution.

ResNet-style layers (C -> C channels, 3x3, padding 1) at batch 1 and 8. Each row times, in
one run on this machine, ONNX Runtime's direct convolution of the same layer (the baseline)
and: PyTorch's direct convolution (oneDNN), TVM's direct convolution (ember's rules, tuning
off), and the `sfc` pass's lowering (SFC-6(6x6) symbolic by default) compiled by ember for
`cpu` (ONNX Runtime, standard ops) and for `tvm` with ember's SFC kernels, fused (one
kernel per layer) and split into three kernels. Each is timed alone, one after another (median of
REPEAT calls after warm-up; sessions are dropped before the next loads): short calls
alternating between engines measure their thread pools' spinning. The second table splits
the split kernels' time into input transform, slot GEMMs and output transform
(tools/research/bench_sfc_stages.py).

    python -m ember.tools.research.bench_sfc_speed OUT_DIR [ALGORITHM]

writes OUT_DIR/sfc_speed.md
"""

from __future__ import annotations

import gc
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import torch
from torch import nn

import ember
import ember.runtime as rt
from ember.compiler.export import export_onnx
from ember.passes import PassContext
from ember.passes.sfc.lower import SFCLowering
from ember.runtime.timing import time_calls
from ember.tools.research.bench_sfc_stages import stage_rows

LAYERS = [(64, 56), (128, 28), (256, 14), (512, 7)]  # channels, map size
BATCHES = (1, 8)
REPEAT = 30


def _layer(channels: int) -> nn.Conv2d:
    torch.manual_seed(0)
    return nn.Conv2d(channels, channels, 3, padding=1).eval()


def artifact(out: Path, name: str, module: nn.Module, x: np.ndarray, target: str,
             sfc: str | None = None) -> Path:
    """The layer compiled for `target` (once into OUT_DIR, reused after); `sfc` picks the
    tvm target's SFC kernels."""
    folder = out / (f"{name}-{target}" + (f"-{sfc}" if sfc else ""))
    if not folder.exists():
        path = out / f"{name}.onnx"
        if not path.exists():
            onnx.save(export_onnx(module, {"x": x}, ["y"], {}), str(path))
        options = {"tuning": False, "sfc": sfc or "fused"} if target == "tvm" else {}
        ember.compile({"model": f"onnx:{path}", "target": target, "target_options": options,
                       "output": str(folder)})
    return folder


def _artifact_ms(folder: Path, x: np.ndarray) -> float:
    run = rt.load(folder).run
    return _median_ms(lambda: run({"x": x}))  # the session goes with `run` on return


def _speed_rows(out: Path, algorithm: str, split: list) -> list[str]:
    """The speed table; appends (label, split-kernel artifact, shape) of each row to `split`."""
    torch.set_num_threads(2)
    names = ["PyTorch direct", "TVM direct", "SFC on cpu (ORT)", "SFC on tvm (fused)",
             "SFC on tvm (split)"]
    rows = ["| layer | ORT direct ms | " + " | ".join(names) + " |",
            "|---|---:|" + "---:|" * len(names)]
    for channels, size in LAYERS:
        conv = _layer(channels)
        lowered = SFCLowering(algorithm=algorithm)(conv, PassContext()).model
        for batch in BATCHES:
            x = np.random.default_rng(0).standard_normal((batch, channels, size, size),
                                                         dtype=np.float32)
            tag = f"c{channels}s{size}b{batch}"
            base = _artifact_ms(artifact(out, f"direct-{tag}", conv, x, "cpu"), x)
            x_torch = torch.from_numpy(x)
            name = f"{algorithm}-{tag}"
            times = [
                _median_ms(lambda conv=conv, x_torch=x_torch: _no_grad(conv, x_torch)),
                _artifact_ms(artifact(out, f"direct-{tag}", conv, x, "tvm"), x),
                _artifact_ms(artifact(out, name, lowered, x, "cpu"), x),
                _artifact_ms(artifact(out, name, lowered, x, "tvm", "fused"), x),
                _artifact_ms(artifact(out, name, lowered, x, "tvm", "split"), x),
            ]
            label = f"{channels}ch@{size}x{size}, batch {batch}"
            split.append((label, artifact(out, name, lowered, x, "tvm", "split"), x.shape))
            cells = " | ".join(f"{base / t:.2f}x" for t in times)
            rows.append(f"| {label} | {base:.2f} | {cells} |")
    return rows


def _median_ms(call: Callable[[], object]) -> float:
    result = time_calls(call, warmup=3, repeat=REPEAT)
    gc.collect()
    return result.median_ms


def _no_grad(module: nn.Module, x: torch.Tensor):
    with torch.no_grad():
        return module(x)


def main(out: Path, algorithm: str = "sfc6_6x6") -> str:
    out.mkdir(parents=True, exist_ok=True)
    split: list = []
    speed = _speed_rows(out, algorithm, split)
    text = ("ONNX Runtime direct time / variant time (each alone, median of calls):\n\n"
            + "\n".join(speed)
            + f"\n\nWhere the time goes ({algorithm}, `tvm` split kernels, called in sequence):"
            "\n\n" + "\n".join(stage_rows(split, algorithm)) + "\n")
    (out / "sfc_speed.md").write_text(text)
    return text


if __name__ == "__main__":
    if len(sys.argv) not in (2, 3):
        sys.exit("usage: python -m ember.tools.research.bench_sfc_speed OUT_DIR [ALGORITHM]")
    print(main(Path(sys.argv[1]), *sys.argv[2:]))
