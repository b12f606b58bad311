"""Resource and latency estimates of an integer design on a device profile: what each
layer computes before folding (work: LayerWork), filled in for CNN layers by the model
(estimate) and for decoder layers by decoder.
"""
