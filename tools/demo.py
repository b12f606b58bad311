"""The demo: compile two real models for `cpu` and `tvm`, verify, and time them against the
uncompiled PyTorch model on the same inputs, in one run on this machine.

Each model is loaded, exported and given reference outputs once (`prepare`); each target then
builds a verified artifact from that, which the runtime loads and times. Latency is the
median of repeated calls after warm-up; the number of repeats adapts so that a slow engine
(untuned TVM on a language model) still finishes in seconds.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

from ember.progress import Progress
from ember.tools.bench.schema import Report

MODELS = ("builtin:digits-cnn", "builtin:smollm2-135m")
TARGETS = ("cpu", "tvm")
BUDGET_S = 3.0  # timing budget per row


@dataclass
class DemoRow:
    model: str
    engine: str
    median_ms: float | None
    p90_ms: float | None
    repeat: int
    speedup: float | None  # PyTorch median / this median
    max_abs: float | None
    status: str


def adaptive_benchmark(call, budget_s: float = BUDGET_S):
    """Warm-up once, estimate one call, then time as many calls as fit the budget (the same
    bounds as `ember bench`)."""
    from ember.runtime.timing import time_calls, timed_ms
    from ember.tools.bench.measure import choose_repeat

    repeat = choose_repeat(timed_ms(call), budget_s)
    return time_calls(call, warmup=min(5, repeat // 5), repeat=repeat)


def torch_row(prepared) -> DemoRow:
    import torch

    args = [torch.from_numpy(v) for v in prepared.loaded.inputs.values()]

    def call():
        with torch.no_grad():
            prepared.model(*args)

    timing = adaptive_benchmark(call)
    return DemoRow(_short(prepared.loaded.spec), "pytorch (eager)", timing.median_ms, timing.p90_ms,
               len(timing.samples), 1.0, None, "reference")


def artifact_row(prepared, target: str, folder: Path, baseline_ms: float,
                 progress: Progress) -> DemoRow:
    import ember.runtime as rt
    from ember.compiler.api import build

    model = _short(prepared.loaded.spec)
    build(prepared, folder, target=target, progress=progress)
    session = rt.load(folder)
    verification = session.manifest["verification"]
    timing = adaptive_benchmark(session.prepared_call(prepared.loaded.inputs))
    max_abs = max(o["max_abs"] for o in verification["outputs"].values())
    return DemoRow(model, target, timing.median_ms, timing.p90_ms, len(timing.samples),
               baseline_ms / timing.median_ms, max_abs, verification["status"])


def run_demo(out_dir: Path | None, report_dir: Path, tokens: int, progress: Progress
             ) -> tuple[list[DemoRow], Report]:
    """The demo table's rows, and the bench report written to `report_dir`."""
    with tempfile.TemporaryDirectory(prefix="ember-demo-") as scratch:
        rows, folders = _compile_and_time(out_dir or Path(scratch), tokens, progress)
        report = write_demo_report(folders, report_dir, progress)
    return rows, report


def _compile_and_time(root: Path, tokens: int, progress: Progress
                      ) -> tuple[list[DemoRow], dict[str, dict[str, Path]]]:
    from ember.compiler.api import prepare, resolve_config
    from ember.targets import TARGETS as REGISTRY

    rows: list[DemoRow] = []
    folders: dict[str, dict[str, Path]] = {}
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
                rows.append(DemoRow(_short(spec), target, None, None, 0, None, None,
                                f"skipped: {why}"))
                continue
            folder = root / f"{_short(spec)}-{target}"
            with progress.stage(f"{target}: build, verify, time"):
                rows.append(artifact_row(prepared, target, folder, baseline.median_ms,
                                         progress))
            folders.setdefault(_short(spec), {})[target] = folder
    return rows, folders


#: task data per demo model: top-1 on real held-out digits, perplexity on CPython's docs
DEMO_DATA = {"digits-cnn": "digits", "smollm2-135m": "text:pydoc"}


def write_demo_report(folders: dict[str, dict[str, Path]], report_dir: Path,
                      progress: Progress, data_by_model: dict[str, str] | None = None) -> Report:
    """`ember bench` over the demo's artifacts: each target against the model's ONNX Runtime
    artifact, interleaved; report.json/.md/.html in `report_dir`."""
    from ember.tools.bench.baseline import Baseline
    from ember.tools.bench.evaluate import BenchOptions, evaluate
    from ember.tools.bench.runner import build_report, write_reports

    data_by_model = data_by_model or DEMO_DATA
    rows = []
    for model, by_target in folders.items():
        options = BenchOptions(warmup=1, budget_s=2.0, data=data_by_model[model])
        reference = by_target.get("cpu")
        for folder in by_target.values():
            base = reference or folder
            baseline = Baseline(base, f"{base.name} (ONNX Runtime)", base == folder)
            with progress.stage(f"report: {folder.name} vs {base.name}"):
                rows.append(evaluate(folder, baseline, options, progress))
    data = ", ".join(f"{d} ({m})" for m, d in data_by_model.items())
    report = build_report(rows, BenchOptions(warmup=1, budget_s=2.0, data=data), None)
    report_dir.mkdir(parents=True, exist_ok=True)
    write_reports(report, report_dir)
    return report


def _short(spec: str) -> str:
    return spec.partition(":")[2]


def render(rows: list[DemoRow]) -> str:
    from ember.tools.table import format_table

    def ms(x: float | None) -> str:
        return "-" if x is None else f"{x:.3f}" if x < 10 else f"{x:.1f}"

    table = [[r.model, r.engine, ms(r.median_ms), ms(r.p90_ms), r.repeat or "-",
              "-" if r.speedup is None else f"{r.speedup:.2f}x",
              "-" if r.max_abs is None else f"{r.max_abs:.2g}", r.status] for r in rows]
    headers = ["model", "engine", "median ms", "p90 ms", "runs", "vs PyTorch", "max abs err",
               "verification"]
    return format_table(headers, table, right=[False, False, True, True, True, True, True, False])
