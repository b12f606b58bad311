"""What real ONNX files contain, brought to one form before any target sees them.

- Weights declared as graph inputs as well as initializers (older exporters and the model
  zoo write them so): ONNX lets a caller override such an input, but they are the model's
  weights, so they stop being inputs and stay initializers.
- Weights as `Constant` nodes: lifted to initializers, where targets and the op count look
  for weights.
- Old opsets: a default-domain opset below MIN_OPSET is upgraded with onnx's version
  converter, and the upgrade is kept only when ONNX Runtime gives the same outputs, bit for
  bit, on the example inputs before and after (otherwise the model stays as it was).

Each step is exact: the model computes the same function afterwards.
"""

from __future__ import annotations

from typing import Any

import numpy as np

MIN_OPSET = 13  # TVM's importer and ember's graph rewrites read the opset-13 forms of ops


def normalize(model: Any, inputs: dict[str, np.ndarray]) -> tuple[Any, list[str]]:
    """(the normalized model, what was changed, one phrase per step that changed anything)."""
    changes = []
    model, lifted = _weights_as_initializers(model)
    changes += lifted
    upgraded = _upgraded(model, inputs)
    if upgraded is not None:
        changes.append(f"opset {default_opset(model)} upgraded to {MIN_OPSET}")
        model = upgraded
    return model, changes


def default_opset(model: Any) -> int:
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)


def _weights_as_initializers(model: Any) -> tuple[Any, list[str]]:
    import onnx_ir as ir
    from onnx_ir.passes import common

    initializers = {t.name for t in model.graph.initializer}
    as_inputs = sum(i.name in initializers for i in model.graph.input)
    constants = sum(n.op_type == "Constant" for n in model.graph.node)
    if not as_inputs and not constants:
        return model, []
    graph = ir.from_proto(model)
    common.RemoveInitializersFromInputsPass()(graph)
    common.LiftConstantsToInitializersPass(lift_all_constants=False, size_limit=0)(graph)
    changes = [f"{as_inputs} weights declared as inputs kept as weights"] if as_inputs else []
    lifted = constants - sum(n.op_type == "Constant" for n in graph.graph)
    if lifted:
        changes.append(f"{lifted} Constant nodes lifted to initializers")
    proto = ir.to_proto(graph)
    # before IR version 4 every initializer had to be a graph input as well
    proto.ir_version = max(proto.ir_version, 4)
    return proto, changes


def _upgraded(model: Any, inputs: dict[str, np.ndarray]) -> Any | None:
    """The model at MIN_OPSET when the converter handles it and ONNX Runtime agrees exactly;
    None when no upgrade is needed or it is not exact."""
    opset = default_opset(model)
    if opset >= MIN_OPSET or opset == 0:
        return None
    from onnx import version_converter

    try:
        converted = version_converter.convert_version(model, MIN_OPSET)
        same = _same_outputs(model, converted, inputs)
    except Exception:  # the converter and ORT raise many kinds on what they cannot handle
        return None
    return converted if same else None


def _same_outputs(before: Any, after: Any, inputs: dict[str, np.ndarray]) -> bool:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 4
    outs = []
    for model in (before, after):
        session = ort.InferenceSession(model.SerializeToString(), options,
                                       providers=["CPUExecutionProvider"])
        outs.append(session.run(None, inputs))
    return all(a.shape == b.shape and np.array_equal(a, b, equal_nan=True)
               for a, b in zip(*outs, strict=True))
