"""torch -> ONNX with the dynamo exporter (`torch.export` graph, translated to ONNX ops)."""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from typing import TYPE_CHECKING

import numpy as np
import torch

from ember.errors import UnsupportedModelError, first_line

if TYPE_CHECKING:
    import onnx
    from torch import nn


def export_onnx(
    module: nn.Module, inputs: dict[str, np.ndarray], output_names: list[str],
    dynamic_dims: dict[str, dict[int, str]],
) -> onnx.ModelProto:
    """Export `module` called on `inputs` (in order); named symbolic dims stay symbolic."""
    args = tuple(torch.from_numpy(v) for v in inputs.values())
    dynamic_shapes = None
    if dynamic_dims:
        dims: dict[str, torch.export.Dim] = {}
        dynamic_shapes = {
            name: {axis: dims.setdefault(sym, torch.export.Dim(sym, min=2))
                   for axis, sym in dynamic_dims.get(name, {}).items()}
            for name in inputs
        }
    try:
        with _quiet_exporter():
            program = torch.onnx.export(
                module, args, dynamo=True, input_names=list(inputs), output_names=output_names,
                dynamic_shapes=dynamic_shapes, verbose=False, optimize=True,
            )
    except Exception as exc:
        raise UnsupportedModelError(f"ONNX export failed: {first_line(exc, 300)}") from None
    return program.model_proto


@contextlib.contextmanager
def _quiet_exporter():
    """The exporter prints progress lines and warnings meant for its own debugging."""
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)


