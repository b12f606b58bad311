"""`cpu`: the exported ONNX model, run by ONNX Runtime's CPU execution provider with all
graph optimizations on. Its 8-bit integer products are written so that ONNX Runtime computes
them exactly on CPUs without VNNI too (targets/onnxruntime_int8.py). 4-bit weight-only
products become ONNX Runtime's MatMulNBits (targets/onnxruntime_nbits.py; option
`int4_products`: "int8" activation blocks, the fast default, "float", or "standard" to keep
the standard ops); every other payload is standard ONNX that any ONNX runtime can run."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

from ember.progress import Progress
from ember.targets.base import ModuleSource, Payload, check_known_options
from ember.targets.onnx_io import save_onnx
from ember.targets.onnxruntime_int8 import exact_int8_products
from ember.targets.onnxruntime_nbits import ACCURACY, ACTIVATION_ERROR, nbits_products

INT4_PRODUCTS = (*ACCURACY, "standard")


class CpuTarget:
    name = "cpu"
    description = "ONNX Runtime, CPU execution provider (model.onnx)"
    executable = True
    #: threads: intra-op threads (0 lets ONNX Runtime choose); int4_products: INT4_PRODUCTS
    options = {"threads": int, "int4_products": str}

    def available(self) -> tuple[bool, str]:
        if importlib.util.find_spec("onnxruntime") is None:
            return False, "onnxruntime is not installed"
        import onnxruntime

        return True, f"onnxruntime {onnxruntime.__version__}"

    def check_options(self, options: dict[str, Any]) -> None:
        check_known_options(self.name, options, self.options)
        if not 0 <= options.get("threads", 0) <= 1024:
            raise ValueError("target option 'threads' must be 0..1024 (0: ONNX Runtime chooses)")
        if options.get("int4_products", "int8") not in INT4_PRODUCTS:
            raise ValueError(f"target option 'int4_products' must be one of "
                             f"{', '.join(INT4_PRODUCTS)}")

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

        int4 = options.get("int4_products", "int8")
        model, rewritten, nbits = source.onnx_model, 0, 0
        if _integer_weights(model):
            model = onnx.ModelProto()
            model.CopyFrom(source.onnx_model)  # shared by every target of one prepare
            rewritten = exact_int8_products(model)
            nbits = nbits_products(model, int4) if int4 != "standard" else 0
        files = save_onnx(model, out_dir / "model.onnx")
        info = {
            "model_file": "model.onnx", "execution_provider": "CPUExecutionProvider",
            "graph_optimization": "ORT_ENABLE_ALL", "threads": options.get("threads", 0),
            "onnxruntime": onnxruntime.__version__,
            "opset": max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")),
                         default=None),  # None: only other domains (ai.onnx.ml)
            "int8_products_made_exact": rewritten,  # targets/onnxruntime_int8.py
            "int4_products": {"kind": int4, "matmul_nbits": nbits},  # onnxruntime_nbits.py
        }
        precision = ACTIVATION_ERROR if nbits and int4 == "int8" else None
        return Payload(format="onnx", files=files, info=info, precision=precision)


def _integer_weights(model: Any) -> bool:
    """Whether the graph holds 4- or 8-bit weights, the only ones the rewrites touch."""
    from onnx import TensorProto

    return any(init.data_type in (TensorProto.INT4, TensorProto.INT8)
               for init in model.graph.initializer)


TARGET = CpuTarget()
