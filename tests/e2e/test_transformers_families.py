"""User models of transformers' popular families, as `hf:DIR` with their own tokenizer: each
compiles and verifies plain; every decoder family prunes (Taylor and PAT) and spikes, reading
text through the directory's tokenizer, and its pruned widths reload with `from_pretrained`;
the scopes a family cannot slice, and the encoders, decline in one line naming why."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import transformers as tf

from ember.compiler.api import compile_model
from ember.errors import UnsupportedModelError
from ember.tools.conformance.families import (
    ALL_SCOPES,
    DECODERS,
    FAMILIES,
    prune_config,
    save_families,
    spike_config,
)


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """Each family saved once, tiny, random, with its BPE tokenizer (families.py)."""
    return save_families(tmp_path_factory.mktemp("families"), list(FAMILIES))


def _compile(folders, name: str, passes: list, target: str = "cpu"):
    out = compile_model({"model": f"hf:{folders / name}", "example": {"tokens": 8},
                         "passes": passes, "target": target,
                         "output": str(folders / f"{name}-{len(passes)}-{target}")}, force=True)
    return json.loads((out / "manifest.json").read_text())


def _prune(folders, scope: str = ALL_SCOPES) -> dict:
    return prune_config(folders / "corpus.txt", scope)


def _pat(folders, scope: str = "hidden") -> dict:
    return prune_config(folders / "corpus.txt", scope, method="pat")


def _spike(folders) -> dict:
    return spike_config(folders / "corpus.txt")


@pytest.mark.parametrize("name", list(FAMILIES))
def test_every_family_compiles_plain(folders, name):
    manifest = _compile(folders, name, [])
    assert manifest["verification"]["status"] == "passed"
    causal = FAMILIES[name][3] is not None
    assert manifest["signature"]["outputs"][0]["name"] == ("logits" if causal else
                                                           "last_hidden_state")


@pytest.mark.parametrize("name", DECODERS)
def test_every_decoder_family_prunes_and_spikes_on_its_tokenizers_text(folders, name):
    scopes = FAMILIES[name][3]
    first_scope = scopes.split("+")[0]
    stats = []
    for passes in ([_prune(folders, scopes)], [_pat(folders, first_scope)], [_spike(folders)]):
        manifest = _compile(folders, name, passes)
        assert manifest["passes"][0]["modified"]
        assert manifest["verification"]["status"] == "passed"
        stats.append(manifest["passes"][0]["stats"])
    layers = manifest["verification"]["integer_layers"]  # the spike compile, last
    linears = {"phi3": 4, "gpt2": 4, "opt": 6}.get(name, 7)  # fused qkv, gate_up; no gate
    assert layers["layers"] == layers["bit_exact"] == 2 * linears  # on ONNX Runtime
    stats = stats[0]  # Taylor on every scope the family slices
    width = stats["intermediate"][0]  # 64, or GPT-2's 4·n_embd
    assert stats["intermediate"] == [width, width // 2]
    if "hidden" in scopes:  # 2 of 4 heads: one per KV group
        assert stats["hidden"] == [32, 16] and stats["heads"] == [4, 2]


@pytest.mark.parametrize("name", ["gpt2", "opt"])
def test_layernorm_families_decline_the_scopes_they_cannot_slice(folders, name):
    for scope in ("hidden", "heads"):
        with pytest.raises(UnsupportedModelError,
                           match=f"prune: model type '{name}' cannot prune scope {scope}: "):
            _compile(folders, name, [_prune(folders, scope)])


def test_encoders_decline_by_name(folders):
    for passes in ([_prune(folders)], [_pat(folders)], [_spike(folders)]):
        with pytest.raises(UnsupportedModelError, match="model type 'bert' is an encoder"):
            _compile(folders, "bert", passes)


@pytest.mark.parametrize("name", DECODERS)
def test_pruned_widths_reload_with_from_pretrained(folders, name, tmp_path):
    """The pruned model, saved, reloads with the family's own class and computes what the
    pass's model computes."""
    from ember.compiler.data.tuning import LocalData
    from ember.compiler.models.language import CausalLMLogits
    from ember.passes import PASSES, PassContext

    lm = tf.AutoModelForCausalLM.from_pretrained(folders / name)
    tokenizer = tf.AutoTokenizer.from_pretrained(folders / name)
    ids = torch.tensor([[1, 5, 9, 3, 7, 2, 4, 8]])
    ctx = PassContext(example_inputs={"input_ids": ids}, data=LocalData(tokenizer))
    result = PASSES["prune"](**_prune(folders, FAMILIES[name][3])["prune"])(
        CausalLMLogits(lm), ctx)
    pruned = result.model.lm
    assert type(pruned) is type(lm)
    pruned.save_pretrained(tmp_path / "pruned")
    reloaded = tf.AutoModelForCausalLM.from_pretrained(tmp_path / "pruned").eval()
    assert type(reloaded) is type(lm)
    with torch.no_grad():
        np.testing.assert_allclose(reloaded(input_ids=ids).logits.numpy(),
                                   pruned(input_ids=ids).logits.numpy(), atol=1e-5)
