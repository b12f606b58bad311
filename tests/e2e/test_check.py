"""`ember check`: passes and targets answered before compiling, with the exit code telling
whether everything asked for by name applies."""

from __future__ import annotations

import json

import onnx
from onnx import TensorProto, helper

from ember.tools.cli.main import main


def _report(capsys, *argv: str) -> tuple[int, dict]:
    code = main(["check", *argv, "--json", "--quiet"])
    return code, json.loads(capsys.readouterr().out)


def _status(report: dict) -> dict[str, str]:
    return {f["what"]: f["status"] for f in report["findings"]}


def test_a_cnn_survey(capsys):
    code, report = _report(capsys, "builtin:tiny-cnn")
    assert code == 0  # nothing asked for by name
    assert report["model"]["params"] == 3946 and report["model"]["ops"]["Conv2d"] == 3
    status = _status(report)
    assert status["pass fold_bn"] == "applies" and status["pass sfc"] == "partly"
    assert status["pass prune"] == "partly" and status["pass spike"] == "declines"
    assert status["target cpu"] == status["target null"] == "applies"
    sfc = next(f for f in report["findings"] if f["what"] == "pass sfc")
    assert "lowered 2" in sfc["detail"] and "few_channels" in sfc["detail"]


def test_asking_for_what_declines_exits_2(capsys):
    code, report = _report(capsys, "builtin:tiny-cnn", "--pass", "spike", "--target", "cpu")
    assert code == 2 and _status(report) == {"pass spike": "declines", "target cpu": "applies"}
    code, _ = _report(capsys, "builtin:tiny-cnn", "--pass", "fold_bn", "--target", "cpu")
    assert code == 0


def test_a_language_model(capsys):
    code, report = _report(capsys, "builtin:tiny-llama", "--pass", "prune", "--pass", "spike",
                           "--target", "fpga", "--target", "gpu")
    assert code == 0, report
    prune = next(f for f in report["findings"] if f["what"] == "pass prune")
    assert prune["status"] == "applies" and prune["detail"].startswith("llama, 2 blocks")


def test_an_onnx_graph_onnxruntime_cannot_load(tmp_path, capsys):
    a = helper.make_tensor_value_info("a", TensorProto.UINT16, [3])
    graph = helper.make_graph([helper.make_node("Max", ["a", "a"], ["m"])], "m", [a],
                              [helper.make_tensor_value_info("m", TensorProto.UINT16, [3])])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]),
              str(tmp_path / "m.onnx"))
    code, report = _report(capsys, f"onnx:{tmp_path / 'm.onnx'}", "--target", "cpu",
                           "--target", "fpga", "--pass", "fold_bn")
    assert code == 2
    details = {f["what"]: f["detail"] for f in report["findings"]}
    assert details["target cpu"].startswith("ONNX Runtime cannot load the graph")
    assert "onnx: models have none" in details["target fpga"]
    assert details["pass fold_bn"].startswith("onnx: models compile as they are")
