"""Where the Triton kernels can run, and which path a call takes.

A call runs Triton when its tensors are on CUDA and Triton is installed, or when the caller
asks for Triton explicitly on CPU tensors under the interpreter (TRITON_INTERPRET=1).
"""

from __future__ import annotations

import importlib.util
import os

import torch

BACKENDS = ("auto", "triton", "reference")


def gpu_available() -> tuple[bool, str]:
    """(True, device name) when a CUDA device and Triton are usable, else (False, why not)."""
    if not torch.cuda.is_available():
        return False, "no CUDA device is visible to torch"
    if importlib.util.find_spec("triton") is None:
        return False, "triton is not installed (pip install triton)"
    return True, torch.cuda.get_device_name()


def interpreting() -> bool:
    """True when Triton runs kernels in its CPU interpreter."""
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


def use_triton(backend: str, *tensors: torch.Tensor) -> bool:
    """Resolve `backend` for tensors: "auto" means Triton when they are on CUDA (or when
    Triton's interpreter is on), the reference otherwise."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if backend == "reference":
        return False
    on_cuda = all(t.is_cuda for t in tensors)
    if backend == "auto":
        runnable = on_cuda or interpreting()
        return runnable and importlib.util.find_spec("triton") is not None
    if not on_cuda and not interpreting():
        raise ValueError("backend='triton' on CPU tensors needs TRITON_INTERPRET=1")
    return True
