"""`hf:DIR`: a local transformers model directory (config.json + weights), loaded offline.

The directory's tokenizer (tokenizer.json, or a tokenizer_config.json with its vocabulary
files) loads with it when there is one, so passes tune and calibrate on text read through the
model's own tokenizer and the artifact ships it; generation_config.json, when present, is
kept beside it (info["generation_config"]).
"""

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
    import sys

    from transformers import AutoConfig, AutoModel, AutoModelForCausalLM
    from transformers.utils import logging as hf_logging

    if not sys.stderr.isatty():  # transformers' weight-loading bar would land in logs
        hf_logging.disable_progress_bar()
    try:
        config = AutoConfig.from_pretrained(folder, local_files_only=True)
        causal = bool(set(config.architectures or []) & _causal_lm_classes())
        factory = AutoModelForCausalLM if causal else AutoModel
        model = factory.from_pretrained(folder, local_files_only=True, dtype=torch.float32)
    except (OSError, ValueError, KeyError) as exc:
        raise ModelSpecError(f"{spec}: cannot load: {first_line(exc)}") from None
    vocab = getattr(config, "vocab_size", None)
    if not vocab:
        raise ModelSpecError(f"{spec}: config has no vocab_size; only token models are supported")
    wrapped = CausalLMLogits(model) if causal else EncoderHidden(model)
    loaded = language_model(
        spec, wrapped, vocab, example, seed, default_tokens=32,
        description=f"{type(model).__name__} from {folder}",
        output_name="logits" if causal else "last_hidden_state",
    )
    loaded.info["tokenizer"] = _tokenizer(spec, folder)
    generation = _generation_config(spec, folder)
    if generation is not None:
        loaded.info["generation_config"] = generation
    return loaded


def _causal_lm_classes() -> set[str]:
    """transformers' causal LM class names (LlamaForCausalLM, GPT2LMHeadModel, ...)."""
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    names: set[str] = set()
    for value in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES.values():
        names.update([value] if isinstance(value, str) else value)
    return names


TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json")


def _tokenizer(spec: str, folder: Path):
    """The directory's tokenizer; None when it has none. One that is there but does not load
    is an error: silently tuning without it would fail later, further from the cause."""
    if not any((folder / name).is_file() for name in TOKENIZER_FILES):
        return None
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(folder, local_files_only=True)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ModelSpecError(f"{spec}: the tokenizer in the directory does not load: "
                             f"{first_line(exc)}") from None


def _generation_config(spec: str, folder: Path) -> dict | None:
    if not (folder / "generation_config.json").is_file():
        return None
    from transformers import GenerationConfig

    try:
        return GenerationConfig.from_pretrained(folder, local_files_only=True).to_diff_dict()
    except (OSError, ValueError) as exc:
        raise ModelSpecError(f"{spec}: generation_config.json does not load: "
                             f"{first_line(exc)}") from None
