"""Saving ONNX payloads and reading graph signatures."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from ember.runtime.signature import tensor_spec

if TYPE_CHECKING:
    import onnx

#: protobuf's hard limit is 2 GiB; weights of larger models go to an external data file
_EXTERNAL_DATA_BYTES = 1_800_000_000


def save_onnx(model: onnx.ModelProto, path: Path) -> list[str]:
    """Write `model` to `path`; returns the file names written (model, maybe its data file)."""
    import onnx

    if model.ByteSize() < _EXTERNAL_DATA_BYTES:
        onnx.save(model, str(path))
        return [path.name]
    data = f"{path.name}.data"
    onnx.save(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
              location=data)
    return [path.name, data]


def signature(model: onnx.ModelProto) -> dict[str, list[dict[str, Any]]]:
    """Graph inputs (not initializers) and outputs: name, shape (int or symbol), dtype."""
    initializers = {t.name for t in model.graph.initializer}
    return {
        "inputs": [_spec(v) for v in model.graph.input if v.name not in initializers],
        "outputs": [_spec(v) for v in model.graph.output],
    }


def _spec(value_info) -> dict[str, Any]:
    from onnx import helper

    tensor_type = value_info.type.tensor_type
    shape = [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?")
             for d in tensor_type.shape.dim]
    dtype = helper.tensor_dtype_to_np_dtype(tensor_type.elem_type).name
    return tensor_spec(value_info.name, shape, dtype)
