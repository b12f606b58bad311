"""ember: a hardware-deployment compiler for neural networks.

`import ember` stays light: torch, onnx and the engines load only when used.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

__all__ = ["__version__", "compile"]


def compile(config: Any, **overrides: Any) -> Any:  # noqa: A001 - the public verb of a compiler
    """Compile a model described by `config` (a path, dict or CompileConfig); see ember.compiler."""
    from ember.compiler.api import compile_model

    return compile_model(config, **overrides)
