"""ember's TVM CPU schedules: they apply to matmul and conv workloads, and the scheduled build
computes what an unscheduled build computes (up to summation order)."""

from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper
from torch import nn

import ember
import ember.runtime as rt
from ember.compiler.export import export_onnx
from ember.targets.tvm.prep import pack_matmul_weights
from ember.targets.tvm.schedules import SCHEDULE_VERSION

pytestmark = pytest.mark.usefixtures("tvm_available")


class Mlp(nn.Module):  # matmuls with bias, an activation epilogue, and a batched matmul
    def __init__(self) -> None:
        super().__init__()
        self.up = nn.Linear(48, 128)
        self.down = nn.Linear(128, 64)

    def forward(self, x):
        h = self.down(torch.relu(self.up(x)))
        return h @ h.transpose(1, 2)


class Convs(nn.Module):  # 3x3 convs at two widths (28: one vector row, 14: narrower)
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(3, 16, 3, padding=1)
        self.b = nn.Conv2d(16, 32, 3, padding=1, stride=2)
        self.c = nn.Conv2d(32, 32, 3, padding=1)

    def forward(self, x):
        return self.c(torch.relu(self.b(torch.relu(self.a(x)))))


class Gated(nn.Module):  # SiLU gate, softmax and exp: fast math, and elementwise chains inlined
    def __init__(self) -> None:
        super().__init__()
        self.up = nn.Linear(48, 64)
        self.gate = nn.Linear(48, 64)

    def forward(self, x):
        h = torch.nn.functional.silu(self.gate(x)) * self.up(x)
        return torch.softmax(h @ h.transpose(1, 2), -1) + torch.exp(-h.abs()).mean(-1, True)


class Narrow(nn.Module):  # pruned widths: 48 columns (3 vectors), 8 channels (half a vector)
    def __init__(self) -> None:
        super().__init__()
        self.proj = nn.Linear(64, 48)
        self.conv = nn.Conv2d(3, 8, 3, padding=1)

    def forward(self, x):
        return self.proj(x).sum() + self.conv(x[:, :, :48].reshape(-1, 3, 4, 4 * 4)).sum()


WORKLOADS = {"matmul": (Mlp, (2, 12, 48)), "conv": (Convs, (2, 3, 28, 28)),
             "gated": (Gated, (2, 16, 48)), "narrow": (Narrow, (1, 16, 64))}


def _compile(model: nn.Module, shape, schedule: str, out) -> dict:
    torch.manual_seed(0)
    x = np.random.default_rng(0).standard_normal(shape, dtype=np.float32)
    path = out / "m.onnx"
    onnx.save(export_onnx(model.eval(), {"x": x}, ["y"], {}), str(path))
    art = ember.compile({"model": f"onnx:{path}", "target": "tvm", "output": str(out / schedule),
                         "target_options": {"schedule": schedule}})
    session = rt.load(art)
    return {"y": session.run({"x": x})["y"], "manifest": session.manifest}


@pytest.mark.parametrize("name", list(WORKLOADS))
def test_scheduled_equals_unscheduled(name, tmp_path):
    factory, shape = WORKLOADS[name]
    torch.manual_seed(0)
    model = factory()
    scheduled = _compile(model, shape, "ember", tmp_path)
    plain = _compile(model, shape, "none", tmp_path)
    np.testing.assert_allclose(scheduled["y"], plain["y"], atol=1e-4, rtol=1e-5)
    record = scheduled["manifest"]["target_info"]["schedule"]
    assert record["rules"] == SCHEDULE_VERSION and record["tuning"]["trials"] == 0
    assert plain["manifest"]["target_info"]["schedule"]["rules"] == "none"
    if name == "matmul":
        assert record["packed_matmul_weights"] == 2  # both Linear weights (N = 128 and 64)
    assert record["fast_math"] is True


def test_fast_exp_is_accurate_and_flushes_to_zero():
    """exp_expr against float64 exp: <= 2e-7 relative over the float32 range; exactly 0 for
    -inf and below the normal range (no denormals), saturated, not inf, at the top."""
    import tvm
    from tvm import te

    from ember.targets.tvm.fast_math import exp_expr

    x = te.placeholder((4096,), name="x")
    y = te.compute(x.shape, lambda i: exp_expr(x[i]), name="y")
    build = tvm.compile(te.create_prim_func([x, y]), target="llvm")
    values = np.concatenate([np.linspace(-87.0, 88.0, 4090), [-np.inf, -1e4, -87.5, 0.0, 1e-3,
                                                              88.5]]).astype(np.float32)
    out = tvm.runtime.tensor(np.zeros_like(values))
    build(tvm.runtime.tensor(values), out)
    got, ref = out.numpy().astype(np.float64), np.exp(values.astype(np.float64))
    rel = np.abs(got[:4090] - ref[:4090]) / ref[:4090]
    assert rel.max() <= 2e-7
    assert got[4090] == 0.0 and got[4091] == 0.0 and got[4092] == 0.0
    assert got[4093] == 1.0 and abs(got[4094] / ref[4094] - 1) <= 2e-7 and np.isfinite(got[4095])


@pytest.fixture
def parallel_everywhere(monkeypatch):
    """The rules as they schedule functions big enough to share among threads."""
    from ember.targets.tvm import schedules

    monkeypatch.setattr(schedules, "PARALLEL_MIN_ITERATIONS", 0)


@pytest.mark.parametrize("name", list(WORKLOADS))
def test_rules_schedule_the_hot_functions(name, parallel_everywhere):
    from ember.runtime.engines.tvm_engine import import_tvm
    from ember.targets.tvm.prep import prepare_for_tvm
    from ember.targets.tvm.schedules import schedule_rules
    from ember.targets.tvm.target import _import

    tvm, relax = import_tvm()
    from tvm.relax.backend.cpu_generic import pipeline as cpu
    from tvm.s_tir import dlight

    factory, shape = WORKLOADS[name]
    x = np.zeros(shape, np.float32)
    model = prepare_for_tvm(export_onnx(factory().eval(), {"x": x}, ["y"], {}), 64, 16).model
    mod, _, _ = _import(model, relax)
    target = tvm.target.Target({"kind": "llvm", "mcpu": "x86-64-v4"})
    layout = relax.transform.ConvertLayout({"relax.nn.conv2d": ["NHWC", "HWIO"]})
    with target:
        mod = tvm.transform.Sequential([layout, *cpu.legalize_passes(target),
                                        dlight.ApplyDefaultSchedule(*schedule_rules(64))])(mod)
    hot = {gv.name_hint: f.script() for gv, f in mod.functions.items()
           if hasattr(f, "body") and ("einsum" in gv.name_hint or "conv2d" in gv.name_hint)}
    assert hot, "no contraction functions found"
    for fname, text in hot.items():
        assert "T.parallel" in text and "T.vectorized" in text, fname


def test_a_three_vector_tile_is_vectorized_one_register_at_a_time():
    """<48 x float> became scalar code in LLVM (25x slower): the rules unroll 3 x 16 lanes."""
    import tvm
    from tvm import te
    from tvm.s_tir import dlight

    from ember.targets.tvm.schedules import schedule_rules

    a = te.placeholder((1, 32, 96), "float32", name="a")
    w = te.placeholder((9, 96, 48), "float32", name="w")
    k = te.reduce_axis((0, 96), name="k")
    t = te.compute((1, 32, 9, 48), lambda b, i, j, v: te.sum(a[b, i, k] * w[j, k, v], axis=k))
    with tvm.target.Target({"kind": "llvm", "mcpu": "skylake-avx512"}):
        text = dlight.ApplyDefaultSchedule(*schedule_rules(64))(
            tvm.IRModule({"main": te.create_prim_func([a, w, t])})).script()
    assert "T.vectorized(48)" not in text and "T.vectorized(16)" in text and "T.unroll(3)" in text


def test_packed_matmul_is_the_same_product():
    rng = np.random.default_rng(0)
    a = helper.make_tensor_value_info("a", TensorProto.FLOAT, [2, 5, 24])
    w = numpy_helper.from_array(rng.standard_normal((24, 96), dtype=np.float32), "w")
    graph = helper.make_graph([helper.make_node("MatMul", ["a", "w"], ["y"])], "g", [a],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 5, 96])],
                              [w])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    packed = onnx.ModelProto()
    packed.CopyFrom(model)
    assert pack_matmul_weights(packed, tile=32) == 1
    assert [t.dims for t in packed.graph.initializer] == [[3, 24, 32]]
    x = rng.standard_normal((2, 5, 24), dtype=np.float32)

    def run(m):
        return ort.InferenceSession(m.SerializeToString(),
                                    providers=["CPUExecutionProvider"]).run(None, {"a": x})[0]

    np.testing.assert_allclose(run(packed), run(model), atol=1e-5, rtol=1e-6)
    untouched = onnx.ModelProto()
    untouched.CopyFrom(model)
    assert pack_matmul_weights(untouched, tile=64) == 0  # 96 is not a multiple of 64
    narrower = onnx.ModelProto()
    narrower.CopyFrom(model)
    assert pack_matmul_weights(narrower, tile=64, step=16) == 1  # 96 = 2 x 48
    assert [t.dims for t in narrower.graph.initializer] == [[2, 24, 48]]
    np.testing.assert_allclose(run(narrower), run(model), atol=1e-5, rtol=1e-6)


def test_manifest_records_the_schedule(tmp_path):
    out = ember.compile({"model": "builtin:tiny-cnn", "target": "tvm",
                         "output": str(tmp_path / "a")})
    info = json.loads((out / "manifest.json").read_text())["target_info"]
    assert info["schedule"]["vector_bytes"] in (16, 32, 64)
    assert info["cpu_features"] is not None and "mcpu" in info["tvm_target"]
    # the per-call profile of the same artifact names its kernels and adds up
    from ember.tools.research.profile_tvm import profile

    total, rows = profile(out, rounds=2)
    names = [name for _, _, name in rows]
    assert any("conv2d" in name for name in names)
    assert 0 < sum(ms for ms, _, _ in rows) <= total
    # inputs go in through DLPack: an unaligned or strided array gives the same result as an
    # aligned one, and every output is the caller's own copy
    session = rt.load(out)
    spec = session.input_specs[0]
    x = np.random.default_rng(0).standard_normal(spec["shape"], dtype=np.float32)
    raw = np.empty(x.size + 1, np.float32)
    unaligned = raw[1:].reshape(x.shape) if raw[1:].ctypes.data % 64 else raw[:-1].reshape(x.shape)
    unaligned[...] = x
    strided = np.ascontiguousarray(np.stack([x, x], -1))[..., 0]
    first = session.run({spec["name"]: x})
    name = next(iter(first))
    expected = first[name].copy()
    first[name][...] = 0  # must not reach the engine's memory
    for variant in (unaligned, strided, x):
        np.testing.assert_array_equal(session.run({spec["name"]: variant})[name], expected)


def test_portable_baseline_and_unknown_cpu(tmp_path):
    from ember.errors import ConfigError

    out = ember.compile({"model": "builtin:tiny-cnn", "target": "tvm",
                         "target_options": {"mcpu": "x86-64-v3"}, "output": str(tmp_path / "p")})
    info = json.loads((out / "manifest.json").read_text())["target_info"]
    assert '"mcpu":"x86-64-v3"' in info["tvm_target"].replace(" ", "")
    assert info["schedule"]["vector_bytes"] == 32  # AVX2, whatever the build host has
    with pytest.raises(ConfigError, match="mcpu='pentium-9000' is not a CPU LLVM knows"):
        ember.compile({"model": "builtin:tiny-cnn", "target": "tvm",
                       "target_options": {"mcpu": "pentium-9000"}, "output": str(tmp_path / "q")})
    assert not (tmp_path / "q").exists()


@pytest.mark.parametrize("rows", [1, 4])
def test_a_norm_sums_each_row_once(rows, parallel_everywhere):
    """RMSNorm of one decode token: DLight's reduction rule put the row's sum inside the
    parallel loop over its 576 outputs (each output summed the row again: 576x the work,
    and every thread writing one accumulator). One row now sums once, outside any parallel
    loop; several rows keep DLight's schedule (parallel over rows)."""
    import tvm
    from tvm import s_tir, te, tirx
    from tvm.s_tir import dlight

    from ember.targets.tvm.schedules import schedule_rules

    x = te.placeholder((1, rows, 576), "float32", name="x")
    k = te.reduce_axis((0, 576), name="k")
    total = te.compute((1, rows, 1), lambda b, i, j: te.sum(x[b, i, k] * x[b, i, k], axis=k),
                       name="total")
    y = te.compute(x.shape, lambda b, i, j: x[b, i, j] / te.sqrt(total[b, i, 0] / 576.0 + 1e-5),
                   name="y")
    with tvm.target.Target({"kind": "llvm", "mcpu": "x86-64-v3"}):
        mod = dlight.ApplyDefaultSchedule(*schedule_rules(32))(
            tvm.IRModule({"main": te.create_prim_func([x, y])}))
    sch = s_tir.Schedule(mod)
    loops = [sch.get(loop) for loop in sch.get_loops(sch.get_sblock("total"))]
    parallel = [int(loop.extent) for loop in loops if loop.kind == tirx.ForKind.PARALLEL]
    assert parallel == ([] if rows == 1 else [rows])


@pytest.mark.parametrize(("rows", "columns", "parallel"), [(1, 256, False), (4, 64, False),
                                                         (8, 512, True)])
def test_only_functions_big_enough_to_share_run_in_parallel(rows, columns, parallel):
    """Products of 131k and 16k multiply-adds (below PARALLEL_MIN_ITERATIONS, 262k) run on
    one thread; one of 2.1M is split among threads. All are vectorized."""
    import tvm
    from tvm import s_tir, te, tirx
    from tvm.s_tir import dlight

    from ember.targets.tvm.schedules import (
        PARALLEL_MIN_ITERATIONS,
        _root_blocks,
        schedule_rules,
    )

    a = te.placeholder((rows, 512), "float32", name="a")
    b = te.placeholder((512, columns), "float32", name="b")
    k = te.reduce_axis((0, 512), name="k")
    c = te.compute((rows, columns), lambda i, j: te.sum(a[i, k] * b[k, j], axis=k), name="c")
    assert (rows * columns * 512 >= PARALLEL_MIN_ITERATIONS) == parallel
    with tvm.target.Target({"kind": "llvm", "mcpu": "x86-64-v3"}):
        mod = dlight.ApplyDefaultSchedule(*schedule_rules(32))(
            tvm.IRModule({"main": te.create_prim_func([a, b, c])}))
    sch = s_tir.Schedule(mod)
    kinds = {sch.get(loop).kind for block in _root_blocks(sch)
             for loop in sch.get_loops(block)}
    assert (tirx.ForKind.PARALLEL in kinds) == parallel
    assert "T.vectorized" in mod["main"].script()

