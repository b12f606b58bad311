"""`ember bench` end to end: reports, schema, baselines built and reused, regression flags and
exit codes, sweeps that resume, and bad input."""

from __future__ import annotations

import json

import pytest

from ember.tools.bench.evaluate import regressions
from ember.tools.bench.runner import frontier
from ember.tools.bench.schema import SCHEMA_VERSION, Report
from ember.tools.cli.main import main


@pytest.fixture(scope="module")
def folded(tmp_path_factory):
    from ember.compiler.api import compile_model

    out = tmp_path_factory.mktemp("bench") / "tiny-folded"
    return compile_model({"model": "builtin:tiny-cnn", "passes": ["fold_bn"], "target": "cpu",
                          "output": str(out)})


def _bench(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(["bench", *argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_report_files_schema_and_baseline_reuse(folded, tmp_path, capsys):
    out = tmp_path / "rep"
    code, stdout, _ = _bench(capsys, str(folded), "--data", "agreement", "--repeat", "5",
                             "-o", str(out))
    assert code == 0 and "| tiny-folded | cpu | fold_bn(into=all)" in stdout
    assert {p.name for p in out.iterdir()} >= {"report.json", "report.schema.json", "report.md",
                                               "report.html", "baselines"}
    data = json.loads((out / "report.json").read_text())
    report = Report.model_validate(data)  # the documented schema, strictly (extra keys refused)
    assert data["schema_version"] == SCHEMA_VERSION == 1
    row = report.rows[0]
    assert row.latency.repeat == row.baseline_latency.repeat == 5
    assert row.baseline_label.endswith("(no passes)") and row.passes == ["fold_bn(into=all)"]
    assert row.quality.metric == "agreement" and row.quality.value == 1.0
    assert row.error.max_abs < 1e-4 and row.ops.macs == row.baseline_ops.macs
    assert report.machine.cores >= 1 and report.tools["onnxruntime"]
    schema = json.loads((out / "report.schema.json").read_text())
    assert set(schema["required"]) >= {"schema_version", "rows", "machine", "settings"} - {
        "schema_version"}
    baseline_dir = next((out / "baselines").iterdir())
    stamp = (baseline_dir / "manifest.json").stat().st_mtime_ns
    code, _, _ = _bench(capsys, str(folded), "--repeat", "3", "-o", str(out))
    assert code == 0 and (baseline_dir / "manifest.json").stat().st_mtime_ns == stamp


def test_fail_under_speedup_exits_1_and_names_the_row(folded, tmp_path, capsys):
    code, _, err = _bench(capsys, str(folded), "--repeat", "3", "--fail-under-speedup", "1000",
                          "-o", str(tmp_path / "r"))
    assert code == 1
    assert "tiny-folded speedup" in err and "under --fail-under-speedup 1000" in err


def _row(speedup: float, drop: float | None, label: str = "x"):
    from ember.tools.bench.schema import ErrorVsBaseline, Latency, Ops, Quality, Row

    lat = Latency(median_ms=1.0, p90_ms=1.0, min_ms=1.0, repeat=3)
    ops = Ops(params=1, bytes=4, macs=1, mults=1, adds=1, energy_uj=0.0)
    quality = None if drop is None else Quality(
        metric="top1", data="digits", value=0.9 - drop, baseline_value=0.9, higher_is_better=True,
        drop=drop, samples=10)
    return Row(label=label, artifact="a", model="m", target="cpu", passes=[], baseline_label="b",
               baseline_artifact="b", latency=lat, baseline_latency=lat, speedup=speedup,
               speedup_iqr=(speedup, speedup), throughput=1.0, throughput_unit="items/s",
               size_bytes=1, baseline_size_bytes=1, ops=ops, baseline_ops=ops, layers=[],
               error=ErrorVsBaseline(max_abs=0.0, max_rel=0.0, top1_agreement=1.0, cosine=1.0),
               quality=quality, regressions=[])


def test_regression_flags():
    assert regressions(_row(1.2, 0.0), max_quality_drop=0.01) == []
    assert regressions(_row(0.95, None), None) == [
        "slower than the baseline (speedup 0.950x < 1)"]
    flagged = regressions(_row(1.5, 0.05), max_quality_drop=0.01)
    assert len(flagged) == 1 and "drop 0.05 > allowed 0.01" in flagged[0]
    assert regressions(_row(1.5, 0.05), max_quality_drop=None) == []


def test_frontier_keeps_only_undominated_rows():
    rows = [_row(2.0, 0.05, "fast"), _row(1.0, 0.0, "exact"), _row(1.5, 0.06, "worse"),
            _row(1.5, 0.01, "middle")]
    assert frontier(rows) == ["fast", "exact", "middle"]


def test_sweep_builds_resumes_and_reports(tmp_path, capsys):
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text("models: [builtin:tiny-cnn]\n"
                     "recipes: {folded: [fold_bn], conv-only: [{fold_bn: {into: conv}}]}\n"
                     "targets: [cpu]\ndata: agreement\n")
    out = tmp_path / "sw"
    code, stdout, _ = _bench(capsys, "--sweep", str(sweep), "--repeat", "3", "-o", str(out))
    assert code == 0
    names = sorted(p.name for p in (out / "artifacts").iterdir())
    assert names == ["tiny-cnn-baseline-cpu", "tiny-cnn-conv-only-cpu", "tiny-cnn-folded-cpu"]
    report = Report.model_validate_json((out / "report.json").read_text())
    assert {r.label for r in report.rows} == set(names)
    assert all(r.baseline_artifact.endswith("tiny-cnn-baseline-cpu") for r in report.rows)
    assert report.frontier and "Frontier" in stdout
    stamps = {n: (out / "artifacts" / n / "manifest.json").stat().st_mtime_ns for n in names}
    code, _, _ = _bench(capsys, "--sweep", str(sweep), "--repeat", "3", "-o", str(out))
    assert code == 0
    assert stamps == {n: (out / "artifacts" / n / "manifest.json").stat().st_mtime_ns
                      for n in names}


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--data", "imagenet"], "--data 'imagenet': expected text:CORPUS, digits or agreement"),
        (["--data", "text:pydoc"], "needs a language-model artifact"),
        (["--data", "digits"], "needs (N, 1, 28, 28) inputs"),
        (["--sweep", "x.yaml"], "give artifact directories or --sweep"),
    ],
)
def test_bad_bench_input_is_one_line_exit_2(folded, tmp_path, capsys, argv, message):
    code, _, err = _bench(capsys, str(folded), *argv, "--repeat", "2", "-o", str(tmp_path / "r"))
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and message in lines[0]


def test_null_artifact_cannot_be_benchmarked(tmp_path, capsys):
    main(["compile", "--model", "builtin:tiny-cnn", "--target", "null", "-o", str(tmp_path / "n"),
          "--quiet"])
    capsys.readouterr()
    code, _, err = _bench(capsys, str(tmp_path / "n"), "-o", str(tmp_path / "r"))
    assert code == 2 and "cannot be timed" in err


def test_explicit_baselines_match_by_spec_then_by_target_and_signature(monkeypatch, tmp_path):
    """A pruned model saved as its own hf: folder has no baseline of its spec: it takes the
    one baseline of its target and input signature, and an ambiguous choice is refused."""
    from ember.errors import UserError
    from ember.tools.bench import baseline as chooser

    inputs = [{"name": "input_ids", "shape": [1, 128], "dtype": "int64"}]
    def manifest(spec: str, target: str) -> dict:
        return {"model": {"spec": spec}, "target": target, "signature": {"inputs": inputs}}

    manifests = {"pruned": manifest("hf:pruned", "cpu"), "dense-cpu": manifest("hf:dense", "cpu"),
                 "dense-tvm": manifest("hf:dense", "tvm"), "other-cpu": manifest("hf:other", "cpu")}
    monkeypatch.setattr(chooser, "read_manifest", lambda folder: manifests[folder.name])
    pick = chooser._matching(tmp_path / "pruned", manifests["pruned"],
                             [tmp_path / "dense-tvm", tmp_path / "dense-cpu"])
    assert pick.folder.name == "dense-cpu"
    with pytest.raises(UserError, match="no --baseline matches"):
        chooser._matching(tmp_path / "pruned", manifests["pruned"],
                          [tmp_path / "dense-cpu", tmp_path / "other-cpu"])
