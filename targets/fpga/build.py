"""The fpga target's compile steps, from the torch model to a checked C simulation."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ember.errors import UnsupportedModelError, VerificationError
from ember.progress import Progress
from ember.targets.fpga.devices import Device

#: g++ builds about 0.5M constants of weights.h a second (the SmolLM2-sized block: 4.7M in
#: 8-10 s, a 25 MB header); SmolLM2-135M's 135M would make a 700 MB header
MAX_WEIGHTS = 16_000_000
PROJECT = "fpga"
BINARY = "fpga/csim"
RESOURCES = "fpga/resources.json"
BUILD_TIMEOUT_S = 600


@dataclass
class Design:
    files: list[str]  # relative to the project folder
    info: dict[str, Any]  # manifest target_info
    golden: dict[str, np.ndarray]  # golden-model outputs on the reference inputs
    resources: dict[str, Any]


def build_design(source, dev: Device, lanes: int | None, calibration_images: int,
                 project: Path, progress: Progress) -> Design:
    from ember.runtime.engines.fpga_engine import run_csim
    from ember.targets.fpga.hls.project import write_project
    from ember.targets.fpga.resources.estimate import plan

    declined = _declined_up_front(source)
    if declined:
        raise UnsupportedModelError(declined)
    (name, example), = source.inputs.items()
    calibration, origin = _calibration(source, name, example, calibration_images)
    net, folded = _lowered(source.module, name, example, calibration, progress)
    with progress.stage(f"estimating resources on {dev.name}"):
        resources = plan(net, dev, lanes)
    files = write_project(net, resources["lanes"], project)
    with progress.stage("building the C simulation with g++"):
        binary = compile_csim(project)
    with progress.stage(f"C simulation vs the golden model ({len(calibration)} samples)"):
        x_q = net.quantize(calibration)
        spec = net.output_spec
        simulated = run_csim(binary, x_q, _dtype(spec.kind), spec.shape)
        expected = net.run(x_q)
    differing = int(np.sum(np.any((simulated != expected).reshape(len(x_q), -1), axis=1)))
    if differing:
        raise VerificationError(f"verification failed: the C simulation differs from the numpy "
                                f"golden model on {differing} of {len(x_q)} calibration images")
    info = {
        "binary": BINARY, "resources": RESOURCES, "device": dev.key,
        "io": {"input": name, "input_scale": float(net.input.scale[0]),
               "output_scales": [float(s) for s in spec.scale], "output_dtype": _dtype(spec.kind),
               "output_shape": list(spec.shape), "output_channel_axis": spec.channel_axis,
               "vocab": _vocab(net)},
        "layers": [{"name": layer.name, "op": layer.op} for layer in net.layers],
        "batchnorm_folded": folded,
        "calibration": {"images": len(calibration), "source": origin},
        "csim_vs_golden": {"images": len(x_q), "identical": True},
        "compiler": _compiler_version(),  # no build time: the manifest is deterministic
        "estimate": {k: resources[k] for k in ("kind", "latency_cycles", "interval_cycles",
                                                "latency_us", "throughput_per_s", "clock_mhz",
                                                "fits", "totals")},
    }
    golden = {source.output_names[0]: net.golden(example)}
    return Design(files, info, golden, resources)


def decline_reason(source) -> str | None:
    """Why the target would decline `source`, from its sizes and structure (the traced graph or
    the decoder blocks), without lowering; None when it would build it."""
    from ember.targets.module_reader import (
        UnsupportedModule,
        causal_lm,
        check_decoder,
        read_graph,
    )

    declined = _declined_up_front(source)
    if declined:
        return declined
    (name, example), = source.inputs.items()
    lm = causal_lm(source.module)
    try:
        check_decoder(lm) if lm is not None else read_graph(source.module, name, example)
    except UnsupportedModule as exc:
        return f"fpga: {exc}"
    return None


def _declined_up_front(source) -> str | None:
    if source.module is None:
        return "the fpga target lowers torch models; onnx: models have none"
    if len(source.inputs) != 1 or len(source.output_names) != 1:
        return "the fpga target takes models with one input and one output"
    weights = sum(p.numel() for p in source.module.parameters())
    if weights > MAX_WEIGHTS:
        return (f"fpga: the model holds {weights / 1e6:.1f}M weights; the C simulation "
                f"compiles designs of up to {MAX_WEIGHTS / 1e6:.0f}M (every weight is a "
                f"constant in weights.h): prune it or lower a smaller model")
    return None


def _lowered(module: Any, name: str, example: np.ndarray, calibration: np.ndarray,
             progress: Progress) -> tuple[Any, int]:
    """(integer network, BatchNorms folded): a Llama-style LM through its decoder lowering,
    anything else through the traced graph."""
    from ember.targets.fpga.lower.decoder import lower_causal_lm
    from ember.targets.fpga.lower.graph import lower
    from ember.targets.module_reader import causal_lm, read_graph

    lm = causal_lm(module)
    with progress.stage(f"lowering to integers (calibrating on {len(calibration)} samples)"):
        try:
            if lm is not None:
                return lower_causal_lm(lm, calibration), 0
            nodes, output, folded = read_graph(module, name, example)
            return lower(nodes, output, calibration), folded
        except (ValueError, OverflowError) as exc:
            raise UnsupportedModelError(f"fpga: {exc}") from None


def _vocab(net: Any) -> int | None:
    from ember.targets.fpga.integer.decoder import EmbeddingLayer

    tables = [layer.table for layer in net.layers if isinstance(layer, EmbeddingLayer)]
    return len(tables[0]) if tables else None


def _calibration(source, name: str, example: np.ndarray,
                 count: int) -> tuple[np.ndarray, str]:
    data = (source.calibration or {}).get(name)
    if data is not None and len(data):
        return np.asarray(data[:count]), "the model's training data"
    return np.asarray(example[:count]), "the reference inputs (no training data)"


def _dtype(kind: str) -> str:
    return "int32" if kind == "int32" else "int8"


def _compiler_version() -> str:
    done = subprocess.run(["g++", "--version"], capture_output=True, text=True, check=False)
    return done.stdout.splitlines()[0] if done.returncode == 0 and done.stdout else "g++"


def compile_csim(project: Path, timeout: int = BUILD_TIMEOUT_S) -> Path:
    """Build fpga/csim with the project's build script; a failure is an internal error."""
    done = subprocess.run(["sh", str(project / "build.sh"), "csim"], capture_output=True,
                          text=True, timeout=timeout, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"g++ failed on the generated design: {done.stderr.strip()[:400]}")
    return project / "csim"
