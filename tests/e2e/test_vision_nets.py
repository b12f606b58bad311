"""Vision networks with the block structure of the common model libraries
(tools/conformance/vision_nets.py):
each compiles and verifies for cpu and tvm after fold_bn, sfc and CNN pruning, where every
pass transforms what it can and counts what it declines; fpga builds the plain residual
network and declines the rest in one line naming the layer."""

from __future__ import annotations

import json
import shutil

import pytest

from ember.compiler.api import compile_model
from ember.errors import UnsupportedModelError

NETS = ("resnet", "mobilenet", "shufflenet", "densenet", "squeezenet", "convnext", "vit")
PRUNE = {"prune": {"method": "magnitude", "ratio": 0.25, "steps": 0, "round_to": 4}}
PRUNED = {"resnet", "mobilenet", "densenet", "squeezenet"}  # the others decline every group
FPGA_DECLINES = {
    "mobilenet": "node mean: operation mean", "shufflenet": "operation getattr",
    "densenet": "BatchNorm has no integer kernel", "squeezenet": "node cat: operation cat",
    "convnext": "node permute: operation permute", "vit": r"only reshapes to \(batch, features\)"}


def _compile(tmp_path, net: str, passes: list, target: str) -> dict:
    out = compile_model({"model": f"torch:ember.tools.conformance.vision_nets:{net}",
                         "example": {"shape": [1, 3, 32, 32]},
                         "passes": passes, "target": target,
                         "output": str(tmp_path / f"{net}-{target}")})
    manifest = json.loads((out / "manifest.json").read_text())
    shutil.rmtree(out)
    return manifest


@pytest.mark.parametrize("net", NETS)
def test_cpu_after_each_pass(tmp_path, net):
    for passes in ([], ["fold_bn", "sfc"], ["fold_bn", PRUNE]):
        manifest = _compile(tmp_path, net, passes, "cpu")
        assert manifest["verification"]["status"] == "passed", passes
    prune = manifest["passes"][1]["stats"]
    declined = sum(v for k, v in prune.items() if k.startswith("declined:"))
    assert declined >= 2  # at least the network's input and output channels are kept
    if net in PRUNED:
        assert prune["channels_after"] < prune["channels_before"]
        assert prune["params_after"] < prune["params_before"]
    else:
        assert prune["groups"] == 0 and prune["params_after"] == prune["params_before"]


@pytest.mark.tvm
@pytest.mark.parametrize("net", NETS)
def test_tvm_after_fold_bn_and_sfc(tmp_path, net):
    pytest.importorskip("tvm")
    manifest = _compile(tmp_path, net, ["fold_bn", "sfc"], "tvm")
    assert manifest["verification"]["status"] == "passed"
    sfc = manifest["passes"][1]["stats"]
    assert sfc["lowered"] + sum(v for k, v in sfc.items() if k.startswith("skipped:")) > 0


@pytest.mark.skipif(shutil.which("g++") is None, reason="the fpga target needs g++")
@pytest.mark.parametrize("net", NETS)
def test_fpga_builds_or_declines_in_one_line(tmp_path, net):
    if net == "resnet":
        manifest = _compile(tmp_path, net, ["fold_bn", "sfc"], "fpga")
        assert manifest["verification"]["status"] == "passed"
        assert manifest["verification"]["float_model"]["output"]["top1_agreement"] == 1.0
        return
    with pytest.raises(UnsupportedModelError, match=FPGA_DECLINES[net]):
        _compile(tmp_path, net, ["fold_bn"], "fpga")
