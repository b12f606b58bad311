"""The canonical forms of passes/decoders/views.py compute what the user's model computes, on
random (not initial) weights, and map back to the user's class."""

from __future__ import annotations

import pytest
import torch
import transformers as tf

from ember.errors import UnsupportedModelError
from ember.passes.decoders.conv1d import linearize
from ember.passes.decoders.views import canonical_form, check_view

SMALL = dict(vocab_size=48, hidden_size=32, intermediate_size=40, num_hidden_layers=2,
             num_attention_heads=4, num_key_value_heads=2, bos_token_id=1, eos_token_id=2,
             pad_token_id=0)
MODELS = {
    "phi3": lambda: tf.Phi3ForCausalLM(tf.Phi3Config(**SMALL)),
    "gemma": lambda: tf.GemmaForCausalLM(tf.GemmaConfig(**SMALL, head_dim=8)),
    "gpt2": lambda: tf.GPT2LMHeadModel(tf.GPT2Config(vocab_size=48, n_embd=32, n_layer=2,
                                                     n_head=4, n_positions=32)),
}
IDS = torch.tensor([[3, 17, 5, 40, 9, 22, 1, 30, 11, 2]])


def _randomized(name: str) -> torch.nn.Module:
    """Every parameter redrawn, norms included (Gemma's start at w = 0, which hides `1 + w`)."""
    torch.manual_seed(0)
    model = MODELS[name]().eval()
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.normal_(0.0, 0.3)
    return model


def _logits(model, ids=IDS) -> torch.Tensor:
    with torch.no_grad():
        return model(input_ids=ids, use_cache=False).logits


@pytest.mark.parametrize("name", list(MODELS))
def test_canonical_form_computes_the_same_and_goes_back(name):
    model = _randomized(name)
    canonical = canonical_form(model)
    assert canonical.model is not model
    assert check_view(model, canonical.model, IDS) <= 1e-6
    back = canonical.restore(canonical.model)
    assert type(back) is type(model)
    torch.testing.assert_close(_logits(back), _logits(model), rtol=0, atol=1e-5)


def test_phi3_and_gemma_views_are_llama_models():
    for name in ("phi3", "gemma"):
        view = canonical_form(_randomized(name)).model
        assert type(view) is tf.LlamaForCausalLM
        assert not view.config.tie_word_embeddings or name == "phi3"


def test_gemma_keeps_its_tied_embedding_when_the_width_changes():
    """A narrower Gemma view goes back tied, the final norm absorbing s/s' (gemma.py)."""
    from ember.passes.prune.llm.slice import KeepSet, slice_decoder

    model = _randomized("gemma")
    canonical = canonical_form(model)
    keep = KeepSet(hidden=torch.arange(0, 32, 2))  # the zeroed-out channels: any 16
    narrow_view = slice_decoder(canonical.model, keep)
    narrow = canonical.restore(narrow_view)
    assert narrow.config.hidden_size == 16 and narrow.config.tie_word_embeddings
    assert narrow.lm_head.weight is narrow.model.embed_tokens.weight
    reference = _logits(narrow_view)
    error = (_logits(narrow) - reference).abs().max() / reference.abs().max()
    assert error <= 1e-5


def test_a_view_that_differs_is_declined_with_its_measured_error():
    model = _randomized("phi3")
    other = _randomized("phi3")
    with torch.no_grad():
        other.lm_head.weight.mul_(1.01)
    with pytest.raises(UnsupportedModelError, match="differs from it by 1.0e-02"):
        check_view(model, other, IDS)


def test_phi3_partial_rotary_is_declined_by_name():
    model = tf.Phi3ForCausalLM(tf.Phi3Config(**SMALL, partial_rotary_factor=0.5))
    with pytest.raises(UnsupportedModelError, match="partial_rotary_factor 0.5"):
        canonical_form(model)


def test_linearized_gpt2_is_the_same_function():
    model = _randomized("gpt2")
    reference = _logits(model)
    names = linearize(model)
    assert len(names) == 8
    torch.testing.assert_close(_logits(model), reference, rtol=0, atol=1e-5)
