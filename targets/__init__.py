"""Compilation targets. `TARGETS` is the literal registry, name -> target object.

Every target compiles one ModuleSource (base.py: the exported ONNX and the torch module after
passes). Small targets are one module (null.py, cpu.py); a target that outgrew one file is a
sub-package whose target.py holds its TARGET (tvm/, fpga/, gpu/). module_reader.py reads the
torch model for the module-reading targets (fpga, gpu); opcount/ counts operations for every
artifact; onnx_io.py and host.py are shared helpers; onnxruntime_int8.py writes 8-bit
products that ONNX Runtime computes exactly on CPUs without VNNI.

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
