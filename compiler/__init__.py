"""The compiler: config, model loading, passes, export, artifacts, verification.

    import ember
    ember.compile({"model": "builtin:tiny-cnn", "passes": ["fold_bn"], "target": "cpu",
                   "output": "out/tiny-cpu"})
"""

from __future__ import annotations

from typing import Any


def __getattr__(name: str) -> Any:
    # lazy: importing ember.compiler must not import torch (the runtime depends on it)
    if name in ("compile_model", "prepare", "build", "resolve_config"):
        from ember.compiler import api

        return getattr(api, name)
    raise AttributeError(name)
