"""PAT and the LM side of the prune pass: gate schedule, STE count, HSM fold, tuning with
resume, and the whole pass on tiny Llama models (every method and scope, equivalence,
exact widths, reload with the stock class)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from ember.compiler.data.tuning import LocalData
from ember.compiler.models.language import CausalLMLogits
from ember.errors import ConfigError, UnsupportedModelError
from ember.passes import PASSES, PassContext
from ember.passes.prune.llm.groups import decoder_groups
from ember.passes.prune.llm.prune import LLMPlan, keep_counts, prune_llm
from ember.passes.prune.llm.tune import TuneSettings, tune
from ember.passes.prune.pat.gate import (
    GateSchedule,
    SharedMask,
    straight_through_step,
    top_keep_mask,
)
from ember.passes.prune.pat.hsm import HSM, fold_into_embedding, fold_into_linear
from ember.passes.prune.pat.model import MaskedDecoder

transformers = pytest.importorskip("transformers")


def tiny_llama(tied: bool = True, seed: int = 0):
    torch.manual_seed(seed)
    config = transformers.LlamaConfig(
        vocab_size=97, hidden_size=48, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=6, num_key_value_heads=2, head_dim=8, tie_word_embeddings=tied,
        rms_norm_eps=1e-5, initializer_range=0.1)  # peaked enough for distillation to see
    lm = transformers.LlamaForCausalLM(config).eval()
    with torch.no_grad():  # gains != 1 so a missing norm rescale shows
        for name, p in lm.named_parameters():
            if name.endswith("layernorm.weight") or name == "model.norm.weight":
                p.uniform_(0.5, 1.5)
    return lm


def windows(n: int = 24, seq: int = 12, seed: int = 1) -> torch.Tensor:
    return torch.randint(0, 97, (n, seq), generator=torch.Generator().manual_seed(seed))


def plan(method: str = "pat", scopes=("hidden",), steps: int = 8, **kw) -> LLMPlan:
    return LLMPlan(method, kw.pop("ratio", 0.25), scopes, kw.pop("round_to", 4), 4, 8.0,
                   kw.pop("hsm_rank", 6), kw.pop("hsm_form", "reference"),
                   kw.pop("embedding", "mask"), TuneSettings(steps=steps, batch=2, **kw))


# -- gate ------------------------------------------------------------------------------------

def test_gate_starts_at_one_and_anneals_to_a_step():
    schedule = GateSchedule(s0=30)
    mask = SharedMask((10,), keep=6)
    assert torch.equal(mask.gate(0, schedule), torch.ones(10))  # the model starts unchanged
    assert schedule.beta(15) == 0 and schedule.beta(0) == 0.5
    taus = [schedule.tau(s) for s in range(0, 40)]
    assert all(b >= a for a, b in zip(taus, taus[1:], strict=False))
    assert taus[-1] == schedule.tau(schedule.freeze_step)  # held after the freeze
    with torch.no_grad():
        mask.proxy.copy_(torch.linspace(-1, 1, 10))
    late = mask.gate(schedule.freeze_step, schedule)
    assert late[0] < 0.01 and late[-1] > 0.99


def test_freeze_projects_to_exact_top_keep_per_row_and_block():
    proxy = torch.randn(3, 12)
    mask = top_keep_mask(proxy, keep=6, blocks=3)  # 2 per block of 4
    assert torch.equal(mask.reshape(3, 3, 4).sum(-1), torch.full((3, 3), 2.0))
    chosen = proxy.reshape(3, 3, 4).topk(2, dim=-1).indices.sort(-1).values
    got = torch.nonzero(mask.reshape(3, 3, 4)).reshape(3, 3, 2, 3)[..., -1]
    assert torch.equal(got, chosen)
    shared = SharedMask((12,), keep=5)
    with torch.no_grad():
        shared.proxy.copy_(proxy[0])
    shared.freeze()
    assert shared.hard.sum() == 5 and len(shared.kept_indices()[0]) == 5


def test_ramp_eases_the_projection_in_and_ends_hard():
    schedule = GateSchedule(s0=20, ramp=0.5)  # freeze at 16, ramp over 10 steps
    mask = SharedMask((6,), keep=3)
    with torch.no_grad():
        mask.proxy.copy_(torch.tensor([0.3, -0.2, 0.1, -0.05, 0.2, -0.4]))
    soft = mask.gate(schedule.freeze_step, schedule)
    mask.freeze(soft)
    hard = torch.tensor([1.0, 0, 1, 0, 1, 0])
    torch.testing.assert_close(mask.gate(16, schedule), soft)
    torch.testing.assert_close(mask.gate(21, schedule), (soft + hard) / 2)
    assert torch.equal(mask.gate(26, schedule), hard)
    assert torch.equal(mask.gate(16, GateSchedule(s0=20)), hard)  # no ramp: the jump


def test_straight_through_count_and_guarded_regulariser():
    x = torch.tensor([-0.3, 0.0, 0.2, -1.0], requires_grad=True)
    count = straight_through_step(x).sum()
    assert count.item() == 2  # W >= 0 counts as kept
    count.backward()
    assert torch.equal(x.grad, torch.ones(4))  # backward is the identity
    mask = SharedMask((8,), keep=4)  # W_M = 0: the set {W_M > 0} is empty at step 0
    loss = mask.regulariser(10.0)
    assert math.isfinite(loss.item())
    assert loss.item() == pytest.approx(10 * (8 - 4) / 4 + 0.25)


# -- HSM -------------------------------------------------------------------------------------

@pytest.mark.parametrize("form", ["reference", "paper"])
def test_hsm_starts_as_identity_and_folds_exactly(form):
    torch.manual_seed(0)
    hsm = HSM(16, 4, form)
    z = torch.randn(5, 16)
    torch.testing.assert_close(hsm(z), z)
    with torch.no_grad():
        for p in hsm.parameters():
            p.add_(0.3 * torch.randn_like(p))
    linear = nn.Linear(8, 16)
    x = torch.randn(5, 8)
    expected = hsm(linear(x))
    torch.testing.assert_close(hsm.matrix() @ linear(x).T, expected.T, rtol=1e-5, atol=1e-5)
    fold_into_linear(linear, hsm.matrix().detach())
    torch.testing.assert_close(linear(x), expected, rtol=1e-5, atol=1e-5)
    embedding = nn.Embedding(11, 16)
    ids = torch.tensor([1, 7, 3])
    expected = hsm(embedding(ids))
    fold_into_embedding(embedding, hsm.matrix().detach())
    torch.testing.assert_close(embedding(ids), expected, rtol=1e-5, atol=1e-5)


def test_identity_loss_is_zero_for_orthonormal_factors():
    hsm = HSM(16, 4, "paper")  # L0 orthonormal rows, L1 = L0^T
    assert hsm.identity_loss().item() == pytest.approx(0, abs=1e-5)
    reference = HSM(16, 4, "reference")
    assert reference.identity_loss().item() > 0.01  # Kaiming rows are not orthonormal


# -- the LM pipeline -------------------------------------------------------------------------

def _expected_params(lm, hidden: int, heads: int, kv: int, ffn: int) -> int:
    """Parameters of the Llama with these widths (tied embedding counted once)."""
    config = lm.config
    vocab, layers, hd = config.vocab_size, config.num_hidden_layers, config.head_dim
    per_layer = hidden * heads * hd * 2 + hidden * kv * hd * 2 + 3 * hidden * ffn + 2 * hidden
    head = 0 if config.tie_word_embeddings else vocab * hidden
    return vocab * hidden + layers * per_layer + hidden + head


@pytest.mark.parametrize("method", ["pat", "magnitude", "taylor"])
@pytest.mark.parametrize("scopes", [("hidden",), ("hidden", "heads", "ffn"), ("ffn",)])
def test_prune_llm_exact_widths_equivalence_and_size(method, scopes, tmp_path):
    lm = tiny_llama()
    before = [p.clone() for p in lm.parameters()]
    pruned, stats = prune_llm(lm, plan(method, scopes), windows(), windows()[:2], tmp_path)
    config = pruned.config
    keep = keep_counts(decoder_groups(lm), scopes, 0.25, 4)
    assert config.hidden_size == keep.get("hidden", 48)
    assert config.num_attention_heads == keep.get("heads", 6)
    assert config.intermediate_size == keep.get("ffn", 64)
    assert stats["equivalence_max_rel"] <= 1e-4  # the pass checks this itself, too
    assert stats["params"][1] == _expected_params(
        lm, config.hidden_size, config.num_attention_heads, config.num_key_value_heads,
        config.intermediate_size)
    assert pruned.lm_head.weight is pruned.model.embed_tokens.weight  # mask-only embedding
    assert all(torch.equal(a, b) for a, b in zip(before, lm.parameters(), strict=True))


def test_a_ramp_longer_than_the_run_still_exports_the_hard_mask(tmp_path):
    lm = tiny_llama()
    pruned, stats = prune_llm(lm, plan(steps=9, ramp=2.0), windows(), windows()[:2], tmp_path)
    assert pruned.config.hidden_size == 36 and stats["equivalence_max_rel"] <= 1e-4


def test_hsm_embedding_unties_and_stays_equivalent(tmp_path):
    lm = tiny_llama()
    pruned, stats = prune_llm(lm, plan(embedding="hsm"), windows(), windows()[:2], tmp_path)
    assert pruned.config.tie_word_embeddings is False
    assert pruned.lm_head.weight is not pruned.model.embed_tokens.weight
    assert stats["equivalence_max_rel"] <= 1e-4


def test_distillation_starts_at_zero_and_pulls_the_pruned_model_back(tmp_path):
    """KL to the unpruned teacher: 0 for the dense model (LoRA starts as a no-op), positive
    once channels are gone, and tuning lowers it."""
    lm = tiny_llama()
    _, dense = prune_llm(lm, plan("magnitude", ratio=0.0, steps=2, loss="distill"), windows(),
                         windows()[:2], None)
    assert dense["tuning"]["first_loss"] == pytest.approx(0, abs=1e-6)
    _, pruned = prune_llm(lm, plan("magnitude", steps=40, loss="distill", lr=1e-3),
                          windows(8), windows()[:2], None)
    assert pruned["tuning"]["first_loss"] > 1e-3
    assert pruned["tuning"]["last_loss"] < pruned["tuning"]["first_loss"]


def test_pat_learns_a_hard_mask_of_the_exact_width(tmp_path):
    lm = tiny_llama()
    groups = decoder_groups(lm)
    graph = MaskedDecoder(groups, {"hidden": 36}, hsm_rank=4)
    graph.attach(lm)
    settings = TuneSettings(steps=12, batch=2)
    log = tune(lm, graph, windows(), settings, None, {})
    assert all(m.frozen for m in graph.masks.values())
    assert int(graph.masks["hidden"].hard.sum()) == 36
    soft, hard = log.soft_hard_gap
    assert math.isfinite(soft) and math.isfinite(hard)
    assert len(log.losses) == 12


def test_tuning_resumes_from_its_checkpoint(tmp_path, monkeypatch):
    """An interrupted run resumed from its checkpoint ends where an uninterrupted one does."""
    import ember.passes.prune.llm.tune as prune_tune

    def run(folder, fail_at=None):
        lm = tiny_llama(seed=3)
        graph = MaskedDecoder(decoder_groups(lm), {"hidden": 36}, hsm_rank=4)
        graph.attach(lm)
        calls = {"n": 0}
        real = prune_tune.lm_loss

        def loss(model, ids):
            calls["n"] += 1
            if fail_at is not None and calls["n"] == fail_at:
                raise KeyboardInterrupt
            return real(model, ids)
        monkeypatch.setattr(prune_tune, "lm_loss", loss)
        log = tune(lm, graph, windows(), TuneSettings(steps=9, batch=2, checkpoint_every=2),
                   folder, {"test": 1})
        return lm, graph, log

    whole, whole_graph, _ = run(tmp_path / "a")
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path / "b", fail_at=7)  # in step 4: the freeze at step 2 adds 2 loss calls
    resumed, resumed_graph, log = run(tmp_path / "b")
    assert log.resumed_at == 4
    for a, b in zip(whole.parameters(), resumed.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    assert torch.equal(whole_graph.masks["hidden"].hard, resumed_graph.masks["hidden"].hard)


def test_pruned_model_reloads_with_the_stock_class(tmp_path):
    lm = tiny_llama()
    pruned, _ = prune_llm(lm, plan(), windows(), windows()[:2], tmp_path / "ckpt")
    pruned.save_pretrained(tmp_path / "hf")
    again = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "hf",
                                                              local_files_only=True).eval()
    ids = windows()[:2]
    with torch.no_grad():
        torch.testing.assert_close(again(input_ids=ids).logits, pruned(input_ids=ids).logits)


# -- the pass --------------------------------------------------------------------------------

class ByteTokenizer:
    """Enough of a transformers tokenizer for the pass: text -> ids below the vocab."""

    def __call__(self, text: str, add_special_tokens: bool = False) -> dict:
        return {"input_ids": [b % 97 for b in text.encode()]}


@pytest.mark.parametrize("mask_init", ["zero", "taylor"])
def test_pass_on_a_wrapped_lm(tmp_path, mask_init):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("the quick brown fox jumps over the lazy dog. " * 40)
    prune = PASSES["prune"](method="pat", ratio=0.25, steps=6, batch=2, seq=16,
                            data=f"text:{corpus}", round_to=4, hsm_rank=4, mask_init=mask_init)
    ids = windows(1, 16)
    ctx = PassContext(example_inputs={"input_ids": ids}, data=LocalData(ByteTokenizer()),
                      work_dir=tmp_path / "work")
    wrapper = CausalLMLogits(tiny_llama())
    result = prune(wrapper, ctx)
    assert isinstance(result.model, CausalLMLogits) and result.modified
    assert result.model.lm.config.hidden_size == 36
    assert result.stats["tuning"]["steps"] == 6
    assert (tmp_path / "work" / "prune" / "tuning.pt").exists()


def test_pass_declines_clearly():
    ctx = PassContext(example_inputs={"input_ids": windows(1, 8)}, data=LocalData(ByteTokenizer()))
    with pytest.raises(UnsupportedModelError, match="method bn is for CNNs"):
        PASSES["prune"](method="bn", data="text:pydoc")(CausalLMLogits(tiny_llama()), ctx)
    with pytest.raises(UnsupportedModelError, match="method=pat learns its mask"):
        PASSES["prune"](method="pat", steps=0)(CausalLMLogits(tiny_llama()), ctx)
    conv = nn.Sequential(nn.Conv2d(1, 8, 3), nn.ReLU(), nn.Conv2d(8, 4, 3))
    with pytest.raises(UnsupportedModelError, match="method pat is for language models"):
        PASSES["prune"](method="pat")(conv, PassContext(
            example_inputs={"x": torch.randn(1, 1, 8, 8)}))


def test_pass_without_a_data_source_names_the_spec():
    """Passes read data only through their context: without one they say which spec needed
    it, instead of opening a corpus themselves."""
    ctx = PassContext(example_inputs={"input_ids": windows(1, 8)})
    with pytest.raises(ConfigError, match="data text:pydoc: no tuning data was provided"):
        PASSES["prune"](method="pat", steps=2, data="text:pydoc")(
            CausalLMLogits(tiny_llama()), ctx)
    for bad, message in ((dict(scope="rows"), "scope must be"), (dict(ratio=1.0), "ratio"),
                         (dict(data="imagenet"), "data must be"),
                         (dict(hsm_form="x"), "hsm_form"), (dict(loss="mse"), "loss"),
                         (dict(freeze_at=1.0), "freeze_at"), (dict(lr="fast"), "lr"),
                         (dict(ramp=3), "ramp")):
        with pytest.raises(ValueError, match=message):
            PASSES["prune"](**bad)


def test_proxies_from_scores_keep_the_top_channels_and_grow_from_the_cut():
    from ember.passes.prune.pat.gate import INIT_HIGH, INIT_LOW, proxies_from_scores, top_keep_mask

    scores = torch.tensor([[5.0, 1.0, 3.0, 0.5, 2.0, 4.0], [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]])
    proxies = proxies_from_scores(scores, keep=4, blocks=2)
    assert torch.equal(proxies > 0, top_keep_mask(scores, 4, 2).bool())
    assert proxies.abs().min() >= INIT_LOW - 1e-6 and proxies.abs().max() <= INIT_HIGH + 1e-6
    first = proxies_from_scores(scores[0], keep=4)
    assert first[0] > first[5] > first[2] > first[4] > 0 > first[1] > first[3]
