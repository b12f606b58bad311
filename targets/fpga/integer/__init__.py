"""The integer layers of an `fpga` design with their numpy golden model: CNN layers (layers),
the SFC convolution on integers, additions-only transforms around int8 products (sfc), and a
Llama-style decoder's layers (decoder).
"""
