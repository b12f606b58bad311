"""torch -> ONNX with the dynamo exporter (`torch.export` graph, translated to ONNX ops)."""

from __future__ import annotations

import contextlib
import inspect
import io
import logging
import warnings
from typing import TYPE_CHECKING, Any

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
    """Export `module` called on `inputs` (in order); named symbolic dims stay symbolic.
    ember's own ops (spiking linears) are lowered by their translations, their low-bit
    weights stored packed, and weights that are exactly fp16 stored as fp16 (lossless;
    passes/spike/onnx_lowering.py)."""
    from ember.passes.spike.onnx_lowering import (
        pack_half_precision_weights,
        pack_low_bit_weights,
        translation_table,
    )

    args = tuple(torch.from_numpy(v) for v in inputs.values())
    dynamic_shapes = _dynamic_shapes(module, inputs, dynamic_dims) if dynamic_dims else None
    try:
        with _quiet_exporter():
            program = torch.onnx.export(
                module, args, dynamo=True, input_names=list(inputs), output_names=output_names,
                dynamic_shapes=dynamic_shapes, verbose=False, optimize=False,
                custom_translation_table=translation_table(),
            )
            _simplify(program.model)
    except Exception as exc:
        raise UnsupportedModelError(f"ONNX export failed: {first_line(exc, 300)}") from None
    proto = program.model_proto
    pack_low_bit_weights(proto)
    pack_half_precision_weights(proto)
    return proto


#: the smallest size a symbolic dim takes (default 2: torch.export specializes 0 and 1);
#: a generation graph's batch and new tokens are 1 per decode step and its cache is empty
#: at prefill, and saying so keeps the tracer from assuming more (a causal mask elided for
#: t > 1)
MIN_SIZE = {"batch": 1, "tokens": 1, "positions": 1, "past": 0}


def _dynamic_shapes(module: nn.Module, inputs: dict[str, np.ndarray],
                    dynamic_dims: dict[str, dict[int, str]]) -> tuple[Any, ...]:
    """torch.export's dynamic_shapes in argument order; inputs past the named parameters
    are grouped as the `*args` tuple they arrive in."""
    dims: dict[str, torch.export.Dim] = {}
    specs = [{axis: dims.setdefault(sym, torch.export.Dim(sym, min=MIN_SIZE.get(sym, 2)))
              for axis, sym in dynamic_dims.get(name, {}).items()} for name in inputs]
    parameters = inspect.signature(module.forward).parameters.values()
    if not any(p.kind is inspect.Parameter.VAR_POSITIONAL for p in parameters):
        return tuple(specs)
    named = sum(p.kind in (inspect.Parameter.POSITIONAL_ONLY,
                           inspect.Parameter.POSITIONAL_OR_KEYWORD) for p in parameters)
    return (*specs[:named], tuple(specs[named:]))


def _simplify(model) -> None:
    """Inline, fold constants, fold BatchNorm and padding into convolutions, drop no-op and
    dead nodes, share duplicate initializers, in place.

    This is the exporter's own `optimize=True` with a few of its rewrite rules instead of all
    of them: the full set took two thirds of SmolLM2's export time (15 of 23 s) matching
    patterns that ONNX Runtime and TVM handle themselves; the BatchNorm fusion is kept
    because TVM's importer does not fold BatchNorm into the convolution before it.
    """
    from onnx_ir.passes import common
    from onnxscript.optimizer import fold_constants_ir
    from onnxscript.rewriter import RewritePass
    from onnxscript.rewriter.rules import common as rules

    kept = RewritePass([
        rules.fuse_batchnorm_into_conv_rule, rules.fuse_batchnorm_into_conv_transpose_rule,
        rules.fuse_batchnorm_into_gemm_rule, rules.fuse_pad_into_conv_rule,
        rules.no_op_cast_rule, rules.no_op_expand_rule, rules.no_op_transpose_rule,
    ])
    common.InlinePass()(model)
    for _ in range(2):  # folding exposes dead nodes, whose removal exposes more folding
        fold_constants_ir(model, should_fold=_keeps_integer_weights)
        kept(model)
        common.RemoveUnusedNodesPass()(model)
    for step in (common.LiftConstantsToInitializersPass(lift_all_constants=True, size_limit=0),
                 common.DeduplicateInitializersPass(),
                 common.CommonSubexpressionEliminationPass(),
                 common.RemoveUnusedNodesPass()):
        step(model)


def _keeps_integer_weights(node) -> bool | None:
    """Never fold a Cast or Tile of int8 weight codes (the spike pass's): folded, they would
    be stored as floats instead of packed 4-bit codes. None: the folder decides."""
    from onnx_ir import DataType

    if node.op_type in ("Cast", "Tile") and node.inputs and node.inputs[0] is not None \
            and node.inputs[0].dtype == DataType.INT8:
        return False
    return None


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


