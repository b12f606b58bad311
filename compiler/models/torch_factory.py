"""`torch:pkg.module:factory`: a user's factory that returns an `nn.Module`."""

from __future__ import annotations

import importlib

import numpy as np
from torch import nn

from ember.compiler.config import ExampleSpec
from ember.compiler.models.inputs import first_argument_name, random_tensor, random_tokens
from ember.compiler.models.loaded import LoadedModel
from ember.errors import ConfigError, ModelSpecError, first_line


def torch_factory(spec: str, target: str, example: ExampleSpec, seed: int) -> LoadedModel:
    module_name, _, attr = target.partition(":")
    if not module_name or not attr:
        raise ModelSpecError(f"{spec}: expected torch:package.module:factory")
    try:
        factory = getattr(importlib.import_module(module_name), attr)
    except ImportError as exc:
        raise ModelSpecError(f"{spec}: cannot import {module_name}: {exc}") from None
    except AttributeError:
        raise ModelSpecError(f"{spec}: {module_name} has no attribute {attr!r}") from None
    try:
        model = factory()
    except SystemExit:  # sys.exit as a factory: nothing to compile, and no exit 0 either
        raise ModelSpecError(f"{spec}: the factory called exit instead of returning a "
                             "module") from None
    except Exception as exc:
        raise ModelSpecError(f"{spec}: the factory raised {type(exc).__name__}: "
                             f"{first_line(exc)}") from None
    if not isinstance(model, nn.Module):
        raise ModelSpecError(f"{spec}: factory returned {type(model).__name__}, not an nn.Module")
    name = first_argument_name(model)
    return LoadedModel(
        spec=spec, kind="tensor", module=model.eval(),
        inputs={name: _example(spec, model, example, seed)}, output_names=["output"],
        description=f"{type(model).__name__} from {target}",
    )


def _example(spec: str, model: nn.Module, example: ExampleSpec, seed: int) -> np.ndarray:
    if example.shape is not None:
        return random_tensor(example.shape, seed)
    vocab = getattr(getattr(model, "config", None), "vocab_size", None)
    if example.tokens is not None and vocab:
        return random_tokens(vocab, example.tokens, seed)
    raise ConfigError(f"{spec}: give example: {{shape: [...]}} for a torch: model")
