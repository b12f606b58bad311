"""`tvm` generation artifacts: the decode graph at fixed shapes over a static KV cache
(targets/tvm/static_cache.py, runtime/engines/tvm_cache.py), verified at compile time like
the cpu ones; here against transformers' own `generate` on prompts the compile never saw
(longer than a prefill chunk, shorter, and ending in a single decode call), against the
torch decode graph on a cache that arrives from outside, and for its one copy of the
weights."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
import torch
import transformers as tf

import ember.runtime as rt
from ember.compiler.api import compile_model
from ember.compiler.models.decoding import CausalLMWithCache
from ember.errors import InputError
from ember.tools.conformance.families import save_families
from tests.e2e.generation_helpers import hf_greedy

pytest.importorskip("tvm")

FAMILIES = ["llama", "gpt2"]  # rotary grouped-query attention; learned positions, Conv1D
PROMPTS = [[5, 9, 13, 20, 3, 40], [11, 12, 13], [60, 1, 33, 33, 7, 7, 7, 2, 9]]
# prompts of 6, 3 and 9 tokens: padded chunks and a lone token; caches of 16 and 32
# positions, so 16 new tokens move every prompt to the larger cache
CHUNK, MAX_LENGTH, FIRST_CACHE = 4, 32, 16
SIZES = [16, 32]


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    return save_families(tmp_path_factory.mktemp("generation-tvm"), FAMILIES)


@pytest.fixture(scope="module")
def artifacts(folders):
    return {name: compile_model(
        {"model": f"hf:{folders / name}", "example": {"tokens": 8}, "target": "tvm",
         "target_options": {"prefill_chunk": CHUNK, "first_cache": FIRST_CACHE},
         "generate": {"verify_tokens": 8, "max_length": MAX_LENGTH},
         "output": str(folders / f"{name}-tvm-gen")}) for name in FAMILIES}


@pytest.mark.parametrize("name", FAMILIES)
def test_tvm_generates_what_transformers_generates(folders, artifacts, name):
    manifest = json.loads((artifacts[name] / "manifest.json").read_text())
    checked = manifest["verification"]["generation"]
    assert checked["status"] == "passed" and checked["greedy_tokens_equal"] == 8
    functions = manifest["target_info"]["functions"]
    assert {k: v["tokens"] for k, v in functions.items()} == {
        **{f"decode.{size}": 1 for size in SIZES}, **{f"prefill.{size}": CHUNK for size in SIZES}}
    session = rt.load(artifacts[name])
    expected = [hf_greedy(folders / name, prompt, 16) for prompt in PROMPTS]
    for prompt, tokens in zip(PROMPTS, expected, strict=True):
        assert session.generate(prompt, max_new_tokens=16) == tokens
        assert list(session.stream(np.array([prompt]), max_new_tokens=16)) == tokens
    assert session.generate(PROMPTS, max_new_tokens=16) == expected  # a batch, left-padded


def test_a_cache_from_outside_gives_the_torch_decode_graphs_outputs(folders, artifacts):
    """`run` keeps the generation graph's contract (a past of any length, a batch, left
    padding) over the static caches, moving to a larger one where the past and the new
    tokens need it: the outputs equal the torch decode graph's."""
    lm = tf.AutoModelForCausalLM.from_pretrained(folders / "llama").eval()
    session = rt.load(artifacts["llama"])
    info = session.manifest["generation"]
    rng = np.random.default_rng(0)
    past = {name: rng.standard_normal((2, info["kv_heads"], 14, info["head_dim"])).astype(
        np.float32) for name in info["past_inputs"]}  # 14 + 6 positions: the 32-slot cache
    ids = np.array([[7, 8, 9, 10, 11, 12], [0, 0, 3, 4, 5, 6]], np.int64)
    mask = np.ones((2, 20), np.int64)
    mask[1, :2] = mask[1, 14:16] = 0  # padding in the cache and among the new tokens
    outputs = session.run({"input_ids": ids, "attention_mask": mask, **past})
    with torch.no_grad():
        expected = CausalLMWithCache(lm)(torch.from_numpy(ids), torch.from_numpy(mask),
                                         *map(torch.from_numpy, past.values()))
    names = ["logits", *info["present_outputs"]]
    for name, want in zip(names, expected, strict=True):
        got, want = outputs[name], want.numpy()
        rows = mask[:, -6:].astype(bool) if name == "logits" else slice(None)
        scale = np.abs(want).max()
        assert got.shape == want.shape
        assert np.abs(got[rows] - want[rows]).max() <= 1e-5 * scale, name


def test_the_weights_are_stored_once(artifacts):
    from safetensors.numpy import load_file

    folder = artifacts["llama"]
    functions = json.loads((folder / "manifest.json").read_text())["target_info"]["functions"]
    names = {tuple(spec["param_names"]) for spec in functions.values()}
    assert len(names) == 1  # every library reads the same weights
    arrays = load_file(str(folder / "params.safetensors"))
    digests = {hashlib.sha256(a.tobytes()).hexdigest() + str(a.shape) for a in arrays.values()}
    assert len(digests) == len(arrays)


def test_the_static_cache_holds_max_length_positions(artifacts):
    session = rt.load(artifacts["llama"])
    new = session.generate(list(range(1, 25)), max_new_tokens=30)  # 24 + 8 = max_length
    eos = session.manifest["generation"]["eos_token_ids"]
    assert len(new) == MAX_LENGTH - 24 or new[-1] in eos
    info = session.manifest["generation"]
    past = {n: np.zeros((1, info["kv_heads"], MAX_LENGTH - 2, info["head_dim"]), np.float32)
            for n in info["past_inputs"]}
    with pytest.raises(InputError, match="exceed the artifact's cache of 32"):
        session.run({"input_ids": np.ones((1, 3), np.int64),
                     "attention_mask": np.ones((1, MAX_LENGTH + 1), np.int64), **past})


def test_a_spiking_model_generates_on_tvm(folders):
    """Spiking projections (integer codes) in both
    fixed-shape functions; verification reports the agreement with the float model."""
    from ember.tools.conformance.families import spike_config

    out = compile_model({"model": f"hf:{folders / 'llama'}", "example": {"tokens": 8},
                         "passes": [spike_config(folders / "corpus.txt")], "target": "tvm",
                         "target_options": {"prefill_chunk": 1},  # decode.32 alone
                         "generate": {"verify_tokens": 8, "max_length": MAX_LENGTH},
                         "output": str(folders / "llama-spike-tvm-gen")})
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["passes"][0]["modified"]
    assert list(manifest["target_info"]["functions"]) == ["decode.32"]
    assert manifest["verification"]["generation"]["new_tokens"] == 8
    assert len(rt.load(out).generate(PROMPTS[0], max_new_tokens=5)) >= 1


def test_inspect_names_the_functions_and_the_cache(artifacts, capsys):
    from ember.tools.cli.main import main

    assert main(["inspect", str(artifacts["gpt2"])]) == 0
    out = capsys.readouterr().out
    assert "shared by 4 libraries (decode 1 token a call, prefill 4 tokens a call), static " \
        "caches of 16, 32 positions" in out
