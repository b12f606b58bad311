"""Latency measurement: warm-up, then `repeat` timed calls; robust summary statistics."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class BenchmarkResult:
    median_ms: float
    p90_ms: float
    mean_ms: float
    min_ms: float
    samples: tuple[float, ...]  # every timed call, in ms, in order

    def as_dict(self) -> dict[str, float | int]:
        return {"median_ms": self.median_ms, "p90_ms": self.p90_ms, "mean_ms": self.mean_ms,
                "min_ms": self.min_ms, "repeat": len(self.samples)}


def time_calls(call: Callable[[], object], warmup: int = 10, repeat: int = 50) -> BenchmarkResult:
    if repeat < 1 or warmup < 0:
        raise ValueError("repeat must be >= 1 and warmup >= 0")
    for _ in range(warmup):
        call()
    return summarize([timed_ms(call) for _ in range(repeat)])


def timed_ms(call: Callable[[], object]) -> float:
    """Wall time of one call, in milliseconds."""
    start = time.perf_counter()
    call()
    return (time.perf_counter() - start) * 1e3


def summarize(samples: list[float]) -> BenchmarkResult:
    arr = np.asarray(samples)
    return BenchmarkResult(
        median_ms=float(np.median(arr)), p90_ms=float(np.percentile(arr, 90)),
        mean_ms=float(arr.mean()), min_ms=float(arr.min()), samples=tuple(samples),
    )
