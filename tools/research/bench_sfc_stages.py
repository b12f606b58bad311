"""Where an SFC layer's time goes on `tvm`: the split kernels (input transform, slot GEMMs,
output transform) of a compiled artifact, called one after another as the model calls them,
each call timed on its own (median over REPEAT rounds), with the GEMM's throughput and the
size of the transformed weights it streams.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

import ember.runtime as rt
from ember.targets.tvm.sfc import kernels

REPEAT = 30
STAGES = ("sfc_input_0", "sfc_products_0", "sfc_output_0")


def stage_rows(folders: list[tuple[str, Path, tuple[int, ...]]], algorithm: str) -> list[str]:
    """One row per (label, split-kernel artifact of one SFC layer, input shape)."""
    rows = ["| layer | input transform | slot GEMMs | output transform | GEMM GFLOP/s "
            "| transformed weights MB |", "|---|---:|---:|---:|---:|---:|"]
    for label, folder, shape in folders:
        times, flops, weight_bytes = stage_times(folder, shape, algorithm)
        total = sum(times)
        cells = " | ".join(f"{t:.3f} ms ({100 * t / total:.0f}%)" for t in times)
        rows.append(f"| {label} | {cells} | {flops / times[1] / 1e6:.0f} "
                    f"| {weight_bytes / 1e6:.1f} |")
    return rows


def stage_times(folder: Path, shape: tuple[int, ...], algorithm: str
                ) -> tuple[list[float], float, int]:
    """Median ms of each kernel, the GEMMs' flops and the transformed weights' bytes."""
    import tvm

    from ember.sfc_algorithms import algorithm as algorithm_named

    session = rt.load(folder)  # sets the thread pool as for a run
    engine = session.engine
    packed = next(p for p in engine.params["main"] if len(p.shape) == 4)  # Up (P, K/kt, C, kt)
    bias = [p for p in engine.params["main"] if len(p.shape) == 1]
    slots, columns, channels, kt = (int(d) for d in packed.shape)
    library = tvm.runtime.load_module(str(folder / "model.so"))
    kernel = [library.get_function(name, query_imports=True) for name in STAGES]
    x = tvm.runtime.tensor(np.random.default_rng(0).standard_normal(shape, dtype=np.float32))
    out_shape = session.output_specs[0]["shape"]
    th, tw = kernels.tiles(out_shape[2], out_shape[3], algorithm_named(algorithm).m)
    rows = kernels.padded_rows(shape[0] * th * tw)
    v = tvm.runtime.tensor(np.zeros((slots, rows, channels), np.float32))
    m = tvm.runtime.tensor(np.zeros((slots, columns, rows, kt), np.float32))
    y = tvm.runtime.tensor(np.zeros(out_shape, np.float32))
    calls = [lambda: kernel[0](x, v), lambda: kernel[1](v, packed, m),
             lambda: kernel[2](m, *bias, y)]
    samples = [[] for _ in calls]
    for round_ in range(REPEAT + 3):
        for call, sample in zip(calls, samples, strict=True):
            start = time.perf_counter()
            call()
            if round_ >= 3:  # warm-up rounds
                sample.append(time.perf_counter() - start)
    times = [float(np.median(s)) * 1e3 for s in samples]
    flops = 2.0 * slots * rows * channels * columns * kt
    return times, flops, slots * columns * channels * kt * 4
