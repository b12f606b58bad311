"""Generation graphs for TVM: the decode graph at fixed shapes over a static KV cache.

The generation graph (compiler/models/decoding.py) has symbolic batch, token, past and
position dims; TVM 0.27's ONNX importer cannot take the shape arithmetic they leave in the
graph (it fails on `Reshape` of a symbolic scalar such as `past + 1`). At fixed shapes every
shape folds to a constant, so the graph imports and builds like a prefill graph. Two
variants of it are built for each cache size, batch 1 over a cache of `slots` positions:

    decode:  input_ids [1, 1],     attention_mask [1, slots + 1],     past [1, kv, slots, hd]
    prefill: input_ids [1, chunk], attention_mask [1, slots + chunk], past [1, kv, slots, hd]

and each returns only the keys and values of its own tokens, [1, kv, tokens, hd], which
the runtime writes into its cache (runtime/engines/tvm_cache.py). Cache slots not yet
written have mask 0: the graph's padding mask keeps attention off them and its position
ids (cumsum(mask) - 1) count only the real tokens, so a static cache is the decode graph's
own left padding. Every step attends over all `slots` positions, the cost of a fixed shape,
so the caches come in sizes (first_cache, twice that, ... max_length) and a sequence moves
to the next one when it fills its own (SmolLM2 decodes 2.2x slower over 1024 positions than
over 256).
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from ember.progress import Progress
from ember.targets.base import ModuleSource

INT64_MAX = 2**63 - 1
#: prompt tokens per prefill call (target option prefill_chunk)
PREFILL_CHUNK = 32
#: the smallest cache (target option first_cache); each next one is twice as long, the last
#: max_length
FIRST_CACHE = 256


def cache_sizes(max_length: int, first: int) -> list[int]:
    """first, 2 first, 4 first, ... below max_length, then max_length."""
    sizes = []
    while first < max_length:
        sizes.append(first)
        first *= 2
    return [*sizes, max_length]


def generation_graphs(source: ModuleSource, options: dict[str, Any], progress: Progress
                      ) -> dict[str, Any]:
    """The graphs the tvm target builds, by function name: `main`, or for a generation graph
    its fixed-shape variants, `decode.S` and `prefill.S` for each cache size S (a
    prefill_chunk of 1 leaves decode alone)."""
    if source.generation is None:
        return {"main": source.onnx_model}
    sizes, chunk = _layout(source, options)
    graphs = {}
    with progress.stage(f"fixing the generation graph's shapes (static caches of "
                        f"{', '.join(map(str, sizes))} positions, prefill in chunks of {chunk})"):
        for size in sizes:
            for kind, tokens in (("decode", 1), ("prefill", chunk)):
                if kind == "decode" or tokens > 1:
                    graphs[f"{kind}.{size}"] = static_variant(
                        source.onnx_model, source.generation, tokens, size)
    return graphs


def library_info(functions: dict[str, dict[str, Any]], source: ModuleSource,
                 options: dict[str, Any]) -> dict[str, Any]:
    """The manifest's record of the libraries: one `library` and its `param_names`, or for
    a generation artifact one library per function (each its own `main`), with the tokens
    each call takes and its cache size (`cache_sizes`, the last `cache_slots`)."""
    if source.generation is None:
        return functions["main"]
    sizes, chunk = _layout(source, options)
    return {"cache_slots": sizes[-1], "cache_sizes": sizes,
            "functions": {name: {**spec, "tokens": 1 if name.startswith("decode") else chunk}
                          for name, spec in functions.items()}}


def _layout(source: ModuleSource, options: dict[str, Any]) -> tuple[list[int], int]:
    """(cache sizes, prefill chunk): the chunk fits the smallest cache."""
    sizes = cache_sizes(source.generation["max_length"], options.get("first_cache", FIRST_CACHE))
    return sizes, min(options.get("prefill_chunk", PREFILL_CHUNK), sizes[0])


def static_variant(model: Any, generation: dict[str, Any], tokens: int, slots: int) -> Any:
    """A copy of the generation graph `model` at batch 1, `tokens` new tokens and a cache of
    `slots` positions, returning its tokens' keys and values only, with every shape
    computation folded."""
    from onnxruntime.tools.onnx_model_utils import make_dim_param_fixed

    from ember.passes.spike.onnx_lowering import copy_model

    fixed = copy_model(model)
    # the symbolic dims compiler/generation.py gives the graph
    sizes = {"batch": 1, "tokens": tokens, "past": slots, "positions": slots + tokens}
    for name, size in sizes.items():
        make_dim_param_fixed(fixed.graph, name, size)
    _new_positions_only(fixed, generation["present_outputs"], tokens)
    _fix_output_shapes(fixed, generation, tokens)
    return fold_constants(fixed)


def _new_positions_only(model: Any, presents: list[str], tokens: int) -> None:
    """Each present output becomes its last `tokens` positions (axis 2), in place."""
    import numpy as np
    from onnx import helper, numpy_helper

    graph = model.graph
    renamed = {name: f"{name}.all" for name in presents}
    for node in graph.node:
        node.output[:] = [renamed.get(o, o) for o in node.output]
        node.input[:] = [renamed.get(i, i) for i in node.input]
    bounds = {"start": -tokens, "end": INT64_MAX, "axis": 2}
    for key, value in bounds.items():
        graph.initializer.append(numpy_helper.from_array(np.array([value], np.int64),
                                                         f"static_cache.{key}"))
    graph.node.extend(helper.make_node(
        "Slice", [renamed[name], "static_cache.start", "static_cache.end", "static_cache.axis"],
        [name]) for name in presents)


def _fix_output_shapes(model: Any, generation: dict[str, Any], tokens: int) -> None:
    kv, head_dim = generation["kv_heads"], generation["head_dim"]
    shapes = {"logits": [1, tokens, generation["vocab_size"]],
              **{name: [1, kv, tokens, head_dim] for name in generation["present_outputs"]}}
    for output in model.graph.output:
        if output.name in shapes:
            dims = output.type.tensor_type.shape.dim
            del dims[:]
            for size in shapes[output.name]:
                dims.add().dim_value = size


def fold_constants(model: Any) -> Any:
    """`model` with its constant subgraphs folded by ONNX Runtime's basic optimizations
    (constant folding and redundant-node removal, standard ONNX ops only), which turns the
    fixed shapes' Shape/Gather/Concat chains into constants."""
    import onnx
    import onnxruntime as ort

    with tempfile.TemporaryDirectory(prefix="ember-fold-") as tmp:
        source, folded = Path(tmp) / "in.onnx", Path(tmp) / "out.onnx"
        onnx.save(model, str(source), save_as_external_data=True, location="in.weights")
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
        options.optimized_model_filepath = str(folded)
        # weights beside the graph: a protobuf holds 2 GB at most
        options.add_session_config_entry(
            "session.optimized_model_external_initializers_file_name", "out.weights")
        options.add_session_config_entry(
            "session.optimized_model_external_initializers_min_size_in_bytes", "1024")
        ort.InferenceSession(str(source), options, providers=["CPUExecutionProvider"])
        return onnx.load(str(folded))
