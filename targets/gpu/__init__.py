"""The `gpu` target: the model after passes as a program for CUDA (target.py), built from the
torch model read by targets/module_reader.py (program.py). The runtime side is
runtime/gpu.
"""
