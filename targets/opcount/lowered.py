"""Per-layer counts of convolutions lowered by the `sfc` pass: direct vs lowered.

The nodes an `SFCConv2d` (or its quantized form) exported are found by the exporter's
class-hierarchy metadata and grouped by layer. Its GEMM is the MatMul with a constant
batched (3-D or 4-D) right operand, the transformed weights U of shape (P, C, K) or
(P, G, C/G, K/G); everything else in the layer (tile gathers, transforms, slot maps, bias)
is the transform work. The direct convolution of the same layer costs, per output element,
9 * C/G multiplications and 9 * C/G - 1 additions (plus one for a bias), so for an output
map that is a multiple of the tile the multiplication ratio is 9 m^2 / P (324 / 88 = 3.68
for SFC-6(6x6)).
"""

from __future__ import annotations

import math
from typing import Any

LOWERED_CLASS = "SFCConv2d"


def lowered_convs(nodes: list[tuple[Any, Any]], shapes: dict[str, list[int]],
                  weights: dict[str, Any]) -> list[dict[str, Any]]:
    """One record per lowered layer, from (node, LayerCount) pairs in graph order."""
    layers: dict[str, list[tuple[Any, Any]]] = {}
    for node, count in nodes:
        if _lowered(node):
            layers.setdefault(count.name, []).append((node, count))
    records = []
    for name, items in layers.items():
        gemm = next(((n, c) for n, c in items if _is_gemm(n, weights)), None)
        output = shapes.get(items[-1][0].output[0])
        if gemm is None or output is None or len(output) != 4:
            continue
        records.append(_record(name, items, gemm, output, weights))
    return records


def _record(name: str, items, gemm, output: list[int], weights) -> dict[str, Any]:
    u = weights[gemm[0].input[1]]
    per_group_in, elements = u.shape[-2], math.prod(output)
    bias = any(n.op_type == "Add" and any(i in weights for i in n.input) for n, _ in items)
    direct_mults = elements * 9 * per_group_in
    direct_adds = elements * (9 * per_group_in - 1) + (elements if bias else 0)
    mults, adds = sum(c.mults for _, c in items), sum(c.adds for _, c in items)
    gemm_mults = gemm[1].mults
    return {"layer": name, "slots": int(u.shape[0]), "output": output,
            "direct_mults": direct_mults, "direct_adds": direct_adds,
            "gemm_mults": gemm_mults, "transform_mults": mults - gemm_mults,
            "adds": adds, "mult_ratio": direct_mults / gemm_mults if gemm_mults else None}


def _lowered(node) -> bool:
    return any(p.key == "pkg.torch.onnx.class_hierarchy" and LOWERED_CLASS in p.value
               for p in node.metadata_props)


def _is_gemm(node, weights) -> bool:
    if node.op_type not in ("MatMul", "MatMulInteger") or len(node.input) < 2:
        return False
    u = weights.get(node.input[1])
    return u is not None and u.ndim in (3, 4)
