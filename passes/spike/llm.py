"""The spike pass on a decoder causal LM, block by block (design: spike.md §5.2).

    X = inputs of block 0 for the calibration windows
    for each decoder block:
        hooks accumulate G = XᵀX for each linear's input while the block runs in float on X
        masks: linears that read one tensor share one (q/k/v, gate/up; a fused qkv or
               gate_up is one linear), o and down their own (passes/decoders/layouts.py);
               activation saliency diag(G Σ WᵀW)/N for multi-level spiking, the OBS column
               score for ternary weight spiking, or `random` channels (the ablation)
        weights: RTN or GPTQ (on the same G) onto the integer or ternary grid
        replace every linear with SpikeLinear;  X <- the quantized block applied to X

Only one block's inputs (windows x seq x hidden floats) and its Gram matrices are held at a
time. The embedding, the norms, attention softmax and learned positions stay float; so does
the LM head unless `head` (then it is quantized last, on the final norm's outputs). GPT-2's
`Conv1D` linears are turned into `nn.Linear` first (the same function).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ember.passes.decoders.layouts import DecoderLayout
from ember.passes.spike.linear import SpikeLinear
from ember.passes.spike.quantizers import column_limits, gptq, round_to_grid, weight_scales
from ember.passes.spike.saliency import (
    GramCollector,
    activation_saliency,
    random_channels,
    top_channels,
    weight_saliency,
)
from ember.progress import QUIET, Progress
from ember.spike_codes import weight_steps

CHUNK = 4  # calibration windows per forward


@dataclass(frozen=True)
class SpikePlan:
    w_bits: int  # ignored for ternary grids
    a_bits: int  # 0: float activations
    group: int  # 0: one weight step per output row; g: per row and block of g inputs
    head: bool  # the LM head too (no salient channels)
    weight_quant: str  # rtn | gptq | ternary | ternary-rtn
    salient_frac: float
    steps: int
    saliency: str  # grad1 | random
    decoupled: bool
    seed: int

    @property
    def ternary(self) -> bool:
        return self.weight_quant.startswith("ternary")

    @property
    def compensated(self) -> bool:
        return self.weight_quant in ("gptq", "ternary")


def spike_llm(lm: nn.Module, layout: DecoderLayout, plan: SpikePlan, windows: torch.Tensor,
              progress: Progress = QUIET) -> dict[str, Any]:
    """Quantize every decoder linear of `lm` (`nn.Linear`, laid out as `layout` says) in
    place; returns per-layer stats."""
    layers = lm.get_submodule(layout.blocks)
    hidden, kwargs = _block_inputs(layers[0], lm, windows)
    generator = torch.Generator().manual_seed(plan.seed)
    stats: dict[str, Any] = {"layers": {}, "kept_float": layout.kept_float(),
                             "calibration_tokens": int(windows.numel())}
    with progress.bar(len(layers), "calibrating and quantizing blocks") as bar:
        for index, block in enumerate(layers):
            collector = GramCollector({name: block.get_submodule(name)
                                       for group in layout.input_groups for name in group})
            _run_block(block, hidden, kwargs)
            collector.close()
            for names in layout.input_groups:
                stats["layers"].update(_quantize_group(
                    block, names, collector, plan, generator, prefix=f"layers.{index}"))
            hidden = _run_block(block, hidden, kwargs)
            bar.update(1)
    if plan.head:
        stats["layers"]["lm_head"] = _quantize_head(lm, layout, plan, hidden)
    return stats


def _quantize_head(lm: nn.Module, layout: DecoderLayout, plan: SpikePlan,
                   hidden: torch.Tensor) -> dict[str, Any]:
    """The LM head as a SpikeLinear on the blocks' grid, without salient channels; GPTQ (when
    the plan compensates) on the Gram of the final norm's outputs for the windows."""
    head = lm.get_output_embeddings()
    norm = lm.get_submodule(layout.final_norm)
    with torch.no_grad():
        x = torch.cat([norm(chunk) for chunk in hidden.split(CHUNK)])
    x = x.reshape(-1, head.in_features).to(torch.float64)
    weight = head.weight.detach().to(torch.float64)
    codes, scale = _quantize_weight(weight, x.T @ x, x.shape[0], plan, None)
    module = SpikeLinear(codes, scale, head.bias, torch.empty(0, dtype=torch.long),
                         plan.a_bits, plan.steps, plan.decoupled)
    lm.set_output_embeddings(module)
    lm.config.tie_word_embeddings = False  # the head no longer shares the embedding's tensor
    return {"in": head.in_features, "out": head.out_features, "salient_activation_channels": 0,
            "salient_weight_columns": 0}


def _quantize_group(block: nn.Module, names: tuple[str, ...], collector: GramCollector,
                    plan: SpikePlan, generator: torch.Generator, prefix: str) -> dict[str, Any]:
    """The linears `names` (block-relative, one shared input) become SpikeLinear."""
    linears = [block.get_submodule(name) for name in names]
    gram, tokens = collector.gram[names[0]], collector.tokens[names[0]]
    d_in = linears[0].in_features
    shared = None if plan.ternary else _activation_mask(linears, gram, tokens, plan, generator)
    out: dict[str, Any] = {}
    for name, linear in zip(names, linears, strict=True):
        weight = linear.weight.detach().to(torch.float64)
        columns = _weight_mask(weight, gram, tokens, plan, generator) if plan.ternary else None
        codes, scale = _quantize_weight(weight, gram, tokens, plan, columns)
        salient = shared if shared is not None else torch.empty(0, dtype=torch.long)
        module = SpikeLinear(codes, scale, linear.bias, salient, plan.a_bits, plan.steps,
                             plan.decoupled, weight_grid="ternary" if plan.ternary else "int",
                             weight_columns=columns)
        module.exact = False  # calibration of later blocks runs the fast fake-quant path
        parent, _, child = name.rpartition(".")
        setattr(block.get_submodule(parent) if parent else block, child, module)
        out[f"{prefix}.{name}"] = {"in": d_in, "out": linear.out_features,
                                   "salient_activation_channels": int(salient.numel()),
                                   "salient_weight_columns": 0 if columns is None
                                   else int(columns.numel())}
    return out


def _activation_mask(linears: list[nn.Linear], gram: torch.Tensor, tokens: int,
                     plan: SpikePlan, generator: torch.Generator) -> torch.Tensor:
    d_in = linears[0].in_features
    if plan.salient_frac == 0 or plan.steps == 1 or not plan.a_bits:
        return torch.empty(0, dtype=torch.long)
    if plan.saliency == "random":
        return random_channels(d_in, plan.salient_frac, generator)
    score = activation_saliency(gram, tokens, [lin.weight.detach() for lin in linears])
    return top_channels(score, plan.salient_frac)


def _weight_mask(weight: torch.Tensor, gram: torch.Tensor, tokens: int, plan: SpikePlan,
                 generator: torch.Generator) -> torch.Tensor:
    if plan.salient_frac == 0 or plan.steps == 1:
        return torch.empty(0, dtype=torch.long)
    if plan.saliency == "random":
        return random_channels(weight.shape[1], plan.salient_frac, generator)
    return top_channels(weight_saliency(weight, gram, tokens), plan.salient_frac)


def _quantize_weight(weight: torch.Tensor, gram: torch.Tensor, tokens: int, plan: SpikePlan,
                     columns: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    grid = "ternary" if plan.ternary else "int"
    scale = weight_scales(weight, grid, plan.w_bits, plan.group)
    steps = weight_steps(scale, weight.shape[1]) if plan.group else scale
    limits = column_limits(weight.shape[1], grid, plan.w_bits, columns, plan.steps)
    if plan.compensated:
        return gptq(weight, gram, tokens, steps, limits), scale
    return round_to_grid(weight, steps, limits), scale


def _block_inputs(first: nn.Module, lm: nn.Module, windows: torch.Tensor
                  ) -> tuple[torch.Tensor, dict[str, Any]]:
    """Hidden states entering block 0 for every window, and the keyword arguments the model
    passes to its blocks (rotary embeddings, causal mask) for one chunk of CHUNK windows."""
    captured: dict[str, Any] = {}

    class _Stop(Exception):
        pass

    def grab(module: nn.Module, args: tuple, kwargs: dict[str, Any]) -> None:
        captured.setdefault("kwargs", kwargs)
        captured.setdefault("hidden", []).append(args[0] if args else kwargs["hidden_states"])
        raise _Stop

    handle = first.register_forward_pre_hook(grab, with_kwargs=True)
    try:
        with torch.no_grad():
            for chunk in windows.split(CHUNK):
                try:
                    lm(input_ids=chunk, use_cache=False)
                except _Stop:
                    pass
    finally:
        handle.remove()
    kwargs = {k: v for k, v in captured["kwargs"].items() if k != "hidden_states"}
    return torch.cat(captured["hidden"]), kwargs


def _run_block(block: nn.Module, hidden: torch.Tensor, kwargs: dict[str, Any]) -> torch.Tensor:
    outputs = []
    with torch.no_grad():
        for chunk in hidden.split(CHUNK):
            out = block(chunk, **_for_batch(kwargs, chunk.shape[0]))
            outputs.append(out[0] if isinstance(out, tuple) else out)
    return torch.cat(outputs)


def _for_batch(kwargs: dict[str, Any], batch: int) -> dict[str, Any]:
    """The captured keyword arguments, with a batch-sized attention mask cut to `batch`
    (the last chunk may be shorter)."""
    mask = kwargs.get("attention_mask")
    if isinstance(mask, torch.Tensor) and mask.shape[0] > batch:
        return {**kwargs, "attention_mask": mask[:batch]}
    return kwargs
