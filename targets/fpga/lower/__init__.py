"""Lowering to the integer layers of targets/fpga/integer: a traced float network (graph) and
a Llama-style decoder (decoder), both calibrated on data.
"""
