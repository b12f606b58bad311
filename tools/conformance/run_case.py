"""One case on one target: compile it with ember (or, for `tvm-plain`, with TVM alone), run
it on the case's inputs and compare with the expected outputs; a model case passes when its
artifact verifies against the model it came from."""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np

from ember.tools.conformance.cases import Case

PLAIN_TVM = "tvm-plain"


def run_case(case: Case, target: str, work: Path) -> dict[str, Any]:
    """{"status": pass|declined|wrong|internal, "detail": ..., "seconds": ...}."""
    from ember.errors import UserError, VerificationError, first_line

    started = time.perf_counter()
    try:
        if case.config is not None:
            status, detail = _ember_model(case, target, work)
        else:
            model, inputs, expected = case.load()
            run = _plain_tvm if target == PLAIN_TVM else _ember
            got = run(model, inputs, target, work)
            status, detail = compare(got, expected, case.rtol, case.atol)
    except UserError as exc:
        status, detail = "declined", first_line(exc, 300)
    except VerificationError as exc:
        status, detail = "wrong", first_line(exc, 300)
    except Exception as exc:  # the point of the run: every other failure is counted
        tvm_report = type(exc).__module__.startswith("tvm")  # its message ends the report
        status, detail = "internal", \
            f"{type(exc).__name__}: {first_line(exc, 300, last=tvm_report)}"
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return {"status": status, "detail": detail,
            "seconds": round(time.perf_counter() - started, 3)}


def compare(got: dict[str, np.ndarray], expected: dict[str, np.ndarray], rtol: float,
            atol: float) -> tuple[str, str]:
    """("pass", "") when every expected output matches (same shape, |got - want| <= atol +
    rtol |want|, NaN where NaN is expected); else ("wrong", the first difference)."""
    for name, want in expected.items():
        have = np.asarray(got.get(name))
        if have.shape != want.shape:
            return "wrong", f"{name}: shape {list(have.shape)}, expected {list(want.shape)}"
        if want.dtype.kind in "fc" or have.dtype.kind in "fc":
            close = np.isclose(have.astype(np.complex128 if want.dtype.kind == "c" else
                                           np.float64), want, rtol=rtol, atol=atol,
                               equal_nan=True)
        else:
            close = have == want
        if not np.all(close):
            return "wrong", f"{name}: {int(np.size(close) - np.count_nonzero(close))} of " \
                            f"{np.size(close)} values differ"
    return "pass", ""


def _ember(model: Any, inputs: dict[str, np.ndarray], target: str,
           work: Path) -> dict[str, np.ndarray]:
    import onnx

    import ember.runtime as rt
    from ember.compiler.api import compile_model

    work.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(work / "model.onnx"))
    np.savez(work / "inputs.npz", **{k: v for k, v in inputs.items()
                                      if isinstance(v, np.ndarray)})
    out = compile_model({"model": f"onnx:{work / 'model.onnx'}", "target": target,
                         "example": {"inputs": str(work / "inputs.npz")},
                         "output": str(work / "artifact")}, force=True)
    if target == "null":
        return {}
    return rt.load(out).run(inputs)


def _ember_model(case: Case, target: str, work: Path) -> tuple[str, str]:
    """Compile the case's config for `target`; ("pass", what verified) when it verifies
    (a difference raises VerificationError, counted as wrong)."""
    import json

    from ember.compiler.api import compile_model

    work.mkdir(parents=True, exist_ok=True)
    out = compile_model({**case.config(work), "target": target,
                         "output": str(work / "artifact")}, force=True)
    verification = json.loads((out / "manifest.json").read_text())["verification"]
    if verification.get("status") != "passed":
        return "wrong", f"verification {verification.get('status')}"
    return "pass", ""


def _plain_tvm(model: Any, inputs: dict[str, np.ndarray], target: str,
               work: Path) -> dict[str, np.ndarray]:
    """TVM 0.27 alone: its ONNX importer and default build, on the case's inputs."""
    import tvm
    from tvm import relax
    from tvm.relax.frontend.onnx import from_onnx

    mod = from_onnx(model, shape_dict={k: list(v.shape) for k, v in inputs.items()})
    executable = tvm.compile(mod, target=tvm.target.Target({"kind": "llvm"}))
    vm = relax.VirtualMachine(executable, tvm.cpu())
    out = vm["main"](*[tvm.runtime.tensor(inputs[k]) for k in inputs])
    outs = [out] if hasattr(out, "numpy") else list(out)  # one tensor, or an array of them
    return {o.name: x.numpy() for o, x in zip(model.graph.output, outs, strict=False)}
