"""What a model spec resolves to: the module, its reference inputs and how to export it."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from ember.runtime.compare import Tolerance

if TYPE_CHECKING:
    import onnx
    from torch import nn

#: fp32 exact rewrites on small graphs; deep transformer stacks are loosened to 1e-4
EXACT_FP32 = Tolerance(atol=1e-5, rtol=1e-5)
EXACT_FP32_DEEP = Tolerance(atol=1e-4, rtol=1e-4)


@dataclass
class LoadedModel:
    spec: str
    kind: str  # "vision" | "language" | "tensor" | "onnx"
    inputs: dict[str, np.ndarray]  # reference inputs, in the model's argument order
    output_names: list[str]
    module: nn.Module | None = None  # None for onnx: models (compile-only)
    onnx_model: onnx.ModelProto | None = None
    dynamic_dims: dict[str, dict[int, str]] = field(default_factory=dict)
    tolerance: Tolerance = EXACT_FP32
    description: str = ""
    info: dict[str, Any] = field(default_factory=dict)
    #: inputs from the model's training data, for calibrating integer targets (None: none)
    calibration: dict[str, np.ndarray] | None = None
    #: inputs to trace the export with, where the reference inputs have a size torch.export
    #: specializes (an empty KV cache); None: the reference inputs
    export_inputs: dict[str, np.ndarray] | None = None

    def weight_sha256(self) -> str:
        """A hash of the weights the model was loaded with (state_dict order, raw bytes)."""
        digest = hashlib.sha256()
        if self.module is not None:
            for name, tensor in self.module.state_dict().items():
                digest.update(name.encode())
                digest.update(tensor.detach().contiguous().cpu().numpy().tobytes())
        elif self.onnx_model is not None:
            digest.update(self.onnx_model.SerializeToString())
        return digest.hexdigest()

    def parameter_count(self) -> int:
        if self.module is not None:
            return sum(p.numel() for p in self.module.parameters())
        from onnx import numpy_helper

        return int(sum(numpy_helper.to_array(t).size for t in self.onnx_model.graph.initializer))
