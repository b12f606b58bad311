"""The fpga target through the CLI: compile, verify, run --check, inspect and bench; and the
models it declines (one line, exit code 2, no artifact left behind)."""

from __future__ import annotations

import json
import shutil

import pytest

from ember.tools.cli.main import main

pytestmark = pytest.mark.skipif(shutil.which("g++") is None,
                                reason="the fpga C simulation needs g++")


def _ember(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_tiny_cnn_compiles_runs_and_benches(tmp_path, capsys):
    out = tmp_path / "tiny-fpga"
    code, stdout, _ = _ember(capsys, "compile", "--model", "builtin:tiny-cnn", "--target", "fpga",
                             "--target-option", "device=artix7-100t", "-o", str(out))
    assert code == 0, stdout
    assert "integer golden model (exact): max abs error 0" in stdout
    assert "vs the float model" in stdout
    files = {p.name for p in (out / "fpga").iterdir()}
    assert {"ember_types.h", "weights.h", "model.cpp", "testbench.cpp", "build.sh", "csim",
            "resources.json"} <= files
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["target_info"]["batchnorm_folded"] == 3  # the target folds BN itself
    assert manifest["verification"]["tolerance"] == {"atol": 0.0, "rtol": 0.0}
    code, stdout, _ = _ember(capsys, "run", str(out), "--check")
    assert code == 0 and "max abs error 0" in stdout
    code, stdout, _ = _ember(capsys, "inspect", str(out))
    assert code == 0 and "model estimate, not synthesis" in stdout and "artix7-100t" in stdout
    code, stdout, _ = _ember(capsys, "bench", str(out), "--baseline", str(out), "-o",
                             str(tmp_path / "report"))
    assert code == 0
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    estimate = report["rows"][0]["fpga"]
    assert estimate["device"] == "artix7-100t" and estimate["speedup"] == 1.0
    assert "FPGA resource model" in (tmp_path / "report" / "report.md").read_text()


@pytest.mark.slow
def test_digits_cnn_with_sfc(tmp_path, capsys):
    out = tmp_path / "digits-sfc"
    code, stdout, _ = _ember(capsys, "compile", "--model", "builtin:digits-cnn", "--pass",
                             "fold_bn", "--pass", "sfc", "--target", "fpga", "-o", str(out))
    assert code == 0, stdout
    manifest = json.loads((out / "manifest.json").read_text())
    info = manifest["target_info"]
    assert info["calibration"]["source"] == "the model's training data"
    assert info["csim_vs_golden"] == {"images": 256, "identical": True}
    resources = json.loads((out / "fpga" / "resources.json").read_text())
    sfc = [layer["sfc"] for layer in resources["layers"] if layer["sfc"]]
    assert len(sfc) == 4 and all(s["product_ratio"] > 2 for s in sfc)
    code, stdout, _ = _ember(capsys, "run", str(out), "--check")
    assert code == 0


def test_spiking_decoder_compiles_and_runs(tmp_path, capsys):
    out = tmp_path / "llama-fpga"
    code, stdout, _ = _ember(capsys, "compile", "--model", "builtin:tiny-llama", "--tokens", "8",
                             "--pass", "spike:w_bits=4,a_bits=4,salient_frac=0.1,data=random",
                             "--target", "fpga", "--target-option", "device=u250", "-o",
                             str(out))
    assert code == 0 and "integer golden model (exact): max abs error 0" in stdout
    manifest = json.loads((out / "manifest.json").read_text())
    assert "top1_agreement" in manifest["verification"]["float_model"]["logits"]
    resources = json.loads((out / "fpga" / "resources.json").read_text())
    spiking = [layer for layer in resources["layers"] if layer["op"] == "SpikeLinear"]
    assert len(spiking) == 14 and all(layer["product_dsp"] == 0 for layer in spiking)
    code, stdout, _ = _ember(capsys, "run", str(out), "--check")
    assert code == 0 and "max abs error 0" in stdout
    code, _, err = _ember(capsys, "run", str(out), "--input", f"input_ids={_ids(tmp_path)}")
    assert code == 2 and "token ids must be in [0, 256)" in err


def _ids(folder) -> str:
    import numpy as np

    np.save(folder / "ids.npy", np.full((1, 8), 999, np.int64))
    return str(folder / "ids.npy")


def _user_model(tmp_path, monkeypatch, name: str, body: str) -> str:
    module = "fpgamodels_" + name.replace(" ", "_")  # one module per case: imports are cached
    (tmp_path / f"{module}.py").write_text("import torch\nfrom torch import nn\n" + body)
    monkeypatch.syspath_prepend(str(tmp_path))
    return f"torch:{module}:make"


DECLINED = {
    "sigmoid": ("def make():\n    return nn.Sequential(nn.Linear(4, 4), nn.Sigmoid())\n",
                "layer 1 (Sigmoid): no integer kernel on the fpga target"),
    "concat": ("class M(nn.Module):\n"
               "    def forward(self, x):\n        return torch.cat([x, x], 1)\n"
               "def make():\n    return M()\n",
               "node cat: operation cat (call_function) has no integer kernel"),
    "too large": ("def make():\n    return nn.Sequential(nn.Linear(4, 4100), nn.ReLU(),\n"
                  "                         nn.Linear(4100, 4100))\n",
                  "the model holds 16.8M weights; the C simulation compiles designs of up to 16M"),
    "lone batchnorm": ("def make():\n"
                       "    return nn.Sequential(nn.BatchNorm1d(4), nn.Linear(4, 2))\n",
                       "BatchNorm has no integer kernel; it folds only into a conv or linear"),
}


@pytest.mark.parametrize("case", list(DECLINED))
def test_unsupported_layers_are_declined(case, tmp_path, capsys, monkeypatch):
    body, message = DECLINED[case]
    spec = _user_model(tmp_path, monkeypatch, case, body)
    out = tmp_path / "a"
    code, _, err = _ember(capsys, "compile", "--model", spec, "--shape", "2,4", "--target",
                          "fpga", "-o", str(out))
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and message in lines[0], err
    assert not out.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".a.")]


def test_quantized_sfc_layers_are_declined(tmp_path, capsys):
    code, _, err = _ember(capsys, "compile", "--model", "builtin:tiny-cnn", "--pass", "fold_bn",
                          "--pass", "sfc:bits=8,min_channels=8", "--target", "fpga", "-o",
                          str(tmp_path / "q"))
    assert code == 2 and "run the sfc pass without bits=" in err


def test_unknown_device_and_missing_compiler(tmp_path, capsys, monkeypatch):
    code, _, err = _ember(capsys, "compile", "--model", "builtin:tiny-cnn", "--target", "fpga",
                          "--target-option", "device=stratix", "-o", str(tmp_path / "d"))
    assert code == 2 and "'device' must be one of artix7-100t, zu9eg, u250" in err
    monkeypatch.setattr(shutil, "which", lambda name: None)
    code, _, err = _ember(capsys, "compile", "--model", "builtin:tiny-cnn", "--target", "fpga",
                          "-o", str(tmp_path / "e"))
    assert code == 2 and "needs g++" in err
