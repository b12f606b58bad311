"""Bounded MetaSchedule tuning: the hot functions become tasks, records land in a database
that the next compile reuses, tuned functions are used only where they beat the rules, and
the manifest says so."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from torch import nn

import ember
import ember.runtime as rt
from ember.compiler.export import export_onnx
from ember.errors import UserError
from ember.targets.tvm.tune import MIN_GAIN

pytestmark = pytest.mark.usefixtures("tvm_available")


class TwoLayers(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.up = nn.Linear(64, 256)
        self.down = nn.Linear(256, 64)

    def forward(self, x):
        return self.down(torch.relu(self.up(x)))


@pytest.fixture(scope="module")
def mlp_onnx(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    x = np.random.default_rng(0).standard_normal((16, 64), dtype=np.float32)
    path = tmp_path_factory.mktemp("tune") / "mlp.onnx"
    onnx.save(export_onnx(TwoLayers().eval(), {"x": x}, ["y"], {}), str(path))
    return path


def _legalized(path: Path):
    import tvm

    from ember.targets.tvm.prep import prepare_for_tvm
    from ember.targets.tvm.schedules import front_passes
    from ember.targets.tvm.target import _import, _llvm_target

    target = _llvm_target(tvm, None)
    mod, _, _ = _import(prepare_for_tvm(onnx.load(str(path))).model, tvm.relax)
    with target, tvm.transform.PassContext(opt_level=3):
        return tvm.transform.Sequential(front_passes(target))(mod)


def test_tasks_are_the_products_heaviest_first(mlp_onnx):
    from ember.targets.tvm.tune import tuning_tasks

    tasks = tuning_tasks(_legalized(mlp_onnx))
    assert all("matmul" in t.name for t in tasks[:2]), [t.name for t in tasks]
    assert tasks[0].flops >= tasks[1].flops > 0
    assert all(t.calls == 1 for t in tasks)


@pytest.mark.slow
def test_database_round_trip(mlp_onnx, tmp_path, monkeypatch):
    """Tune once (16 trials); a second compile without tuning reuses the records."""
    if importlib.util.find_spec("xgboost") is None:
        pytest.skip("tuning needs xgboost (pip install 'ember[tune]')")
    monkeypatch.setenv("EMBER_TUNING_DIR", str(tmp_path / "db"))
    config = {"model": f"onnx:{mlp_onnx}", "target": "tvm"}
    tuned = ember.compile({**config, "output": str(tmp_path / "tuned"),
                           "target_options": {"tune_trials": 16}})
    record = rt.load(tuned).manifest["target_info"]["schedule"]["tuning"]
    assert 0 < record["trials"] <= 32 and record["seconds"] > 0
    assert Path(record["database"]).parent == tmp_path / "db"
    assert os.path.getsize(Path(record["database"]) / "database_tuning_record.json") > 0

    reused = ember.compile({**config, "output": str(tmp_path / "reused")})
    again = rt.load(reused).manifest["target_info"]["schedule"]["tuning"]
    assert again["trials"] == 0 and again["database"] == record["database"]
    timed = [op for op in again["operators"] if op["tuned_us"] is not None]
    assert timed, "the second compile found no records for its workloads"
    assert all(op["agrees"] for op in timed)  # MetaSchedule's schedules compute the same
    assert all(op["used"] == (op["tuned_us"] * MIN_GAIN < op["rules_us"]) for op in timed)
    assert again["operators_tuned"] == sum(op["used"] for op in again["operators"])

    off = ember.compile({**config, "output": str(tmp_path / "off"),
                         "target_options": {"tuning": False}})
    assert rt.load(off).manifest["target_info"]["schedule"]["tuning"]["database"] is None


@pytest.mark.parametrize(("options", "message"), [
    ({"tune_trials": 0}, "must be positive"),
    ({"tune_minutes": 5, "schedule": "none"}, "tuning needs schedule=ember"),
    ({"tuning": "always"}, "must be bool"),
])
def test_bad_tuning_options(mlp_onnx, tmp_path, options, message):
    with pytest.raises(UserError, match=message):
        ember.compile({"model": f"onnx:{mlp_onnx}", "target": "tvm",
                       "output": str(tmp_path / "x"), "target_options": options})
    assert not (tmp_path / "x").exists()


def test_a_tuned_function_that_computes_something_else_is_refused():
    """The agreement check compares every buffer after one call of each library."""
    import tvm
    from tvm import te

    from ember.targets.tvm.apply_tuning import _build_all, _outputs_agree

    def elementwise(factor: float):
        a = te.placeholder((64,), "float32", name="a")
        b = te.compute((64,), lambda i: a[i] * factor, name="b")
        return tvm.IRModule({"main": te.create_prim_func([a, b])})

    target = tvm.target.Target({"kind": "llvm"})
    same = _build_all([elementwise(2.0), elementwise(2.0)], target)
    other = _build_all([elementwise(2.0), elementwise(-2.0)], target)
    assert _outputs_agree(same, elementwise(2.0)["main"])
    assert not _outputs_agree(other, elementwise(2.0)["main"])


def test_frozen_frames_are_known_to_inspect_only_while_the_intrinsics_load():
    """What makes the tensor intrinsics' import cheap (a frozen import frame resolves from the
    cache instead of a scan of sys.modules) is undone afterwards."""
    import importlib._bootstrap
    import inspect

    from ember.targets.tvm.tune import _frozen_frames_known

    frame_file = importlib._bootstrap._find_and_load.__code__.co_filename
    before = dict(inspect.modulesbyfile)
    with _frozen_frames_known():
        assert inspect.modulesbyfile[frame_file] == "importlib._bootstrap"
        assert inspect.getmodule(None, frame_file) is importlib._bootstrap
    assert inspect.modulesbyfile == before
