"""Exact rewrites of ONNX constructs that TVM 0.27's importer or layout pass cannot take, done
before import so such graphs build instead of failing inside TVM.

- `Dropout` at inference is the identity; its importer returns an (output, mask) tuple, and
  the NHWC layout pass fails on it ("Expected nested to match tuple"). Without a used mask
  it becomes `Identity`.
- `Sum` of n inputs is imported as a stack and a reduction over a new axis, a 5-D tensor the
  layout pass cannot place ("Invalid SLayout"); it becomes a chain of n - 1 `Add`s (the same
  additions in the same order).
"""

from __future__ import annotations

from typing import Any


def fix_for_importer(model: Any) -> dict[str, int]:
    """Rewrite `model` in place; returns how many nodes of each kind were rewritten."""
    from onnx import helper

    graph = model.graph
    used = {name for node in graph.node for name in node.input} | {o.name for o in graph.output}
    counts = {"dropout": 0, "sum": 0}
    nodes = []
    for node in graph.node:
        if node.op_type == "Dropout" and not (len(node.output) > 1 and node.output[1] in used):
            nodes.append(helper.make_node("Identity", [node.input[0]], [node.output[0]],
                                          name=node.name))
            counts["dropout"] += 1
        elif node.op_type == "Sum" and len(node.input) > 1:
            nodes.extend(_adds(helper, node))
            counts["sum"] += 1
        else:
            nodes.append(node)
    del graph.node[:]
    graph.node.extend(nodes)
    return counts


def _adds(helper: Any, node: Any) -> list[Any]:
    """((x0 + x1) + x2) + ... named so the last Add writes the Sum's output."""
    adds, total = [], node.input[0]
    for i, term in enumerate(node.input[1:], start=1):
        out = node.output[0] if i == len(node.input) - 1 else f"{node.output[0]}.sum{i}"
        adds.append(helper.make_node("Add", [total, term], [out], name=f"{node.name}.add{i}"))
        total = out
    return adds
