"""Exact operation counts: per ONNX node from inferred static shapes (nodes), and per layer
lowered by the `sfc` pass, direct against lowered (lowered). The `null` target and every
artifact's ops.json use them.
"""
