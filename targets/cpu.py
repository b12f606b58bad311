"""`cpu`: the exported ONNX model, run by ONNX Runtime's CPU execution provider with all
graph optimizations on. The payload is standard ONNX, so any ONNX runtime can run it; its
8-bit integer products are written so that ONNX Runtime computes them exactly on CPUs
without VNNI too (targets/onnxruntime_int8.py)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

from ember.progress import Progress
from ember.targets.base import ModuleSource, Payload, check_known_options
from ember.targets.onnx_io import save_onnx
from ember.targets.onnxruntime_int8 import exact_int8_products


class CpuTarget:
    name = "cpu"
    description = "ONNX Runtime, CPU execution provider (model.onnx)"
    executable = True
    options = {"threads": int}  # intra-op threads; 0 lets ONNX Runtime choose

    def available(self) -> tuple[bool, str]:
        if importlib.util.find_spec("onnxruntime") is None:
            return False, "onnxruntime is not installed"
        import onnxruntime

        return True, f"onnxruntime {onnxruntime.__version__}"

    def check_options(self, options: dict[str, Any]) -> None:
        check_known_options(self.name, options, self.options)
        if not 0 <= options.get("threads", 0) <= 1024:
            raise ValueError("target option 'threads' must be 0..1024 (0: ONNX Runtime chooses)")

    def support(self, source: ModuleSource) -> str | None:
        """ONNX Runtime must load the graph (creating a session resolves every kernel)."""
        import onnxruntime as ort

        from ember.errors import first_line

        options = ort.SessionOptions()
        options.log_severity_level = 4
        try:
            ort.InferenceSession(source.onnx_model.SerializeToString(), options,
                                 providers=["CPUExecutionProvider"])
        except Exception as exc:  # ORT's own error kinds
            return f"ONNX Runtime cannot load the graph: {first_line(exc)}"
        return None

    def compile(self, source: ModuleSource, out_dir: Path, options: dict[str, Any],
                progress: Progress) -> Payload:
        import onnx
        import onnxruntime

        model, rewritten = source.onnx_model, 0
        if any(node.op_type == "MatMulInteger" for node in model.graph.node):
            model = onnx.ModelProto()
            model.CopyFrom(source.onnx_model)  # shared by every target of one prepare
            rewritten = exact_int8_products(model)
        files = save_onnx(model, out_dir / "model.onnx")
        info = {
            "model_file": "model.onnx", "execution_provider": "CPUExecutionProvider",
            "graph_optimization": "ORT_ENABLE_ALL", "threads": options.get("threads", 0),
            "onnxruntime": onnxruntime.__version__,
            "opset": max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")),
                         default=None),  # None: only other domains (ai.onnx.ml)
            "int8_products_made_exact": rewritten,  # targets/onnxruntime_int8.py
        }
        return Payload(format="onnx", files=files, info=info)


TARGET = CpuTarget()
