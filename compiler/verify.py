"""Verification of a freshly written artifact: run it through the runtime, like a user would
(manifest and hash checks included), on the reference inputs, and compare; where those
reference outputs are degenerate, also on the probe inputs (compiler/probe.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ember.compiler.probe import Probe
from ember.errors import VerificationError
from ember.runtime.compare import Tolerance, compare_outputs, describe_failure


def verify_artifact(
    folder: Path, inputs: dict[str, np.ndarray], reference: dict[str, np.ndarray],
    tolerance: Tolerance, device: str | None = None,
) -> dict[str, Any]:
    import ember.runtime as rt

    session = rt.load(folder, device=device)
    return compare_outputs(session.run(inputs), reference, tolerance)


def verify_probe(folder: Path, probe: Probe | str, tolerance: Tolerance,
                 device: str | None = None) -> dict[str, Any]:
    """The manifest's `verification.probe`: the artifact on the probe inputs, which must
    pass like the reference inputs; or, where no probe helped, why."""
    if isinstance(probe, str):
        return {"status": "none", "reason": probe}
    result = verify_artifact(folder, probe.inputs, probe.outputs, tolerance, device)
    if result["status"] != "passed":
        raise VerificationError(f"verification failed on the probe inputs ({probe.label}), "
                                f"where the outputs are not degenerate: "
                                f"{describe_failure(result)}")
    return {"status": "passed", "inputs": probe.label, "tolerance": result["tolerance"],
            "outputs": result["outputs"]}
