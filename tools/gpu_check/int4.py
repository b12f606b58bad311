"""Device check of the int4 GEMV: correctness against the dequantized reference, and a
decode-step timing against cuBLAS fp16.

Timing: 32 layers with 32 distinct weight matrices, all reading the same activation (as the
projections of a decode step do, independent of each other), captured in one CUDA graph;
the fp16 baseline (`F.linear`) is captured the same way. 32 matrices of 8-90 MB exceed L2,
so every layer streams its weights from HBM.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import partial
from typing import Any

import torch
from torch.nn import functional

from ember.runtime.gpu import tuning
from ember.runtime.gpu.int4.gemv import GEMV_CONFIGS, GemvConfig, int4_gemv
from ember.runtime.gpu.int4.pack import (
    GROUP,
    PackedInt4,
    int4_gemv_reference,
    pack_int4,
    quantize_int4,
    unpack_int4,
)
from ember.tools.gpu_check.common import check_row, guarded, rel_max, rel_rms, timing_row
from ember.tools.gpu_check.cuda_timing import time_call

SHAPES = ((4096, 4096), (11008, 4096), (4096, 11008))  # (N, K) = (out, in)
LAYERS = 32
REL_MAX_TOL, REL_RMS_TOL = 2e-3, 1e-3  # fp16 output rounding is 2^-11 ~ 4.9e-4 relative


def correctness(quick: bool, device: str = "cuda") -> list[dict[str, Any]]:
    gen = torch.Generator(device=device).manual_seed(0)
    rows = []
    for n, k in SHAPES[:1] if quick else SHAPES:
        label = {"kernel": "int4_gemv", "case": f"N={n} K={k}"}
        rows += guarded(label, partial(_check_shape, n, k, gen))
    return rows


def timing(quick: bool, device: str = "cuda") -> list[dict[str, Any]]:
    gen = torch.Generator(device=device).manual_seed(1)
    rows = []
    for n, k in SHAPES:
        label = {"section": "int4_gemv", "case": f"N={n} K={k} x{LAYERS} layers",
                 "candidate": "Triton int4 GEMV"}
        rows += guarded(label, partial(_time_shape, n, k, gen, 10 if quick else 30))
    return rows


def _check_shape(n: int, k: int, gen: torch.Generator) -> list[dict[str, Any]]:
    w = _weights(n, k, gen)
    q, _ = quantize_int4(w)
    packed = pack_int4(w)
    case = f"N={n} K={k}"
    mismatches = int((unpack_int4(packed) != q).sum())
    x = torch.randn(k, device=gen.device, dtype=torch.float16, generator=gen)
    ref = int4_gemv_reference(x, packed)
    y = int4_gemv(x, packed, out=torch.full_like(ref, math.nan, dtype=x.dtype))  # tuned
    worst, which = _worst_candidate(x, packed, ref)
    return [check_row("int4 pack/unpack", case, "mismatches", mismatches, 0),
            check_row("int4_gemv", case, "rel_max", rel_max(y, ref), REL_MAX_TOL),
            check_row("int4_gemv", case, "rel_rms", rel_rms(y, ref), REL_RMS_TOL),
            check_row("int4_gemv, every candidate", f"{case}, worst {which}", "rel_max", worst,
                      REL_MAX_TOL)]


def _worst_candidate(x: torch.Tensor, packed: PackedInt4, ref: torch.Tensor) -> tuple[float, str]:
    """The largest rel_max over the candidates that run (one that cannot run on this
    device is never picked by the tuner either) and its label. Each writes into NaNs, so
    an output left unwritten fails."""
    errors = []
    for config in GEMV_CONFIGS:
        poisoned = torch.full_like(ref, math.nan, dtype=x.dtype)
        try:
            y = int4_gemv(x, packed, config=config, out=poisoned)
            errors.append((_nan_is_inf(rel_max(y, ref)), label(config)))
        except Exception as error:  # e.g. out of resources: reported, not counted
            errors.append((0.0, f"{label(config)} raised {type(error).__name__}"))
    return max(errors)


def _nan_is_inf(value: float) -> float:
    return math.inf if math.isnan(value) else value


def label(config: GemvConfig | None) -> str:
    """A short name of a candidate: kernel rows x groups, warps, stages, register cap."""
    if config is None:
        return "untuned"
    cap = f" r{config.maxnreg}" if config.maxnreg else ""
    return f"{config.kernel} {config.bn}x{config.bg} w{config.warps} s{config.stages}{cap}"


def _time_shape(n: int, k: int, gen: torch.Generator, reps: int) -> list[dict[str, Any]]:
    weights = [_weights(n, k, gen) for _ in range(LAYERS)]
    packed = [pack_int4(w) for w in weights]
    x = torch.randn(1, k, device=gen.device, dtype=torch.float16, generator=gen)
    fp16 = time_call(_step(functional.linear, x, weights), reps=reps)
    int4 = time_call(_step(int4_gemv, x, packed), reps=reps)
    chosen = label(tuning.choice(("int4_gemv", n, k, x.dtype)))
    fp16_bytes, int4_bytes = n * k * 2, n * k // 2 + n * (k // GROUP) * 2
    return [timing_row("int4_gemv", f"N={n} K={k} x{LAYERS} layers", "cuBLAS fp16 (F.linear)",
                       fp16, f"Triton int4 GEMV ({chosen})", int4, layers=LAYERS,
                       baseline_gbps=LAYERS * fp16_bytes / fp16["median_ms"] / 1e6,
                       candidate_gbps=LAYERS * int4_bytes / int4["median_ms"] / 1e6)]


def _step(layer: Callable[..., torch.Tensor], x: torch.Tensor, weights: list) -> Callable:
    """One decode step: every layer applied to x."""
    return lambda: [layer(x, w) for w in weights]


def _weights(n: int, k: int, gen: torch.Generator) -> torch.Tensor:
    return torch.randn(n, k, device=gen.device, dtype=torch.float16, generator=gen) / k**0.5
