"""`gpu`: the model after passes as a program for CUDA (runtime/engines/gpu_engine.py), plus
the exported ONNX for ONNX Runtime's CUDA execution provider.

compile: build the program from the torch model (targets/gpu/program.py) -> gpu/program.json
+ gpu/weights.safetensors, and model.onnx. Compiling needs no GPU. Verification runs the
program on CUDA in its dtype where a GPU is usable; elsewhere on the CPU in fp32 through the
kernels' references (recorded as the verification's device), which checks the program (its
graph, permutations, integer codes and packing) but not the kernels; the kernels have their
own checks (tests/gpu, tools/gpu_check/main.py).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ember.errors import UnsupportedModelError
from ember.progress import Progress
from ember.targets.base import ModuleSource, Payload, check_known_options
from ember.targets.onnx_io import save_onnx

PROGRAM = "gpu/program.json"
WEIGHTS = "gpu/weights.safetensors"
DTYPES = ("fp16", "bf16", "fp32")
ENGINES = ("torch", "onnxruntime")
#: verification floor per dtype: atol as a fraction of the reference's largest magnitude, rtol.
#: Measured with the programs run in that dtype on the CPU against their fp32 path: digits +
#: SFC 0.02% (fp16) and 0.29% (bf16) of the largest logit; the PAT-pruned SmolLM2 (128
#: tokens) 1.7% and 20% (bf16 top-1 agreement 0.875: bf16 is lossy for it; fp16 is the
#: default). Not yet measured on a GPU.
PRECISION = {"fp16": (3e-2, 1e-2), "bf16": (2.5e-1, 5e-2)}


class GpuTarget:
    name = "gpu"
    description = "CUDA: PyTorch + ember's Triton kernels in CUDA graphs (gpu/), model.onnx"
    executable = True
    options = {"dtype": str, "engine": str, "cuda_graphs": bool}

    def available(self) -> tuple[bool, str]:
        """Compiling needs torch only; running needs a GPU (checked when an artifact opens)."""
        from ember.runtime.engines.gpu_engine import gpu_status

        usable, why = gpu_status()
        return True, why if usable else f"compiles here; runs only with a GPU ({why})"

    def check_options(self, options: dict[str, Any]) -> None:
        check_known_options(self.name, options, self.options)
        if options.get("dtype", "fp16") not in DTYPES:
            raise ValueError(f"target option 'dtype' must be one of {', '.join(DTYPES)}")
        if options.get("engine", "torch") not in ENGINES:
            raise ValueError(f"target option 'engine' must be one of {', '.join(ENGINES)}")

    def support(self, source: ModuleSource) -> str | None:
        if source.module is None:
            return "gpu: the target builds its program from a torch model; an onnx: model " \
                "has none"
        try:
            _program(source)
        except UnsupportedModelError as exc:
            return str(exc)
        return None

    def compile(self, source: ModuleSource, out_dir: Path, options: dict[str, Any],
                progress: Progress) -> Payload:
        from ember.runtime.engines.gpu_engine import gpu_status

        dtype, engine = options.get("dtype", "fp16"), options.get("engine", "torch")
        if source.module is None:
            raise UnsupportedModelError("gpu: the target builds its program from a torch model; "
                                        "an onnx: model has none (use the cpu target)")
        with progress.stage("building the gpu program"):
            program, tensors = _program(source)
        files = _write(program, tensors, out_dir)
        files += save_onnx(source.onnx_model, out_dir / "model.onnx")
        on_gpu = gpu_status()[0] if engine == "torch" else _onnxruntime_cuda()
        info = {"engine": engine, "dtype": dtype, "cuda_graphs": options.get("cuda_graphs", True),
                "program": PROGRAM, "weights": WEIGHTS, "model_file": "model.onnx",
                "program_kind": program["kind"]}
        return Payload(format="gpu", files=files, info=info,
                       verify_device="cuda" if on_gpu else "cpu",
                       precision=PRECISION.get(dtype) if engine == "torch" else None)


def _onnxruntime_cuda() -> bool:
    import onnxruntime

    return "CUDAExecutionProvider" in onnxruntime.get_available_providers()


def _program(source: ModuleSource) -> tuple[dict[str, Any], dict[str, Any]]:
    from ember.targets.gpu.program import build_program

    example = next(iter(source.inputs.values()))
    try:
        return build_program(source.module, example)
    except ValueError as exc:  # UnsupportedModule, or a value the program cannot hold
        raise UnsupportedModelError(f"gpu: {exc}") from None


def _write(program: dict[str, Any], tensors: dict[str, Any], out_dir: Path) -> list[str]:
    from safetensors.torch import save_file

    (out_dir / "gpu").mkdir(parents=True, exist_ok=True)
    (out_dir / PROGRAM).write_text(json.dumps(program, indent=1))
    save_file({k: v.contiguous().clone() for k, v in tensors.items()}, str(out_dir / WEIGHTS))
    return [PROGRAM, WEIGHTS]


TARGET = GpuTarget()
