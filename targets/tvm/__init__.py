"""The `tvm` target: Apache TVM Relax built with LLVM for the host CPU (target.py).

prep.py readies the exported ONNX for TVM's importer; schedules.py holds ember's zero-tuning
CPU schedules, fast_math.py the vectorizable exp/softmax, int8.py the VNNI integer product;
tune.py and apply_tuning.py the opt-in MetaSchedule tuning; sfc/ the SFC kernels.
"""
