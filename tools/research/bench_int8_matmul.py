"""int8 x int8 -> int32 products on the tvm target (VNNI kernel vs TVM's generic lowering)
next to fp32 products and ONNX Runtime, for SmolLM2-135M's projection shapes.

Every variant is a one-node ONNX model (MatMul with a constant fp32 weight, or MatMulInteger
with a constant int8 weight) compiled by ember and run through ember.runtime, so the numbers
include what a deployed artifact does. Variants are timed one after another in one run,
each alone (median of 200 calls after 20 warm-up calls; the session is dropped before the
next is loaded): at ~1 ms per call, alternating engines measures their thread pools'
spinning more than the kernels. The table holds ONNX Runtime's fp32 time over each
variant's time (> 1: faster than ORT fp32).

    python -m ember.tools.research.bench_int8_matmul OUT_DIR     (writes OUT_DIR/int8_matmul.md)
"""

from __future__ import annotations

import gc
import sys
from pathlib import Path

import numpy as np
from onnx import TensorProto, helper, numpy_helper

import ember
import ember.runtime as rt

SHAPES = [(128, 576, 1536), (128, 1536, 576), (128, 576, 576), (1, 576, 1536)]  # M, K, N
VARIANTS = {  # name: (model kind, target, target options)
    "ORT int8 (MatMulInteger)": ("int8", "cpu", {}),
    "TVM fp32 (ember rules)": ("fp32", "tvm", {"tuning": False}),
    "TVM int8, generic lowering": ("int8", "tvm", {"tuning": False, "vnni": False}),
    "TVM int8, VNNI kernel": ("int8", "tvm", {"tuning": False}),
}


def _model(kind: str, m: int, k: int, n: int):
    rng = np.random.default_rng(0)
    if kind == "fp32":
        w = (rng.standard_normal((k, n)) / np.sqrt(k)).astype(np.float32)  # outputs ~ N(0, 1)
        weight = numpy_helper.from_array(w, "W")
        node, dtype, out = helper.make_node("MatMul", ["A", "W"], ["Y"]), TensorProto.FLOAT, 1
    else:
        weight = numpy_helper.from_array(rng.integers(-128, 128, (k, n)).astype(np.int8), "W")
        node, dtype = helper.make_node("MatMulInteger", ["A", "W"], ["Y"]), TensorProto.INT8
        out = TensorProto.INT32
    graph = helper.make_graph([node], "product", [helper.make_tensor_value_info("A", dtype,
                                                                                [m, k])],
                              [helper.make_tensor_value_info("Y", out, [m, n])], [weight])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


def _artifact(out: Path, kind: str, target: str, options: dict, shape) -> Path:
    name = f"{kind}-{target}-{'-'.join(map(str, shape))}-{len(options)}{options.get('vnni', 1)}"
    if not (out / name).exists():
        (out / f"{name}.onnx").write_bytes(_model(kind, *shape).SerializeToString())
        ember.compile({"model": f"onnx:{out / name}.onnx", "target": target,
                       "target_options": options, "output": str(out / name)})
    return out / name


def _median_ms(artifact: Path, kind: str, shape) -> float:
    session = rt.load(artifact)
    m, k, _ = shape
    rng = np.random.default_rng(1)
    a = (rng.standard_normal((m, k), dtype=np.float32) if kind == "fp32"
         else rng.integers(-128, 128, (m, k)).astype(np.int8))
    result = session.benchmark({"A": a}, warmup=20, repeat=200)
    del session
    gc.collect()  # the next engine should not share the CPU with this one's threads
    return result.median_ms


def main(out: Path) -> str:
    out.mkdir(parents=True, exist_ok=True)
    rows = ["| M x K x N | ORT fp32 ms | " + " | ".join(VARIANTS) + " |",
            "|---|---:|" + "---:|" * len(VARIANTS)]
    for shape in SHAPES:
        baseline = _median_ms(_artifact(out, "fp32", "cpu", {}, shape), "fp32", shape)
        cells = []
        for kind, target, options in VARIANTS.values():
            variant = _median_ms(_artifact(out, kind, target, options, shape), kind, shape)
            cells.append(f"{baseline / variant:.2f}x")
        rows.append(f"| {' x '.join(map(str, shape))} | {baseline:.3f} | {' | '.join(cells)} |")
    table = "\n".join(rows) + "\n"
    (out / "int8_matmul.md").write_text(table)
    return table


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m ember.tools.research.bench_int8_matmul OUT_DIR")
    print(main(Path(sys.argv[1])))
