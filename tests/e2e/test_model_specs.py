"""The hf:DIR and torch:pkg.module:factory model specs, compiled and verified end to end."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import ember
import ember.runtime as rt
from ember.errors import ModelSpecError


def test_hf_directory_causal_lm(tmp_path):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=128, hidden_size=32, intermediate_size=64,
                         num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1)
    lm = LlamaForCausalLM(config).eval()
    lm.save_pretrained(tmp_path / "llama")
    out = ember.compile({"model": f"hf:{tmp_path}/llama", "example": {"tokens": 6},
                         "target": "cpu", "output": str(tmp_path / "a")})
    session = rt.load(out)
    ids = np.array([[1, 5, 9, 3, 7, 2]], np.int64)
    with torch.no_grad():
        expected = lm(input_ids=torch.from_numpy(ids), use_cache=False).logits.numpy()
    np.testing.assert_allclose(session.run({"input_ids": ids})["logits"], expected,
                               atol=1e-4, rtol=1e-4)


CORPUS = "the quick brown fox jumps over the lazy dog while the cat sleeps. " * 60


def _save_tokenizer(folder, vocab: int) -> None:
    """A character BPE tokenizer trained on CORPUS, saved the way transformers saves one."""
    from tokenizers import Tokenizer, models, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.train_from_iterator([CORPUS], trainers.BpeTrainer(vocab_size=vocab,
                                                          special_tokens=["<unk>"]))
    PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>").save_pretrained(folder)


def test_hf_directory_tunes_on_text_through_its_own_tokenizer(tmp_path):
    """A user's directory with a tokenizer: `prune` reads text through it (no tokenizer error),
    the artifact ships it, and the generation config is kept."""
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    from ember.compiler.config import ExampleSpec
    from ember.compiler.models import load_model

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64,
                         num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1)
    folder = tmp_path / "llama"
    LlamaForCausalLM(config).save_pretrained(folder)
    GenerationConfig(max_new_tokens=7, do_sample=False).save_pretrained(folder)
    _save_tokenizer(folder, vocab=64)
    (tmp_path / "corpus.txt").write_text(CORPUS)
    loaded = load_model(f"hf:{folder}", ExampleSpec(tokens=8), 0)
    assert loaded.info["tokenizer"]("the fox")["input_ids"]
    assert loaded.info["generation_config"]["max_new_tokens"] == 7
    out = ember.compile({"model": f"hf:{folder}", "example": {"tokens": 8},
                         "passes": [{"prune": {"method": "taylor", "ratio": 0.25, "steps": 2,
                                               "batch": 2, "seq": 16, "round_to": 4,
                                               "data": f"text:{tmp_path / 'corpus.txt'}"}}],
                         "target": "cpu", "output": str(tmp_path / "a")})
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["passes"][0]["modified"]
    assert any(name.startswith("tokenizer/") for name in manifest["files"])


def test_hf_directory_with_a_broken_tokenizer_says_so(tmp_path):
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64,
                         num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1)
    LlamaForCausalLM(config).save_pretrained(tmp_path / "llama")
    (tmp_path / "llama" / "tokenizer.json").write_text("{not json")
    with pytest.raises(ModelSpecError, match="the tokenizer in the directory does not load"):
        ember.compile({"model": f"hf:{tmp_path}/llama", "target": "null",
                       "output": str(tmp_path / "a")})


def test_torch_factory(tmp_path, monkeypatch):
    (tmp_path / "usermodels.py").write_text(
        "import torch\n"
        "def make():\n"
        "    torch.manual_seed(3)\n"
        "    return torch.nn.Sequential(torch.nn.Linear(5, 7), torch.nn.Tanh())\n"
        "def not_a_module():\n"
        "    return 42\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    out = ember.compile({"model": "torch:usermodels:make", "example": {"shape": [2, 5]},
                         "target": "cpu", "output": str(tmp_path / "a")})
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["signature"]["inputs"][0]["shape"] == [2, 5]
    assert manifest["verification"]["status"] == "passed"
    with pytest.raises(ModelSpecError, match="returned int, not an nn.Module"):
        ember.compile({"model": "torch:usermodels:not_a_module", "example": {"shape": [1, 5]},
                       "output": str(tmp_path / "b")})
    with pytest.raises(ModelSpecError, match="has no attribute 'missing'"):
        ember.compile({"model": "torch:usermodels:missing", "output": str(tmp_path / "c")})
