"""The demo: compile two real models for `cpu` and `tvm`, verify, and time them against the
uncompiled PyTorch model on the same inputs, in one run on this machine.

Each model is loaded, exported and given reference outputs once (`prepare`); each target then
builds a verified artifact from that, which the runtime loads and times. Latency is the
median of repeated calls after warm-up; the number of repeats adapts so that a slow engine
(untuned TVM on a language model) still finishes in seconds.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from ember.compiler.progress import Progress

MODELS = ("builtin:digits-cnn", "builtin:smollm2-135m")
TARGETS = ("cpu", "tvm")
BUDGET_S = 3.0  # timing budget per row


@dataclass
class Row:
    model: str
    engine: str
    median_ms: float | None
    p90_ms: float | None
    repeat: int
    speedup: float | None  # PyTorch median / this median
    max_abs: float | None
    status: str


def adaptive_benchmark(call, budget_s: float = BUDGET_S):
    """Warm-up once, estimate one call, then time as many calls as fit the budget (3..50)."""
    from ember.runtime.timing import time_calls

    start = time.perf_counter()
    call()
    one = time.perf_counter() - start
    repeat = max(3, min(50, int(budget_s / max(one, 1e-6))))
    return time_calls(call, warmup=min(5, repeat // 5), repeat=repeat)


def torch_row(prepared) -> Row:
    import torch

    args = [torch.from_numpy(v) for v in prepared.loaded.inputs.values()]

    def call():
        with torch.no_grad():
            prepared.model(*args)

    timing = adaptive_benchmark(call)
    return Row(_short(prepared.loaded.spec), "pytorch (eager)", timing.median_ms, timing.p90_ms,
               len(timing.samples), 1.0, None, "reference")


def artifact_row(prepared, target: str, folder: Path, baseline_ms: float,
                 progress: Progress) -> Row:
    import ember.runtime as rt
    from ember.compiler.api import build

    model = _short(prepared.loaded.spec)
    build(prepared, folder, target=target, progress=progress)
    session = rt.load(folder)
    verification = session.manifest["verification"]
    timing = adaptive_benchmark(session.prepared_call(prepared.loaded.inputs))
    max_abs = max(o["max_abs"] for o in verification["outputs"].values())
    return Row(model, target, timing.median_ms, timing.p90_ms, len(timing.samples),
               baseline_ms / timing.median_ms, max_abs, verification["status"])


def run_demo(out_dir: Path | None, tokens: int, progress: Progress) -> list[Row]:
    from ember.compiler.api import prepare, resolve_config
    from ember.targets import TARGETS as REGISTRY

    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="ember-demo-") as scratch:
        root = out_dir or Path(scratch)
        for spec in MODELS:
            example = {"tokens": tokens} if "smollm2" in spec else {}
            config = resolve_config({"model": spec, "example": example, "target": "cpu"})
            print(f"{spec}", file=progress.stream, flush=True)
            prepared = prepare(config, progress)
            with progress.stage("timing the PyTorch model"):
                baseline = torch_row(prepared)
            rows.append(baseline)
            for target in TARGETS:
                ok, why = REGISTRY[target].available()
                if not ok:
                    rows.append(Row(_short(spec), target, None, None, 0, None, None,
                                    f"skipped: {why}"))
                    continue
                folder = root / f"{_short(spec)}-{target}"
                with progress.stage(f"{target}: build, verify, time"):
                    rows.append(artifact_row(prepared, target, folder, baseline.median_ms,
                                             progress))
    return rows


def _short(spec: str) -> str:
    return spec.partition(":")[2]


def render(rows: list[Row]) -> str:
    from ember.tools.table import format_table

    def ms(x: float | None) -> str:
        return "-" if x is None else f"{x:.3f}" if x < 10 else f"{x:.1f}"

    table = [[r.model, r.engine, ms(r.median_ms), ms(r.p90_ms), r.repeat or "-",
              "-" if r.speedup is None else f"{r.speedup:.2f}x",
              "-" if r.max_abs is None else f"{r.max_abs:.2g}", r.status] for r in rows]
    headers = ["model", "engine", "median ms", "p90 ms", "runs", "vs PyTorch", "max abs err",
               "verification"]
    return format_table(headers, table, right=[False, False, True, True, True, True, True, False])
