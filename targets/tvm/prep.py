"""Preparing an exported ONNX graph for TVM's importer.

Four rewrites, all exact (they move data or regroup sums, they do not change the math), after
the importer's own fixes (targets/tvm/graph_fixes.py):

- Transposes of weights are done once, now. The exporter ties SmolLM2's output projection to
  the embedding with a run-time `Transpose` of the 49152 x 576 table (389 ms per call in TVM,
  more than all matmuls together); a `Transpose` whose input is an initializer becomes a
  transposed initializer.
- Matmul weights are packed into column tiles at compile time (see `pack_matmul_weights`),
  so the scheduled kernels read each tile's columns contiguously instead of striding
  across rows of up to 49152 floats.
- SFC layers become ember's SFC kernels (targets/tvm/sfc/rewrite.py: one fused kernel, or input
  transform, slot GEMMs and output transform) instead of the exported chain of dense
  transform MatMuls.
- Only float tensors with more than one element stay initializers (weights, passed at run
  time from `params.safetensors`); shape vectors, axes and scalars become `Constant` nodes,
  because a shape that arrives as a run-time parameter makes TVM build fully symbolic
  kernels (a 50x slower build for SmolLM2's grouped-query `Expand`).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

from ember.targets.onnx_io import infer_shapes
from ember.targets.tvm.graph_fixes import fix_for_importer
from ember.targets.tvm.sfc.rewrite import fuse_sfc_layers

FLOAT_TYPES = (1, 10, 16, 11)  # onnx.TensorProto FLOAT, FLOAT16, BFLOAT16, DOUBLE


@dataclass(frozen=True)
class Prepared:
    model: Any  # the rewritten copy
    folded_transposes: int
    packed_matmuls: int
    sfc_layers: dict[str, int]  # kernels chosen: {"fused": n, "split": m}
    importer_fixes: dict[str, int]  # nodes rewritten for TVM's importer, by kind


def prepare_for_tvm(model: Any, pack_tile: int | None = None, lanes: int | None = None,
                    sfc: str = "auto") -> Prepared:
    """A rewritten copy of `model` (the input is not modified); `pack_tile` (the widest
    column tile) enables packing and `lanes` (fp32 SIMD lanes) the SFC kernels and narrower
    tiles, `sfc` choosing the kernels (sfc/rewrite.py MODES)."""
    from ember.passes.spike.onnx_lowering import copy_model, unpack_weights

    unpacked = unpack_weights(model)  # TVM's importer reads no INT4; transposes need floats
    copy = unpacked if unpacked is not model else copy_model(model)
    fixes = fix_for_importer(copy)
    folded = fold_weight_transposes(copy)
    packed = pack_matmul_weights(copy, pack_tile, lanes or pack_tile) if pack_tile else 0
    # last: ONNX shape inference, which packing needs, stops at the `ember` nodes it adds
    sfc_layers = fuse_sfc_layers(copy, lanes, sfc) if lanes else {"fused": 0, "split": 0}
    weights_only_initializers(copy)
    return Prepared(copy, folded, packed, sfc_layers, fixes)


def fold_weight_transposes(model: Any) -> int:
    """Replace `Transpose(initializer)` by a transposed initializer, in place; returns how many."""
    from onnx import helper, numpy_helper

    graph = model.graph
    initializers = {t.name: t for t in graph.initializer}
    uses = Counter(name for node in graph.node for name in node.input)
    kept, folded = [], 0
    for node in graph.node:
        source = node.input[0] if node.op_type == "Transpose" and node.input else None
        if source not in initializers:
            kept.append(node)
            continue
        array = numpy_helper.to_array(initializers[source])
        perm = helper.get_attribute_value(node.attribute[0]) if node.attribute else None
        graph.initializer.append(numpy_helper.from_array(array.transpose(perm), node.output[0]))
        uses[source] -= 1
        folded += 1
    unused = {name for name, count in uses.items() if count == 0 and name in initializers}
    _replace(graph.node, kept)
    _replace(graph.initializer, [t for t in graph.initializer if t.name not in unused])
    return folded


def weights_only_initializers(model: Any) -> None:
    """Turn every initializer but multi-element float tensors into a Constant node, in place."""
    from onnx import helper

    graph = model.graph
    weights, constants = [], []
    for tensor in graph.initializer:
        elements = 1
        for d in tensor.dims:
            elements *= d
        if tensor.data_type in FLOAT_TYPES and elements > 1:
            weights.append(tensor)
        else:
            constants.append(helper.make_node("Constant", [], [tensor.name], value=tensor))
    _replace(graph.node, constants + list(graph.node))
    _replace(graph.initializer, weights)


def _replace(field: Any, items: list[Any]) -> None:
    items = list(items)
    del field[:]
    field.extend(items)


def pack_matmul_weights(model: Any, tile: int, step: int | None = None) -> int:
    """Rewrite `MatMul(A, W)` with a [K, N] weight into a blocked layout, in place.

    W is stored as Wp[N / tile, K, tile] (Wp[j, k, v] = W[k, j * tile + v]), so the columns of
    one output tile are contiguous for every k, and the product is

        T[..., i, j, v] = sum_k A[..., i, k] * Wp[j, k, v]        (Einsum)
        C[..., i, j * tile + v] = T[..., i, j, v]                  (Reshape: no data moves)

    Each weight takes the widest tile in `tile, tile - step, ..., step` that divides its N
    (`step`: the SIMD lanes, so a tile is whole vectors; a pruned width such as 432 = 9 x 48
    takes 48 where 576 takes 64); a weight no tile divides is left alone (the product then
    gets the unpacked schedule, several times slower). Returns how many were packed.
    """
    from onnx import helper, numpy_helper

    graph = model.graph
    initializers = {t.name: t for t in graph.initializer}
    ranks = _known_ranks(model)
    uses = Counter(name for node in graph.node for name in node.input)
    nodes, packed = [], 0
    for node in graph.node:
        weight = initializers.get(node.input[1]) if node.op_type == "MatMul" else None
        rank = ranks.get(node.input[0]) if weight is not None else None
        width = _column_tile(weight.dims[1], tile, step or tile) \
            if weight is not None and len(weight.dims) == 2 else None
        if width is None or rank is None or rank < 2 or weight.data_type not in FLOAT_TYPES:
            nodes.append(node)
            continue
        k, n = weight.dims
        array = numpy_helper.to_array(weight).reshape(k, n // width, width).transpose(1, 0, 2)
        name = f"{weight.name}.packed{width}"
        if name not in initializers:
            initializers[name] = numpy_helper.from_array(array.copy(), name)
            graph.initializer.append(initializers[name])
        nodes.extend(_packed_product(helper, node, name, rank, n))
        uses[weight.name] -= 1
        packed += 1
    unused = {name for name, count in uses.items() if count == 0 and name in initializers}
    _replace(graph.node, nodes)
    _replace(graph.initializer, [t for t in graph.initializer if t.name not in unused])
    return packed


def _column_tile(n: int, widest: int, step: int) -> int | None:
    return next((t for t in range(widest, 0, -step) if n % t == 0), None)


def _packed_product(helper: Any, node: Any, packed: str, rank: int, n: int) -> list[Any]:
    batch = "abcdefgh"[: rank - 2]
    out = node.output[0]
    einsum = helper.make_node("Einsum", [node.input[0], packed], [f"{out}.tiles"],
                              equation=f"{batch}ik,jkv->{batch}ijv")
    shape = helper.make_node("Constant", [], [f"{out}.shape"], value=helper.make_tensor(
        f"{out}.shape", 7, [rank], [0] * (rank - 1) + [n]))
    reshape = helper.make_node("Reshape", [f"{out}.tiles", f"{out}.shape"], [out])
    return [einsum, shape, reshape]


def _known_ranks(model: Any) -> dict[str, int]:
    inferred = infer_shapes(model)
    values = [*inferred.graph.input, *inferred.graph.value_info, *inferred.graph.output]
    return {v.name: len(v.type.tensor_type.shape.dim) for v in values
            if v.type.tensor_type.HasField("shape")}
