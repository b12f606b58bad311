"""Device check of the SFC convolution kernels: correctness against the float64 reference
(with and without the kernels' fp16 storage of V and M) and timings against cuDNN fp16.

Layers: ResNet-style 3x3 convolutions, C = K, padding 1, batch 32. Baselines are cuDNN fp16
`F.conv2d` with `cudnn.benchmark = True`, in NCHW and in channels-last; ember's unfused
`SFCConv2d` (torch ops, fp16 on CUDA) is timed for scale. Every variant runs as a CUDA graph.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

import torch
from torch import nn
from torch.nn import functional

from ember.passes.sfc.conv import SFCConv2d
from ember.runtime.gpu.sfc import conv as sfc_triton
from ember.runtime.gpu.sfc.conv import sfc_conv2d
from ember.runtime.gpu.sfc.plan import make_plan, tile_grid
from ember.runtime.gpu.sfc.reference import sfc_conv2d_reference
from ember.sfc_algorithms import algorithm
from ember.tools.gpu_check.common import check_row, guarded, rel_rms, timing_row
from ember.tools.gpu_check.cuda_timing import time_call

LAYERS = ((64, 56), (128, 28), (256, 14), (512, 7))  # (C = K, H = W)
BATCH = 32
ALGORITHMS = (("sfc6_6x6", "symbolic"), ("winograd_4x4", "integrated"))
# rel-RMS bounds: against the reference with the same fp16 storage (accumulation order and
# output rounding only), and against exact float64 convolution (the algorithm's fp16 error:
# CPU simulation gives ~5e-4 for SFC-6 and ~4e-3 for F(4x4); cuDNN fp16 ~2e-4)
TOL_STORED = 1e-3
TOL_EXACT = {"sfc6_6x6": 2e-3, "winograd_4x4": 1e-2}


def correctness(quick: bool, device: str = "cuda") -> list[dict[str, Any]]:
    gen = torch.Generator(device=device).manual_seed(0)
    cases = [(2, c, c, hw, hw, False, False) for c, hw in LAYERS]
    cases += [(2, 64, 64, 56, 56, False, True), (3, 24, 40, 13, 11, True, True)]
    rows = []
    for name, form in ALGORITHMS[:1] if quick else ALGORITHMS:
        for case in cases[::2] if quick else cases:
            label = {"kernel": f"sfc_conv[{name}]", "case": str(case)}
            rows += guarded(label, partial(_check_case, name, form, *case, gen))
    return rows


def timing(quick: bool, device: str = "cuda") -> list[dict[str, Any]]:
    torch.backends.cudnn.benchmark = True
    gen = torch.Generator(device=device).manual_seed(1)
    rows = []
    for c, hw in LAYERS[::3] if quick else LAYERS:
        label = {"section": "sfc_conv", "case": f"{BATCH}x{c}x{hw}x{hw}", "candidate": "(all)"}
        rows += guarded(label, partial(_time_layer, c, hw, gen, quick))
    return rows


def _time_layer(c: int, hw: int, gen: torch.Generator, quick: bool) -> list[dict[str, Any]]:
    """Each candidate (guarded on its own) against cuDNN in the same memory format."""
    reps, case = 10 if quick else 20, f"{BATCH}x{c}x{hw}x{hw}"
    x = torch.randn(BATCH, c, hw, hw, device=gen.device, dtype=torch.float16, generator=gen)
    w = torch.randn(c, c, 3, 3, device=gen.device, generator=gen) / (3 * c**0.5)
    rows = []
    for fmt, layout in ((torch.contiguous_format, "NCHW"), (torch.channels_last, "channels_last")):
        xf, wf = x.to(memory_format=fmt), w.half().to(memory_format=fmt)
        base = time_call(partial(functional.conv2d, xf, wf, padding=1), calls=3, reps=reps)
        for name, make in _candidates(xf, w, layout, quick).items():
            label = {"section": "sfc_conv", "case": case, "candidate": name}
            rows += guarded(label, partial(_time_candidate, case, f"cuDNN fp16 ({layout})", base,
                                           name, make, reps))
    return rows


def _time_candidate(case: str, baseline: str, base: dict[str, float], name: str,
                    make: Callable[[], tuple[Callable[[], object], dict[str, Any]]], reps: int
                    ) -> list[dict[str, Any]]:
    call, extra = make()
    t = time_call(call, calls=3, reps=reps)
    return [timing_row("sfc_conv", case, baseline, base, name, t, **extra)]


def _check_case(name: str, form: str, n: int, c: int, k: int, h: int, w: int, bias: bool,
                channels_last: bool, gen: torch.Generator) -> list[dict[str, Any]]:
    x = torch.randn(n, c, h, w, device=gen.device, dtype=torch.float16, generator=gen)
    if channels_last:
        x = x.to(memory_format=torch.channels_last)
    weight = torch.randn(k, c, 3, 3, device=gen.device, generator=gen) / (3 * c**0.5)
    b = torch.randn(k, device=gen.device, generator=gen) if bias else None
    plan = make_plan(weight, b, name, form)
    y = sfc_conv2d(x, plan)
    stored = sfc_conv2d_reference(x, plan, storage_dtype=torch.float16)
    exact = functional.conv2d(x.double(), weight.double(), None if b is None else b.double(),
                              padding=1)
    cudnn = functional.conv2d(x, weight.half(), None if b is None else b.half(), padding=1)
    layout = "channels_last" if channels_last else "NCHW"
    label = f"{n}x{c}->{k}x{h}x{w} {layout}{' +bias' if bias else ''}"
    fmt_ok = y.is_contiguous(memory_format=torch.channels_last if channels_last
                             else torch.contiguous_format)
    return [check_row(f"sfc_conv[{name}]", label, "rel_rms vs fp16-storage reference",
                      rel_rms(y, stored), TOL_STORED),
            check_row(f"sfc_conv[{name}]", label, "rel_rms vs exact conv", rel_rms(y, exact),
                      TOL_EXACT[name], cudnn_fp16_rel_rms=rel_rms(cudnn, exact)),
            check_row(f"sfc_conv[{name}]", label, "output not in the input's memory format",
                      float(not fmt_ok), 0)]


def _candidates(x: torch.Tensor, w: torch.Tensor, layout: str, quick: bool
                ) -> dict[str, Callable[[], tuple[Callable[[], object], dict[str, Any]]]]:
    """name -> maker of (call, extra report fields); NCHW also gets Winograd F(4x4) and the
    unfused torch SFCConv2d, channels-last only the default algorithm."""
    algorithms = ALGORITHMS[:1] if quick or layout != "NCHW" else ALGORITHMS
    out = {f"Triton {name} ({layout})": partial(_triton_call, x, w, name, form)
           for name, form in algorithms}
    if layout == "NCHW":
        out["torch SFCConv2d sfc6_6x6 fp16 (unfused ops)"] = partial(_unfused_call, x, w)
    return out


def _triton_call(x: torch.Tensor, w: torch.Tensor, name: str, form: str
                 ) -> tuple[Callable[[], object], dict[str, Any]]:
    plan = make_plan(w, None, name, form)
    return partial(sfc_conv2d, x, plan), {"stages_ms": _stage_times(x, plan)}


def _unfused_call(x: torch.Tensor, w: torch.Tensor
                  ) -> tuple[Callable[[], object], dict[str, Any]]:
    conv = nn.Conv2d(w.shape[1], w.shape[0], 3, padding=1, bias=False)
    conv.weight.data = w.detach().float().cpu()
    unfused = SFCConv2d(conv, algorithm("sfc6_6x6", "symbolic")).to(x.device, torch.float16)
    return partial(unfused, x), {}


def _stage_times(x: torch.Tensor, plan) -> dict[str, float]:
    """Median ms of each of the three kernels alone (the slot GEMM with its tuned config)."""
    n, c, h, w = x.shape
    _, _, th, tw = tile_grid(plan, h, w)
    tiles = n * th * tw
    v = torch.empty(plan.slots, tiles, c, device=x.device, dtype=x.dtype)
    products = torch.empty(plan.slots, tiles, plan.out_channels, device=x.device, dtype=x.dtype)
    y = sfc_conv2d(x, plan)  # tunes the GEMM and shapes the output
    stages = {
        "input_transform": partial(sfc_triton._input_transform, x, plan, v, th, tw),
        "slot_gemm": partial(sfc_triton._slot_gemm, v, plan.u, products),
        "output_transform": partial(sfc_triton._output_transform, products, plan, y, th, tw),
    }
    return {name: time_call(call, calls=3, reps=10)["median_ms"] for name, call in stages.items()}
