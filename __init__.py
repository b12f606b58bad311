"""ember: a hardware-deployment compiler for neural networks.

`import ember` stays light: torch, onnx and the engines load only when used.

The folders, top to bottom: tools/ (CLI, evaluator, device check, research scripts),
compiler/ (the compile pipeline), passes/ and targets/, runtime/ (load and run artifacts).
The root holds what every layer reads: errors.py (error kinds and exit codes), progress.py,
cache.py (the user cache folder) and the numerics of lowered ops, sfc_algorithms.py (SFC and
Winograd matrices, transformed weights) and spike_codes.py (spike activation codes). The
allowed imports between them are written down and tested in tests/unit/test_layering.py.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

__all__ = ["__version__", "compile"]


def compile(config: Any, **overrides: Any) -> Any:  # noqa: A001 - the public verb of a compiler
    """Compile a model described by `config` (a path, dict or CompileConfig); see ember.compiler."""
    from ember.compiler.api import compile_model

    return compile_model(config, **overrides)
