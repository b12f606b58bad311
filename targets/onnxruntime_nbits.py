"""4-bit weight-only products as ONNX Runtime's `MatMulNBits` (com.microsoft).

The spike pass lowers a weight-only layer (passes/spike/onnx_lowering.py) to MatMul(x, W),
with W a chain of Cast / Reshape / Mul from 4-bit codes Q (in, out) and steps s, per output
row or per block of g inputs. ONNX Runtime folds that chain at load into fp32 weights, so the
product reads 32 bits per weight. `nbits_products` finds each such MatMul, evaluates its
weight chain, and replaces the MatMul with MatMulNBits only where the chain's weight equals
Q ⊙ s bit for bit (checked: no other graph is ever changed):

    B[n, k_block, j] = (Q[k, n] + 8) | (Q[k + 1, n] + 8) << 4   (k = k_block·bs + 2j: low nibble
                                                                 first; zero point 8, the op's
                                                                 default for 4 bits)
    scales[n, k_block] = s of that block

Block size bs: the layer's own g, or BLOCK with a row's step repeated over its blocks. Codes
of a last, partial block are padded with the zero point. `accuracy_level`:
- 4 (`int4_compute="int8"`): ONNX Runtime quantizes each block of activations to int8
  (symmetric, per block) and multiplies in integers: a 576x1536 product of one token took
  40 us against fp32's 91 us here (AMD EPYC, AVX2). The activations' rounding is not the
  weight-only layer's function: ~0.5% of a layer's range, 7.5% of SmolLM2's logits after 31
  such layers (ACTIVATION_ERROR).
- 0 (`int4_compute="float"`): fp32 products on the dequantized blocks, the layer's exact
  function (to fp32 summation order); no faster than fp32 for one token.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

BLOCK = 32  # the block of per-row steps (ONNX Runtime GenAI's default int4 block too)
BLOCK_SIZES = (16, 32, 64, 128, 256)  # MatMulNBits' CPU kernels (MLAS)
ZERO_POINT = 8
ACCURACY = {"int8": 4, "float": 0}
CHAIN_OPS = {"Cast", "Reshape", "Mul", "Unsqueeze"}
#: the verification floor with int8 activation blocks (atol as a fraction of the reference's
#: largest magnitude, rtol), twice the largest error measured: SmolLM2 with 4-bit layers and
#: head (w_group 32), 32 tokens: 7.5% of the largest logit (mean 0.8%, top-1 agreement 27 of
#: 32 with the weight-only model); tiny Llama 0.4%. A packing fault gives errors near 100%.
ACTIVATION_ERROR = (0.15, 0.05)


@dataclass(frozen=True)
class WeightChain:
    product: Any  # the MatMul node
    nodes: list[Any]  # the chain's nodes, from the MatMul's weight input back
    constants: set[str]  # the initializers the chain reads
    codes: np.ndarray  # Q (in, out), int8 values in -8..7
    steps: np.ndarray  # s (blocks, out), fp32: one block of all inputs for per-row steps


def nbits_products(model: Any, compute: str) -> int:
    """Rewrite `model` in place (module doc); returns how many products now run as
    MatMulNBits. `compute`: "int8" or "float" (ACCURACY)."""
    from onnx import helper, numpy_helper

    chains = [chain for chain in map(_weight_chain(model), model.graph.node) if chain]
    if not chains:
        return 0
    folded = {id(node) for chain in chains for node in chain.nodes}
    nodes = [node for node in model.graph.node if id(node) not in folded]
    position = {id(node): i for i, node in enumerate(nodes)}
    for chain in chains:
        packed, scales, block = _packed(chain)
        name = chain.product.input[1]
        model.graph.initializer.extend([numpy_helper.from_array(packed, f"{name}.nbits"),
                                        numpy_helper.from_array(scales, f"{name}.nbits_scales")])
        d_in, d_out = chain.codes.shape
        replacement = helper.make_node(
            "MatMulNBits", [chain.product.input[0], f"{name}.nbits", f"{name}.nbits_scales"],
            list(chain.product.output), name=f"{chain.product.name}.nbits",
            domain="com.microsoft", K=d_in, N=d_out, bits=4, block_size=block,
            accuracy_level=ACCURACY[compute])
        nodes[position[id(chain.product)]] = replacement
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    _drop_unused(model.graph, set().union(*(chain.constants for chain in chains)))
    if not any(o.domain == "com.microsoft" for o in model.opset_import):
        model.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    return len(chains)


def _weight_chain(model: Any) -> Any:
    """A function node -> WeightChain or None, over `model`'s graph."""
    from onnx import numpy_helper

    initializers = {init.name: init for init in model.graph.initializer}
    producer = {out: node for node in model.graph.node for out in node.output}
    outputs = {out.name for out in model.graph.output}
    users: dict[str, int] = {}
    for node in model.graph.node:
        for name in node.input:
            users[name] = users.get(name, 0) + 1

    def chain_of(node: Any) -> WeightChain | None:
        if node.op_type != "MatMul" or node.input[1] not in producer:
            return None
        nodes, pending, constants = [], [node.input[1]], set()
        while pending:  # the weight's whole producing subgraph, initializers only at its leaves
            value = pending.pop()
            if value in initializers:
                constants.add(value)
                continue
            step = producer.get(value)
            if (step is None or step.op_type not in CHAIN_OPS or users.get(value, 0) != 1
                    or value in outputs):
                return None
            nodes.append(step)
            pending.extend(name for name in step.input if name)
        arrays = {name: numpy_helper.to_array(initializers[name]) for name in constants}
        return _match(node, nodes, arrays)

    return chain_of


def _match(product: Any, nodes: list[Any], arrays: dict[str, np.ndarray]) -> WeightChain | None:
    integers = [a for a in arrays.values() if a.dtype.name in ("int4", "int8")]
    floats = [a for a in arrays.values() if a.dtype == np.float32]
    if len(integers) != 1 or len(floats) != 1 or integers[0].ndim != 2:
        return None
    codes = integers[0].astype(np.int8)
    if codes.min(initial=0) < -ZERO_POINT or codes.max(initial=0) >= ZERO_POINT:
        return None
    d_in, d_out = codes.shape
    steps = floats[0].reshape(-1, d_out) if floats[0].size % d_out == 0 else None
    if steps is None or d_in % steps.shape[0]:
        return None
    block = d_in // steps.shape[0]
    if steps.shape[0] > 1 and block not in BLOCK_SIZES:
        return None
    weight = (codes.astype(np.float32).reshape(steps.shape[0], block, d_out)
              * steps[:, None, :]).reshape(d_in, d_out)
    if not np.array_equal(_evaluate(nodes, arrays, product.input[1]), weight):
        return None
    return WeightChain(product, nodes, set(arrays), codes, steps.astype(np.float32))


def _evaluate(nodes: list[Any], arrays: dict[str, np.ndarray], output: str) -> np.ndarray:
    """The chain's value, computed by ONNX Runtime (the engine that would have folded it)."""
    import onnx
    import onnxruntime as ort
    from onnx import helper, numpy_helper

    graph = helper.make_graph(
        list(reversed(nodes)), "weight", [],
        [helper.make_tensor_value_info(output, onnx.TensorProto.FLOAT, None)],
        [numpy_helper.from_array(array, name) for name, array in arrays.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)])
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(model.SerializeToString(), options,
                                   providers=["CPUExecutionProvider"])
    return session.run(None, {})[0]


def _packed(chain: WeightChain) -> tuple[np.ndarray, np.ndarray, int]:
    """(B (out, blocks, bs / 2) uint8, scales (out, blocks) fp32, bs) for MatMulNBits."""
    d_in, d_out = chain.codes.shape
    if chain.steps.shape[0] == 1:  # one step per row: blocks of BLOCK share it
        block = BLOCK
        blocks = -(-d_in // block)
        scales = np.repeat(chain.steps.T, blocks, axis=1)
    else:
        blocks = chain.steps.shape[0]
        block, scales = d_in // blocks, chain.steps.T
    unsigned = np.full((d_out, blocks * block), ZERO_POINT, dtype=np.uint8)
    unsigned[:, :d_in] = (chain.codes.T.astype(np.int16) + ZERO_POINT).astype(np.uint8)
    unsigned = unsigned.reshape(d_out, blocks, block)
    packed = unsigned[..., 0::2] | (unsigned[..., 1::2] << 4)
    return np.ascontiguousarray(packed), np.ascontiguousarray(scales, dtype=np.float32), block


def _drop_unused(graph: Any, candidates: set[str]) -> None:
    """Remove the folded chains' initializers that nothing reads any more (shape constants
    may be shared with other nodes, subgraphs included)."""
    used = _inputs_read(graph) | {out.name for out in graph.output}
    kept = [init for init in graph.initializer
            if init.name not in candidates or init.name in used]
    del graph.initializer[:]
    graph.initializer.extend(kept)


def _inputs_read(graph: Any) -> set[str]:
    from onnx import AttributeProto

    names = set()
    for node in graph.node:
        names.update(node.input)
        for attribute in node.attribute:
            if attribute.type == AttributeProto.GRAPH:
                names |= _inputs_read(attribute.g)
            elif attribute.type == AttributeProto.GRAPHS:
                for sub in attribute.graphs:
                    names |= _inputs_read(sub)
    return names
