"""Resource and latency estimates of an integer design on a device profile: the model
(estimate) and the decoder layers' work (decoder).
"""
