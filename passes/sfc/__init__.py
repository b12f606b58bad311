"""The `sfc` pass: 3x3 stride-1 convolutions lowered to a fast algorithm (SFC or Winograd).

lower.py is the pass (`SFCLowering`); conv.py the lowered module `SFCConv2d`, whose forward is
the transform-domain computation the targets reproduce; quant.py its int8 variants. The
algorithms' exact matrices are shared by every layer: the root module sfc_algorithms.py.
"""
