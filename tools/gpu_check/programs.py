"""Device check of the `gpu` engine's programs (runtime/gpu/program/): correctness on CUDA
against the same program's fp32 reference path on the CPU, then the pruned-model and
spiking-decode timings of the GPU issue.

Timings (synthetic Llama-2-7B-shaped blocks, tools/gpu_check/synthetic.py, fp16, CUDA graphs):
- prefill: 4 blocks at 2048 tokens, dense against hidden + heads + FFN pruned 25% (widths
  rounded to 64); ideal = the ratio of linear + causal attention MACs;
- decode: 8 blocks at one token (no KV cache: the blocks' projections, norms and RoPE),
  dense against the same pruned shape (ideal = the ratio of weight bytes) and against
  spiking 4-bit layers (int4 GEMV on fake-quantized activations; ideal 16 / 4.125 bits).
"""

from __future__ import annotations

from functools import partial
from typing import Any

import torch

from ember.runtime.gpu.program.load import ProgramRunner, executor
from ember.tools.gpu_check.common import check_row, guarded, rel_max, timing_row
from ember.tools.gpu_check.cuda_timing import time_call
from ember.tools.gpu_check.synthetic import LlamaShape, synthetic_cnn, synthetic_llama

LLAMA_7B = LlamaShape(hidden=4096, heads=32, kv_heads=32, head_dim=128, ffn=11008, layers=4)
SMALL = LlamaShape(hidden=256, heads=4, kv_heads=2, head_dim=64, ffn=512, layers=2)
REL_MAX_TOL = 2e-2  # fp16 activations through two blocks against an fp32 reference


def correctness(quick: bool, device: str = "cuda") -> list[dict[str, Any]]:
    rows = []
    for kind in ("dense", "spike"):
        for tokens in (1, 64):
            label = {"kernel": f"llama program ({kind})", "case": f"T={tokens}"}
            rows += guarded(label, partial(_check_llama, kind, tokens, device))
    label = {"kernel": "graph program (conv, SFC, BN)", "case": "N=8 32ch@28x28"}
    return rows + guarded(label, partial(_check_graph, device))


def timing(quick: bool, device: str = "cuda") -> list[dict[str, Any]]:
    reps = 10 if quick else 30
    pruned = LLAMA_7B.pruned(0.25)
    rows = []
    label = {"section": "program", "case": "prefill", "candidate": "pruned 25%"}
    rows += guarded(label, partial(_time_prefill, pruned, 2048, reps))
    decode = LlamaShape(**{**LLAMA_7B.__dict__, "layers": 8})
    for kind, shape in (("dense", decode.pruned(0.25)), ("spike", decode)):
        label = {"section": "program", "case": f"decode {kind}", "candidate": kind}
        rows += guarded(label, partial(_time_decode, decode, shape, kind, reps))
    return rows


def _check_llama(kind: str, tokens: int, device: str) -> list[dict[str, Any]]:
    program, tensors = synthetic_llama(SMALL, kind)
    ids = torch.randint(0, SMALL.vocab, (1, tokens), generator=torch.Generator().manual_seed(3))
    with torch.inference_mode():
        expected = executor(program, tensors, torch.float32, reference=True)(ids)
        module = executor(program, {k: v.to(device) for k, v in tensors.items()},
                          torch.float16, reference=False)
        got = module(ids.to(device)).float().cpu()
        runner = ProgramRunner(module, device, cuda_graphs=True)
        other = (ids + 1) % SMALL.vocab
        replays = [runner(t).float().cpu() for t in (ids, other, ids)]  # a stale output shows
    name = f"llama program ({kind})"
    return [check_row(name, f"T={tokens}", "rel_max vs fp32 reference", rel_max(got, expected),
                      REL_MAX_TOL),
            check_row(name, f"T={tokens}, CUDA graph", "rel_max vs eager (3rd replay)",
                      rel_max(replays[2], got), 1e-3),
            check_row(name, f"T={tokens}, CUDA graph", "replays of other ids differ (0 = no)",
                      float(torch.equal(replays[1], replays[0])), 0.0)]


def _check_graph(device: str) -> list[dict[str, Any]]:
    program, tensors = synthetic_cnn()
    x = torch.randn(8, 16, 28, 28, generator=torch.Generator().manual_seed(4))
    with torch.inference_mode():
        expected = executor(program, tensors, torch.float32, reference=True)(x)
        module = executor(program, {k: v.to(device) for k, v in tensors.items()},
                          torch.float16, reference=False)
        got = module(x.to(device)).float().cpu()
    return [check_row("graph program (conv, SFC, BN)", "N=8 32ch@28x28, fused SFC kernel",
                      "rel_max vs fp32 reference", rel_max(got, expected), REL_MAX_TOL)]


def _blocks(shape: LlamaShape, kind: str) -> Any:
    program, tensors = synthetic_llama(shape, kind, device="cuda")
    return executor(program, tensors, torch.float16, reference=False)


def _block_call(module: Any, x: torch.Tensor):
    cos, sin = module.rope(x.shape[1], x.device)

    def call() -> torch.Tensor:
        h = x
        for block in module.blocks:
            h = block(h, cos, sin, module.head_dim)
        return h

    return call


def _time_prefill(pruned: LlamaShape, tokens: int, reps: int) -> list[dict[str, Any]]:
    times = {}
    for name, shape in (("dense", LLAMA_7B), ("pruned", pruned)):
        module = _blocks(shape, "dense")
        x = torch.randn(1, tokens, shape.hidden, device="cuda", dtype=torch.float16)
        with torch.inference_mode():
            times[name] = time_call(_block_call(module, x), reps=reps)
        del module
        torch.cuda.empty_cache()
    macs = {name: s.linear_macs() * tokens + s.attention_macs(tokens)
            for name, s in (("dense", LLAMA_7B), ("pruned", pruned))}
    row = timing_row("program", f"prefill {LLAMA_7B.layers} blocks x {tokens} tokens, "
                     f"hidden/heads/FFN {pruned.hidden}/{pruned.heads}/{pruned.ffn}",
                     "dense fp16", times["dense"], "pruned 25% fp16", times["pruned"],
                     ideal=macs["dense"] / macs["pruned"])
    return [_of_ideal(row)]


def _time_decode(dense: LlamaShape, candidate: LlamaShape, kind: str,
                 reps: int) -> list[dict[str, Any]]:
    times = {}
    for role, shape, linear in (("baseline", dense, "dense"), ("candidate", candidate, kind)):
        module = _blocks(shape, linear)
        x = torch.randn(1, 1, shape.hidden, device="cuda", dtype=torch.float16)
        with torch.inference_mode():
            times[role] = time_call(_block_call(module, x), reps=reps)
        del module
        torch.cuda.empty_cache()
    ideal = dense.linear_macs() / candidate.linear_macs() if kind == "dense" else 16 / 4.125
    what = "pruned 25% fp16" if kind == "dense" else "spiking 4-bit (int4 GEMV)"
    row = timing_row("program", f"decode {dense.layers} blocks x 1 token ({what})",
                     "dense fp16", times["baseline"], what, times["candidate"], ideal=ideal)
    return [_of_ideal(row)]


def _of_ideal(row: dict[str, Any]) -> dict[str, Any]:
    row["of_ideal"] = row["ratio"] / row["ideal"]
    row["goal_0.9_of_ideal"] = "met" if row["of_ideal"] >= 0.9 else "not met"
    return row
