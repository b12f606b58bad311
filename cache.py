"""ember's user cache directory (derived models such as the trained digits CNN)."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """$EMBER_CACHE_DIR, else $XDG_CACHE_HOME/ember, else ~/.cache/ember (created on demand)."""
    root = os.environ.get("EMBER_CACHE_DIR")
    if not root:
        base = os.environ.get("XDG_CACHE_HOME") or os.path.join(Path.home(), ".cache")
        root = os.path.join(base, "ember")
    path = Path(root)
    path.mkdir(parents=True, exist_ok=True)
    return path
