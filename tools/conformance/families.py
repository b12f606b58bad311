"""Tiny random models of transformers' popular families, saved as `hf:` directories with a
BPE tokenizer trained on a small corpus (nothing is downloaded). The conformance `hf` suite
and tests/e2e/test_transformers_families.py compile them.

Each family lists the pruning scopes it slices: every scope on the RMSNorm families, the FFN
alone on the LayerNorm ones (passes/decoders/layouts.py says why); None for an encoder.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

CORPUS = "the quick brown fox jumps over the lazy dog while the cat sleeps. " * 60
LLAMA_LIKE = dict(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=2)
TOKENS = dict(bos_token_id=1, eos_token_id=2, pad_token_id=0)
ALL_SCOPES = "hidden+heads+ffn"
# name: (config class, model class, config, the scopes prune slices); classes by name
FAMILIES: dict[str, tuple[str, str, dict[str, Any], str | None]] = {
    "llama": ("LlamaConfig", "LlamaForCausalLM", LLAMA_LIKE, ALL_SCOPES),
    "mistral": ("MistralConfig", "MistralForCausalLM", LLAMA_LIKE, ALL_SCOPES),
    "qwen2": ("Qwen2Config", "Qwen2ForCausalLM", LLAMA_LIKE, ALL_SCOPES),
    "qwen3": ("Qwen3Config", "Qwen3ForCausalLM", {**LLAMA_LIKE, "head_dim": 8}, ALL_SCOPES),
    "phi3": ("Phi3Config", "Phi3ForCausalLM", {**LLAMA_LIKE, **TOKENS}, ALL_SCOPES),
    "gemma": ("GemmaConfig", "GemmaForCausalLM", {**LLAMA_LIKE, "head_dim": 8}, ALL_SCOPES),
    "gpt2": ("GPT2Config", "GPT2LMHeadModel",
             dict(vocab_size=64, n_embd=32, n_layer=2, n_head=4, n_positions=64, **TOKENS),
             "ffn"),
    "opt": ("OPTConfig", "OPTForCausalLM",
            dict(vocab_size=64, hidden_size=32, ffn_dim=64, num_hidden_layers=2,
                 num_attention_heads=4, max_position_embeddings=64, word_embed_proj_dim=32),
            "ffn"),
    "bert": ("BertConfig", "BertModel",
             dict(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                  num_attention_heads=4), None),
}
DECODERS = [name for name, family in FAMILIES.items() if family[3] is not None]


def save_families(root: Path, names: list[str]) -> Path:
    """`root/<name>` for each family (save_family) and `root/corpus.txt`; returns root."""
    for name in names:
        save_family(name, root / name)
    (root / "corpus.txt").write_text(CORPUS)
    return root


def save_family(name: str, folder: Path) -> Path:
    """`folder` holding the family's tiny model (seed 0), its tokenizer and `corpus.txt`."""
    import torch
    import transformers
    from tokenizers import Tokenizer, models, trainers

    config_class, model_class, config, _ = FAMILIES[name]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "corpus.txt").write_text(CORPUS)
    tokenizer = Tokenizer(models.BPE(unk_token="<unk>"))
    tokenizer.train_from_iterator([CORPUS], trainers.BpeTrainer(vocab_size=64,
                                                                special_tokens=["<unk>"]))
    torch.manual_seed(0)
    model = getattr(transformers, model_class)(getattr(transformers, config_class)(**config))
    model.save_pretrained(folder)
    transformers.PreTrainedTokenizerFast(tokenizer_object=tokenizer,
                                         unk_token="<unk>").save_pretrained(folder)
    return folder


def prune_config(corpus: Path, scope: str, method: str = "taylor") -> dict[str, Any]:
    """A short prune run (half of each group; a few steps) tuned on `corpus`."""
    extra = {"hsm_rank": 4} if method == "pat" else {}
    return {"prune": {"method": method, "ratio": 0.5, "steps": 2 if method != "pat" else 4,
                      "batch": 2, "seq": 16, "round_to": 4, "scope": scope,
                      "data": f"text:{corpus}", **extra}}


def spike_config(corpus: Path) -> dict[str, Any]:
    """W4A4 spiking calibrated on four windows of `corpus`."""
    return {"spike": {"w_bits": 4, "a_bits": 4, "calib_windows": 4, "calib_seq": 16,
                      "data": f"text:{corpus}"}}
