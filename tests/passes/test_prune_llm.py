"""prune/llm groups and slice: groups, hard mask vs slice equivalence, reload, size."""

from __future__ import annotations

import copy
import functools
from pathlib import Path

import pytest
import torch
from transformers import (
    AutoModelForCausalLM,
    GPT2Config,
    GPT2LMHeadModel,
    LlamaConfig,
    LlamaForCausalLM,
    MistralConfig,
    MistralForCausalLM,
    Qwen2Config,
    Qwen2ForCausalLM,
)

from ember.cache import cache_dir
from ember.compiler.models import smollm2
from ember.passes.prune.llm import slice as prune_llm_slice
from ember.passes.prune.llm.groups import PruneError, decoder_groups
from ember.passes.prune.llm.slice import (
    KeepSet,
    apply_hard_mask,
    check_equivalence,
    round_keep,
    slice_decoder,
)

D, HEADS, KV_HEADS, HEAD_DIM, FFN, LAYERS, VOCAB = 64, 4, 2, 16, 96, 3, 101
TIES = ("tied", "untied", "untied_by_caller")
SMOLLM2 = cache_dir() / smollm2.CACHE_NAME / smollm2.WEIGHTS


def _sizes(**overrides) -> dict:
    sizes = dict(hidden_size=D, num_attention_heads=HEADS, num_key_value_heads=KV_HEADS,
                 head_dim=HEAD_DIM, intermediate_size=FFN, num_hidden_layers=LAYERS,
                 vocab_size=VOCAB, rms_norm_eps=0.1, initializer_range=0.1)
    return {**sizes, **overrides}


def _randomize(lm: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Norm gains != 1 (an unscaled gain would show) and nonzero biases (sliced too)."""
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for name, p in lm.named_parameters():
            if "norm" in name:
                p.copy_(torch.rand(p.shape, generator=g) + 0.5)
            elif name.endswith("bias"):
                p.copy_(torch.randn(p.shape, generator=g) * 0.1)
    return lm.eval()


@functools.cache
def _llama(tie: str = "tied", bias: bool = False) -> LlamaForCausalLM:
    """Cached per variant: tests must remove their hooks (`_masked` does)."""
    torch.manual_seed(0)
    config = LlamaConfig(**_sizes(tie_word_embeddings=tie != "untied"),
                         attention_bias=bias, mlp_bias=bias)
    lm = LlamaForCausalLM(config)
    if tie == "untied_by_caller":  # config still says tied; the Parameters differ
        lm.lm_head.weight = torch.nn.Parameter(lm.model.embed_tokens.weight.detach().clone())
    return _randomize(lm, 0)


def _keep(scope: str) -> KeepSet:
    g = torch.Generator().manual_seed(1)
    hidden = torch.randperm(D, generator=g)[:48].sort().values
    ffn = [torch.randperm(FFN, generator=g)[:64].sort().values for _ in range(LAYERS)]
    # "heads" drops a whole KV group per layer (2 heads / 1 KV head); "all" keeps one head
    # of each group (2 heads / 2 KV heads), different heads in each layer
    drop_group = [torch.tensor(h) for h in ([0, 1], [2, 3], [0, 1])]
    one_each = [torch.tensor(h) for h in ([0, 3], [1, 2], [1, 3])]
    return {
        "hidden": KeepSet(hidden=hidden),
        "heads": KeepSet(heads=drop_group),
        "ffn": KeepSet(ffn=ffn),
        "all": KeepSet(hidden=hidden, heads=one_each, ffn=ffn),
    }[scope]


def _ids(seed: int = 2, vocab: int = VOCAB, length: int = 12) -> torch.Tensor:
    return torch.randint(0, vocab, (2, length), generator=torch.Generator().manual_seed(seed))


def _masked_error(lm, keep: KeepSet, sliced, ids: torch.Tensor) -> float:
    handles = apply_hard_mask(lm, keep)
    try:
        return check_equivalence(lm, sliced, ids)
    finally:
        for handle in handles:
            handle.remove()


def _param_count(d: int, heads: int, kv_heads: int, ffn: int, tied: bool) -> int:
    """From the shapes alone: embedding (+ head), per layer q/k/v/o, gate/up/down, 2 norms."""
    per_layer = d * HEAD_DIM * (2 * heads + 2 * kv_heads) + 3 * d * ffn + 2 * d
    return VOCAB * d * (1 if tied else 2) + LAYERS * per_layer + d


def test_decoder_groups_reads_the_sizes():
    for tie in TIES:
        groups = decoder_groups(_llama(tie))
        assert (groups.hidden, groups.num_layers, groups.num_heads, groups.num_kv_heads,
                groups.head_dim, groups.intermediate) == (D, LAYERS, HEADS, KV_HEADS, HEAD_DIM,
                                                          FFN)
        assert groups.heads_per_group() == 2
        assert groups.tied == (tie == "tied")


def test_round_keep():
    assert [round_keep(576, r, 16) for r in (0.2, 0.25, 0.3, 0.5)] == [464, 432, 400, 288]
    assert round_keep(576, 0.0, 16) == 576
    assert round_keep(64, 0.99, 16) == 16  # at least one multiple
    assert round_keep(60, 0.0, 16) == 60  # never more than n
    assert round_keep(12, 0.5, 16) == 12  # n < multiple: n
    assert round_keep(10, 0.25, 1) == 8  # 7.5 rounds half up
    for bad in ((0, 0.1, 8), (64, 1.0, 8), (64, -0.1, 8), (64, 0.5, 0)):
        with pytest.raises(ValueError):
            round_keep(*bad)


@pytest.mark.parametrize("tie", TIES)
@pytest.mark.parametrize("scope", ["hidden", "heads", "ffn", "all"])
def test_masked_and_sliced_agree(scope: str, tie: str):
    lm, keep, ids = _llama(tie), _keep(scope), _ids()
    before = copy.deepcopy(lm.state_dict())
    sliced = slice_decoder(lm, keep)
    assert all(torch.equal(before[k], v) for k, v in lm.state_dict().items()), "input changed"
    assert _masked_error(lm, keep, sliced, ids) <= 1e-5
    # the hooks are gone and the keep set really changes the function
    assert check_equivalence(lm, sliced, ids) > 1e-3
    config = sliced.config
    heads, kv = {"heads": (2, 1), "all": (2, 2)}.get(scope, (HEADS, KV_HEADS))
    assert (config.hidden_size, config.num_attention_heads, config.num_key_value_heads,
            config.head_dim) == (48 if scope in ("hidden", "all") else D, heads, kv, HEAD_DIM)
    assert config.intermediate_size == (64 if scope in ("ffn", "all") else FFN)
    assert config.tie_word_embeddings == (tie == "tied")
    assert (sliced.lm_head.weight is sliced.model.embed_tokens.weight) == (tie == "tied")


def test_biases_are_sliced():
    lm, keep, ids = _llama("untied", bias=True), _keep("all"), _ids()
    assert lm.model.layers[0].self_attn.o_proj.bias is not None
    assert _masked_error(lm, keep, slice_decoder(lm, keep), ids) <= 1e-5


@pytest.mark.parametrize("family", ["mistral", "qwen2"])
def test_other_llama_layout_families(family: str):
    torch.manual_seed(0)
    config_class, model_class = {"mistral": (MistralConfig, MistralForCausalLM),
                                 "qwen2": (Qwen2Config, Qwen2ForCausalLM)}[family]
    lm = _randomize(model_class(config_class(**_sizes(tie_word_embeddings=True))), 0)
    keep = _keep("all")
    assert _masked_error(lm, keep, slice_decoder(lm, keep), _ids()) <= 1e-5


def test_unscaled_eps_fails_the_bound(monkeypatch):
    lm, keep, ids = _llama("tied"), _keep("hidden"), _ids()
    monkeypatch.setattr(prune_llm_slice, "rescaled_eps", lambda eps, hidden, kept: eps)
    sliced = slice_decoder(lm, keep)
    assert sliced.config.rms_norm_eps == pytest.approx(0.1)
    assert _masked_error(lm, keep, sliced, ids) > 1e-3


@pytest.mark.parametrize("tie", TIES)
def test_sliced_model_reloads_with_from_pretrained(tie: str, tmp_path: Path):
    sliced = slice_decoder(_llama(tie), _keep("all"))
    sliced.save_pretrained(tmp_path)
    reloaded = AutoModelForCausalLM.from_pretrained(tmp_path, local_files_only=True).eval()
    assert type(reloaded) is LlamaForCausalLM
    assert reloaded.config.head_dim == HEAD_DIM and reloaded.config.hidden_size == 48
    assert reloaded.config.rms_norm_eps == pytest.approx(0.1 * D / 48)
    assert (reloaded.lm_head.weight is reloaded.model.embed_tokens.weight) == (tie == "tied")
    assert check_equivalence(sliced, reloaded, _ids()) == 0.0


@pytest.mark.parametrize("tie", ["tied", "untied"])
def test_parameter_count_shrinks_by_the_shapes(tie: str):
    lm = _llama(tie)
    tied = tie == "tied"
    sliced = slice_decoder(lm, _keep("all"))

    def count(model):
        return sum(p.numel() for p in model.parameters())  # a tied Parameter counts once

    assert count(lm) == _param_count(D, HEADS, KV_HEADS, FFN, tied)
    removed = _param_count(D, HEADS, KV_HEADS, FFN, tied) - _param_count(48, 2, 2, 64, tied)
    assert count(lm) - count(sliced) == removed


def test_unsupported_model_is_refused_with_a_reason():
    from transformers import BloomConfig, BloomForCausalLM

    bloom = BloomForCausalLM(BloomConfig(n_layer=1, hidden_size=32, n_head=2, vocab_size=50))
    with pytest.raises(PruneError, match="model_type 'bloom' is not a decoder family"):
        decoder_groups(bloom)
    with pytest.raises(PruneError, match="bloom"):
        slice_decoder(bloom, KeepSet())
    layer_norm = copy.deepcopy(_llama("untied"))
    layer_norm.model.norm = torch.nn.LayerNorm(D)
    with pytest.raises(PruneError, match="model.norm is LayerNorm, not RMSNorm"):
        decoder_groups(layer_norm)


def test_gpt2_slices_its_ffn_exactly_and_refuses_the_stream_and_heads():
    """GPT-2 in its canonical form (nn.Linear): FFN channels go from c_fc's rows and bias
    and c_proj's columns; the LayerNorm stream and the heads are refused with the reason."""
    from ember.passes.decoders.conv1d import linearize

    torch.manual_seed(0)
    gpt2 = GPT2LMHeadModel(GPT2Config(n_layer=2, n_embd=32, n_head=2, vocab_size=50)).eval()
    with pytest.raises(PruneError, match="c_fc is Conv1D, expected Linear"):
        decoder_groups(gpt2)
    linearize(gpt2)
    assert decoder_groups(gpt2).intermediate == 128
    with pytest.raises(PruneError, match="'gpt2' cannot slice scope hidden: LayerNorm"):
        slice_decoder(gpt2, KeepSet(hidden=torch.arange(16)))
    with pytest.raises(PruneError, match="'gpt2' cannot slice scope heads: "):
        slice_decoder(gpt2, KeepSet(heads=[torch.tensor([0])] * 2))
    keep = KeepSet(ffn=[torch.arange(0, 128, 2), torch.arange(64)])
    sliced = slice_decoder(gpt2, keep)
    assert sliced.config.n_inner == 64
    assert sliced.transformer.h[0].mlp.c_fc.bias.shape == (64,)
    assert _masked_error(gpt2, keep, sliced, _ids(vocab=50)) <= 1e-5


def test_non_uniform_keep_sets_are_refused():
    lm = _llama("tied")
    per_layer_counts = [torch.tensor(h) for h in ([0, 2], [1, 3], [0, 1, 2, 3])]
    with pytest.raises(PruneError, match="non-uniform kept counts per layer"):
        slice_decoder(lm, KeepSet(heads=per_layer_counts))
    kv_counts = [torch.tensor(h) for h in ([0, 2], [1, 3], [0, 1])]  # 2, 2, 1 KV groups
    with pytest.raises(PruneError, match="kept KV groups"):
        slice_decoder(lm, KeepSet(heads=kv_counts))
    uneven_groups = [torch.tensor([0, 1, 2])] * LAYERS  # group 0 keeps 2, group 1 keeps 1
    with pytest.raises(PruneError, match="KV groups keep different numbers"):
        apply_hard_mask(lm, KeepSet(heads=uneven_groups))
    ffn = [torch.arange(n) for n in (64, 64, 80)]
    with pytest.raises(PruneError, match="ffn"):
        slice_decoder(lm, KeepSet(ffn=ffn))
    with pytest.raises(PruneError, match="keeps nothing"):
        slice_decoder(lm, KeepSet(hidden=torch.tensor([], dtype=torch.long)))
    with pytest.raises(PruneError, match="repeated"):
        slice_decoder(lm, KeepSet(hidden=torch.tensor([1, 1, 2, 3])))


def test_hidden_width_the_stock_config_rejects():
    """LlamaConfig wants hidden_size % num_attention_heads == 0 even with head_dim set."""
    with pytest.raises(PruneError, match="not a multiple of the number of attention heads"):
        slice_decoder(_llama("tied"), KeepSet(hidden=torch.arange(50)))


@pytest.mark.slow
@pytest.mark.skipif(not SMOLLM2.exists(), reason=f"SmolLM2 cache not built ({SMOLLM2})")
def test_smollm2_hidden_576_to_432():
    from ember.compiler.models.smollm2 import load_smollm2

    lm, _ = load_smollm2()
    g = torch.Generator().manual_seed(0)
    keep = KeepSet(hidden=torch.randperm(576, generator=g)[:432].sort().values)
    sliced = slice_decoder(lm, keep)
    assert sliced.config.hidden_size == 432 and sliced.config.head_dim == 64
    assert sliced.lm_head.weight is sliced.model.embed_tokens.weight
    ids = torch.randint(0, lm.config.vocab_size, (1, 16), generator=g)
    assert _masked_error(lm, keep, sliced, ids) <= 1e-4


def test_the_equivalence_bound_grows_with_the_models_own_fp32_noise(monkeypatch):
    """1e-4 of the logit range, or 8x the pruned model's fp32 error where that is larger (a
    pruned residual stream has larger activations): measured, not assumed."""
    from ember.passes.prune.llm import prune as pipeline

    lm = _llama("tied")
    plan = pipeline.LLMPlan("magnitude", 0.25, ("ffn",), 4, 4, 8.0, 0, "reference", "mask",
                            pipeline.TuneSettings(steps=0, batch=2))
    monkeypatch.setattr(pipeline, "_relative_error", lambda *args: 2e-4)
    monkeypatch.setattr(pipeline, "_fp32_noise", lambda *args: 5e-5)  # bound 4e-4
    pruned, stats = pipeline.prune_llm(lm, plan, _ids(), _ids()[:1], None)
    assert stats["equivalence_max_rel"] == 2e-4
    monkeypatch.setattr(pipeline, "_fp32_noise", lambda *args: 1e-5)  # bound 1e-4
    with pytest.raises(PruneError, match=r"differs .* by 2.00e-04 .*bound 1.00e-04"):
        pipeline.prune_llm(lm, plan, _ids(), _ids()[:1], None)
