"""The demo's closing report: each target against the model's ONNX Runtime artifact."""

from __future__ import annotations

from ember.compiler.api import build, prepare, resolve_config
from ember.progress import QUIET
from ember.tools.bench.schema import Report
from ember.tools.demo import write_demo_report


def test_demo_report_compares_targets_with_onnxruntime(tmp_path, tvm_available):
    prepared = prepare(resolve_config({"model": "builtin:tiny-cnn"}))
    folders = {"tiny-cnn": {t: build(prepared, tmp_path / f"tiny-{t}", target=t)
                            for t in ("cpu", "tvm")}}
    report = write_demo_report(folders, tmp_path / "rep", QUIET, {"tiny-cnn": "agreement"})
    assert Report.model_validate_json((tmp_path / "rep" / "report.json").read_text()) == report
    rows = {r.label: r for r in report.rows}
    assert rows["tiny-cpu"].baseline_artifact == rows["tiny-tvm"].baseline_artifact
    assert rows["tiny-cpu"].speedup == 1.0  # its own baseline
    assert rows["tiny-tvm"].quality.value == 1.0 and rows["tiny-tvm"].error.max_abs < 1e-5
    assert (tmp_path / "rep" / "report.html").stat().st_size > 10_000
