"""`tvm`: Apache TVM Relax, built for the host CPU with LLVM into a shared library.

The exported ONNX is imported with `relax.frontend.onnx.from_onnx` (the torch-export route
fails in LLVM codegen on Llama's causal mask). Float weight tensors stay function
parameters and are saved beside the library as `params.safetensors`; every other
initializer (shape vectors, index constants, scalars) becomes a graph constant first,
because a shape that arrives as a run-time parameter makes TVM build fully symbolic
kernels (a 50x slower build for SmolLM2's grouped-query `Expand`).
"""

from __future__ import annotations

import contextlib
import gc
import importlib.util
import os
import sys
from pathlib import Path
from typing import Any

from ember.compiler.progress import Progress
from ember.errors import UnsupportedModelError
from ember.targets.base import Payload, check_known_options
from ember.targets.host import cpu_features, cpu_name

LIBRARY = "model.so"
PARAMS = "params.safetensors"


class TvmTarget:
    name = "tvm"
    description = "Apache TVM Relax, LLVM for the host CPU (model.so + params.safetensors)"
    executable = True
    options = {"mcpu": str, "opt_level": int}

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

    def compile(self, model, out_dir: Path, options: dict[str, Any], progress: Progress) -> Payload:
        from safetensors.numpy import save_file

        from ember.runtime.engines.tvm_engine import import_tvm

        tvm, relax = import_tvm()
        target = tvm.target.Target({"kind": "llvm", "mcpu": options.get("mcpu") or _llvm_cpu(tvm)})
        with progress.stage("importing ONNX into Relax"):
            mod, param_names, params = _import(model, relax)
        with progress.stage(f"building with TVM for {target.attrs['mcpu']}"):
            with tvm.transform.PassContext(opt_level=options.get("opt_level", 3)):
                executable = tvm.compile(mod, target=target)
            executable.export_library(str(out_dir / LIBRARY))
        files = [LIBRARY]
        if param_names:
            save_file(dict(zip(param_names, params, strict=True)), str(out_dir / PARAMS))
            files.append(PARAMS)
        info = {
            "library": LIBRARY, "params_file": PARAMS, "param_names": param_names,
            "tvm_target": str(target), "tvm": tvm.__version__, "host_cpu": cpu_name(),
            "cpu_features": cpu_features(), "opt_level": options.get("opt_level", 3),
        }
        return Payload(format="tvm", files=files, info=info)


def _llvm_cpu(tvm) -> str:
    return tvm.target.codegen.llvm_get_system_cpu()


def _import(model, relax):
    """Relax module plus its weight parameters (names, numpy arrays), in call order."""
    from tvm.relax.frontend.onnx import from_onnx

    graph_inputs = len(_graph_inputs(model))
    failure = None
    with _silenced_fds():  # the frontend prints its own error report, C++ warnings follow
        try:
            mod = from_onnx(_weights_only_initializers(model), keep_params_in_input=True)
        except Exception as exc:  # assorted types; the op name is in the text
            text = str(exc).strip()
            failure = text.splitlines()[-1] if text else type(exc).__name__
        gc.collect()  # the failed builder warns when destroyed: let that happen in here
    if failure is not None:
        raise UnsupportedModelError(f"TVM's ONNX frontend cannot import the model: "
                                    f"{failure[:200]}{_symbolic_hint(model)}")
    names = [v.name for v in mod["main"].params[graph_inputs:]]
    mod, params = relax.frontend.detach_params(mod)
    arrays = [p.numpy() for p in params.get("main", [])]
    if len(set(names)) != len(names):
        names = [f"{i:04d}:{n}" for i, n in enumerate(names)]
    return mod, names, arrays


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


def _weights_only_initializers(model):
    """A copy where only float tensors with more than one element remain initializers."""
    import onnx
    from onnx import helper

    float_types = (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.BFLOAT16,
                   onnx.TensorProto.DOUBLE)
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    weights, constants = [], []
    for tensor in copy.graph.initializer:
        elements = 1
        for d in tensor.dims:
            elements *= d
        if tensor.data_type in float_types and elements > 1:
            weights.append(tensor)
        else:
            constants.append(helper.make_node("Constant", [], [tensor.name], value=tensor))
    nodes = constants + list(copy.graph.node)
    del copy.graph.initializer[:]
    copy.graph.initializer.extend(weights)
    del copy.graph.node[:]
    copy.graph.node.extend(nodes)
    return copy


TARGET = TvmTarget()
