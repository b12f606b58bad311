"""GPU timings for the device check: CUDA graphs replayed between CUDA events.

A call is warmed up (which compiles Triton kernels, tunes them and lets cuDNN benchmark),
captured `calls` times into one CUDA graph, and the graph is replayed `reps` times, each
replay between two events; the result is the per-call median. Graphs take the CPU out of
the measurement: Triton's launch overhead on the host is tens of microseconds, longer than
some of the kernels measured, and a deployed decode step or network runs as a graph too.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable

import torch


def capture(call: Callable[[], object], calls: int = 1, warmup: int = 3) -> torch.cuda.CUDAGraph:
    """A CUDA graph of `calls` back-to-back calls (warmed up on a side stream first)."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(warmup):
            call()
    torch.cuda.current_stream().wait_stream(side)
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        for _ in range(calls):
            call()
    torch.cuda.synchronize()
    return graph


def time_graph(graph: torch.cuda.CUDAGraph, calls: int = 1, reps: int = 30,
               warmup: int = 3) -> dict[str, float]:
    """Per-call milliseconds of a graph holding `calls` calls: median, p10, p90 over reps."""
    for _ in range(warmup):
        graph.replay()
    starts = [torch.cuda.Event(enable_timing=True) for _ in range(reps)]
    ends = [torch.cuda.Event(enable_timing=True) for _ in range(reps)]
    for start, end in zip(starts, ends, strict=True):
        start.record()
        graph.replay()
        end.record()
    torch.cuda.synchronize()
    times = sorted(s.elapsed_time(e) / calls for s, e in zip(starts, ends, strict=True))
    return {"median_ms": statistics.median(times), "p10_ms": times[len(times) // 10],
            "p90_ms": times[(9 * len(times)) // 10], "reps": reps, "calls_per_graph": calls}


def time_call(call: Callable[[], object], calls: int = 1, reps: int = 30) -> dict[str, float]:
    """Capture `call` and time it; the graph is freed afterwards."""
    graph = capture(call, calls)
    try:
        return time_graph(graph, calls, reps)
    finally:
        del graph
