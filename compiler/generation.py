"""Text-generation artifacts, compile side: the decode graph's model and inputs, and the
torch model's own greedy continuation that the artifact must reproduce.

After the passes, the causal LM inside ember's wrapper is re-wrapped as one decode graph
over a KV cache (compiler/models/decoding.py). The reference inputs become the stored
prompt with an empty cache (a prefill), so the usual verification checks the prefill's
logits and the cache it returns; verify_generation (compiler/verify_generation.py) then
checks the decode steps against `generate` of the same torch model.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np

from ember.compiler.config import GenerateSpec
from ember.compiler.models.decoding import (
    MASK,
    PAST,
    PRESENT,
    CacheShape,
    CausalLMWithCache,
    cache_shape,
)
from ember.compiler.models.loaded import LoadedModel
from ember.errors import ConfigError, UnsupportedModelError

DEFAULT_MAX_LENGTH = 2048


@dataclass(frozen=True)
class GenerationReference:
    """The manifest's `generation` block, and the torch model's greedy continuation of the
    stored prompt: its tokens and, per step, the logits it chose them from."""

    info: dict[str, Any]
    prompt: np.ndarray  # [1, t] int64
    tokens: list[int]
    step_logits: list[np.ndarray]  # [vocab] float32 per new token


def decoding_model(model: Any, loaded: LoadedModel, spec: GenerateSpec
                   ) -> tuple[CausalLMWithCache, LoadedModel, GenerationReference]:
    """The decode-graph module, the loaded model with prefill inputs and cache outputs,
    and the torch reference generation."""
    lm = getattr(model, "lm", None)
    if lm is None or not hasattr(lm, "generate"):
        raise UnsupportedModelError(f"generation artifacts need a causal language model; "
                                    f"{loaded.spec} is a {loaded.kind} model")
    max_length = _max_length(lm, spec)
    shape = cache_shape(lm, max_length)
    prompt = loaded.inputs["input_ids"]
    if prompt.shape[0] != 1:
        raise ConfigError("generation artifacts take a batch of 1")
    if prompt.shape[1] + spec.verify_tokens > max_length:
        raise ConfigError(f"the example prompt ({prompt.shape[1]} tokens) plus verify_tokens "
                          f"({spec.verify_tokens}) exceed max_length {max_length}")
    decoder = CausalLMWithCache(lm).eval()
    prefill = {"input_ids": prompt, MASK: np.ones_like(prompt), **shape.empty()}
    decoding = dataclasses.replace(
        loaded, module=decoder, inputs=prefill, output_names=["logits", *shape.names(PRESENT)],
        dynamic_dims=_dynamic_dims(shape), export_inputs=_export_inputs(prompt, shape))
    info = _info(lm, shape, max_length)
    tokens, logits = torch_greedy(lm, prompt, spec.verify_tokens, info["eos_token_ids"])
    return decoder, decoding, GenerationReference(info, prompt, tokens, logits)


def _dynamic_dims(shape: CacheShape) -> dict[str, dict[int, str]]:
    return {"input_ids": {0: "batch", 1: "tokens"}, MASK: {0: "batch", 1: "positions"},
            **{name: {0: "batch", 2: "past"} for name in shape.names(PAST)}}


def _export_inputs(prompt: np.ndarray, shape: CacheShape) -> dict[str, np.ndarray]:
    """Two sequences with two cached positions: sizes torch.export keeps symbolic (it
    specializes 0 and 1), the first sequence left-padded by one so no mask is elided."""
    ids = np.repeat(prompt, 2, axis=0)
    mask = np.ones((2, 2 + prompt.shape[1]), np.int64)
    mask[0, 0] = 0
    return {"input_ids": ids, MASK: mask, **shape.empty(batch=2, length=2)}


def torch_greedy(lm: Any, prompt: np.ndarray, new_tokens: int, eos: list[int]
                 ) -> tuple[list[int], list[np.ndarray]]:
    """`lm.generate` with the KV cache on, greedy, and no other logits processing: the new
    tokens and the raw logits of each step."""
    import torch
    from transformers import GenerationConfig

    config = GenerationConfig(max_new_tokens=new_tokens, do_sample=False, use_cache=True,
                              eos_token_id=eos or None, pad_token_id=(eos or [0])[0],
                              output_logits=True, return_dict_in_generate=True)
    with torch.no_grad():
        out = lm.generate(torch.from_numpy(prompt), generation_config=config)
    tokens = out.sequences[0, prompt.shape[1]:].tolist()
    return tokens, [step[0].float().numpy() for step in out.logits]


def _max_length(lm: Any, spec: GenerateSpec) -> int:
    positions = getattr(lm.config, "max_position_embeddings", None)
    if spec.max_length is None:
        return min(positions or DEFAULT_MAX_LENGTH, DEFAULT_MAX_LENGTH)
    if positions and spec.max_length > positions:
        raise ConfigError(f"max_length {spec.max_length} is more than the model's "
                          f"max_position_embeddings {positions}")
    return spec.max_length


def _info(lm: Any, shape: CacheShape, max_length: int) -> dict[str, Any]:
    eos = getattr(getattr(lm, "generation_config", None), "eos_token_id", None)
    eos_ids = [eos] if isinstance(eos, int) else [int(e) for e in (eos or [])]
    return {"max_length": max_length, "layers": shape.layers, "kv_heads": shape.kv_heads,
            "head_dim": shape.head_dim, "past_inputs": shape.names(PAST),
            "present_outputs": shape.names(PRESENT), "eos_token_ids": eos_ids,
            "vocab_size": int(lm.config.vocab_size)}
