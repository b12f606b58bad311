"""Bench report renderers: Markdown content, a self-contained HTML page, and how Chromium
renders that page (skipped when headless Chromium is not installed)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from ember.tools.bench.report_html import render_html
from ember.tools.bench.report_md import render_markdown
from ember.tools.bench.schema import (
    ErrorVsBaseline,
    Latency,
    LayerOps,
    Machine,
    Ops,
    Quality,
    Report,
    Row,
    Settings,
)

PNG = "data:image/png;base64,"
SLOW = "tiny-cnn <b>int8</b>"
PRUNED = "tiny-cnn pruned"


def _ops(macs: int, size: int) -> Ops:
    return Ops(params=size // 4, bytes=size, macs=macs, mults=macs, adds=macs,
               energy_uj=macs * 4.6e-6)


def _layers(factor: float) -> list[LayerOps]:
    sizes = [(f"conv{i}", "Conv", 400_000 * (i + 1)) for i in range(18)]
    sizes.append(("fc", "Gemm", 50_000))
    return [LayerOps(name=name, op=op, baseline_macs=macs, macs=int(macs * factor),
                     baseline_mults=macs, mults=int(macs * factor)) for name, op, macs in sizes]


def _row(label: str, *, speedup: float, layer_factor: float, quality: bool,
         regressions: list[str]) -> Row:
    layers = _layers(layer_factor)
    base_macs = sum(lo.baseline_macs for lo in layers)
    macs = sum(lo.macs for lo in layers)
    return Row(
        label=label, artifact=f"out/{label}", model="builtin:tiny-cnn", target="cpu",
        passes=["fold_bn", "prune(sparsity=0.5,structured=1)"] if layer_factor < 1 else [],
        baseline_label="tiny-cnn fp32", baseline_artifact="out/base",
        latency=Latency(median_ms=4.2 / speedup, p90_ms=4.6 / speedup, min_ms=3.9 / speedup,
                        repeat=50),
        baseline_latency=Latency(median_ms=4.2, p90_ms=4.7, min_ms=4.0, repeat=50),
        speedup=speedup, speedup_iqr=(speedup - 0.04, speedup + 0.03),
        throughput=1000 / (4.2 / speedup) * 32, throughput_unit="items/s",
        size_bytes=int(3_500_000 * layer_factor), baseline_size_bytes=3_500_000,
        ops=_ops(macs, int(3_500_000 * layer_factor)), baseline_ops=_ops(base_macs, 3_500_000),
        layers=layers,
        error=ErrorVsBaseline(max_abs=3.2e-3 if layer_factor < 1 else 0.0, max_rel=1e-3,
                              top1_agreement=0.99, cosine=0.9999),
        quality=Quality(metric="top1", data="digits", value=0.951, baseline_value=0.962,
                        higher_is_better=True, drop=0.011, samples=360) if quality else None,
        regressions=regressions,
    )


def _report(*, layer_changes: bool = True) -> Report:
    slow = _row(SLOW, speedup=0.83, layer_factor=1.0, quality=False,
                regressions=["slower than baseline (0.83x < 1x)"])
    pruned = _row(PRUNED, speedup=1.52, layer_factor=0.55 if layer_changes else 1.0,
                  quality=True, regressions=[])
    return Report(
        created="2025-01-31T12:00:00Z", ember_version="0.3.0",
        machine=Machine(cpu="Test CPU @ 3.0GHz", cores=8, machine="x86_64", system="Linux",
                        cpu_features=["avx2"], threads=4),
        tools={"onnxruntime": "1.20.0", "tvm": None},
        settings=Settings(warmup=5, repeat=None, budget_s=10.0, data="digits",
                          max_quality_drop=0.02, fail_under_speedup=1.0),
        rows=[slow, pruned], frontier=[PRUNED],
        regressions=[f"{SLOW}: slower than baseline (0.83x < 1x)"],
    )


def test_markdown_has_table_labels_status_and_speedup():
    md = render_markdown(_report())
    assert "| label | target | passes | median ms | p90 ms | baseline median ms |" in md
    assert SLOW in md and PRUNED in md
    slow_line = next(line for line in md.splitlines() if line.startswith(f"| {SLOW} |"))
    assert "REGRESSION: slower than baseline" in slow_line
    pruned_line = next(line for line in md.splitlines() if line.startswith(f"| {PRUNED} |"))
    assert pruned_line.rstrip().endswith("| ok |")
    assert "1.52x (1.48-1.55)" in pruned_line
    assert "top1 0.951 vs 0.962" in pruned_line
    assert "3.34 MiB" in md and "-45.0%" in pruned_line
    assert "## Regressions" in md and f"- {SLOW}: slower" in md
    assert "**Frontier**" in md and "How to read this" in md


@pytest.mark.parametrize(("layer_changes", "images"), [(True, 3), (False, 2)])
def test_html_is_self_contained(layer_changes: bool, images: int):
    page = render_html(_report(layer_changes=layer_changes))
    assert "http://" not in page and "https://" not in page
    assert "<script src" not in page.lower() and "<link" not in page.lower()
    assert page.count(PNG) == images
    assert ("No artifact changes the per-layer" in page) is (not layer_changes)


def test_html_escapes_report_strings():
    page = render_html(_report())
    assert "<b>int8</b>" not in page
    assert "tiny-cnn &lt;b&gt;int8&lt;/b&gt;" in page
    assert '<tr class="regression">' in page and "REGRESSION: slower than baseline" in page


def test_html_renders_in_headless_chromium(tmp_path: Path):
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.skip("headless Chromium is not installed (Debian package chromium)")
    page = tmp_path / "report.html"
    page.write_text(render_html(_report()), encoding="utf-8")
    shot = tmp_path / "shot.png"
    common = [
        chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
        "--no-first-run", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", f"--user-data-dir={tmp_path / 'profile'}",
    ]
    subprocess.run([*common, f"--screenshot={shot}", "--window-size=1280,2000",
                    page.as_uri()], check=True, capture_output=True, timeout=60)
    assert shot.exists() and shot.stat().st_size > 10_000
    dom = subprocess.run([*common, "--dump-dom", page.as_uri()], check=True,
                         capture_output=True, text=True, timeout=60).stdout
    assert "baseline median ms" in dom and PRUNED in dom
    assert "1.52x (1.48-1.55)" in dom and "tiny-cnn &lt;b&gt;int8&lt;/b&gt;" in dom
