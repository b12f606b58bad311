"""User models of transformers' popular families, as `hf:DIR` with their own tokenizer: each
compiles and verifies plain, and `prune` and `spike` (reading text through the directory's
tokenizer) either apply and verify, or decline in one line that names the model type."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import transformers as tf

from ember.compiler.api import compile_model
from ember.errors import UnsupportedModelError

CORPUS = "the quick brown fox jumps over the lazy dog while the cat sleeps. " * 60
LLAMA_LIKE = dict(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=2)
FAMILIES = {  # name: (config class, model class, config, passes apply)
    "llama": (tf.LlamaConfig, tf.LlamaForCausalLM, LLAMA_LIKE, True),
    "mistral": (tf.MistralConfig, tf.MistralForCausalLM, LLAMA_LIKE, True),
    "qwen2": (tf.Qwen2Config, tf.Qwen2ForCausalLM, LLAMA_LIKE, True),
    "qwen3": (tf.Qwen3Config, tf.Qwen3ForCausalLM, {**LLAMA_LIKE, "head_dim": 8}, True),
    "phi3": (tf.Phi3Config, tf.Phi3ForCausalLM, {**LLAMA_LIKE, "pad_token_id": 0}, False),
    "gemma": (tf.GemmaConfig, tf.GemmaForCausalLM, {**LLAMA_LIKE, "head_dim": 8}, False),
    "gpt2": (tf.GPT2Config, tf.GPT2LMHeadModel,
             dict(vocab_size=64, n_embd=32, n_layer=2, n_head=4, n_positions=64), False),
    "opt": (tf.OPTConfig, tf.OPTForCausalLM,
            dict(vocab_size=64, hidden_size=32, ffn_dim=64, num_hidden_layers=2,
                 num_attention_heads=4, max_position_embeddings=64, word_embed_proj_dim=32),
            False),
    "bert": (tf.BertConfig, tf.BertModel,
             dict(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                  num_attention_heads=4), False),
}


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """Each family saved once, tiny, random, with a BPE tokenizer trained on CORPUS."""
    from tokenizers import Tokenizer, models, trainers

    root = tmp_path_factory.mktemp("families")
    (root / "corpus.txt").write_text(CORPUS)
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.train_from_iterator([CORPUS], trainers.BpeTrainer(vocab_size=64,
                                                          special_tokens=["<unk>"]))
    for name, (config_class, model_class, config, _) in FAMILIES.items():
        torch.manual_seed(0)
        model_class(config_class(**config)).save_pretrained(root / name)
        tf.PreTrainedTokenizerFast(tokenizer_object=tok,
                                   unk_token="<unk>").save_pretrained(root / name)
    return root


def _compile(folders, name: str, passes: list, target: str = "cpu"):
    out = compile_model({"model": f"hf:{folders / name}", "example": {"tokens": 8},
                         "passes": passes, "target": target,
                         "output": str(folders / f"{name}-{len(passes)}-{target}")}, force=True)
    return json.loads((out / "manifest.json").read_text())


def _prune(folders) -> dict:
    return {"prune": {"method": "taylor", "ratio": 0.25, "steps": 2, "batch": 2, "seq": 16,
                      "round_to": 4, "scope": "hidden+heads+ffn",
                      "data": f"text:{folders / 'corpus.txt'}"}}


def _pat(folders) -> dict:
    return {"prune": {"method": "pat", "ratio": 0.25, "steps": 4, "batch": 2, "seq": 16,
                      "round_to": 4, "hsm_rank": 4, "data": f"text:{folders / 'corpus.txt'}"}}


def _spike(folders) -> dict:
    return {"spike": {"w_bits": 4, "a_bits": 4, "calib_windows": 4, "calib_seq": 16,
                      "data": f"text:{folders / 'corpus.txt'}"}}


@pytest.mark.parametrize("name", list(FAMILIES))
def test_every_family_compiles_plain(folders, name):
    manifest = _compile(folders, name, [])
    assert manifest["verification"]["status"] == "passed"
    causal = FAMILIES[name][1] is not tf.BertModel
    assert manifest["signature"]["outputs"][0]["name"] == ("logits" if causal else
                                                           "last_hidden_state")


@pytest.mark.parametrize("name", list(FAMILIES))
def test_prune_and_spike_apply_or_decline_by_name(folders, name):
    applies = FAMILIES[name][3]
    model_type = FAMILIES[name][0].model_type
    for passes in ([_prune(folders)], [_pat(folders)], [_spike(folders)]):
        if applies:
            manifest = _compile(folders, name, passes)
            assert manifest["passes"][0]["modified"]
            assert manifest["verification"]["status"] == "passed"
            continue
        with pytest.raises(UnsupportedModelError, match=f"model.type '{model_type}'"):
            _compile(folders, name, passes)


def test_qwen3_pruned_widths_reload_with_from_pretrained(folders, tmp_path):
    """Heads, residual channels and FFN pruned; the saved model reloads with the stock
    class and computes what the pass's model computes."""
    from ember.compiler.data.tuning import LocalData
    from ember.compiler.models.language import CausalLMLogits
    from ember.passes import PASSES, PassContext

    lm = tf.AutoModelForCausalLM.from_pretrained(folders / "qwen3")
    tokenizer = tf.AutoTokenizer.from_pretrained(folders / "qwen3")
    ids = torch.tensor([[1, 5, 9, 3, 7, 2, 4, 8]])
    ctx = PassContext(example_inputs={"input_ids": ids}, data=LocalData(tokenizer))
    result = PASSES["prune"](**_prune(folders)["prune"])(CausalLMLogits(lm), ctx)
    pruned = result.model.lm
    assert pruned.config.hidden_size < 32
    pruned.save_pretrained(tmp_path / "pruned")
    reloaded = tf.AutoModelForCausalLM.from_pretrained(tmp_path / "pruned").eval()
    with torch.no_grad():
        np.testing.assert_allclose(reloaded(input_ids=ids).logits.numpy(),
                                   pruned(input_ids=ids).logits.numpy(), atol=1e-5)
