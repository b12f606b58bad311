"""Exact rewrites of ONNX constructs that TVM 0.27's importer or layout pass cannot take, done
before import so such graphs build instead of failing inside TVM.

- `Dropout` at inference is the identity; its importer returns an (output, mask) tuple, and
  the NHWC layout pass fails on it ("Expected nested to match tuple"). It becomes `Identity`,
  and a mask that is used becomes all true (`ConstantOfShape` of the input's shape), which is
  what inference's mask is. A Dropout whose training_mode is a run-time input is left alone.
- `Sum` of n inputs is imported as a stack and a reduction over a new axis, a 5-D tensor the
  layout pass cannot place ("Invalid SLayout"); it becomes a chain of n - 1 `Add`s (the same
  additions in the same order). (`Max` and `Min` are imported the same way even for two
  inputs, so no rewrite into their own kind helps; graphs without convolutions skip the
  layout pass altogether: targets/tvm/target.py.)

What has no exact rewrite and would come out wrong is declined before import
(`unsupported_by_importer`): BatchNormalization in training mode, whose batch statistics
the importer replaces by the running ones.
"""

from __future__ import annotations

from typing import Any

PAIRWISE = {"Sum": "Add"}  # variadic op -> its two-input step


def fix_for_importer(model: Any) -> dict[str, int]:
    """Rewrite `model` in place; returns how many nodes of each kind were rewritten."""
    from onnx import helper

    graph = model.graph
    used = {name for node in graph.node for name in node.input} | {o.name for o in graph.output}
    false_constants = {t.name for t in graph.initializer if not _true_scalar(t)}
    counts = {"dropout": 0, "sum": 0}
    nodes = []
    for node in graph.node:
        if node.op_type == "Dropout" and _at_inference(node, false_constants):
            nodes.extend(_inference_dropout(helper, node, used))
            counts["dropout"] += 1
        elif node.op_type in PAIRWISE and len(node.input) > 1:
            nodes.extend(_pairwise(helper, node, PAIRWISE[node.op_type]))
            counts[node.op_type.lower()] += 1
        else:
            nodes.append(node)
    del graph.node[:]
    graph.node.extend(nodes)
    return counts


def unsupported_by_importer(model: Any) -> str | None:
    """What in `model` TVM's importer would compute wrongly, in words; None if nothing."""
    from onnx import helper

    for node in model.graph.node:
        training = {a.name: helper.get_attribute_value(a) for a in node.attribute}.get(
            "training_mode", 0)
        if node.op_type == "BatchNormalization" and training:
            return f"node {node.name or node.output[0]}: BatchNormalization in training mode"
    return None


def _true_scalar(tensor: Any) -> bool:
    from onnx import numpy_helper

    return bool(numpy_helper.to_array(tensor).all())


def _at_inference(node: Any, false_constants: set[str]) -> bool:
    """No training_mode input, or one that is a constant false."""
    return len(node.input) < 3 or not node.input[2] or node.input[2] in false_constants


def _inference_dropout(helper: Any, node: Any, used: set[str]) -> list[Any]:
    from onnx import TensorProto

    nodes = [helper.make_node("Identity", [node.input[0]], [node.output[0]], name=node.name)]
    if len(node.output) > 1 and node.output[1] in used:
        shape = f"{node.output[1]}.shape"
        true = helper.make_tensor("true", TensorProto.BOOL, [1], [True])
        nodes += [helper.make_node("Shape", [node.input[0]], [shape]),
                  helper.make_node("ConstantOfShape", [shape], [node.output[1]], value=true)]
    return nodes


def _pairwise(helper: Any, node: Any, op: str) -> list[Any]:
    """op(op(x0, x1), x2) ..., named so the last node writes the variadic node's output."""
    steps, total = [], node.input[0]
    for i, term in enumerate(node.input[1:], start=1):
        out = node.output[0] if i == len(node.input) - 1 else f"{node.output[0]}.{op}{i}"
        steps.append(helper.make_node(op, [total, term], [out], name=f"{node.name}.{op}{i}"))
        total = out
    return steps
