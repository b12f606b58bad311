"""`onnx:FILE`: an existing ONNX model, compile-only (torch passes decline it)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ember.compiler.config import ExampleSpec
from ember.compiler.models.inputs import random_tensor
from ember.compiler.models.loaded import LoadedModel
from ember.compiler.models.onnx_normalize import default_opset, normalize
from ember.errors import ModelSpecError, UnsupportedModelError, first_line
from ember.runtime.arrays import load_npz
from ember.targets.onnx_io import drop_undecodable_annotations


def onnx_file(spec: str, path: str, example: ExampleSpec, seed: int) -> LoadedModel:
    import onnx
    from google.protobuf.message import DecodeError

    file = Path(path).expanduser()
    if not file.is_file():
        raise ModelSpecError(f"{spec}: file not found: {file}")
    try:
        model = onnx.load(str(file))
        undecodable = drop_undecodable_annotations(model)
        onnx.checker.check_model(model)
    except UnicodeDecodeError:
        raise ModelSpecError(f"{spec}: not a valid ONNX model: a name in the graph is not "
                             "UTF-8 text") from None
    except (DecodeError, onnx.checker.ValidationError, ValueError, RuntimeError) as exc:
        raise ModelSpecError(f"{spec}: not a valid ONNX model: {first_line(exc)}") from None
    if not model.graph.node:
        raise ModelSpecError(f"{spec}: not a valid ONNX model: the graph has no nodes")
    initializers = {t.name for t in model.graph.initializer}
    graph_inputs = [i for i in model.graph.input if i.name not in initializers]
    _check_tensors(spec, [*graph_inputs, *model.graph.output])
    if example.inputs is not None:
        inputs = given_inputs(spec, Path(example.inputs).expanduser(), graph_inputs)
    else:
        inputs = {i.name: _example_for(i, example, seed + k)
                  for k, i in enumerate(graph_inputs)}
    dynamic = {
        i.name: {a: d.dim_param for a, d in enumerate(i.type.tensor_type.shape.dim) if d.dim_param}
        for i in graph_inputs
    }
    opset = default_opset(model)
    model, changes = normalize(model, inputs)
    if undecodable:
        changes.append(f"metadata and doc strings that are not UTF-8 dropped ({undecodable} "
                       "places)")
    return LoadedModel(
        spec=spec, kind="onnx", onnx_model=model, inputs=inputs,
        output_names=[o.name for o in model.graph.output],
        dynamic_dims={k: v for k, v in dynamic.items() if v},
        description=f"ONNX model {file.name} (opset {opset})",
        info={"normalized": changes} if changes else {},
    )


def _check_tensors(spec: str, values: list) -> None:
    """Inputs and outputs must be tensors of a known numeric element type (not strings,
    sequences, maps or optionals, which no ember engine passes)."""
    from onnx import TensorProto, helper

    for value in values:
        kind = value.type.WhichOneof("value")
        if kind != "tensor_type":
            raise UnsupportedModelError(f"{spec}: {value.name} is a {kind or 'untyped value'}; "
                                        f"ember's engines take and return tensors only")
        if value.type.tensor_type.elem_type == TensorProto.STRING:
            raise UnsupportedModelError(f"{spec}: {value.name} is a string tensor; ember's "
                                        f"engines take and return numbers only")
        try:
            helper.tensor_dtype_to_np_dtype(value.type.tensor_type.elem_type)
        except KeyError:
            raise UnsupportedModelError(f"{spec}: {value.name} has element type "
                                        f"{value.type.tensor_type.elem_type}, which has no "
                                        f"numpy type") from None


def given_inputs(spec: str, path: Path, graph_inputs: list) -> dict[str, np.ndarray]:
    """The arrays of an .npz, one per graph input, checked against the graph's declaration
    (names, element types, ranks and static sizes)."""
    from onnx import helper

    try:
        arrays = load_npz(path)
    except (OSError, ValueError) as exc:
        raise ModelSpecError(f"{spec}: example inputs {path.name}: {first_line(exc)}") from None
    names = [i.name for i in graph_inputs]
    if sorted(arrays) != sorted(names):
        raise ModelSpecError(f"{spec}: example inputs {path.name} hold {sorted(arrays)}; the "
                             f"graph's inputs are {names}")
    for value in graph_inputs:
        tensor_type, array = value.type.tensor_type, arrays[value.name]
        dtype = helper.tensor_dtype_to_np_dtype(tensor_type.elem_type)
        if array.dtype.kind == "V" and array.dtype.itemsize == dtype.itemsize:
            array = arrays[value.name] = array.view(dtype)  # .npz keeps bfloat16, float8 as
            #                                                 raw bytes of their size
        dims = [d.dim_value if d.HasField("dim_value") else None for d in tensor_type.shape.dim]
        if array.dtype != dtype or (tensor_type.HasField("shape") and (
                array.ndim != len(dims) or any(d not in (None, s)
                                               for d, s in zip(dims, array.shape, strict=True)))):
            raise ModelSpecError(f"{spec}: example input {value.name} is {array.dtype} "
                                 f"{list(array.shape)}; the graph declares {dtype} {dims}")
    return {name: arrays[name] for name in names}


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
