"""`sfc`: lower 3x3 stride-1 convolutions to a fast algorithm (SFC by default, or Winograd).

Each eligible `nn.Conv2d` becomes an `SFCConv2d` (passes/sfc/conv.py) that computes the same
convolution through input transform, per-slot GEMMs and output transform; the algorithms'
matrices and their exactness are in sfc_algorithms.py.

Eligible: kernel 3x3, stride 1, dilation 1, zero padding, not depthwise, and enough channels
for the per-slot GEMMs to pay: at least `min_channels` input or output channels (per group
for grouped convolutions). Everything else is counted under `skipped:<reason>`.

`algorithm=auto` picks, per layer, the SFC variant with the fewest multiplications for its
output map, P * ceil(Ho/m) * ceil(Wo/m) (SFC-6(7x7) on maps that are multiples of 7,
SFC-6(6x6) or SFC-4(4x4) otherwise); it needs the example input to know the map sizes.
"""

from __future__ import annotations

import copy
import math
from collections import Counter
from dataclasses import dataclass

import torch
from torch import nn

from ember.passes.contract import PassContext, PassResult, Tolerance
from ember.passes.modules import replace_module
from ember.passes.sfc.conv import SFCConv2d
from ember.passes.sfc.quant import BITS, INPUT_LEVELS, QuantizedSFCConv2d
from ember.sfc_algorithms import ALGORITHMS, FORMS, Algorithm, algorithm

AUTO_CANDIDATES = ("sfc6_6x6", "sfc6_7x7", "sfc4_4x4")  # ties go to the first


@dataclass(frozen=True)
class SFCLowering:
    """`algorithm`: one of ALGORITHMS or "auto"; `form`: symbolic (fewest products) or
    integrated (Winograd-shaped); `min_channels`: the smallest channel count lowered."""

    algorithm: str = "sfc6_6x6"
    form: str = "symbolic"
    min_channels: int = 16
    bits: int | str | None = None  # None: float; 8, 6, 4: requantized slots; "int16": lossless

    def __post_init__(self) -> None:
        if self.algorithm not in (*ALGORITHMS, "auto"):
            raise ValueError(f"algorithm must be auto or one of {', '.join(ALGORITHMS)}, "
                             f"got {self.algorithm!r}")
        if self.form not in FORMS:
            raise ValueError(f"form must be one of {', '.join(FORMS)}, got {self.form!r}")
        if self.min_channels < 1:
            raise ValueError(f"min_channels must be >= 1, got {self.min_channels}")
        if self.bits is not None and self.bits not in BITS:
            raise ValueError(f"bits must be one of {', '.join(map(str, BITS))}, got {self.bits!r}")

    @property
    def tolerance(self) -> Tolerance | None:
        """Exact algorithms; fp32 rounding grows with the transforms' coefficients, and
        Winograd F(4x4)'s are large (2-D growth 100 in, 361 out). Quantized modes are
        verified against the quantized torch model, where a float difference in the input
        of a rounding can move one level."""
        if self.bits is not None or self.algorithm == "winograd_4x4":
            return Tolerance(atol=1e-4, rtol=1e-4)
        return None

    def __call__(self, model: nn.Module, ctx: PassContext) -> PassResult:
        convs = {name: m for name, m in model.named_modules() if isinstance(m, nn.Conv2d)}
        reasons = {name: _why_not(conv, self.min_channels) for name, conv in convs.items()}
        eligible = [name for name, reason in reasons.items() if reason is None]
        stats: Counter[str] = Counter(f"skipped:{r}" for r in reasons.values() if r)
        if not eligible:
            return PassResult(model, False, {"lowered": 0, **stats})
        inputs = _layer_inputs(model, _calibration_batches(ctx), eligible) \
            if self.algorithm == "auto" or self.bits is not None else {}
        if self.bits is not None and not inputs:
            raise ValueError("bits needs calibration data or example inputs (none reached "
                             "the convolutions)")
        lowered = copy.deepcopy(model)
        for name in eligible:
            conv = lowered.get_submodule(name)
            alg = self._choose(_output_map(conv, inputs.get(name)))
            new = self._lower(conv, alg, inputs.get(name))
            if name:
                replace_module(lowered, name, new)
            else:  # the model is the convolution itself
                lowered = new
            stats[f"algorithm:{alg.name}"] += 1
        return PassResult(lowered, True, {"lowered": len(eligible), **stats})

    def _lower(self, conv: nn.Conv2d, alg: Algorithm, inputs: list[torch.Tensor] | None):
        if self.bits is None:
            return SFCConv2d(conv, alg)
        input_scale, slot_max = calibrate(conv, alg, inputs)
        return QuantizedSFCConv2d(conv, alg, self.bits, input_scale, slot_max)

    def _choose(self, output_map: tuple[int, int] | None) -> Algorithm:
        if self.algorithm != "auto":
            return algorithm(self.algorithm, self.form)
        if output_map is None:  # no example input reached the layer
            return algorithm(AUTO_CANDIDATES[0], self.form)
        return min((algorithm(name, self.form) for name in AUTO_CANDIDATES),
                   key=lambda alg: _multiplications(alg, output_map))


def _multiplications(alg: Algorithm, output_map: tuple[int, int]) -> int:
    """Per (input, output) channel pair: P * tiles."""
    height, width = output_map
    return alg.slots * math.ceil(height / alg.m) * math.ceil(width / alg.m)


def _why_not(conv: nn.Conv2d, min_channels: int) -> str | None:
    if tuple(conv.kernel_size) != (3, 3):
        return "kernel_not_3x3"
    if tuple(conv.stride) != (1, 1):
        return "stride_not_1"
    if tuple(conv.dilation) != (1, 1):
        return "dilated"
    if conv.padding_mode != "zeros" or isinstance(conv.padding, str):
        return "padding_mode"
    per_group_in = conv.in_channels // conv.groups
    if conv.groups > 1 and per_group_in == 1:
        return "depthwise"
    per_group_out = conv.out_channels // conv.groups
    if conv.groups > 1 and per_group_in < min_channels:
        return "few_channels_per_group"
    if max(per_group_in, per_group_out) < min_channels:
        return "few_channels"
    return None


def _calibration_batches(ctx: PassContext) -> list[dict[str, torch.Tensor]]:
    return ctx.calibration or ([ctx.example_inputs] if ctx.example_inputs else [])


def _layer_inputs(model: nn.Module, batches: list[dict[str, torch.Tensor]],
                  names: list[str]) -> dict[str, list[torch.Tensor]]:
    """The input tensors each named conv sees on `batches` (float model)."""
    seen: dict[str, list[torch.Tensor]] = {}

    def record(name: str):
        def hook(_module, inputs) -> None:  # a pre-hook returning a value would replace input
            seen.setdefault(name, []).append(inputs[0].detach())
        return hook

    hooks = [model.get_submodule(name).register_forward_pre_hook(record(name)) for name in names]
    try:
        with torch.no_grad():
            for batch in batches:
                model(*batch.values())
    finally:
        for hook in hooks:
            hook.remove()
    return seen


def _output_map(conv: nn.Conv2d, inputs: list[torch.Tensor] | None
                ) -> tuple[int, int] | None:
    """The conv's output (H, W) on its first recorded input (3x3, stride 1)."""
    if not inputs:
        return None
    height, width = inputs[0].shape[-2:]
    pad_h, pad_w = conv.padding
    return height + 2 * pad_h - 2, width + 2 * pad_w - 2


def calibrate(conv: nn.Conv2d, alg: Algorithm, inputs: list[torch.Tensor]
              ) -> tuple[float, torch.Tensor]:
    """s_x = max |x| / 127 over the calibration inputs, and the max |V * s_x| of each slot."""
    input_scale = max(float(x.abs().max()) for x in inputs) / INPUT_LEVELS or 1.0
    float_module = SFCConv2d(conv, alg).to(torch.float64)
    slot_max = torch.zeros(alg.slots, dtype=torch.float64)
    with torch.no_grad():
        for x in inputs:
            x_int = torch.clamp(torch.round(x.to(torch.float64) / input_scale),
                                -INPUT_LEVELS, INPUT_LEVELS)
            v, _ = float_module.transform_input(x_int)
            slot_max = torch.maximum(slot_max, v.abs().amax(dim=(1, 2)) * input_scale)
    return input_scale, slot_max
