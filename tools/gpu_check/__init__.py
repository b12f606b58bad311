"""The one-shot device check of ember's GPU kernels and programs (main.py, run on a CUDA
machine): one module per section (int4, int8, sfc, programs, artifacts), the synthetic
programs they time, CUDA-event timing and the rows they share (common).
"""
