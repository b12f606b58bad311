"""ONNX Runtime (CPU execution provider) engine for `model.onnx` artifacts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ember.errors import ArtifactError
from ember.runtime.manifest import payload_path

MAX_THREADS = 1024  # ONNX Runtime builds its pool eagerly: a huge count crashes the process


class OnnxRuntimeEngine:
    thread_safe = True  # InferenceSession.run is safe to call concurrently

    def __init__(self, folder: Path, manifest: dict[str, Any], *, threads: int | None = None,
                 device: str | None = None) -> None:  # device: runs on the host CPU
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        threads = threads if threads is not None else manifest["target_info"].get("threads", 0)
        if type(threads) is not int or not 0 <= threads <= MAX_THREADS:
            raise ArtifactError(f"{folder}: threads {threads!r} is not a count of 0 (all cores) "
                                f"to {MAX_THREADS}")
        options.intra_op_num_threads = threads
        options.log_severity_level = 4  # errors surface as exceptions
        self.session = ort.InferenceSession(
            str(payload_path(folder, manifest, manifest["target_info"].get("model_file"))), options,
            providers=["CPUExecutionProvider"],
        )
        self.input_names = [s["name"] for s in manifest["signature"]["inputs"]]
        self.output_names = [s["name"] for s in manifest["signature"]["outputs"]]
        self.output_dtypes = [np.dtype(s["dtype"]) for s in manifest["signature"]["outputs"]]

    def run(self, inputs: list[np.ndarray]) -> list[np.ndarray]:
        feeds = dict(zip(self.input_names, inputs, strict=True))
        outputs = self.session.run(self.output_names, feeds)
        return [as_declared(x, d) for x, d in zip(outputs, self.output_dtypes, strict=True)]


def as_declared(array: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """ONNX Runtime hands float8 and 4-bit outputs over as their raw bytes (uint8)."""
    if array.dtype != dtype and array.dtype.kind == "u" and array.dtype.itemsize == \
            dtype.itemsize:
        return array.view(dtype)
    return array
