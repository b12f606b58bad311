"""The compiler: config, model loading, passes, export, artifacts, verification.

api.py runs a compile (load -> passes -> export -> target -> verify -> artifact); config.py
is its schema; models/ resolves model specs; data/ loads the offline corpora and digits,
and the tuning data passes read through their context; pipeline.py runs the passes;
export.py writes ONNX; generation.py makes a causal LM's KV-cache decode graph
(--generate); artifact.py writes the directory atomically; verify*.py, probe.py and
reference_noise.py check the payload against the torch model.

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
