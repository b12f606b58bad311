"""Finding offline asset packages without importing them (some import heavy stacks)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from ember.errors import ModelSpecError

INSTALL_HINT = "run `make assets` (or `python -m ember.tools.assets install`)"


def asset_dir(module: str, dist: str) -> Path:
    """The directory of an installed asset package; a clear error naming it when missing."""
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise ModelSpecError(f"the offline asset package '{dist}' is not installed; {INSTALL_HINT}")
    return Path(spec.submodule_search_locations[0])
