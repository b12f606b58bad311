"""Comparing outputs with a reference under a tolerance.

An output passes when its shape and dtype match and every element satisfies
|a - b| <= atol + rtol * |b| (numpy's `allclose` rule), or is NaN where the reference is NaN,
or the same infinity (a masked softmax or a log of zero computes those on purpose).
Recorded per output, over the other elements: the max absolute error and the max error
relative to the reference's largest magnitude, max|a - b| / max|b|.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Tolerance:
    atol: float
    rtol: float


def compare_outputs(
    actual: dict[str, np.ndarray], reference: dict[str, np.ndarray], tolerance: Tolerance
) -> dict[str, Any]:
    outputs = {name: _compare_one(actual[name], ref, tolerance) for name, ref in reference.items()}
    return {
        "status": "passed" if all(o["passed"] for o in outputs.values()) else "failed",
        "tolerance": {"atol": tolerance.atol, "rtol": tolerance.rtol},
        "outputs": outputs,
    }


def _compare_one(actual: np.ndarray, reference: np.ndarray, tol: Tolerance) -> dict[str, Any]:
    if actual.shape != reference.shape or actual.dtype != reference.dtype:
        return {"passed": False, "max_abs": None, "max_rel": None,
                "problem": f"got {actual.dtype}{list(actual.shape)}, "
                           f"expected {reference.dtype}{list(reference.shape)}"}
    a, b = actual.astype(np.float64), reference.astype(np.float64)
    alike = _same_special(a, b)
    with np.errstate(invalid="ignore"):  # inf - inf: not close, which is the answer
        close = np.isfinite(b) & (np.abs(a - b) <= tol.atol + tol.rtol * np.abs(b))
    passed = bool(np.all(alike | close))
    max_abs, max_rel = max_errors(actual[~alike], reference[~alike])
    return {"passed": passed, "max_abs": max_abs, "max_rel": max_rel}


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
