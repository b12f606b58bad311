"""`hf:DIR`: a local transformers model directory (config.json + weights), loaded offline."""

from __future__ import annotations

from pathlib import Path

import torch

from ember.compiler.config import ExampleSpec
from ember.compiler.models.language import CausalLMLogits, EncoderHidden, language_model
from ember.compiler.models.loaded import LoadedModel
from ember.errors import ModelSpecError, first_line


def hf_directory(spec: str, path: str, example: ExampleSpec, seed: int) -> LoadedModel:
    folder = Path(path).expanduser()
    if not (folder / "config.json").is_file():
        raise ModelSpecError(f"{spec}: {folder} is not a transformers model directory "
                             "(no config.json)")
    from transformers import AutoConfig, AutoModel, AutoModelForCausalLM

    try:
        config = AutoConfig.from_pretrained(folder, local_files_only=True)
        causal = any(a.endswith("ForCausalLM") for a in (config.architectures or []))
        factory = AutoModelForCausalLM if causal else AutoModel
        model = factory.from_pretrained(folder, local_files_only=True, dtype=torch.float32)
    except (OSError, ValueError, KeyError) as exc:
        raise ModelSpecError(f"{spec}: cannot load: {first_line(exc)}") from None
    vocab = getattr(config, "vocab_size", None)
    if not vocab:
        raise ModelSpecError(f"{spec}: config has no vocab_size; only token models are supported")
    wrapped = CausalLMLogits(model) if causal else EncoderHidden(model)
    return language_model(
        spec, wrapped, vocab, example, seed, default_tokens=32,
        description=f"{type(model).__name__} from {folder}",
        output_name="logits" if causal else "last_hidden_state",
    )
