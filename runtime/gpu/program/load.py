"""Loading a `gpu` program (gpu/program.json + gpu/weights.safetensors) onto a device, and
running it with a CUDA graph where the device is a GPU.

A program runs on a CUDA device in the artifact's dtype (fp16 by default, bf16 or fp32 by
target option), or, for verification on a machine without one, on the CPU in fp32 through the
kernels' references ("reference" mode): the same program, the same tensors, the same integer
codes, so a CPU-only compile still checks everything but the kernels themselves.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from ember.runtime.gpu.cuda_graph import GraphedCall

DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}
PROGRAM = "gpu/program.json"
WEIGHTS = "gpu/weights.safetensors"


def load_program(folder: Path, device: str, dtype: str) -> torch.nn.Module:
    """The program's executor on `device` ("cuda" in `dtype`, or "cpu": fp32 references)."""
    from safetensors.torch import load_file

    program = json.loads((folder / PROGRAM).read_text())
    reference = device == "cpu"
    torch_dtype = torch.float32 if reference else DTYPES[dtype]
    tensors = load_file(str(folder / WEIGHTS), device=device)
    return executor(program, tensors, torch_dtype, reference)


def executor(program: dict[str, Any], tensors: dict[str, torch.Tensor], dtype: torch.dtype,
             reference: bool) -> torch.nn.Module:
    if program.get("kind") == "graph":
        from ember.runtime.gpu.program.graph import GraphProgram

        return GraphProgram(program, tensors, dtype, reference)
    if program.get("kind") == "llama":
        from ember.runtime.gpu.program.llama import LlamaProgram

        return LlamaProgram(program, tensors, dtype, reference)
    raise ValueError(f"unknown gpu program kind {program.get('kind')!r}")


class ProgramRunner:
    """Calls an executor on one input tensor, inside a CUDA graph when asked and on CUDA (one
    graph per input shape, captured on first use after warm-up, which is also when the
    kernels pick their block shapes). The graphs share one memory pool, so graphs of several
    sequence lengths do not each keep their own activations."""

    def __init__(self, module: torch.nn.Module, device: str, cuda_graphs: bool) -> None:
        self.module, self.device = module, device
        self.graphs: dict[tuple, GraphedCall] | None = {} if cuda_graphs and device == "cuda" \
            else None
        self.pool = torch.cuda.graph_pool_handle() if self.graphs is not None else None

    @torch.inference_mode()
    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.device)
        if self.graphs is None:
            return self.module(x)
        key = (tuple(x.shape), x.dtype)
        if key not in self.graphs:
            self.graphs[key] = GraphedCall(self.module, x, self.pool)
        return self.graphs[key](x)
