"""Engines run one artifact format each. An engine takes validated numpy inputs in signature
order and returns the outputs in signature order. Engines import their runtime lazily."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from ember.errors import ArtifactError


class Engine(Protocol):
    #: True when `run` may be called from several threads at once
    thread_safe: bool

    def run(self, inputs: list[np.ndarray]) -> list[np.ndarray]: ...


#: format -> (module, class) of its engine; imported only when an artifact of that format opens
ENGINES: dict[str, tuple[str, str]] = {
    "onnx": ("ember.runtime.engines.onnxruntime_engine", "OnnxRuntimeEngine"),
    "tvm": ("ember.runtime.engines.tvm_engine", "TvmEngine"),
    "fpga": ("ember.runtime.engines.fpga_engine", "FpgaEngine"),
    "gpu": ("ember.runtime.engines.gpu_engine", "GpuEngine"),
}


def open_engine(folder: Path, manifest: dict[str, Any], threads: int | None,
                device: str | None = None) -> Engine:
    """The engine for the artifact's format. `threads` matters to the CPU engines, `device` to
    `gpu` artifacts: "cuda" (default) or "cpu" (fp32 through the kernels' references, for
    verification)."""
    fmt = manifest.get("format")
    if fmt == "null":
        raise ArtifactError(f"{folder}: a null-target artifact is an op report; it cannot run")
    entry = ENGINES.get(fmt)  # the manifest schema made it a string
    if entry is None:
        raise ArtifactError(f"{folder}: unknown artifact format {fmt!r}")
    module, name = entry
    engine = getattr(importlib.import_module(module), name)
    return engine(folder, manifest, threads=threads, device=device)
