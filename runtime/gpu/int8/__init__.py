"""The W8A8 prefill GEMM: operands and the exact integer references (quant), the kernel and
its two-group form (gemm; Triton code in _kernels, loaded only through gemm).
"""
