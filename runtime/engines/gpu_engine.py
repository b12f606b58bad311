"""`gpu` artifacts on a CUDA device.

engine "torch" (the default): the program (gpu/program.json + gpu/weights.safetensors) runs
through PyTorch with ember's Triton kernels (runtime/gpu/), in the artifact's dtype, inside
CUDA graphs. engine "onnxruntime": model.onnx on ONNX Runtime's CUDA execution provider
(needs onnxruntime-gpu). Without a usable CUDA device, opening the artifact fails with one
line (exit code 2), except for compile-time verification on a CPU-only machine, which asks
for device "cpu": the program in fp32 through the kernels' references.
"""

from __future__ import annotations

import importlib.util
import threading
from pathlib import Path
from typing import Any

import numpy as np

from ember.errors import ArtifactError, UserError
from ember.runtime.manifest import payload_path


class GpuUnavailable(UserError):
    """The artifact needs a CUDA device (or onnxruntime-gpu) this machine does not have."""


def gpu_status() -> tuple[bool, str]:
    """(usable, device name or why not) for the torch engine."""
    if importlib.util.find_spec("torch") is None:
        return False, "torch is not installed"
    from ember.runtime.gpu.device import gpu_available

    return gpu_available()


class GpuEngine:
    thread_safe = True  # CUDA graphs replay into shared static buffers: `run` holds a lock

    def __init__(self, folder: Path, manifest: dict[str, Any], *, threads: int | None = None,
                 device: str | None = None) -> None:  # threads: the GPU needs none
        info = manifest["target_info"]
        # device "cpu" (verification without a GPU) checks the program whichever engine runs
        self.engine = "torch" if device == "cpu" else info.get("engine", "torch")
        if self.engine == "onnxruntime":
            self.session = _cuda_session(payload_path(folder, manifest, info["model_file"]))
            self.input_names = [s["name"] for s in manifest["signature"]["inputs"]]
            return
        device = device or "cuda"
        if device == "cuda":
            usable, why = gpu_status()
            if not usable:
                raise GpuUnavailable(f"{folder}: the gpu target is not available here ({why}); "
                                     f"run this artifact on a machine with an NVIDIA GPU")
        from ember.runtime.gpu.program.load import ProgramRunner, load_program

        try:
            module = load_program(folder, device, info.get("dtype", "fp16"))
        except (KeyError, ValueError, OSError) as exc:
            raise ArtifactError(f"{folder}: the gpu program does not load: {exc}") from None
        self.device = device
        self.runner = ProgramRunner(module, device, bool(info.get("cuda_graphs", True)))
        self.lock = threading.Lock()

    def run(self, inputs: list[np.ndarray]) -> list[np.ndarray]:
        if self.engine == "onnxruntime":
            return self.session.run(None, dict(zip(self.input_names, inputs, strict=True)))
        import torch

        # one call at a time: a replay writes the graph's static input and output buffers,
        # which stay shared until the result is copied off the device
        with self.lock:
            out = self.runner(torch.from_numpy(np.ascontiguousarray(inputs[0])))
            if self.device == "cuda":
                torch.cuda.synchronize()
            return [out.detach().float().cpu().numpy()]


def _cuda_session(path: Path) -> Any:
    try:
        import onnxruntime as ort
    except ImportError:
        raise GpuUnavailable("onnxruntime is not installed") from None
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        raise GpuUnavailable("the gpu target's onnxruntime engine needs onnxruntime-gpu "
                             "(ONNX Runtime's CUDA execution provider is not installed here)")
    options = ort.SessionOptions()
    options.log_severity_level = 4
    session = ort.InferenceSession(str(path), options,
                                   providers=["CUDAExecutionProvider", "CPUExecutionProvider"])
    if session.get_providers()[0] != "CUDAExecutionProvider":
        raise GpuUnavailable("ONNX Runtime could not start its CUDA execution provider")
    return session
