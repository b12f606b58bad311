"""`ember bench`: evaluate artifacts against their baselines and write the three reports.

    report.json          schema v1 (tools/bench/schema.py), report.schema.json beside it
    report.md            tables for a terminal or a pull request
    report.html          one self-contained page with plots (no network)
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

from ember import __version__
from ember.compiler.provenance import machine, tool_versions
from ember.errors import UserError
from ember.progress import QUIET, Progress
from ember.targets.host import cpu_features
from ember.tools.bench.baseline import choose_baseline
from ember.tools.bench.evaluate import BenchOptions, evaluate
from ember.tools.bench.quality import parse_data
from ember.tools.bench.schema import Machine, Report, Row, Settings

REPORT_FILES = ("report.json", "report.schema.json", "report.md", "report.html")


def run_bench(artifacts: list[Path], out_dir: Path, options: BenchOptions,
              baselines: list[Path] | None = None, fail_under_speedup: float | None = None,
              progress: Progress = QUIET) -> Report:
    parse_data(options.data)
    _check_artifacts(artifacts, baselines or [])
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    for candidate in artifacts:
        baseline = choose_baseline(candidate, baselines or [], out_dir, progress)
        with progress.stage(f"benchmarking {candidate.name} against {baseline.label}"):
            rows.append(evaluate(candidate, baseline, options, progress))
    report = build_report(rows, options, fail_under_speedup)
    write_reports(report, out_dir)
    return report


def _check_artifacts(artifacts: list[Path], baselines: list[Path]) -> None:
    from ember.runtime.manifest import read_manifest

    labels = [f.name for f in artifacts]
    for folder in [*artifacts, *baselines]:
        if read_manifest(folder)["format"] == "null":
            raise UserError(f"{folder} is a null-target op report; it cannot be timed")
    if len(set(labels)) != len(labels):
        raise UserError("artifact directory names must be distinct: they label the report rows")


def build_report(rows: list[Row], options: BenchOptions,
                 fail_under_speedup: float | None) -> Report:
    host = machine()
    return Report(
        created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        ember_version=__version__,
        machine=Machine(cpu=str(host["cpu"]), cores=int(host["cores"]),
                        machine=str(host["machine"]), system=str(host["system"]),
                        cpu_features=cpu_features(), threads=options.threads or 0),
        tools=tool_versions(),
        settings=Settings(warmup=options.warmup, repeat=options.repeat, budget_s=options.budget_s,
                          data=options.data, max_quality_drop=options.max_quality_drop,
                          fail_under_speedup=fail_under_speedup),
        rows=rows, frontier=frontier(rows),
        regressions=[f"{r.label}: {reason}" for r in rows for reason in r.regressions],
    )


def frontier(rows: list[Row]) -> list[str]:
    """Labels of rows no other row beats on both speedup and quality (Pareto frontier).

    Quality is -drop when measured, else -max_abs error vs the baseline (higher is better).
    """
    def quality(row: Row) -> float:
        return -row.quality.drop if row.quality is not None else -row.error.max_abs

    points = [(r.speedup, quality(r), r.label) for r in rows]
    return [label for s, q, label in points
            if not any(s2 >= s and q2 >= q and (s2 > s or q2 > q) for s2, q2, _ in points)]


def write_reports(report: Report, out_dir: Path) -> None:
    from ember.tools.bench.report_html import render_html
    from ember.tools.bench.report_md import render_markdown

    (out_dir / "report.json").write_text(report.model_dump_json(indent=1) + "\n")
    (out_dir / "report.schema.json").write_text(json.dumps(Report.model_json_schema(), indent=1))
    (out_dir / "report.md").write_text(render_markdown(report))
    (out_dir / "report.html").write_text(render_html(report))
