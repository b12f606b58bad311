"""Shared by the fpga tests: lower a small torch model, build its C simulation, and check it
against the numpy golden model."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from ember.runtime.engines.fpga_engine import run_csim
from ember.targets.fpga.build import compile_csim
from ember.targets.fpga.devices import device
from ember.targets.fpga.hls.project import write_project
from ember.targets.fpga.lower.graph import IntNetwork, lower
from ember.targets.fpga.resources.estimate import plan
from ember.targets.module_reader import capture

needs_gxx = pytest.mark.skipif(shutil.which("g++") is None,
                               reason="the fpga C simulation needs g++")


def images(shape: tuple[int, ...], count: int = 48, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((count, *shape)).astype(np.float32)


def lowered(model: torch.nn.Module, x: np.ndarray) -> IntNetwork:
    nodes, output = capture(model.eval(), torch.from_numpy(x[:1]))
    return lower(nodes, output, x)


def simulate(net: IntNetwork, x: np.ndarray, folder: Path, lanes: int | None = None
             ) -> tuple[np.ndarray, np.ndarray]:
    """(C simulation, golden model) integer outputs of inputs x (float images, token ids)."""
    resources = plan(net, device("zu9eg"), lanes)
    write_project(net, resources["lanes"], folder)
    binary = compile_csim(folder)
    x_q = net.quantize(x)
    spec = net.output_spec
    out = run_csim(binary, x_q, "int32" if spec.kind == "int32" else "int8", spec.shape)
    return out, net.run(x_q)
