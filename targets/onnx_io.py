"""Saving ONNX payloads, reading graph signatures, and the torch module a node came from.

A payload carries no build metadata: the exporter annotates every node with its Python stack
trace, fx node and module scopes (absolute paths of the checkout and its environment: 1.36
of 1.6 MB in a tiny spiking Llama), and its passes leave per-value notes. ember's own
rewrites read the module scopes from the model in memory; the file written is the graph
alone, so the same config gives the same bytes from any directory on any machine.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ember.runtime.signature import tensor_spec

if TYPE_CHECKING:
    import onnx

#: protobuf's hard limit is 2 GiB; weights of larger models go to an external data file
_EXTERNAL_DATA_BYTES = 1_800_000_000


def save_onnx(model: onnx.ModelProto, path: Path) -> list[str]:
    """Write `model` without build metadata (module doc) to `path`; returns the file names
    written (model, maybe its data file). `model` itself keeps its metadata."""
    import onnx

    with _without_build_metadata(model):
        if model.ByteSize() < _EXTERNAL_DATA_BYTES:
            onnx.save(model, str(path))
            return [path.name]
        data = f"{path.name}.data"
        onnx.save(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
                  location=data)
        return [path.name, data]


@contextlib.contextmanager
def _without_build_metadata(model: onnx.ModelProto) -> Iterator[None]:
    """`model` with every `metadata_props` and `doc_string` cleared (in place, restored on
    exit: the in-memory model is shared with verification, which reads module scopes)."""
    holders = [h for h in _annotated(model) if len(h.metadata_props) or h.HasField("doc_string")]
    kept = [([(p.key, p.value) for p in h.metadata_props],
             h.doc_string if h.HasField("doc_string") else None) for h in holders]
    for holder in holders:
        holder.ClearField("metadata_props")
        holder.ClearField("doc_string")
    try:
        yield
    finally:
        for holder, (props, doc) in zip(holders, kept, strict=True):
            for key, value in props:
                holder.metadata_props.add(key=key, value=value)
            if doc is not None:
                holder.doc_string = doc


def drop_undecodable_annotations(model: onnx.ModelProto) -> int:
    """Remove (in place) every metadata entry and doc string that is not UTF-8: protobuf
    parses them and hands them out as `bytes`, which fail wherever a string is expected.
    Returns how many messages lost some."""
    dropped = 0
    for holder in _annotated(model):
        texts = [holder.doc_string, *(t for p in holder.metadata_props for t in (p.key, p.value))]
        if any(isinstance(text, bytes) for text in texts):
            holder.ClearField("metadata_props")
            holder.ClearField("doc_string")
            dropped += 1
    return dropped


def _annotated(model: onnx.ModelProto) -> Iterator[Any]:
    """Every message of `model` that may hold metadata_props or a doc_string."""
    yield model
    graphs = [model.graph, *(f for f in model.functions)]
    while graphs:
        graph = graphs.pop()
        yield graph
        for node in graph.node:
            yield node
            graphs += [a.g for a in node.attribute if a.HasField("g")]
            graphs += list(_subgraphs(node))
        if hasattr(graph, "initializer"):  # a GraphProto (a FunctionProto names its values)
            for field in ("input", "output", "value_info", "initializer"):
                yield from getattr(graph, field)


def _subgraphs(node: Any) -> Iterator[Any]:
    for attribute in node.attribute:
        yield from attribute.graphs


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


def infer_shapes(model: onnx.ModelProto, data_prop: bool = False,
                 symbolic: bool = False) -> onnx.ModelProto:
    """Shape inference on `model` without serializing its weights.

    `onnx.shape_inference.infer_shapes` serializes the whole model (9 s for SmolLM2's 540 MB);
    it needs only the weights' types and shapes, so the copy it sees declares each large
    initializer as a typed graph input instead. The result's nodes are `model`'s nodes.
    `symbolic` runs ONNX Runtime's symbolic shape inference instead, on the shapes the
    graph inputs declare (the exporter's recorded shapes are dropped): it follows reshapes
    to sizes computed from other shapes, where ONNX's own inference loses a dynamic batch.
    """
    import onnx
    from onnx import helper

    graph = model.graph
    skeleton = helper.make_graph(
        list(graph.node), graph.name,
        [*graph.input, *(helper.make_tensor_value_info(t.name, t.data_type, list(t.dims))
                         for t in graph.initializer if not _small(t))],
        list(graph.output), [t for t in graph.initializer if _small(t)],
        value_info=[] if symbolic else list(graph.value_info))
    copy = helper.make_model(skeleton, opset_imports=list(model.opset_import),
                             ir_version=model.ir_version, functions=list(model.functions))
    if symbolic:
        from onnxruntime.tools.symbolic_shape_infer import SymbolicShapeInference

        return SymbolicShapeInference.infer_shapes(copy, auto_merge=True)
    return onnx.shape_inference.infer_shapes(copy, data_prop=data_prop)


def _small(tensor) -> bool:
    """Shape vectors, axes and scalars: the values data propagation may need."""
    import math

    return math.prod(tensor.dims) <= 64


def exported_module_path(node: Any, layer_class: type) -> list[str] | None:
    """The module path (outermost first) of the `layer_class` module an exported node belongs
    to, read off the exporter's `pkg.torch.onnx.*` metadata (which names classes by their
    qualified name, so no subclass matches); None for other nodes. The last scope is the op
    inside the module (a custom op, or the module's own ops)."""
    import ast

    qualified = f"{layer_class.__module__}.{layer_class.__qualname__}"
    meta = {p.key: p.value for p in node.metadata_props}
    try:
        classes = ast.literal_eval(meta.get("pkg.torch.onnx.class_hierarchy", "[]"))
        scopes = ast.literal_eval(meta.get("pkg.torch.onnx.name_scopes", "[]"))
    except (ValueError, SyntaxError):
        return None
    if len(classes) < 2 or classes[-2] != qualified or len(scopes) != len(classes):
        return None
    return list(scopes[:-1])
