"""End to end: compile the tiny built-ins for cpu and tvm, load with the runtime, and match the
original torch model (before passes), which also checks fold_bn through export."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import ember
import ember.errors
import ember.runtime as rt
from ember.compiler.config import ExampleSpec
from ember.compiler.models import load_model


@pytest.mark.parametrize("target", ["cpu", "tvm"])
@pytest.mark.parametrize("spec", ["builtin:tiny-cnn", "builtin:tiny-llama"])
def test_compiled_artifact_matches_torch(spec, target, tmp_path, request):
    if target == "tvm":
        request.getfixturevalue("tvm_available")
    out = ember.compile({"model": spec, "passes": ["fold_bn"], "target": target,
                         "output": str(tmp_path / "a")})
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["verification"]["status"] == "passed"
    assert manifest["target"] == target

    original = load_model(spec, ExampleSpec(), seed=0)
    session = rt.load(out)
    with torch.no_grad():
        expected = original.module(*(torch.from_numpy(v) for v in original.inputs.values()))
    got = session.run(original.inputs)
    name = session.output_specs[0]["name"]
    np.testing.assert_allclose(got[name], expected.numpy(), atol=1e-4, rtol=1e-4)


def test_manifest_records_provenance(tiny_cnn_cpu):
    m = json.loads((tiny_cnn_cpu / "manifest.json").read_text())
    assert set(m["files"]) == {"model.onnx", "reference_io.npz", "ops.json"}
    assert m["ops"]["totals"]["macs"] > 0 and m["tokenizer"] is None
    assert all(len(r["sha256"]) == 64 for r in m["files"].values())
    assert m["passes"][0]["name"] == "fold_bn" and m["passes"][0]["stats"] == {"folded": 3}
    assert m["signature"]["inputs"] == [{"name": "image", "shape": [1, 3, 16, 16],
                                         "dtype": "float32"}]
    assert m["tools"]["torch"] and m["tools"]["onnxruntime"]
    assert m["config"]["model"] == "builtin:tiny-cnn"
    assert len(m["model"]["weight_sha256"]) == 64
    v = m["verification"]
    assert v["outputs"]["logits"]["max_abs"] < 1e-5 and v["tolerance"]["atol"] == 1e-5


def test_dynamic_sequence_length_runs_other_lengths(tmp_path):
    out = ember.compile({"model": "builtin:tiny-llama", "example": {"tokens": 8, "dynamic": True},
                         "target": "cpu", "output": str(tmp_path / "dyn")})
    session = rt.load(out)
    assert session.input_specs[0]["shape"][1] == "seq"
    model = load_model("builtin:tiny-llama", ExampleSpec(tokens=8), seed=0).module
    ids = np.arange(13, dtype=np.int64).reshape(1, 13)
    with torch.no_grad():
        expected = model(torch.from_numpy(ids)).numpy()
    np.testing.assert_allclose(session.run({"input_ids": ids})["logits"], expected,
                               atol=1e-4, rtol=1e-4)


def test_null_target_writes_an_op_report(tmp_path):
    out = ember.compile({"model": "builtin:tiny-cnn", "target": "null",
                         "output": str(tmp_path / "n")})
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["verification"]["status"] == "skipped"
    report = json.loads((out / "ops.json").read_text())
    assert report["totals"]["macs"] > 0
    with pytest.raises(ember.errors.ArtifactError, match="op report"):
        rt.load(out)
