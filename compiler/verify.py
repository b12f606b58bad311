"""Verification of a freshly written artifact: run it through the runtime, like a user would
(manifest and hash checks included), on the reference inputs, and compare; where those
reference outputs are degenerate, also on the probe inputs (compiler/probe.py)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ember.compiler.probe import Probe
from ember.errors import VerificationError
from ember.runtime.compare import Tolerance, compare_outputs, describe_failure

if TYPE_CHECKING:
    from ember.runtime.session import Session


def load_artifact(folder: Path, device: str | None = None) -> Session:
    """The artifact as a user opens it (manifest and hash checks included), once per
    compile: every check below runs on this session."""
    import ember.runtime as rt

    return rt.load(folder, device=device)


def verify_artifact(session: Session, inputs: dict[str, np.ndarray],
                    reference: dict[str, np.ndarray], tolerance: Tolerance) -> dict[str, Any]:
    return compare_outputs(session.run(inputs), reference, tolerance)


def verify_probe(session: Session, probe: Probe | str, tolerance: Tolerance) -> dict[str, Any]:
    """The manifest's `verification.probe`: the artifact on the probe inputs, which must
    pass like the reference inputs; or, where no probe helped, why."""
    if isinstance(probe, str):
        return {"status": "none", "reason": probe}
    result = verify_artifact(session, probe.inputs, probe.outputs, tolerance)
    if result["status"] != "passed":
        raise VerificationError(f"verification failed on the probe inputs ({probe.label}), "
                                f"where the outputs are not degenerate: "
                                f"{describe_failure(result)}")
    return {"status": "passed", "inputs": probe.label, "tolerance": result["tolerance"],
            "outputs": result["outputs"]}
