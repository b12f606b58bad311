"""Engines run one artifact format each. An engine takes validated numpy inputs in signature
order and returns the outputs in signature order. Engines import their runtime lazily."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

import numpy as np

from ember.errors import ArtifactError


class Engine(Protocol):
    #: True when `run` may be called from several threads at once
    thread_safe: bool

    def run(self, inputs: list[np.ndarray]) -> list[np.ndarray]: ...


def open_engine(folder: Path, manifest: dict[str, Any], threads: int | None,
                device: str | None = None) -> Engine:
    """The engine for the artifact's format. `device` matters to `gpu` artifacts only:
    "cuda" (default) or "cpu" (fp32 through the kernels' references, for verification)."""
    fmt = manifest.get("format")
    if fmt == "onnx":
        from ember.runtime.engines.onnxruntime_engine import OnnxRuntimeEngine

        return OnnxRuntimeEngine(folder, manifest, threads)
    if fmt == "tvm":
        from ember.runtime.engines.tvm_engine import TvmEngine

        return TvmEngine(folder, manifest, threads)
    if fmt == "fpga":
        from ember.runtime.engines.fpga_engine import FpgaEngine

        return FpgaEngine(folder, manifest, threads)
    if fmt == "gpu":
        from ember.runtime.engines.gpu_engine import GpuEngine

        return GpuEngine(folder, manifest, device)
    if fmt == "null":
        raise ArtifactError(f"{folder}: a null-target artifact is an op report; it cannot run")
    raise ArtifactError(f"{folder}: unknown artifact format {fmt!r}")
