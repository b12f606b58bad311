"""The runtime: load-time integrity checks, input checking, running and timing."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

import ember.runtime as rt
from ember.errors import ArtifactError, InputError


@pytest.fixture
def artifact(tiny_cnn_cpu, tmp_path):
    """A private copy of the session's tiny-cnn artifact, free to damage."""
    return shutil.copytree(tiny_cnn_cpu, tmp_path / "a")


def test_load_run_and_reference_match(artifact):
    session = rt.load(artifact)
    inputs, reference = session.reference_io()
    outputs = session.run(inputs)
    np.testing.assert_allclose(outputs["logits"], reference["logits"], atol=1e-5, rtol=1e-5)
    assert session.check()["status"] == "passed"


def test_benchmark_reports_median_and_p90(artifact):
    session = rt.load(artifact)
    inputs, _ = session.reference_io()
    result = session.benchmark(inputs, warmup=1, repeat=7)
    assert len(result.samples) == 7
    assert min(result.samples) == result.min_ms <= result.median_ms <= result.p90_ms
    assert result.p90_ms <= max(result.samples)


def test_tampered_payload_is_refused_naming_the_checksum(artifact):
    model = artifact / "model.onnx"
    data = bytearray(model.read_bytes())
    data[len(data) // 2] ^= 0xFF
    model.write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match="sha256 checksum mismatch for model.onnx"):
        rt.load(artifact)


def test_missing_manifest_and_missing_payload(artifact, tmp_path):
    (artifact / "reference_io.npz").unlink()
    with pytest.raises(ArtifactError, match="payload file reference_io.npz is missing"):
        rt.load(artifact)
    (artifact / "manifest.json").unlink()
    with pytest.raises(ArtifactError, match="manifest.json is missing"):
        rt.load(artifact)
    with pytest.raises(ArtifactError, match="not found"):
        rt.load(tmp_path / "nowhere")


def test_manifest_cannot_point_outside_the_artifact(artifact):
    _edit_manifest(artifact, lambda m: m["files"].update({"../escape": {"sha256": "0" * 64,
                                                                          "bytes": 0}}))
    with pytest.raises(ArtifactError, match="outside the artifact"):
        rt.load(artifact)


def test_wrong_inputs_are_clear_errors(artifact):
    session = rt.load(artifact)
    x = session.reference_io()[0]["image"]
    with pytest.raises(InputError, match="missing input 'image'"):
        session.run({"img": x})
    with pytest.raises(InputError, match="does not match"):
        session.run({"image": x[:, :, :8]})
    with pytest.raises(InputError, match="dtype float64"):
        session.run({"image": x.astype(np.float64)})


@pytest.mark.parametrize("fixture", ["tiny_cnn_cpu", "tiny_cnn_tvm"])
def test_runtime_does_not_import_torch(fixture, request):
    artifact = request.getfixturevalue(fixture)
    code = (
        "import sys, ember.runtime as rt\n"
        f"s = rt.load({str(artifact)!r})\n"
        "s.run(s.reference_io()[0])\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("fixture", ["tiny_cnn_cpu", "tiny_cnn_tvm"])
def test_sessions_are_safe_from_several_threads(fixture, request):
    session = rt.load(request.getfixturevalue(fixture))
    rng = np.random.default_rng(0)
    batches = [rng.standard_normal((1, 3, 16, 16), dtype=np.float32) for _ in range(8)]
    alone = [session.run({"image": x})["logits"] for x in batches]
    with ThreadPoolExecutor(max_workers=4) as pool:
        together = list(pool.map(lambda x: session.run({"image": x})["logits"], batches * 4))
    for i, got in enumerate(together):
        np.testing.assert_array_equal(got, alone[i % len(batches)])


def _edit_manifest(artifact, change) -> None:
    """A forger's edit: the manifest changed and its digest recomputed to match, so what is
    tested is the defence behind the digest."""
    from ember.runtime.manifest import DIGEST, digest_line

    manifest = json.loads((artifact / "manifest.json").read_text())
    change(manifest)
    (artifact / "manifest.json").write_text(json.dumps(manifest))
    (artifact / DIGEST).write_text(digest_line(artifact))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda m: m["files"].pop("model.onnx"), "not among its hash-checked files"),
        (lambda m: m["target_info"].update(model_file="/etc/hostname"),
         "not among its hash-checked files"),
        (lambda m: m.update(reference_io="../elsewhere.npz"), "not among its hash-checked"),
        (lambda m: m.update(files=[]), "malformed manifest at files"),
        (lambda m: m.update(files={}), "malformed manifest at files"),
        (lambda m: m.pop("signature"), "malformed manifest at signature"),
        (lambda m: m["signature"]["inputs"][0].update(dtype="float99"), "malformed manifest"),
        (lambda m: m.update(format="vhdl"), "unknown artifact format 'vhdl'"),
        (lambda m: m.update(format=["onnx"]), "malformed manifest at format"),
        (lambda m: m.update(format="null"), "null-target artifact is an op report"),
    ],
)
def test_manifest_cannot_smuggle_unchecked_files_or_break_the_runtime(artifact, change, message):
    _edit_manifest(artifact, change)
    with pytest.raises(ArtifactError, match=message):
        session = rt.load(artifact)
        session.run(session.reference_io()[0])


def test_a_tolerance_that_is_not_a_number_is_refused_by_check(artifact):
    """Found by the fuzz suite: `atol: null` reached the comparison and raised TypeError."""
    _edit_manifest(artifact, lambda m: m["verification"]["tolerance"].update(atol=None))
    with pytest.raises(ArtifactError, match="records no verification tolerance"):
        rt.load(artifact).check()


def test_onnxruntime_stops_spinning_once_a_tvm_engine_shares_the_process(
        tiny_cnn_cpu, tiny_cnn_tvm, monkeypatch):
    """Spinning ONNX Runtime workers starved TVM's thread pool (31.6 ms a call instead of
    0.14); sessions opened before the first TVM engine are reopened, later ones start so."""
    import weakref

    from ember.runtime.engines import shared_cores

    monkeypatch.setattr(shared_cores, "_tvm_in_process", False)
    monkeypatch.setattr(shared_cores, "_onnxruntime_engines", weakref.WeakSet())

    def stops(session) -> str:
        options = session.engine.session.get_session_options()
        return options.get_session_config_entry(shared_cores.STOP_SPINNING)

    before = rt.load(tiny_cnn_cpu)
    with pytest.raises(RuntimeError):  # alone: ONNX Runtime's default, the key is unset
        stops(before)
    reference = np.load(tiny_cnn_cpu / "reference_io.npz")
    inputs = {k.split(":", 1)[1]: reference[k] for k in reference.files if k.startswith("input:")}
    expected = before.run(inputs)
    rt.load(tiny_cnn_tvm)
    assert stops(before) == "1" and stops(rt.load(tiny_cnn_cpu)) == "1"
    for name, value in before.run(inputs).items():  # the reopened session computes the same
        np.testing.assert_array_equal(value, expected[name])
