"""Compilation targets. `TARGETS` is the literal registry, name -> target object.

Importing this package is light: each target imports its engine inside `compile`.
"""

from __future__ import annotations

from ember.targets.base import Payload, Target
from ember.targets.cpu import TARGET as CPU
from ember.targets.fpga.target import TARGET as FPGA
from ember.targets.gpu.target import TARGET as GPU
from ember.targets.null import TARGET as NULL
from ember.targets.tvm.target import TARGET as TVM

TARGETS: dict[str, Target] = {
    "null": NULL,
    "cpu": CPU,
    "tvm": TVM,
    "gpu": GPU,
    "fpga": FPGA,
}

__all__ = ["TARGETS", "Payload", "Target"]
