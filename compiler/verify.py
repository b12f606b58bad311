"""Verification of a freshly written artifact: run it through the runtime, like a user would
(manifest and hash checks included), on the reference inputs, and compare."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ember.runtime.compare import Tolerance, compare_outputs


def verify_artifact(
    folder: Path, inputs: dict[str, np.ndarray], reference: dict[str, np.ndarray],
    tolerance: Tolerance, device: str | None = None,
) -> dict[str, Any]:
    import ember.runtime as rt

    session = rt.load(folder, device=device)
    return compare_outputs(session.run(inputs), reference, tolerance)
