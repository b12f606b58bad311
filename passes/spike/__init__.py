"""The `spike` pass: saliency-driven spiking quantization of a language model (spike.md).

quantize.py is the pass (`SpikeQuantization`); llm.py runs it block by block; linear.py is the
lowered module `SpikeLinear`, the integer semantics every target reproduces; neurons.py,
quantizers.py and saliency.py the method's parts; onnx_lowering.py maps SpikeLinear onto
ONNX integer kernels; report.py counts spiking operations. The code functions shared with
the runtime live in the root module spike_codes.py.
"""
