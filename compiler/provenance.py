"""Tool versions, recorded in every manifest, and machine facts, recorded in bench reports
(a manifest names no host: the same config gives the same bytes anywhere)."""

from __future__ import annotations

import platform
from importlib import metadata

_DISTRIBUTIONS = ("torch", "numpy", "onnx", "onnxscript", "onnxruntime", "apache-tvm",
                  "transformers", "pydantic", "triton")


def tool_versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {"python": platform.python_version()}
    for dist in _DISTRIBUTIONS:
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[dist] = None
    return versions


def machine() -> dict[str, str | int]:
    import os

    from ember.targets.host import cpu_name

    return {"cpu": cpu_name(), "machine": platform.machine(), "system": platform.system(),
            "cores": os.cpu_count() or 0}
