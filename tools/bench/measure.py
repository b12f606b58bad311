"""Interleaved timing of a candidate against its baseline on the same machine.

After warm-up, calls alternate A B, B A, A B, ... (the order flips every pair, so neither
side always runs second with warmer caches). For pair i the ratio r_i = t_baseline_i /
t_candidate_i; the reported speedup is median(r_i), with the 25th-75th percentile range of
the r_i as its spread. Taking ratios pair by pair cancels slow drifts of the machine (thermal
state, other load) that a ratio of two separate medians would absorb as error.

Engines with thread pools keep their workers spinning for a while after a call (ONNX
Runtime and TVM both do), longer than one call: right after a switch, the other engine's
spinning workers steal the cores. On 2 cores a 0.2 ms TVM call measured 29 ms when timed
straight after ONNX Runtime, and two ONNX Runtime sessions of SmolLM2 (dense, 25%-pruned)
timed call by call gave a speedup of 1.18x (IQR 0.97-1.36) where the two models alone, each
in its own process, give 1.28x. So every switch is followed by a pause of SWITCH_PAUSE_S (the
other engine's workers park; 10-100 ms all gave 1.30-1.35x, IQR within +-3%), one untimed
call that wakes this engine's workers, then `block` timed calls of the same engine (about
BLOCK_MS of work, at least one) whose median is the sample: what a deployment that runs one
model sees.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ember.runtime.timing import BenchmarkResult, summarize, timed_ms

MIN_REPEAT = 3
MAX_REPEAT = 200
SWITCH_PAUSE_S = 0.02
BLOCK_MS = 20.0
MAX_BLOCK = 100


@dataclass(frozen=True)
class PairedTiming:
    candidate: BenchmarkResult
    baseline: BenchmarkResult
    ratios: tuple[float, ...]  # baseline_i / candidate_i

    @property
    def speedup(self) -> float:
        return float(np.median(self.ratios))

    @property
    def speedup_iqr(self) -> tuple[float, float]:
        q25, q75 = np.percentile(self.ratios, [25, 75])
        return float(q25), float(q75)


def paired_speedup(candidate_ms: list[float], baseline_ms: list[float]) -> PairedTiming:
    """Summaries and pairwise ratios of already measured interleaved samples."""
    if len(candidate_ms) != len(baseline_ms) or not candidate_ms:
        raise ValueError("need equally many (and at least one) candidate and baseline samples")
    ratios = tuple(b / c for b, c in zip(baseline_ms, candidate_ms, strict=True))
    return PairedTiming(summarize(candidate_ms), summarize(baseline_ms), ratios)


def choose_repeat(pair_ms: float, budget_s: float) -> int:
    """As many pairs as fit the budget, within [MIN_REPEAT, MAX_REPEAT]."""
    return int(min(MAX_REPEAT, max(MIN_REPEAT, budget_s * 1e3 // max(pair_ms, 1e-3))))


def interleaved(
    candidate: Callable[[], object], baseline: Callable[[], object] | None, *, warmup: int,
    repeat: int | None, budget_s: float, on_pair: Callable[[int], None] = lambda total: None,
) -> PairedTiming:
    """Time `candidate` and `baseline` alternately; `baseline=None` means the candidate is its
    own baseline (no passes), so every ratio is exactly 1 and it is timed once per pair."""
    calls = [candidate] if baseline is None else [candidate, baseline]
    for _ in range(max(warmup, 1)):
        pair_ms = sum(timed_ms(call) for call in calls)
    block = block_length(pair_ms) if baseline is not None else 0
    sample_ms = pair_ms * (block + 1) + 2e3 * SWITCH_PAUSE_S if block else pair_ms
    total = repeat or choose_repeat(sample_ms, budget_s)
    cand, base = [], []
    for i in range(total):
        order = calls if i % 2 == 0 else calls[::-1]
        times = {id(call): _sample_ms(call, block) for call in order}
        cand.append(times[id(candidate)])
        base.append(times[id(baseline)] if baseline is not None else times[id(candidate)])
        on_pair(total)
    return paired_speedup(cand, base)


def block_length(pair_ms: float) -> int:
    """Timed calls per block: about BLOCK_MS of pairs, at least one."""
    return int(min(MAX_BLOCK, max(1, BLOCK_MS // max(pair_ms, 1e-3))))


def _sample_ms(call: Callable[[], object], block: int) -> float:
    if not block:  # one engine only: nothing to switch from
        return timed_ms(call)
    time.sleep(SWITCH_PAUSE_S)  # the other engine's spinning workers park
    call()  # untimed: wakes this engine's workers
    return float(np.median([timed_ms(call) for _ in range(block)]))
