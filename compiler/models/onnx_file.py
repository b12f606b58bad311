"""`onnx:FILE`: an existing ONNX model, compile-only (torch passes decline it)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ember.compiler.config import ExampleSpec
from ember.compiler.models.inputs import random_tensor
from ember.compiler.models.loaded import LoadedModel
from ember.errors import ModelSpecError, first_line


def onnx_file(spec: str, path: str, example: ExampleSpec, seed: int) -> LoadedModel:
    import onnx
    from google.protobuf.message import DecodeError

    file = Path(path).expanduser()
    if not file.is_file():
        raise ModelSpecError(f"{spec}: file not found: {file}")
    try:
        model = onnx.load(str(file))
        onnx.checker.check_model(model)
    except (DecodeError, onnx.checker.ValidationError, ValueError, RuntimeError) as exc:
        raise ModelSpecError(f"{spec}: not a valid ONNX model: {first_line(exc)}") from None
    if not model.graph.node:
        raise ModelSpecError(f"{spec}: not a valid ONNX model: the graph has no nodes")
    initializers = {t.name for t in model.graph.initializer}
    graph_inputs = [i for i in model.graph.input if i.name not in initializers]
    inputs = {i.name: _example_for(i, example, seed + k) for k, i in enumerate(graph_inputs)}
    dynamic = {
        i.name: {a: d.dim_param for a, d in enumerate(i.type.tensor_type.shape.dim) if d.dim_param}
        for i in graph_inputs
    }
    return LoadedModel(
        spec=spec, kind="onnx", onnx_model=model, inputs=inputs,
        output_names=[o.name for o in model.graph.output],
        dynamic_dims={k: v for k, v in dynamic.items() if v},
        description=f"ONNX model {file.name} (opset {model.opset_import[0].version})",
    )


def _example_for(value_info, example: ExampleSpec, seed: int) -> np.ndarray:
    """Seeded data for one graph input; symbolic dims take `example.shape` or 1."""
    from onnx import helper

    tensor_type = value_info.type.tensor_type
    dims = [d.dim_value if d.dim_value > 0 else 0 for d in tensor_type.shape.dim]
    if example.shape is not None and len(example.shape) == len(dims):
        dims = [d or s for d, s in zip(dims, example.shape, strict=True)]
    shape = [d or 1 for d in dims]
    dtype = helper.tensor_dtype_to_np_dtype(tensor_type.elem_type)
    if np.issubdtype(dtype, np.floating):
        return random_tensor(shape, seed).astype(dtype)
    return np.zeros(shape, dtype=dtype)  # integer inputs are usually indices: 0 is always valid
