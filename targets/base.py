"""The target contract: compile a model after passes (its torch module, its exported ONNX and
its reference inputs: one ModuleSource) into payload files in a directory.

A target never executes anything at compile time except what building needs; verification
runs the finished payload through the runtime (ember.runtime) like any user would.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from ember.progress import Progress

if TYPE_CHECKING:
    import onnx


@dataclass(frozen=True)
class Payload:
    format: str  # runtime engine: "onnx" | "tvm" | "fpga" | "gpu" | "null"
    files: list[str]  # relative to the artifact directory
    info: dict[str, Any] = field(default_factory=dict)  # recorded as manifest["target_info"]
    #: integer targets: the outputs their golden model gives on the reference inputs, which the
    #: artifact must reproduce exactly (verification then reports the float model's agreement)
    golden: dict[str, np.ndarray] | None = None
    #: where verification runs the payload (`gpu`: "cuda", or "cpu" for its reference path)
    verify_device: str | None = None
    #: reduced-precision targets: (atol as a fraction of the reference's largest magnitude,
    #: rtol) that the payload's arithmetic needs at least
    precision: tuple[float, float] | None = None


@dataclass(frozen=True)
class ModuleSource:
    """What every target compiles: the model after passes as the exported ONNX (what the
    ONNX-reading targets, cpu and tvm, start from) and as the torch module (what the
    module-reading targets, fpga and gpu, lower; None for `onnx:` models), with its reference
    inputs and calibration inputs (the model's training data where it has some)."""

    onnx_model: onnx.ModelProto
    module: Any
    inputs: dict[str, np.ndarray]
    output_names: list[str]
    calibration: dict[str, np.ndarray] | None = None
    #: generation graphs (--generate): the manifest's generation block (max_length, cache
    #: names and shape); None for every other model
    generation: dict[str, Any] | None = None


class Target(Protocol):
    name: str
    description: str
    executable: bool  # False: nothing to run, so nothing to verify

    def available(self) -> tuple[bool, str]: ...

    def check_options(self, options: dict[str, Any]) -> None:
        """Raise ValueError naming a bad option; called before any work starts."""

    def support(self, source: ModuleSource) -> str | None:
        """Why the target would decline `source`, found without building (None: it takes
        it); `ember check` asks this."""

    def compile(self, source: ModuleSource, out_dir: Path, options: dict[str, Any],
                progress: Progress) -> Payload: ...


def check_known_options(target: str, options: dict[str, Any], known: dict[str, type]) -> None:
    for key, value in options.items():
        if key not in known:
            names = ", ".join(known) or "none"
            raise ValueError(f"unknown option {key!r} for target {target} (known: {names})")
        kind = (int, float) if known[key] is float else known[key]  # 20 is a fine float
        if not isinstance(value, kind) or isinstance(value, bool) != (known[key] is bool):
            raise ValueError(f"target option {key!r} must be {known[key].__name__}")
