"""Device check of the W8A8 GEMM: Triton and torch._int_mm against the exact reference, the
two-scale-group form with zero points, and timings against cuBLAS fp16 (`F.linear`).

The two-group case mimics SpikeLLM at a = 4, T_s = 2 with 10 % salient channels: K = 4096
inputs of which 410 salient (codes 0..30) after 3686 non-salient (codes 0..15), each group
padded with zero columns to a multiple of 128 (K' = 4224).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

import torch
from torch.nn import functional

from ember.runtime.gpu.int8.gemm import (
    SEGMENT_ALIGN,
    int8_gemm,
    int8_gemm_two_group,
    pad_groups,
)
from ember.runtime.gpu.int8.quant import (
    group_row_sums,
    int8_gemm_reference,
    int8_gemm_two_group_reference,
    quantize_symmetric,
    quantize_two_groups,
)
from ember.tools.gpu_check.common import check_row, guarded, rel_max, timing_row
from ember.tools.gpu_check.cuda_timing import time_call

SHAPES = ((2048, 4096, 4096), (2048, 4096, 11008))  # (M, K, N)
ODD = (300, 1152, 1000)  # ragged M and N, K not a multiple of 256
SALIENT = 410
TOL = 2e-3  # fp16 output rounding (4.9e-4) on exact int32 sums


def correctness(quick: bool, device: str = "cuda") -> list[dict[str, Any]]:
    gen = torch.Generator(device=device).manual_seed(0)
    rows = []
    for shape in (SHAPES[0], ODD) if quick else (*SHAPES, ODD):
        backends = ("triton", "torch") if shape[2] % 8 == 0 else ("triton",)
        for backend in backends:
            label = {"kernel": f"int8_gemm[{backend}]", "case": "M={} K={} N={}".format(*shape)}
            rows += guarded(label, partial(_check_shape, shape, backend, gen))
    label = {"kernel": "int8_gemm_two_group[triton]", "case": "M={} K={} N={}".format(*SHAPES[0])}
    return rows + guarded(label, partial(_check_two_groups, gen))


def timing(quick: bool, device: str = "cuda") -> list[dict[str, Any]]:
    gen = torch.Generator(device=device).manual_seed(1)
    rows = []
    for m, k, n in SHAPES[:1] if quick else SHAPES:
        label = {"section": "int8_gemm", "case": f"M={m} K={k} N={n}", "candidate": "(all)"}
        rows += guarded(label, partial(_time_shape, m, k, n, gen, 10 if quick else 20))
    return rows


def _time_shape(m: int, k: int, n: int, gen: torch.Generator, reps: int
                ) -> list[dict[str, Any]]:
    """cuBLAS fp16 once, then each candidate (guarded on its own) against it."""
    a16 = torch.randn(m, k, device=gen.device, dtype=torch.float16, generator=gen)
    w16 = torch.randn(n, k, device=gen.device, dtype=torch.float16, generator=gen) / k**0.5
    base = time_call(partial(functional.linear, a16, w16), calls=5, reps=reps)
    case, flops = f"M={m} K={k} N={n}", 2 * m * k * n
    candidates = _candidates(*_operands(m, k, n, gen))
    if k > SALIENT:
        padded = _ceil(k - SALIENT) + _ceil(SALIENT)
        name = f"Triton int8, two groups + zero points (K'={padded})"
        candidates[name] = partial(_two_group_call, m, k, n, gen)
    rows = []
    for name, make in candidates.items():
        label = {"section": "int8_gemm", "case": case, "candidate": name}
        rows += guarded(label, partial(_time_candidate, case, base, name, make, flops, reps))
    return rows


def _check_shape(shape: tuple[int, int, int], backend: str, gen: torch.Generator
                 ) -> list[dict[str, Any]]:
    qa, sa, qw, sw = _operands(*shape, gen)
    y, ref = int8_gemm(qa, sa, qw, sw, backend=backend), int8_gemm_reference(qa, sa, qw, sw)
    return [check_row(f"int8_gemm[{backend}]", "M={} K={} N={}".format(*shape), "rel_max",
                      rel_max(y, ref), TOL)]


def _check_two_groups(gen: torch.Generator) -> list[dict[str, Any]]:
    m, k, n = SHAPES[0]
    args, ref = _two_group_operands(m, k, n, gen)
    y = int8_gemm_two_group(*args)
    return [check_row("int8_gemm_two_group[triton]", f"M={m} K={k} N={n}, {SALIENT} salient",
                      "rel_max", rel_max(y, ref), TOL)]


def _time_candidate(case: str, base: dict[str, float], name: str,
                    make: Callable[[], Callable[[], object]], flops: int, reps: int
                    ) -> list[dict[str, Any]]:
    t = time_call(make(), calls=5, reps=reps)
    return [timing_row("int8_gemm", case, "cuBLAS fp16 (F.linear)", base, name, t,
                       baseline_tflops=flops / base["median_ms"] / 1e9,
                       candidate_tflops=flops / t["median_ms"] / 1e9)]


def _candidates(qa, sa, qw, sw) -> dict[str, Callable[[], Callable[[], object]]]:
    """name -> a maker of the call to time (made inside the guard: making may fail too)."""
    return {"Triton int8 (scales fused)": lambda: partial(int8_gemm, qa, sa, qw, sw),
            "torch._int_mm + scale": lambda: partial(int8_gemm, qa, sa, qw, sw, backend="torch"),
            "torch._int_mm alone (int32 out)": lambda: partial(torch._int_mm, qa, qw.T)}


def _ceil(k: int) -> int:
    return -(-k // SEGMENT_ALIGN) * SEGMENT_ALIGN


def _operands(m: int, k: int, n: int, gen: torch.Generator):
    a = torch.randn(m, k, device=gen.device, generator=gen)
    w = torch.randn(n, k, device=gen.device, generator=gen) / k**0.5
    return (*quantize_symmetric(a), *quantize_symmetric(w))


def _two_group_operands(m: int, k: int, n: int, gen: torch.Generator):
    """Codes, scales, zero points of activations whose last SALIENT channels are outliers,
    int8 weights, and everything padded per group (pad_groups)."""
    a = torch.randn(m, k, device=gen.device, generator=gen)
    a[:, k - SALIENT:] *= 20
    split = k - SALIENT
    codes, scales, zeros = quantize_two_groups(a, split)
    qw, sw = quantize_symmetric(torch.randn(n, k, device=gen.device, generator=gen) / k**0.5)
    sums = group_row_sums(qw, split)
    ref = int8_gemm_two_group_reference(codes, scales, qw, sw, split, zeros, sums)
    codes_p, split_p = pad_groups(codes, split)
    qw_p, _ = pad_groups(qw, split)
    return (codes_p.contiguous(), scales, qw_p.contiguous(), sw, split_p, zeros, sums), ref


def _two_group_call(m: int, k: int, n: int, gen: torch.Generator) -> Callable[[], object]:
    args, _ = _two_group_operands(m, k, n, gen)
    return partial(int8_gemm_two_group, *args)
