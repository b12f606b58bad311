"""The 4-bit weight decode GEMV: group-wise quantization and packing (pack), the kernel and
its reference (gemv; Triton code in _kernels, loaded only through gemv).
"""
