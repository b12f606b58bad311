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
