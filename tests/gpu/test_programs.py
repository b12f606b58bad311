"""The gpu engine's projections and programs against the modules they stand for.

SpikeGpuLinear reproduces SpikeLinear's integer semantics: exactly (fp32 rounding) on its
reference path, and within fp16-level rounding on each fast path (int8 two-group GEMM for
several tokens, 4-bit GEMV for one), run through the kernels' CPU references, and through
the kernels themselves: compiled on a GPU, else under Triton's interpreter where triton is
installed.
"""

from __future__ import annotations

import pytest
import torch

from ember.passes.spike.linear import SpikeLinear
from ember.runtime.gpu.program.linear import SpikeGpuLinear
from ember.runtime.gpu.program.load import executor
from ember.tools.gpu_check.synthetic import LlamaShape, synthetic_cnn, synthetic_llama

SHAPE = LlamaShape(hidden=128, heads=4, kv_heads=2, head_dim=32, ffn=256, layers=2)


def _spike_linear(d_in: int, d_out: int, salient: int, a_bits: int, steps: int,
                  decoupled: bool, w_levels: int = 7) -> SpikeLinear:
    g = torch.Generator().manual_seed(d_in + salient)
    codes = torch.randint(-w_levels, w_levels + 1, (d_out, d_in), generator=g)
    scale = torch.rand(d_out, generator=g) * 0.01 + 0.001
    bias = torch.randn(d_out, generator=g) * 0.1
    chosen = torch.randperm(d_in, generator=g)[:salient]
    return SpikeLinear(codes, scale, bias, chosen, a_bits, steps, decoupled).eval()


def _gpu_linear(m: SpikeLinear, reference: bool, device: str = "cpu",
                dtype: torch.dtype = torch.float32) -> SpikeGpuLinear:
    tensors = {f"p.{k}": v.to(device) for k, v in m.state_dict().items()}
    entry = {"kind": "spike", "a_bits": m.a_bits, "steps": m.steps, "decoupled": m.decoupled}
    return SpikeGpuLinear(lambda name: tensors.get(f"p.{name}"), entry, dtype, reference)


def _rel(got: torch.Tensor, want: torch.Tensor) -> float:
    return float((got.float().cpu() - want).abs().max() / want.abs().max())


CASES = [  # d_in, d_out, salient, a_bits, steps, decoupled
    (96, 40, 6, 4, 2, True),
    (256, 64, 16, 4, 2, False),
    (200, 24, 0, 3, 1, True),  # no salient channels: an empty (zero-padded) second group
    (128, 32, 8, 8, 2, True),  # codes beyond int8: the fake-quantized product
]


@pytest.mark.parametrize(("d_in", "d_out", "salient", "a_bits", "steps", "decoupled"), CASES)
def test_reference_path_is_spike_linear(d_in, d_out, salient, a_bits, steps, decoupled):
    m = _spike_linear(d_in, d_out, salient, a_bits, steps, decoupled)
    x = torch.randn(3, 5, d_in, generator=torch.Generator().manual_seed(1)) * 2
    with torch.no_grad():
        want = m(x)
        got = _gpu_linear(m, reference=True)(x)
    assert got.shape == want.shape
    assert _rel(got, want) <= 1e-6


@pytest.mark.parametrize(("d_in", "d_out", "salient", "a_bits", "steps", "decoupled"), CASES)
@pytest.mark.parametrize("tokens", [1, 7])
def test_fast_paths_on_cpu_references(d_in, d_out, salient, a_bits, steps, decoupled, tokens):
    """fp16 layers: several tokens take the int8 GEMM, one token with 4-bit codes the GEMV on
    fake-quantized activations (per-row scales stored in fp16); here through the kernels'
    CPU references."""
    m = _spike_linear(d_in, d_out, salient, a_bits, steps, decoupled)
    layer = _gpu_linear(m, reference=False, dtype=torch.float16)
    x = (torch.randn(tokens, d_in, generator=torch.Generator().manual_seed(2)) * 2).half()
    with torch.no_grad():  # the same fp16 input on both sides: its rounding moves codes
        assert _rel(layer(x), m(x.float())) <= 5e-3
    assert layer.packed is not None  # every case has 4-bit codes; K' is padded to 128


@pytest.mark.parametrize("tokens", [1, 16])
def test_spike_gpu_linear_on_the_kernels(device, tokens):
    """The kernels themselves (compiled on a GPU, else under Triton's interpreter): the int8
    two-group GEMM for 16 tokens, the 4-bit GEMV for one."""
    m = _spike_linear(256, 40, 6, 4, 2, True)
    layer = _gpu_linear(m, reference=False, device=device, dtype=torch.float16)
    x = torch.randn(tokens, 256, generator=torch.Generator().manual_seed(4)).half()
    with torch.no_grad():
        got = layer(x.to(device))
        assert _rel(got, m(x.float())) <= 5e-3


@pytest.mark.parametrize("kind", ["dense", "spike"])
def test_synthetic_programs_run_both_paths(kind):
    program, tensors = synthetic_llama(SHAPE, kind)
    ids = torch.randint(0, SHAPE.vocab, (2, 11), generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        reference = executor(program, tensors, torch.float32, reference=True)(ids)
        fast = executor(program, tensors, torch.float32, reference=False)(ids)
    assert reference.shape == (2, 11, SHAPE.vocab)
    assert _rel(fast, reference) <= (1e-6 if kind == "dense" else 5e-3)


def test_graph_program_sfc_matches_direct_convolution():
    """The synthetic CNN's SFC layer (its plan made from U) against F.conv2d with the weight U
    came from, and the fp16 program against the fp32 one."""
    from ember.runtime.gpu.sfc.conv import sfc_conv2d

    program, tensors = synthetic_cnn(channels=16)
    x = torch.randn(2, 16, 13, 11, generator=torch.Generator().manual_seed(6))
    with torch.no_grad():
        reference = executor(program, tensors, torch.float32, reference=True)
        direct = torch.nn.functional.conv2d(x, tensors["sfc.weight"], tensors["sfc.bias"],
                                            padding=1)
        fast = sfc_conv2d(x, reference.plans["sfc"], backend="reference")
        assert _rel(fast, direct) <= 1e-5
        half = executor(program, tensors, torch.float16, reference=False)
        assert _rel(half(x), reference(x)) <= 2e-2


def test_graph_program_on_the_kernels(device):
    """The fp16 program with the fused SFC kernel (compiled on a GPU, else interpreted)."""
    program, tensors = synthetic_cnn(channels=16)
    x = torch.randn(1, 16, 9, 8, generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        want = executor(program, tensors, torch.float32, reference=True)(x)
        on_device = {k: v.to(device) for k, v in tensors.items()}
        got = executor(program, on_device, torch.float16, reference=False)(x.to(device))
    assert _rel(got, want) <= 2e-2


def test_pruned_shape_and_ideal_ratios():
    dense = LlamaShape(hidden=4096, heads=32, kv_heads=32, head_dim=128, ffn=11008, layers=4)
    pruned = dense.pruned(0.25)
    assert (pruned.hidden, pruned.heads, pruned.kv_heads, pruned.ffn) == (3072, 24, 24, 8256)
    per_layer = 4 * 4096 * 4096 + 3 * 4096 * 11008
    assert dense.linear_macs() == 4 * per_layer
    assert dense.attention_macs(2) == 4 * 32 * 128 * 2 * 3


def test_device_check_rows_on_the_cpu():
    """The device check's program correctness section, run on the CPU (fp16 programs through
    the kernels' references, no CUDA graph): every row passes and none raised."""
    from ember.tools.gpu_check.programs import correctness

    rows = correctness(quick=True, device="cpu")
    assert len(rows) == 13 and all(row["ok"] for row in rows), rows


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_programs_on_cuda_match_their_reference():
    from ember.tools.gpu_check.programs import correctness

    rows = correctness(quick=True)
    assert rows and all(row["ok"] for row in rows), rows


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_graph_runner_replays_new_inputs():
    from ember.runtime.gpu.program.load import ProgramRunner

    program, tensors = synthetic_llama(SHAPE, "dense", device="cuda")
    module = executor(program, tensors, torch.float16, reference=False)
    runner = ProgramRunner(module, "cuda", cuda_graphs=True)
    for seed in (1, 2):
        ids = torch.randint(0, SHAPE.vocab, (1, 1), generator=torch.Generator().manual_seed(seed))
        with torch.inference_mode():
            torch.testing.assert_close(runner(ids).float(), module(ids.cuda()).float())
