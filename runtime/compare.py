"""Comparing outputs with a reference under a tolerance.

An output passes when its shape and dtype match and every element satisfies
|a - b| <= atol·min(1, s) + rtol·|b| (numpy's `allclose` rule with the absolute term scaled
down to the output's size s = max|b|), or is NaN where the reference is NaN, or the same
infinity (a masked softmax or a log of zero computes those on purpose). The scaling matters
for outputs far below 1: a random-initialized deep network's logits of 1e-15 would pass any
absolute atol whatever the artifact computed.

Recorded per output, over the other elements: the max absolute error, the max error relative
to the reference's largest magnitude, max|a - b| / max|b|, that magnitude, and whether the
reference is degenerate (near zero, below DEGENERATE_SCALE, or constant), in which case the
check proves little and says so.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

DEGENERATE_SCALE = 1e-6  # an fp32 output whose every element is below this says little


@dataclass(frozen=True)
class Tolerance:
    atol: float
    rtol: float


def compare_outputs(
    actual: dict[str, np.ndarray], reference: dict[str, np.ndarray], tolerance: Tolerance
) -> dict[str, Any]:
    outputs = {name: _compare_one(actual[name], ref, tolerance) for name, ref in reference.items()}
    result = {
        "status": "passed" if all(o["passed"] for o in outputs.values()) else "failed",
        "tolerance": {"atol": tolerance.atol, "rtol": tolerance.rtol},
        "outputs": outputs,
    }
    degenerate = {name: o["degenerate"] for name, o in outputs.items() if o.get("degenerate")}
    if degenerate:
        result["degenerate_reference"] = degenerate
    return result


def _compare_one(actual: np.ndarray, reference: np.ndarray, tol: Tolerance) -> dict[str, Any]:
    if actual.shape != reference.shape or actual.dtype != reference.dtype:
        return {"passed": False, "max_abs": None, "max_rel": None,
                "problem": f"got {actual.dtype}{list(actual.shape)}, "
                           f"expected {reference.dtype}{list(reference.shape)}"}
    a, b = actual.astype(np.float64), reference.astype(np.float64)
    alike = _same_special(a, b)
    finite = b[np.isfinite(b)]
    scale = float(np.abs(finite).max()) if finite.size else 0.0
    atol = tol.atol if math.isinf(tol.atol) else tol.atol * min(1.0, scale)
    with np.errstate(invalid="ignore"):  # inf - inf: not close, which is the answer
        close = np.isfinite(b) & (np.abs(a - b) <= atol + tol.rtol * np.abs(b))
    passed = bool(np.all(alike | close))
    max_abs, max_rel = max_errors(actual[~alike], reference[~alike])
    record = {"passed": passed, "max_abs": max_abs, "max_rel": max_rel, "scale": scale}
    degenerate = degenerate_reason(finite)
    if degenerate:
        record["degenerate"] = degenerate
    return record


def degenerate_reason(finite: np.ndarray) -> str | None:
    """Why a reference (its finite elements) cannot show a wrong artifact, or None: every
    element (near) zero, or every element the same (a difference in the function would
    rarely show)."""
    scale = float(np.abs(finite).max()) if finite.size else 0.0
    if finite.size and scale < DEGENERATE_SCALE:
        return f"near zero (max |y| = {scale:.3g})"
    if finite.size > 1 and float(finite.max()) == float(finite.min()):
        return f"constant (every element is {float(finite.flat[0]):.6g})"
    return None


def _same_special(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Where both are NaN, or both the same infinity."""
    return (np.isnan(a) & np.isnan(b)) | (np.isinf(b) & (a == b))


def max_errors(actual: np.ndarray, reference: np.ndarray) -> tuple[float, float]:
    """(max|a - b|, max|a - b| / max|b|); the second falls back to the first when b is 0."""
    a, b = actual.astype(np.float64), reference.astype(np.float64)
    with np.errstate(invalid="ignore"):
        max_abs = float(np.abs(a - b).max()) if a.size else 0.0
    scale = float(np.abs(b).max()) if b.size else 0.0
    return max_abs, max_abs / scale if scale else max_abs


def describe_failure(result: dict[str, Any]) -> str:
    """One line naming the first failing output and its error."""
    name, worst = next((n, o) for n, o in result["outputs"].items() if not o["passed"])
    if worst.get("problem"):
        return f"output {name!r}: {worst['problem']}"
    tol = result["tolerance"]
    return (f"output {name!r}: max abs error {worst['max_abs']:.3g} "
            f"(relative {worst['max_rel']:.3g}) exceeds atol={tol['atol']:g}, rtol={tol['rtol']:g}")
