"""The SFC (or Winograd) 3x3 convolution on the GPU: the plan made once per layer on the host
(plan), the Triton kernels (_kernels, loaded only through conv) and their plain-torch data
flow, the reference they must match (reference).
"""
