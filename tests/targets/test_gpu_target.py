"""The `gpu` target on any machine: its program matches the torch model it came from (CNN with
SFC layers, pruned Llama with GQA and biases, spiking Llama), compiles verify on the CPU
reference path without a GPU, and running an artifact without a GPU fails in one line with
exit code 2."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

import ember.runtime as rt
from ember.compiler.models.language import CausalLMLogits
from ember.passes.prune.llm.slice import KeepSet, slice_decoder
from ember.runtime.engines.gpu_engine import GpuUnavailable
from ember.runtime.gpu.program.load import executor
from ember.targets.gpu.program import build_program
from ember.tools.cli.main import main

NO_GPU = not torch.cuda.is_available()


def _llama(bias: bool) -> LlamaForCausalLM:
    torch.manual_seed(0)
    config = LlamaConfig(hidden_size=64, num_attention_heads=4, num_key_value_heads=2,
                         head_dim=16, intermediate_size=96, num_hidden_layers=2, vocab_size=101,
                         rms_norm_eps=0.1, initializer_range=0.2, tie_word_embeddings=False,
                         attention_bias=bias, mlp_bias=bias)
    lm = LlamaForCausalLM(config).eval()
    with torch.no_grad():
        for name, p in lm.named_parameters():
            if "norm" in name or name.endswith("bias"):
                p.add_(torch.rand(p.shape) * 0.5)
    return lm


def _program_logits(module, ids: torch.Tensor, reference: bool = True) -> torch.Tensor:
    program, tensors = build_program(module, ids.numpy())
    json.dumps(program)  # the program is plain JSON
    with torch.no_grad():
        return executor(program, tensors, torch.float32, reference)(ids)


def test_pruned_llama_program_matches_transformers():
    lm = _llama(bias=True)
    keep = KeepSet(hidden=torch.arange(0, 64, 4).repeat_interleave(1)[:12].sort().values,
                   heads=[torch.tensor([0, 3]), torch.tensor([1, 2])],
                   ffn=[torch.arange(0, 96, 2), torch.arange(1, 96, 2)])
    pruned = slice_decoder(lm, keep)
    ids = torch.randint(0, 101, (2, 9), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = pruned(input_ids=ids, use_cache=False).logits
    got = _program_logits(CausalLMLogits(pruned), ids)
    assert got.shape == expected.shape
    assert float((got - expected).abs().max()) <= 1e-5 * float(expected.abs().max())
    program, _ = build_program(CausalLMLogits(pruned), ids.numpy())
    assert program["heads"] == [[2, 2], [2, 2]] and program["hidden"] == 12
    assert not program["tied"]


def test_a_wrong_program_is_noticed():
    """The comparison above can fail: the same program with one norm gain changed."""
    lm = _llama(bias=False)
    ids = torch.randint(0, 101, (1, 7), generator=torch.Generator().manual_seed(2))
    program, tensors = build_program(CausalLMLogits(lm), ids.numpy())
    tensors = dict(tensors, **{"l1.norm2": tensors["l1.norm2"] * 1.05})
    with torch.no_grad():
        expected = lm(input_ids=ids, use_cache=False).logits
        got = executor(program, tensors, torch.float32, True)(ids)
    assert float((got - expected).abs().max()) > 1e-3 * float(expected.abs().max())


def test_graph_program_rejects_unsupported_layers():
    from ember.targets.module_reader import UnsupportedModule

    model = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.Sigmoid()).eval()
    declined = r"layer 1 \(Sigmoid\): no kernel on the gpu target"
    with pytest.raises(UnsupportedModule, match=declined):
        build_program(model, np.zeros((1, 1, 8, 8), np.float32))


def test_graph_program_keeps_a_lone_batchnorm():
    model = torch.nn.Sequential(torch.nn.Conv2d(2, 4, 3), torch.nn.ReLU(),
                                torch.nn.BatchNorm2d(4), torch.nn.Flatten()).eval()
    with torch.no_grad():
        model[2].running_mean.uniform_(-1, 1)
        model[2].running_var.uniform_(0.5, 2)
    x = torch.randn(3, 2, 6, 6)
    program, tensors = build_program(model, x[:1].numpy())
    assert [n["op"] for n in program["nodes"]].count("batchnorm") == 1
    with torch.no_grad():
        got = executor(program, tensors, torch.float32, True)(x)
        torch.testing.assert_close(got, model(x), atol=1e-5, rtol=1e-5)


def _compile(tmp_path, capsys, *args: str) -> tuple[int, str]:
    code = main(["compile", *args, "--target", "gpu", "-o", str(tmp_path / "a"), "--quiet"])
    return code, capsys.readouterr().err


def test_digits_with_sfc_compiles_and_verifies_on_the_cpu_path(tmp_path, capsys):
    code, err = _compile(tmp_path, capsys, "--model", "builtin:digits-cnn", "--pass", "sfc")
    assert code == 0, err
    manifest = json.loads((tmp_path / "a/manifest.json").read_text())
    verification = manifest["verification"]
    assert verification["status"] == "passed"
    assert verification["device"] == ("cpu" if NO_GPU else "cuda")
    if NO_GPU:  # the reference path is fp32: far inside the fp16 floor the manifest states
        assert verification["outputs"]["logits"]["max_abs"] < 1e-4
    program = json.loads((tmp_path / "a/gpu/program.json").read_text())
    assert [n["op"] for n in program["nodes"]].count("sfc") == 4
    assert manifest["target_info"]["dtype"] == "fp16"
    assert {"model.onnx", "gpu/program.json", "gpu/weights.safetensors"} <= set(manifest["files"])


@pytest.mark.parametrize(("options", "kind"), [
    ("", "spike"),  # integer activations and weights, one step per row
    ("a_bits=16,w_group=32,", "weight_only"),  # block-wise steps: run dequantized
])
def test_spiking_llama_compiles_with_its_projections(tmp_path, capsys, options, kind):
    code, err = _compile(tmp_path, capsys, "--model", "builtin:tiny-llama", "--pass",
                         f"spike:{options}data=random,calib_windows=4,calib_seq=32")
    assert code == 0, err
    program = json.loads((tmp_path / "a/gpu/program.json").read_text())
    kinds = {entry["kind"] for layer in program["layers"] for entry in layer["linears"].values()}
    assert kinds == {kind}
    outputs = json.loads((tmp_path / "a/manifest.json").read_text())["verification"]["outputs"]
    if NO_GPU:  # (a per-row step where a block's belongs would be far off)
        assert outputs["logits"]["max_abs"] < 1e-4


@pytest.mark.skipif(not NO_GPU, reason="checks the message of a machine without a GPU")
def test_running_without_a_gpu_exits_2_with_one_line(tmp_path, capsys):
    code, err = _compile(tmp_path, capsys, "--model", "builtin:tiny-cnn")
    assert code == 0, err
    for command in (["run", str(tmp_path / "a"), "--check"],
                    ["bench", str(tmp_path / "a"), "-o", str(tmp_path / "r")]):
        assert main(command) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1
        assert "the gpu target is not available here (no CUDA device" in err
    with pytest.raises(GpuUnavailable):
        rt.load(tmp_path / "a")


@pytest.mark.skipif(not NO_GPU, reason="checks the message of a machine without a GPU")
def test_onnxruntime_engine_without_its_cuda_provider(tmp_path, capsys):
    import onnxruntime

    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        pytest.skip("onnxruntime-gpu is installed")
    code, err = _compile(tmp_path, capsys, "--model", "builtin:tiny-cnn", "--target-option",
                         "engine=onnxruntime")
    assert code == 0, err  # verified on the CPU path of the program
    assert main(["run", str(tmp_path / "a")]) == 2
    assert "needs onnxruntime-gpu" in capsys.readouterr().err


def test_bad_options_are_refused(tmp_path, capsys):
    code = main(["compile", "--model", "builtin:tiny-cnn", "--target", "gpu",
                 "--target-option", "dtype=int3", "-o", str(tmp_path / "b")])
    assert code == 2
    assert "dtype" in capsys.readouterr().err
    assert not (tmp_path / "b").exists()


def test_onnx_models_are_refused_in_one_line(tmp_path, capsys):
    assert main(["compile", "--model", "builtin:tiny-cnn", "--target", "cpu",
                 "-o", str(tmp_path / "cpu"), "--quiet"]) == 0
    code = main(["compile", "--model", f"onnx:{tmp_path / 'cpu/model.onnx'}", "--target", "gpu",
                 "-o", str(tmp_path / "g"), "--quiet"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "an onnx: model has none (use the cpu target)" in err
    assert len(err.splitlines()) == 1 and not (tmp_path / "g").exists()


def test_device_check_of_artifacts_on_the_cpu_path(tmp_path, capsys):
    """gpu_check --artifacts, run here through the engine's CPU path: the stored reference
    outputs are met and a pair is timed."""
    from ember.tools.gpu_check.artifacts import correctness, timing

    for name, spec in (("cnn", "builtin:tiny-cnn"), ("lm", "builtin:tiny-llama")):
        assert main(["compile", "--model", spec, "--target", "gpu", "-o",
                     str(tmp_path / name), "--quiet"]) == 0, capsys.readouterr().err
    specs = [str(tmp_path / "cnn"), f"{tmp_path / 'lm'}:{tmp_path / 'lm'}"]
    rows = correctness(True, specs, device="cpu")
    assert len(rows) == 3 and all(r["ok"] for r in rows), rows
    (pair,) = timing(True, specs, device="cpu")
    assert pair["baseline_ms"] > 0 and pair["candidate_ms"] > 0 and pair["ratio"] > 0


def test_one_session_serves_several_threads_one_call_at_a_time(tmp_path, capsys):
    """CUDA-graph replays share static buffers, so `run` holds a lock: checked on the CPU
    path by watching the program runner for overlapping calls from 8 threads."""
    import time
    from concurrent.futures import ThreadPoolExecutor

    code, err = _compile(tmp_path, capsys, "--model", "builtin:tiny-cnn")
    assert code == 0, err
    session = rt.load(tmp_path / "a", device="cpu")
    assert session.thread_safe
    engine, inner = session.engine, session.engine.runner
    active, overlaps = [0], []

    def watched(x):
        active[0] += 1
        overlaps.append(active[0] > 1)
        time.sleep(0.01)  # a window another thread would fall into without the lock
        try:
            return inner(x)
        finally:
            active[0] -= 1

    engine.runner = watched
    inputs, reference = session.reference_io()
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda _: session.run(inputs), range(32)))
    assert len(overlaps) == 32 and not any(overlaps)
    for out in results:
        np.testing.assert_allclose(out["logits"], reference["logits"], atol=1e-4)
