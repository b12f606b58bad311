"""Run-time choice among a handful of kernel configurations, once per problem shape.

Each candidate is launched on the real arguments and timed with CUDA events (median of a few
calls after a warm-up call that also compiles it); the fastest is remembered for the key.
Before each timed call a 256 MiB scratch buffer is overwritten, so the operands come from
HBM as in a real model step rather than from L2 (50-60 MB on Hopper) left warm by the
previous call: a GEMV tuned on L2-resident weights could pick the wrong block shape.
Off CUDA (the interpreter), or while a CUDA graph is being captured, the first candidate is
used without timing, so callers warm up before capturing.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Sequence
from typing import TypeVar

import torch

Config = TypeVar("Config")

_CHOSEN: dict[Hashable, object] = {}
_TIMES: dict[Hashable, list[tuple[object, float]]] = {}
_ERRORS: dict[Hashable, list[str]] = {}
_SCRATCH: list[torch.Tensor] = []  # the L2 flush buffer, made on first use
FLUSH_BYTES = 256 * 2**20


def pick(key: Hashable, candidates: Sequence[Config], launch: Callable[[Config], object],
         on_cuda: bool, reps: int = 10) -> Config:
    """The fastest of `candidates` for `key` (timed on first use with `launch(config)`)."""
    if key in _CHOSEN:
        return _CHOSEN[key]  # type: ignore[return-value]
    if len(candidates) == 1 or not on_cuda or torch.cuda.is_current_stream_capturing():
        return candidates[0]
    times, errors = [], []
    for config in candidates:
        try:
            times.append((config, _median_ms(lambda c=config: launch(c), reps)))
        except Exception as error:  # e.g. more shared memory than the device has: not chosen
            times.append((config, math.inf))
            errors.append(f"{config}: {type(error).__name__}: {error}")
    finite = [entry for entry in times if math.isfinite(entry[1])]
    if not finite:
        raise RuntimeError(f"no kernel configuration ran for {key}: " + "; ".join(errors))
    _TIMES[key] = times
    _CHOSEN[key] = min(finite, key=lambda entry: entry[1])[0]
    if errors:
        _ERRORS[key] = errors
    return _CHOSEN[key]  # type: ignore[return-value]


def choice(key: Hashable) -> object | None:
    """The configuration picked for `key`, or None before it was tuned."""
    return _CHOSEN.get(key)


def chosen() -> dict[str, dict[str, object]]:
    """What was picked and measured, by key, for reports."""
    return {str(key): {"chosen": repr(_CHOSEN[key]),
                       "timings_ms": {repr(c): t for c, t in _TIMES.get(key, [])},
                       "errors": _ERRORS.get(key, [])}
            for key in _CHOSEN}


def _median_ms(call: Callable[[], object], reps: int) -> float:
    """Median CUDA-event time of `call` in ms, each call after an L2 flush."""
    call()  # compiles
    torch.cuda.synchronize()
    starts = [torch.cuda.Event(enable_timing=True) for _ in range(reps)]
    ends = [torch.cuda.Event(enable_timing=True) for _ in range(reps)]
    for start, end in zip(starts, ends, strict=True):
        _flush_l2()
        start.record()
        call()
        end.record()
    torch.cuda.synchronize()
    times = sorted(s.elapsed_time(e) for s, e in zip(starts, ends, strict=True))
    return times[len(times) // 2]


def _flush_l2() -> None:
    if not _SCRATCH:
        _SCRATCH.append(torch.empty(FLUSH_BYTES, dtype=torch.uint8, device="cuda"))
    _SCRATCH[0].zero_()
