"""Generation artifacts (--generate): one decode graph over a KV cache, verified at compile
time against the torch model's own greedy `generate`; the runtime's generate and stream
reproduce transformers' `generate` on other prompts; families, pruned and spiking models
generate; bad requests are one-line errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import transformers as tf

import ember.runtime as rt
from ember.compiler.api import compile_model
from ember.errors import ConfigError, InputError, UnsupportedModelError
from ember.tools.cli.main import main
from ember.tools.conformance.families import (
    ALL_SCOPES,
    prune_config,
    save_families,
    spike_config,
)
from tests.e2e.generation_helpers import hf_greedy

FAMILIES = ["llama", "mistral", "phi3", "gemma", "gpt2", "opt"]  # one per attention layout
PROMPTS = [[5, 9, 13, 20, 3, 40], [11, 12, 13], [60, 1, 33, 33, 7, 7, 7, 2, 9]]


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    return save_families(tmp_path_factory.mktemp("generation"), FAMILIES)


_COMPILED: dict[str, object] = {}


def _compile(folders, name: str, passes: list | None = None, target: str = "cpu",
             options: dict | None = None, **generate):
    """The artifact for these settings, compiled once per module."""
    key = json.dumps([str(folders), name, passes, target, options, generate], sort_keys=True)
    if key not in _COMPILED:
        _COMPILED[key] = compile_model(
            {"model": f"hf:{folders / name}", "example": {"tokens": 8}, "passes": passes or [],
             "target": target, "target_options": options or {},
             "generate": {"verify_tokens": 8, **generate},
             "output": str(folders / f"{name}-{len(_COMPILED)}-gen")})
    return _COMPILED[key]


def _prefill(folders):
    """The same family's prefill-only artifact of the same length, compiled once."""
    folder = folders / "llama-prefill"
    if not folder.exists():
        compile_model({"model": f"hf:{folders / 'llama'}", "example": {"tokens": 8},
                       "output": str(folder)})
    return folder


@pytest.mark.parametrize("name", FAMILIES)
def test_every_family_generates_what_transformers_generates(folders, name):
    out = _compile(folders, name)
    manifest = json.loads((out / "manifest.json").read_text())
    checked = manifest["verification"]["generation"]
    assert checked["status"] == "passed" and checked["step_logits"]["passed"]
    assert checked["greedy_tokens_equal"] == checked["new_tokens"] >= 1
    session = rt.load(out)
    for prompt in PROMPTS:  # prompts the compile never saw
        expected = hf_greedy(folders / name, prompt, 24)
        assert session.generate(prompt, max_new_tokens=24) == expected
        assert list(session.stream(np.array([prompt]), max_new_tokens=24)) == expected


def test_a_batch_of_prompts_of_different_lengths_generates_each_as_alone(folders):
    """Left-padded, with the padding masked and positions counted from each prompt's first
    real token: every row equals transformers' generate of that prompt by itself."""
    session = rt.load(_compile(folders, "llama"))
    expected = [hf_greedy(folders / "llama", prompt, 12) for prompt in PROMPTS]
    assert session.generate(PROMPTS, max_new_tokens=12) == expected
    same_length = np.array([PROMPTS[0], PROMPTS[0][::-1]])
    assert session.generate(same_length, max_new_tokens=12) == [
        hf_greedy(folders / "llama", list(row), 12) for row in same_length]


@pytest.mark.parametrize("passes", ["prune", "pat", "spike"])
def test_pruned_and_spiking_models_generate(folders, passes):
    corpus = folders / "corpus.txt"
    spec = {"prune": prune_config(corpus, ALL_SCOPES),
            "pat": prune_config(corpus, "hidden", method="pat"),
            "spike": spike_config(corpus)}[passes]
    out = _compile(folders, "llama", [spec])
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["passes"][0]["modified"]
    assert manifest["verification"]["generation"]["greedy_tokens_equal"] == 8
    assert rt.load(out).generate(PROMPTS[0], max_new_tokens=5)  # the runtime decodes it


def test_the_cli_streams_text_through_the_artifacts_tokenizer(folders, capsys):
    out = _compile(folders, "llama")
    prompt = "the quick brown"
    tokenizer = tf.AutoTokenizer.from_pretrained(folders / "llama")
    expected = tokenizer.decode(hf_greedy(folders / "llama", tokenizer(prompt)["input_ids"],
                                           12), skip_special_tokens=True)
    assert main(["run", str(out), "--prompt", prompt, "--max-new-tokens", "12"]) == 0
    assert capsys.readouterr().out == expected + "\n"
    assert main(["run", str(out), "--prompt", prompt, "--chat"]) == 2
    assert "has no chat template" in capsys.readouterr().err


def test_sampling_is_seeded_and_respects_top_k(folders):
    session = rt.load(_compile(folders, "llama"))
    draw = dict(max_new_tokens=16, do_sample=True, temperature=1.5, seed=7)
    first = session.generate(PROMPTS[0], **draw)
    assert session.generate(PROMPTS[0], **draw) == first  # the same seed, the same draws
    greedy = session.generate(PROMPTS[0], max_new_tokens=16)
    assert session.generate(PROMPTS[0], **{**draw, "top_k": 1}) == greedy  # top-1 is greedy


@pytest.mark.parametrize("call, message", [
    (lambda s: s.stream([[1, 2], [3, 4]]), "stream takes one sequence"),
    (lambda s: s.generate([[1, 2], []]), "non-empty"),
    (lambda s: s.generate([]), "non-empty"),
    (lambda s: s.generate([1.5, 2.0]), "integer token ids"),
    (lambda s: s.generate([1, 2], max_new_tokens=0), "max_new_tokens"),
    (lambda s: s.generate([1, 2], do_sample=True, top_p=0), "top_p"),
    (lambda s: s.generate([1, 2], do_sample=True, temperature=0), "temperature"),
    (lambda s: s.generate(list(range(3)) * 30), "max_length"),
    (lambda s: s.generate([1, 2], stop=["\n"]), "stop takes token ids"),
    (lambda s: s.generate([1, 2], stop=5), "stop takes a list of token ids"),
])
def test_bad_generation_requests_are_input_errors(folders, call, message):
    session = rt.load(_compile(folders, "llama", max_length=64))
    with pytest.raises(InputError, match=message):
        call(session)


def test_generation_stops_at_max_length(folders):
    """max_length counts prompt and new tokens, as transformers' does."""
    session = rt.load(_compile(folders, "llama", max_length=64))
    new = session.generate(list(range(3)) * 18, max_new_tokens=100)  # a 54-token prompt
    assert len(new) == 64 - 54 or new[-1] in session.manifest["generation"]["eos_token_ids"]


@pytest.mark.parametrize("config, error, message", [
    ({"model": "builtin:tiny-cnn", "example": {"shape": [1, 3, 16, 16]}}, UnsupportedModelError,
     "need a causal language model"),
    ({"model": "builtin:tiny-llama", "target": "gpu"}, ConfigError,
     "does not build generation artifacts yet"),
    ({"model": "builtin:tiny-llama", "example": {"tokens": 250}}, ConfigError,
     "exceed max_length 256"),
    ({"model": "builtin:tiny-llama", "generate_max": 1000}, ConfigError,
     "more than the model's max_position_embeddings 256"),
])
def test_generation_declines_in_one_line(tmp_path, config, error, message):
    generate = {"max_length": config.pop("generate_max")} if "generate_max" in config else {}
    with pytest.raises(error, match=message):
        compile_model({**config, "generate": generate, "output": str(tmp_path / "out")})
    assert not (tmp_path / "out").exists()


def test_bench_reports_time_to_first_token_decode_speed_memory_and_agreement(folders, tmp_path,
                                                                             capsys):
    plain = _compile(folders, "llama")
    pruned = _compile(folders, "llama", [prune_config(folders / "corpus.txt", ALL_SCOPES)])
    assert main(["bench", str(plain), str(pruned), "--baseline", str(plain), "--budget", "0.2",
                 "-o", str(tmp_path / "report")]) == 0
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    own, other = (row["generation"] for row in report["rows"])
    assert own["greedy_tokens_equal"] == own["new_tokens"] == 64  # itself: every token
    assert own["greedy_agreement"] == 1.0
    assert 0 <= other["greedy_tokens_equal"] <= 64 and other["rounds"] >= 3
    for figures in (own, other):
        assert figures["ttft_ms"] > 0 and figures["decode_tokens_per_s"] > 0
        assert 20 << 20 < figures["peak_rss_bytes"] < 2 << 30  # a process, not the machine
    markdown = (tmp_path / "report" / "report.md").read_text()
    assert "## Generation" in markdown and "time to first token" in markdown


def test_a_generation_graph_counts_the_macs_of_its_prefill(folders):
    """The op report of a decode graph sizes its symbolic dims as the stored prompt's
    prefill (ONNX Runtime's symbolic shape inference follows the computed reshapes): every
    product is counted, and exactly as many MACs as the prefill artifact of that length."""
    def totals(folder) -> dict:
        return json.loads((folder / "manifest.json").read_text())["ops"]["totals"]

    generation, prefill = totals(_compile(folders, "llama")), totals(_prefill(folders))
    assert generation["unknown_layers"] == prefill["unknown_layers"] == 0
    assert generation["macs"] == prefill["macs"] > 0


def test_perplexity_of_a_generation_artifact_is_its_prefill_artifacts(folders, tmp_path):
    """`ember bench --data text:` scores a generation artifact through its prefill (empty
    cache): the same model's prefill-only artifact of the same length gives the same
    perplexity on the same windows."""
    from ember.tools.bench import metrics
    from ember.tools.bench.quality import _logits_of

    generation = rt.load(_compile(folders, "llama"))
    prefill = rt.load(_prefill(folders))
    windows = np.random.default_rng(0).integers(0, 64, (4, 8))
    ours = metrics.perplexity(_logits_of(generation, "text:x"), windows)
    theirs = metrics.perplexity(_logits_of(prefill, "text:x"), windows)
    assert ours == pytest.approx(theirs, rel=1e-5) and ours > 1.0
    assert main(["bench", str(_compile(folders, "llama")), "--data",
                 f"text:{folders / 'corpus.txt'}", "--budget", "0.2", "-o",
                 str(tmp_path / "report")]) == 0
    quality = json.loads((tmp_path / "report" / "report.json").read_text())["rows"][0]["quality"]
    assert quality["metric"] == "perplexity" and quality["value"] > 1.0
