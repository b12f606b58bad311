"""`tvm`: Apache TVM Relax, built for the host CPU with LLVM into a shared library.

The exported ONNX is imported with `relax.frontend.onnx.from_onnx` (the torch-export route
fails in LLVM codegen on Llama's causal mask) after the rewrites in targets/tvm/prep.py.
Float weight tensors stay function parameters and are saved beside the library as
`params.safetensors`.
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import importlib.util
import os
import sys
from pathlib import Path
from typing import Any

from ember.errors import UnsupportedModelError, first_line
from ember.progress import QUIET, Progress
from ember.targets.base import ModuleSource, Payload, check_known_options
from ember.targets.host import cpu_features, cpu_name
from ember.targets.tvm.apply_tuning import use_tuning
from ember.targets.tvm.graph_fixes import unsupported_by_importer
from ember.targets.tvm.int8 import has_vnni, lower_int8_matmuls
from ember.targets.tvm.prep import prepare_for_tvm
from ember.targets.tvm.schedules import (
    MAX_VECTORS_PER_TILE,
    SCHEDULE_VERSION,
    back_pipeline,
    front_passes,
)
from ember.targets.tvm.sfc.relax_import import sfc_converters
from ember.targets.tvm.sfc.rewrite import MODES as SFC_MODES
from ember.targets.tvm.static_cache import generation_graphs, library_info

LIBRARY = "model.so"
PARAMS = "params.safetensors"


class TvmTarget:
    name = "tvm"
    description = "Apache TVM Relax, LLVM for the host CPU (model.so + params.safetensors)"
    executable = True
    options = {"mcpu": str, "opt_level": int, "schedule": str, "tune_trials": int,
               "tune_minutes": float, "tuning": bool, "vnni": bool, "sfc": str,
               "fast_math": bool, "prefill_chunk": int, "first_cache": int}
    schedules = ("ember", "none")  # ember's CPU schedule rules, or TVM's unscheduled lowering

    def available(self) -> tuple[bool, str]:
        if importlib.util.find_spec("tvm") is None:
            return False, "apache-tvm is not installed (pip install 'ember[tvm]')"
        from ember.runtime.engines.tvm_engine import import_tvm

        tvm, _ = import_tvm()
        return True, f"apache-tvm {tvm.__version__}, llvm {_llvm_cpu(tvm)}"

    def check_options(self, options: dict[str, Any]) -> None:
        check_known_options(self.name, options, self.options)
        if not 0 <= options.get("opt_level", 3) <= 3:
            raise ValueError("target option 'opt_level' must be 0..3")
        if options.get("schedule", "ember") not in self.schedules:
            raise ValueError(f"target option 'schedule' must be one of {', '.join(self.schedules)}")
        if options.get("sfc", "auto") not in SFC_MODES:
            raise ValueError(f"target option 'sfc' must be one of {', '.join(SFC_MODES)}")
        _check_tuning_options(options)
        for name in ("prefill_chunk", "first_cache"):
            if options.get(name, 1) < 1:
                raise ValueError(f"target option {name!r} must be a positive integer")
        if "mcpu" in options and importlib.util.find_spec("tvm") is not None:
            from ember.runtime.engines.tvm_engine import import_tvm

            codegen = import_tvm()[0].target.codegen
            if not codegen.llvm_is_valid_cpu(options["mcpu"], codegen.llvm_get_system_triple()):
                raise ValueError(f"target option mcpu={options['mcpu']!r} is not a CPU LLVM knows")

    def support(self, source: ModuleSource) -> str | None:
        """What the importer would compute wrongly, else whether the graph imports into Relax
        (the build itself is not tried: it takes seconds to minutes)."""
        from ember.runtime.engines.tvm_engine import import_tvm

        _, relax = import_tvm()
        for graph in generation_graphs(source, {}, QUIET).values():
            declined = unsupported_by_importer(graph)
            if declined:
                return f"TVM's ONNX importer cannot express {declined}"
            try:
                _import(prepare_for_tvm(graph).model, relax)
            except UnsupportedModelError as exc:
                return str(exc)
        return None

    def compile(self, source: ModuleSource, out_dir: Path, options: dict[str, Any],
                progress: Progress) -> Payload:
        from safetensors.numpy import save_file

        from ember.runtime.engines.tvm_engine import import_tvm

        tvm, relax = import_tvm()
        target = _llvm_target(tvm, options.get("mcpu"))
        scheduled = options.get("schedule", "ember") == "ember"
        vector_bytes = _vector_bytes(tvm, target)
        tile = MAX_VECTORS_PER_TILE * (vector_bytes // 4)  # fp32 lanes x vectors per tile
        lanes = vector_bytes // 4
        params: dict[str, Any] = {}
        stored: dict[tuple[Any, ...], str] = {}  # weight fingerprint -> its key in params
        vnni = scheduled and options.get("vnni", True) and has_vnni(tvm, target)
        functions: dict[str, dict[str, Any]] = {}
        for name, graph in generation_graphs(source, options, progress).items():
            declined = unsupported_by_importer(graph)
            if declined:
                raise UnsupportedModelError(f"TVM's ONNX importer cannot express {declined}")
            prepared = prepare_for_tvm(graph, pack_tile=tile if scheduled else None,
                                       lanes=lanes if scheduled else None,
                                       sfc=options.get("sfc", "auto"))
            with progress.stage(f"importing ONNX into Relax{_part(name)}"), \
                    sfc_converters(lanes):
                mod, param_names, arrays = _import(prepared.model, relax)
            mod, int8_products = lower_int8_matmuls(mod) if vnni else (mod, 0)
            library = LIBRARY if name == "main" else f"{name}.so"  # decode.256.so
            tuning, layout = _build(tvm, mod, target, vector_bytes, options, out_dir / library,
                                    progress, _has_convolutions(prepared.model))
            functions[name] = {"library": library,
                               "param_names": shared_params(params, stored, name,
                                                             param_names, arrays)}
        files = [f["library"] for f in functions.values()]
        if params:
            save_file(params, str(out_dir / PARAMS))
            files.append(PARAMS)
        info = {
            "params_file": PARAMS, **library_info(functions, source, options),
            "tvm_target": str(target), "tvm": tvm.__version__, "host_cpu": cpu_name(),
            "cpu_features": cpu_features(), "opt_level": options.get("opt_level", 3),
            "transform_params": scheduled,  # run main_transform_params once at load
            "schedule": {"rules": SCHEDULE_VERSION if scheduled else "none",
                         "vector_bytes": vector_bytes, "tuning": tuning, "layout": layout,
                         "packed_matmul_weights": prepared.packed_matmuls,
                         "int8_products_vnni": int8_products,
                         "fast_math": scheduled and options.get("fast_math", True),
                         "sfc_layers": {"kernels": options.get("sfc", "auto"),
                                        **prepared.sfc_layers},
                         "folded_weight_transposes": prepared.folded_transposes,
                         "importer_fixes": prepared.importer_fixes},
        }
        return Payload(format="tvm", files=files, info=info)


def shared_params(params: dict[str, Any], stored: dict[tuple[Any, ...], str], function: str,
                  names: list[str], arrays: list[Any]) -> list[str]:
    """Add one function's weights to `params` (the params file), each value stored once
    (the variants of one graph share every weight, under names that folding may have
    changed; `stored` indexes what is there by fingerprint, so each weight is hashed once);
    returns the function's keys in call order."""
    keys = []
    for name, array in zip(names, arrays, strict=True):
        fingerprint = _fingerprint(array)
        if fingerprint not in stored:
            stored[fingerprint] = name if name not in params else f"{function}:{name}"
            params[stored[fingerprint]] = array
        keys.append(stored[fingerprint])
    return keys


def _fingerprint(array: Any) -> tuple[Any, ...]:
    return array.shape, str(array.dtype), hashlib.sha256(array.tobytes()).digest()


def _part(name: str) -> str:
    return "" if name == "main" else f" ({name})"


def _build(tvm, mod, target, vector_bytes: int, options: dict[str, Any], library: Path,
           progress: Progress, convolutions: bool) -> tuple[dict[str, Any], str]:
    """Build with NHWC convolutions; where TVM's layout pass fails on the graph, again in the
    graph's own layout (a graph without `convolutions` starts there: the layout pass has
    nothing to gain, and it kills the process on some graphs of 0-d tensors); where TVM
    cannot build it at all, a one-line decline naming TVM's error. Returns the tuning record
    for the manifest and the layout used."""
    if convolutions:
        try:
            return _build_once(tvm, mod, target, vector_bytes, options, library, progress,
                               True), "NHWC convolutions"
        except Exception:  # TVM raises many kinds (InternalError, ScheduleError, AssertionError)
            progress.warn("TVM failed on this graph with NHWC convolutions; building it in its "
                          "own layout")
    try:
        return _build_once(tvm, mod, target, vector_bytes, options, library, progress,
                           False), ("the graph's own (TVM's layout pass failed on it)"
                                    if convolutions else "the graph's own (no convolutions)")
    except Exception as exc:
        tvm_report = type(exc).__module__.startswith("tvm")
        raise UnsupportedModelError(f"TVM cannot build the graph: {type(exc).__name__}: "
                                    f"{first_line(exc, last=tvm_report)}") from None


def _has_convolutions(model: Any) -> bool:
    return any(n.op_type in ("Conv", "ConvTranspose", "ConvInteger", "QLinearConv")
               or n.domain == "ember" for n in model.graph.node)


def _build_once(tvm, mod, target, vector_bytes: int, options: dict[str, Any], library: Path,
                progress: Progress, layout: bool) -> dict[str, Any]:
    """Lower, schedule (tuned records first, then ember's rules) and build; returns the
    tuning record for the manifest."""
    scheduled = options.get("schedule", "ember") == "ember"
    tuning: dict[str, Any] = {"database": None, "trials": 0}
    with tvm.transform.PassContext(opt_level=options.get("opt_level", 3)):
        if scheduled:
            with target, _silenced_fds():  # legalizing a Gather prints a TOPI warning
                mod = tvm.transform.Sequential(
                    front_passes(target, options.get("fast_math", True), layout))(mod)
            if options.get("tuning", True):
                mod, tuning = use_tuning(mod, target, vector_bytes, options.get("tune_trials"),
                                         options.get("tune_minutes"), progress)
        with progress.stage(f"building with TVM for {target.attrs['mcpu']}"), \
                _silenced_fds():  # TOPI warns about every Gather it builds
            pipeline = back_pipeline(target, vector_bytes) if scheduled else "default"
            executable = tvm.compile(mod, target=target, relax_pipeline=pipeline)
            executable.export_library(str(library))
    return tuning


def _check_tuning_options(options: dict[str, Any]) -> None:
    if options.get("tune_trials", 1) < 1 or options.get("tune_minutes", 1) <= 0:
        raise ValueError("target options 'tune_trials' and 'tune_minutes' must be positive")
    asks = "tune_trials" in options or "tune_minutes" in options
    if asks and (options.get("schedule", "ember") != "ember" or not options.get("tuning", True)):
        raise ValueError("tuning needs schedule=ember and tuning=true")
    missing = [m for m in ("xgboost", "cloudpickle") if importlib.util.find_spec(m) is None]
    if asks and missing:
        raise ValueError(f"tuning needs {' and '.join(missing)}: pip install 'ember[tune]'")


def _llvm_cpu(tvm) -> str:
    return tvm.target.codegen.llvm_get_system_cpu()


def _llvm_target(tvm, mcpu: str | None):
    """The host CPU by default; `mcpu` (checked by check_options) names a portable baseline
    such as x86-64-v3 or haswell."""
    return tvm.target.Target({"kind": "llvm", "mcpu": mcpu or _llvm_cpu(tvm)})


def _vector_bytes(tvm, target) -> int:
    """SIMD register width the schedules tile for: 64 (AVX-512), 32 (AVX2) or 16."""
    has = tvm.target.codegen.llvm_cpu_has_features
    with target:
        if has(["avx512f"], target):
            return 64
        return 32 if has(["avx2"], target) else 16


def _import(model, relax):
    """Relax module plus its weight parameters (names, numpy arrays), in call order."""
    from tvm.relax.frontend.onnx import from_onnx

    graph_inputs = len(_graph_inputs(model))
    failure = None
    with _silenced_fds(), _onnx_checker_skipped():  # the frontend prints its own error report
        try:
            mod = from_onnx(model, keep_params_in_input=True)
        except Exception as exc:  # assorted types; the op name is in the text
            failure = first_line(exc, last=True)
        gc.collect()  # the failed builder warns when destroyed: let that happen in here
    if failure is not None:
        raise UnsupportedModelError(f"TVM's ONNX frontend cannot import the model: "
                                    f"{failure}{_symbolic_hint(model)}")
    names = [v.name for v in mod["main"].params[graph_inputs:]]
    mod, params = relax.frontend.detach_params(mod)
    arrays = [p.numpy() for p in params.get("main", [])]
    if len(set(names)) != len(names):
        names = [f"{i:04d}:{n}" for i, n in enumerate(names)]
    return mod, names, arrays


@contextlib.contextmanager
def _onnx_checker_skipped():
    """`from_onnx` runs `onnx.checker.check_model` only to print its complaints as warnings
    (which `_silenced_fds` hides), and the checker serializes the whole model: 4.7 s of
    SmolLM2's build. The importer itself reports what it cannot convert."""
    import onnx.checker

    check_model = onnx.checker.check_model
    onnx.checker.check_model = lambda *args, **kwargs: None
    try:
        yield
    finally:
        onnx.checker.check_model = check_model


def _symbolic_hint(model) -> str:
    symbolic = [(v.name, d.dim_param) for v in _graph_inputs(model)
                for d in v.type.tensor_type.shape.dim if d.dim_param]
    if not symbolic:
        return ""
    name, dim = symbolic[0]
    return (f" (input {name!r} has the symbolic dim {dim!r}; the tvm target needs fixed "
            "shapes: compile without `dynamic`)")


@contextlib.contextmanager
def _silenced_fds():
    """Send stdout and stderr, Python's and the C++ library's, to /dev/null meanwhile."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    with open(os.devnull, "w") as null:
        os.dup2(null.fileno(), 1)
        os.dup2(null.fileno(), 2)
        try:
            yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)


def _graph_inputs(model) -> list:
    initializers = {t.name for t in model.graph.initializer}
    return [v for v in model.graph.input if v.name not in initializers]


TARGET = TvmTarget()
