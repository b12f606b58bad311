"""ONNX Runtime (CPU execution provider) engine for `model.onnx` artifacts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ember.errors import ArtifactError
from ember.runtime.engines import shared_cores
from ember.runtime.manifest import payload_path

MAX_THREADS = 1024  # ONNX Runtime builds its pool eagerly: a huge count crashes the process


class OnnxRuntimeEngine:
    thread_safe = True  # InferenceSession.run is safe to call concurrently

    def __init__(self, folder: Path, manifest: dict[str, Any], *, threads: int | None = None,
                 device: str | None = None) -> None:  # device: runs on the host CPU
        threads = threads if threads is not None else manifest["target_info"].get("threads", 0)
        if type(threads) is not int or not 0 <= threads <= MAX_THREADS:
            raise ArtifactError(f"{folder}: threads {threads!r} is not a count of 0 (all cores) "
                                f"to {MAX_THREADS}")
        self.model_path = str(payload_path(folder, manifest,
                                           manifest["target_info"].get("model_file")))
        self.threads = threads
        self.session = self._open(stop_spinning=shared_cores.tvm_in_process())
        shared_cores.onnxruntime_opened(self)
        self.input_names = [s["name"] for s in manifest["signature"]["inputs"]]
        self.output_names = [s["name"] for s in manifest["signature"]["outputs"]]
        self.output_dtypes = [np.dtype(s["dtype"]) for s in manifest["signature"]["outputs"]]

    def _open(self, stop_spinning: bool) -> Any:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = self.threads
        options.log_severity_level = 4  # errors surface as exceptions
        if stop_spinning:  # a TVM engine shares the process (runtime/engines/shared_cores.py)
            options.add_session_config_entry(shared_cores.STOP_SPINNING, "1")
        return ort.InferenceSession(self.model_path, options, providers=["CPUExecutionProvider"])

    def stop_spinning(self) -> None:
        """Reopen the session with its workers stopping when a call returns (a running call
        keeps the session it started with)."""
        self.session = self._open(stop_spinning=True)

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
