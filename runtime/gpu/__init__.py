"""The `gpu` engine's device side: programs (program/) and Triton kernels, each kernel next to
a plain-torch reference: sfc/ (the SFC convolution), int4/ (the 4-bit decode GEMV), int8/ (the
W8A8 prefill GEMM); cuda_graph.py captures calls, device.py says where kernels run and
tuning.py picks kernel configurations per shape. The device check is tools/gpu_check.

    sfc_conv2d(x, plan)               3x3 convolution by SFC / Winograd: input transform,
                                      P per-slot GEMMs, output transform (fp16)
    int4_gemv(x, packed)              4-bit weight-only GEMV for batch-1 decode
    int8_gemm(a, sa, w, sw)           W8A8 GEMM, per-token x per-channel scales, fp16 out
    int8_gemm_two_group(...)          the same with SpikeLLM's two activation scale groups

Importing this package needs torch only: Triton is imported inside the functions that launch
a kernel, so the references, the packers and the tests work on CPU-only machines. Every
dispatching function takes `backend="auto" | "triton" | "reference"`: "auto" runs Triton on
CUDA tensors and the reference elsewhere; "triton" on CPU tensors works under Triton's
interpreter (TRITON_INTERPRET=1), which is how the kernels are checked without a GPU.
"""

from __future__ import annotations

from ember.runtime.gpu.device import gpu_available
from ember.runtime.gpu.int4.gemv import int4_gemv
from ember.runtime.gpu.int4.pack import PackedInt4, dequantize_int4, pack_int4, unpack_int4
from ember.runtime.gpu.int8.gemm import int8_gemm, int8_gemm_two_group
from ember.runtime.gpu.sfc.conv import sfc_conv2d
from ember.runtime.gpu.sfc.plan import SFCPlan, make_plan

__all__ = [
    "PackedInt4",
    "SFCPlan",
    "dequantize_int4",
    "gpu_available",
    "int4_gemv",
    "int8_gemm",
    "int8_gemm_two_group",
    "make_plan",
    "pack_int4",
    "sfc_conv2d",
    "unpack_int4",
]
