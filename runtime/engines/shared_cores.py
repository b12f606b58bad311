"""ONNX Runtime and TVM sessions in one process, sharing the cores without fighting.

ONNX Runtime's workers keep spinning after each `Run()` (so the next operator or call starts
at once); TVM's thread pool waits for every worker at each parallel region. With both in one
process, the spinning ONNX Runtime workers hold the cores that TVM's workers need, and each
TVM parallel region waits a scheduler time slice for them: the digits CNN on `tvm`,
alternated call by call with its `cpu` artifact, took 31.6 ms a call instead of 0.14
(BENCHMARKS.md "Under load"). ONNX Runtime's `session.force_spinning_stop` stops the spinning
when `Run()` returns (it still spins between the operators of one call), which brings that to
0.17 ms. Alone, a process keeps ONNX Runtime's default: stopping costs a wake-up per call
(the digits CNN: 0.107 -> 0.180 ms).

So every ONNX Runtime session of a process that also runs a TVM engine stops spinning: those
opened after the first TVM engine from the start, those opened before it when it opens.
"""

from __future__ import annotations

import weakref
from typing import Any

STOP_SPINNING = "session.force_spinning_stop"
_onnxruntime_engines: weakref.WeakSet[Any] = weakref.WeakSet()
_tvm_in_process = False


def tvm_in_process() -> bool:
    return _tvm_in_process


def onnxruntime_opened(engine: Any) -> None:
    """Note an ONNX Runtime engine (it must have `stop_spinning()`)."""
    _onnxruntime_engines.add(engine)


def tvm_opened() -> None:
    """A TVM engine opens: the ONNX Runtime sessions already open stop spinning."""
    global _tvm_in_process
    if _tvm_in_process:
        return
    _tvm_in_process = True
    for engine in list(_onnxruntime_engines):
        engine.stop_spinning()
