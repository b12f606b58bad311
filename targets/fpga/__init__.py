"""The `fpga` target: the model as an integer-only dataflow design, simulated bit-exactly.

target.py is the target, build.py its compile steps (lower, write C++, g++, check). lower/
turns the float model (read by targets/module_reader.py) into integer layers; integer/ holds
those layers and their numpy golden model (fixed.py: the fixed-point requantization they
share); hls/ writes the HLS-style C++ project; resources/ estimates resources and latency on
a device profile (devices.py).
"""
