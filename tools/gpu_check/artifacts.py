"""Device check of compiled `gpu` artifacts (`tools/gpu_check/main.py --artifacts A[:B] ...`),
through the runtime as a user runs them:

- correctness: each artifact's stored reference inputs through the gpu engine, compared with
  its stored outputs under the tolerance its manifest states (`ember run --check`);
- timing: for each `CANDIDATE:BASELINE` pair, both engines called alternately on the
  candidate's reference inputs (every call ends with a device synchronize), median wall
  times, ratio = baseline / candidate (`ember bench` on a GPU).

Artifacts are compiled elsewhere (compiling needs no GPU) and carried to the device.
"""

from __future__ import annotations

import statistics
import time
from functools import partial
from pathlib import Path
from typing import Any

from ember.tools.gpu_check.common import check_row, guarded, timing_row

WARMUP = 5


def correctness(quick: bool, specs: list[str], device: str = "cuda") -> list[dict[str, Any]]:
    rows = []
    for spec in specs:
        for path in filter(None, spec.split(":")):
            label = {"kernel": "gpu artifact", "case": path}
            rows += guarded(label, partial(_check, Path(path), device))
    return rows


def timing(quick: bool, specs: list[str], device: str = "cuda") -> list[dict[str, Any]]:
    rows = []
    for spec in specs:
        candidate, _, baseline = spec.partition(":")
        if baseline:
            label = {"section": "artifacts", "case": spec, "candidate": candidate}
            rows += guarded(label, partial(_time_pair, Path(candidate), Path(baseline),
                                           10 if quick else 50, device))
    return rows


def open_session(folder: Path, device: str) -> Any:
    """A runtime Session over the gpu engine (hashes checked first, as `ember.runtime.load`
    does; built here because the device check imports ember.runtime as a bare package)."""
    from ember.runtime.engines.gpu_engine import GpuEngine
    from ember.runtime.manifest import check_files, read_manifest
    from ember.runtime.session import Session

    manifest = read_manifest(folder)
    check_files(folder, manifest)
    return Session(folder, manifest, GpuEngine(folder, manifest, device=device))


def _check(folder: Path, device: str) -> list[dict[str, Any]]:
    session = open_session(folder, device)
    result = session.check()
    worst = max(result["outputs"].values(), key=lambda o: o["max_abs"] or 0.0)
    tolerance = session.manifest["verification"]["tolerance"]
    row = check_row("gpu artifact", str(folder), "max abs error vs stored outputs",
                    worst["max_abs"], tolerance["atol"], program=session.manifest[
                        "target_info"].get("program_kind"))
    row["ok"] = result["status"] == "passed"  # the manifest's atol and rtol, per element
    return [row]


def _time_pair(candidate: Path, baseline: Path, reps: int,
               device: str) -> list[dict[str, Any]]:
    sessions = {"candidate": open_session(candidate, device),
                "baseline": open_session(baseline, device)}
    inputs, _ = sessions["candidate"].reference_io()
    calls = {role: s.prepared_call(inputs) for role, s in sessions.items()}
    for call in calls.values():
        for _ in range(WARMUP):
            call()
    samples: dict[str, list[float]] = {"candidate": [], "baseline": []}
    for i in range(reps):
        for role in ("candidate", "baseline") if i % 2 == 0 else ("baseline", "candidate"):
            start = time.perf_counter()
            calls[role]()
            samples[role].append((time.perf_counter() - start) * 1e3)
    summary = {role: {"median_ms": statistics.median(t), "reps": reps}
               for role, t in samples.items()}
    return [timing_row("artifacts", f"{candidate.name} vs {baseline.name}", str(baseline),
                       summary["baseline"], str(candidate), summary["candidate"])]
