"""Rows and error measures shared by the device check's sections (int4, int8, sfc).

A correctness row states its metric, value, tolerance and verdict; a timing row holds the
baseline and one candidate measured in the same run, with ratio = baseline / candidate
(> 1: the candidate is faster).
"""

from __future__ import annotations

import math
import traceback
from collections.abc import Callable
from typing import Any

import torch


def rel_max(out: torch.Tensor, ref: torch.Tensor) -> float:
    """max |out - ref| / max |ref|."""
    out, ref = out.double(), ref.double()
    return float((out - ref).abs().max() / ref.abs().max().clamp_min(1e-30))


def rel_rms(out: torch.Tensor, ref: torch.Tensor) -> float:
    """||out - ref|| / ||ref|| (Frobenius)."""
    out, ref = out.double(), ref.double()
    return float((out - ref).norm() / ref.norm().clamp_min(1e-30))


def check_row(kernel: str, case: str, metric: str, value: float, tol: float,
              **extra: Any) -> dict[str, Any]:
    return {"kernel": kernel, "case": case, "metric": metric, "value": float(value),
            "tol": float(tol), "ok": bool(value <= tol), **extra}


def timing_row(section: str, case: str, baseline: str, baseline_t: dict[str, float],
               candidate: str, candidate_t: dict[str, float], **extra: Any) -> dict[str, Any]:
    base, cand = baseline_t["median_ms"], candidate_t["median_ms"]
    return {"section": section, "case": case, "baseline": baseline, "baseline_ms": base,
            "candidate": candidate, "candidate_ms": cand, "ratio": base / cand,
            "baseline_timing": baseline_t, "candidate_timing": candidate_t, **extra}


def guarded(label: dict[str, str], run: Callable[[], list[dict[str, Any]]]
            ) -> list[dict[str, Any]]:
    """run()'s rows, or one failed row carrying `label` and the exception: one failing case
    must not hide the others."""
    try:
        return run()
    except Exception as error:  # recorded in the report, with its traceback
        return [{**label, "metric": "raised", "value": math.nan, "tol": 0.0, "ok": False,
                 "ratio": math.nan, "error": f"{type(error).__name__}: {error}",
                 "traceback": traceback.format_exc()}]
    finally:
        free_cuda()


def free_cuda() -> None:
    """Return cached blocks between cases so large weight sets do not pile up."""
    if torch.cuda.is_available():
        torch.cuda.synchronize()
        torch.cuda.empty_cache()
