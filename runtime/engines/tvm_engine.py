"""Apache TVM (Relax VM) engine for `model.so` artifacts.

The shared library holds the compiled functions; the weights travel beside it as
`params.safetensors` (numpy arrays, nothing unpickled) and are passed after the inputs in
the order the manifest records. The `.so` is native code: the session loads it only after
its sha256 matched the manifest.
"""

from __future__ import annotations

import os
import sys
import threading
from pathlib import Path
from typing import Any

import numpy as np

from ember.errors import ArtifactError
from ember.runtime.engines import shared_cores
from ember.runtime.manifest import payload_path


def import_tvm():
    """(tvm, tvm.relax), without letting tvm_ffi import torch as a side effect.

    tvm_ffi imports torch eagerly when it is installed (a Windows symbol-clash workaround);
    the runtime promises no torch import, so torch is hidden for the duration of the import
    unless the process already has it.
    """
    hide = "torch" not in sys.modules
    if hide:
        sys.modules["torch"] = None  # makes `import torch` raise ImportError, which tvm_ffi skips
    try:
        import tvm
        from tvm import relax
    except ImportError:
        raise ArtifactError("this artifact needs apache-tvm: pip install 'ember[tvm]'") from None
    finally:
        if hide:
            del sys.modules["torch"]
    return tvm, relax


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity where the OS reports it)."""
    affinity = getattr(os, "sched_getaffinity", None)
    return len(affinity(0)) if affinity else (os.cpu_count() or 1)


class TvmEngine:
    thread_safe = True  # the VM is not re-entrant; `run` holds a lock

    def __init__(self, folder: Path, manifest: dict[str, Any], *, threads: int | None = None,
                 device: str | None = None) -> None:  # device: runs on the host CPU
        tvm, relax = import_tvm()
        shared_cores.tvm_opened()  # ONNX Runtime sessions stop spinning between calls
        # TVM sizes its thread pool from TVM_NUM_THREADS when the pool first starts, and
        # otherwise counts physical cores only (1 of 2 here): use every core we may run on,
        # as ONNX Runtime does, unless the caller or the environment says otherwise
        if threads or "TVM_NUM_THREADS" not in os.environ:
            os.environ["TVM_NUM_THREADS"] = str(threads or usable_cores())
        info = manifest["target_info"]
        self.device = tvm.cpu()
        libraries = info["functions"] if "functions" in info else \
            {"main": {"library": info.get("library"), "param_names": info.get("param_names")}}
        # each library is its own VM whose `main` is the function (a generation artifact has
        # `decode.S` and `prefill.S` for each cache size S)
        self.vms = {name: relax.VirtualMachine(tvm.runtime.load_module(
            str(payload_path(folder, manifest, spec.get("library")))), self.device)
            for name, spec in libraries.items()}
        self.vm = next(iter(self.vms.values()))
        self.params = self._load_params(
            folder, manifest, {name: spec.get("param_names") or []
                               for name, spec in libraries.items()},
            bool(info.get("transform_params")))
        self.functions = {name: vm["main"] for name, vm in self.vms.items()}
        self.tensor = tvm.runtime.tensor
        self.from_dlpack = tvm.runtime.from_dlpack
        self.lock = threading.Lock()
        self.cache_layout = _cache_layout(manifest) if "functions" in info else None

    def _load_params(self, folder: Path, manifest: dict[str, Any],
                     functions: dict[str, list[str]], transform: bool) -> dict[str, list[Any]]:
        """Each function's weights in call order (a weight two functions share is loaded
        once), with their layouts prepared once where the build lifted that work out."""
        import tvm
        from safetensors import safe_open

        info = manifest["target_info"]
        wanted = sorted({n for names in functions.values() for n in names})
        tensors = {}
        if wanted:
            # one weight at a time: the numpy copy of each is dropped once TVM holds it, so
            # the peak is the weights once, not twice
            path = payload_path(folder, manifest, info.get("params_file"))
            with safe_open(str(path), "numpy") as stored:
                present = set(stored.keys())
                missing = [n for n in wanted if n not in present]
                if missing:
                    raise ArtifactError(f"{folder}: weight {missing[0]!r} is missing from the "
                                        "params file")
                for name in wanted:
                    tensors[name] = tvm.runtime.tensor(stored.get_tensor(name), self.device)
        params = {}
        for name, names in functions.items():
            params[name] = [tensors[n] for n in names]
            if transform:  # weight layouts prepared once, not on every call
                params[name] = list(self.vms[name]["main_transform_params"](params[name]))
        return params

    def run(self, inputs: list[np.ndarray]) -> list[np.ndarray]:
        if self.cache_layout is not None:  # a generation artifact: through static caches
            from ember.runtime.engines.tvm_cache import run_with_caches

            return run_with_caches(self, inputs)
        # through DLPack both ways: TVM's own numpy conversions cost 17 us per input and 7 us
        # per output, a quarter of the digits CNN's 0.13 ms call at batch 1
        return self.call_function("main", inputs)

    def call_function(self, name: str, inputs: list[np.ndarray], tensors: list[Any] = ()
                      ) -> list[np.ndarray]:
        """Run the library's function `name` on `inputs` (numpy) and `tensors` (TVM's,
        passed as they are), then its weights; its outputs as numpy copies."""
        args = [self._as_tensor(x) for x in inputs]
        with self.lock:
            result = self.functions[name](*args, *tensors, *self.params[name])
        single = hasattr(result, "shape") or isinstance(result, tuple)  # a tensor or a shape
        return [_to_numpy(item) for item in ([result] if single else list(result))]

    def open_cache(self) -> Any:
        """A static KV cache for one sequence (generation artifacts only)."""
        from ember.runtime.engines.tvm_cache import StaticCache

        return StaticCache(self)

    def aligned(self, x: np.ndarray) -> np.ndarray:
        return _aligned_copy(x)

    def _as_tensor(self, x: np.ndarray) -> Any:
        """A zero-copy view of `x` when TVM accepts one (C-contiguous, 64-byte aligned),
        else of a 64-byte aligned copy; TVM's own conversion where DLPack cannot carry it."""
        x = np.asarray(x)
        if x.size == 0 or x.dtype.kind not in "fiu":
            return self.tensor(x, self.device)
        if not (x.flags.c_contiguous and x.flags.writeable and x.ctypes.data % ALIGNMENT == 0):
            x = _aligned_copy(x)  # DLPack cannot carry a read-only array either
        return self.from_dlpack(x)


ALIGNMENT = 64  # bytes: TVM's kernels assume it of every buffer (and from_dlpack checks)


def _to_numpy(tensor: Any) -> np.ndarray:
    """A copy the caller owns (the VM's pool reuses the tensor's memory). A shape the VM
    computed statically (an ONNX Shape output) comes as a tuple: int64, as ONNX has it."""
    if isinstance(tensor, tuple):
        return np.array(tensor, np.int64)
    try:
        return np.from_dlpack(tensor).copy()
    except (TypeError, BufferError, RuntimeError):  # a dtype DLPack cannot carry to numpy
        return tensor.numpy()


def _cache_layout(manifest: dict[str, Any]) -> Any:
    from ember.runtime.engines.tvm_cache import CacheLayout

    info, generation = manifest["target_info"], manifest.get("generation") or {}
    try:
        sizes = tuple(int(size) for size in info["cache_sizes"])
        chunk = min((spec["tokens"] for name, spec in info["functions"].items()
                     if name.startswith("prefill")), default=1)
        return CacheLayout(sizes=sizes, layers=int(generation["layers"]),
                           kv_heads=int(generation["kv_heads"]),
                           head_dim=int(generation["head_dim"]), chunk=int(chunk))
    except (KeyError, TypeError, ValueError):
        raise ArtifactError("the manifest of this tvm generation artifact lacks its cache "
                            "layout (cache_sizes, generation layers/kv_heads/head_dim)") from None


def _aligned_copy(x: np.ndarray) -> np.ndarray:
    raw = np.empty(x.nbytes + ALIGNMENT, np.uint8)
    start = -raw.ctypes.data % ALIGNMENT
    out = raw[start:start + x.nbytes].view(x.dtype).reshape(x.shape)
    out[...] = x
    return out
