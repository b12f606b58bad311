"""`spike`: saliency-driven spiking quantization of a language model (design: spike.md).

Every decoder linear of a causal LM (the families of passes/decoders/layouts.py) becomes a
SpikeLinear (passes/spike/linear.py):
integer weights (`weight_quant=rtn|gptq` at `w_bits`, or ternary GIF steps: `ternary` with
GPTQ error compensation, `ternary-rtn` without), per-token `a_bits` activations (16: float),
and `salient_frac` of the input channels spiking `salient_steps` times. For integer weights
the salient channels are activation channels (first-order score, shared by q/k/v and by
gate/up); for ternary weights they are weight columns (OBS score) with up to `salient_steps`
ternary planes. Weight-only layers (`a_bits=16`) may take one weight step per output and per
block of `w_group` inputs (16..256, a power of two: the block-wise int4 layout of ONNX Runtime's
MatMulNBits and llama.cpp's Q4 formats) instead of one per output row. `lm_head=true` quantizes
the LM head too, on the same grid and activations, without salient channels.
`saliency=random` picks as many channels at random (the ablation). `group_scales=shared` gives
both channel groups the token's whole range (the paper), `separate` gives each group its own.
`embedding_bits=16` (default) rounds the embedding and the float LM head to fp16 values so the
artifact stores them in half the bytes;
`32` keeps them as loaded.

Calibration reads `calib_windows` random windows of `calib_seq` tokens from the first half of
a local corpus (`data=text:NAME`; `ember bench --data text:NAME` scores the second half), block
by block (passes/spike/llm.py). `data=random` uses seeded random tokens (smoke tests only).
The model that leaves the pass computes the integer semantics exactly (what the artifact is
verified against); the ONNX lowering maps it onto integer kernels (passes/spike/onnx_lowering.py).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import nn

from ember.errors import UnsupportedModelError
from ember.passes.contract import PassContext, PassResult, Tolerance
from ember.passes.decoders.conv1d import linearize
from ember.passes.decoders.layouts import DecoderLayout, decoder_layout, known_families
from ember.passes.spike.linear import SpikeLinear
from ember.passes.spike.llm import SpikePlan, spike_llm
from ember.passes.spike.report import spike_report

WEIGHT_QUANT = ("rtn", "gptq", "ternary", "ternary-rtn")
W_BITS = (2, 3, 4, 5, 6, 7, 8)
A_BITS = (2, 3, 4, 5, 6, 7, 8, 16)
W_GROUPS = (0, 16, 32, 64, 128, 256)  # 0: one step per output row
SALIENCY = ("grad1", "random")
GROUP_SCALES = ("shared", "separate")


@dataclass(frozen=True)
class SpikeQuantization:
    w_bits: int = 4
    a_bits: int = 4
    w_group: int = 0
    lm_head: bool = False
    weight_quant: str = "rtn"
    salient_frac: float = 0.1
    salient_steps: int = 2
    saliency: str = "grad1"
    group_scales: str = "shared"
    kv: bool = False
    embedding_bits: int = 16
    data: str = "text:kjv"
    calib_windows: int = 32
    calib_seq: int = 512
    seed: int = 0

    def __post_init__(self) -> None:
        _one_of("w_bits", self.w_bits, W_BITS)
        _one_of("a_bits", self.a_bits, A_BITS)
        _one_of("w_group", self.w_group, W_GROUPS)
        _one_of("weight_quant", self.weight_quant, WEIGHT_QUANT)
        if not isinstance(self.lm_head, bool):
            raise ValueError(f"lm_head must be true or false, got {self.lm_head!r}")
        if self.lm_head and self.weight_quant not in ("rtn", "gptq"):
            raise ValueError("lm_head=true quantizes the head on an integer grid: "
                             "weight_quant=rtn or gptq")
        if self.w_group and (self.a_bits != 16 or self.weight_quant not in ("rtn", "gptq")):
            raise ValueError("w_group (block-wise weight steps) needs weight-only layers: "
                             "a_bits=16 and weight_quant=rtn or gptq")
        _one_of("saliency", self.saliency, SALIENCY)
        _one_of("group_scales", self.group_scales, GROUP_SCALES)
        _one_of("embedding_bits", self.embedding_bits, (16, 32))
        if not isinstance(self.salient_frac, (int, float)) or not 0 <= self.salient_frac < 1:
            raise ValueError(f"salient_frac must be in [0, 1), got {self.salient_frac!r}")
        if not isinstance(self.salient_steps, int) or not 1 <= self.salient_steps <= 8:
            raise ValueError(f"salient_steps must be an integer in 1..8, got "
                             f"{self.salient_steps!r}")
        for name in ("calib_windows", "calib_seq"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ValueError(f"{name} must be a positive integer, got {getattr(self, name)!r}")
        if self.kv:
            raise ValueError("kv=true (KV-cache spiking) is not implemented yet: generation "
                             "artifacts keep the KV cache in fp32; use kv=false")
        if self.data != "random" and not (self.data.startswith("text:") and len(self.data) > 5):
            raise ValueError(f"data must be text:NAME or random, got {self.data!r}")

    @property
    def tolerance(self) -> Tolerance:
        """End to end: float activations (weight-only layers) differ from torch by fp32
        summation order only. Quantized activations cannot be bounded end to end: the float
        parts of two engines differ in the last bits, which flips codes sitting on a rounding
        boundary, and the flips cascade (SmolLM2 W8A8: 4.8 of a logit range of 36, W4A4: 33 of
        43, with every one of the 210 layers bit-exact). Those builds are verified layer by
        layer instead (compiler/verify_layers.py) and the end-to-end error is reported."""
        if self.a_bits == 16:
            return Tolerance(atol=1e-3, rtol=1e-3)
        return Tolerance(atol=float("inf"), rtol=0.0)

    def support(self, model: nn.Module, example: torch.Tensor) -> tuple[str, str]:
        """("applies" | "declines", what): the linear layers that would become spiking, or
        why the model is not one the pass quantizes."""
        del example  # the answer depends on the structure alone
        try:
            lm, layout = _causal_lm(model)
        except UnsupportedModelError as exc:
            return "declines", str(exc).removeprefix("spike: ")
        blocks = lm.get_submodule(layout.blocks)
        linears = sum(len(group) for group in layout.input_groups) * len(blocks)
        return "applies", f"{linears} linear layers in {len(blocks)} blocks"

    def __call__(self, model: nn.Module, ctx: PassContext) -> PassResult:
        _causal_lm(model)  # refuses anything but a supported causal LM, before any work
        if any(isinstance(m, SpikeLinear) for m in model.modules()):
            return PassResult(model, False, {"skipped:already_spiking": 1})
        model = copy.deepcopy(model)  # the caller's model stays as it was (like every pass)
        lm, layout = _causal_lm(model)
        linearize(lm)  # GPT-2's Conv1D: the same function as nn.Linear (passes/decoders)
        _check_layout(lm, layout, self.w_group, self.lm_head)
        windows = self._windows(lm, ctx)
        plan = SpikePlan(w_bits=self.w_bits, a_bits=0 if self.a_bits == 16 else self.a_bits,
                         group=self.w_group, head=self.lm_head,
                         weight_quant=self.weight_quant, salient_frac=self.salient_frac,
                         steps=self.salient_steps, saliency=self.saliency,
                         decoupled=self.group_scales == "separate", seed=self.seed)
        torch.manual_seed(self.seed)
        stats = spike_llm(lm, layout, plan, windows, ctx.progress)
        stats["embedding_bits"] = self.embedding_bits
        if self.lm_head:
            stats["kept_float"] = [k for k in stats["kept_float"] if k != "lm_head"]
        if self.embedding_bits == 16:
            _round_to_half(lm)
        for module in model.modules():
            if isinstance(module, SpikeLinear):
                module.exact = True  # what export and verification see
        stats["ace"] = spike_report(model)
        return PassResult(model, True, stats)

    def _windows(self, lm: nn.Module, ctx: PassContext) -> torch.Tensor:
        generator = torch.Generator().manual_seed(self.seed)
        if self.data == "random":
            vocab = lm.config.vocab_size
            return torch.randint(0, vocab, (self.calib_windows, self.calib_seq),
                                 generator=generator)
        windows = ctx.tuning_data(self.data).text_windows(self.data, self.calib_seq)
        pick = torch.randperm(len(windows), generator=generator)[: self.calib_windows]
        return windows[torch.sort(pick).values]


def _round_to_half(lm: nn.Module) -> None:
    """Round the embedding and the LM head (the same tensor when tied) to fp16 values: the
    export then stores them in half the bytes, losslessly (spike/onnx_lowering.py). Relative change
    <= 2^-11 per weight; with 4-bit linears the fp32 embedding would be 2/3 of the file."""
    with torch.no_grad():
        for module in (lm.get_input_embeddings(), lm.get_output_embeddings()):
            if isinstance(module, (nn.Embedding, nn.Linear)):  # a quantized head has codes
                module.weight.copy_(module.weight.half().float())


def _check_layout(lm: nn.Module, layout: DecoderLayout, group: int, head: bool) -> None:
    """Refuse, before any calibration, a head that is not a linear layer (`lm_head=true`) and
    layers whose inputs do not split into whole blocks of `group`."""
    output = lm.get_output_embeddings()
    if head and not isinstance(output, nn.Linear):
        raise UnsupportedModelError(f"spike: lm_head=true needs a linear LM head; this model's "
                                    f"is {type(output).__name__}")
    if not group:
        return
    linears = [(f"{layout.blocks}.{i}.{name}", block.get_submodule(name))
               for i, block in enumerate(lm.get_submodule(layout.blocks))
               for names in layout.input_groups for name in names]
    for name, linear in [*linears, *([("lm_head", output)] if head else [])]:
        if linear.in_features % group:
            raise UnsupportedModelError(f"spike: w_group={group} does not divide the "
                                        f"{linear.in_features} inputs of {name}; pick a block "
                                        f"size that does")


def _one_of(name: str, value: object, allowed: tuple) -> None:
    if value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(map(str, allowed))}, got {value!r}")


def _causal_lm(model: nn.Module) -> tuple[nn.Module, DecoderLayout]:
    lm = getattr(model, "lm", None)
    if lm is None or not hasattr(lm, "config"):
        encoder = getattr(model, "encoder", None)
        what = f"model type {encoder.config.model_type!r} is an encoder" if hasattr(
            encoder, "config") else "this model is not one"
        raise UnsupportedModelError(f"spike: the pass quantizes causal language models "
                                    f"(builtin:smollm2-135m, hf: decoder families); {what}")
    layout = decoder_layout(lm)
    if layout is None:
        model_type = getattr(lm.config, "model_type", "?")
        raise UnsupportedModelError(f"spike: model type {model_type!r} is not supported (the "
                                    f"pass knows the layouts of {known_families()})")
    return lm, layout
