"""Layer-by-layer verification of integer layers: each SpikeLinear of the exported graph, run
by ONNX Runtime, against the torch layer applied to the same input.

Whole-model outputs of a quantized model cannot be held to a tight bound across engines: the
float parts (norms, attention, the LM head) differ in the last bits between ONNX Runtime and
torch, and wherever a value sits on a rounding boundary that flips an activation code by one
step, which later layers carry on (at 4 bits one step is 1/15 of a token's range). So the
integer semantics are checked where they live: the graph is run once with every spiking
layer's input and output exposed, and each torch layer, fed ONNX Runtime's input, must give
ONNX Runtime's output (the same codes, the same int32 sums, the fp32 epilogue in the same
order: bit for bit, within MAX_LAYER_ERROR of the layer's output range). Weight-only layers
(float activations) multiply in fp32 on both sides, in different summation orders: they are
held to FLOAT_LAYER_ERROR (SmolLM2's 4-bit LM head, 576 inputs: 1.3e-6).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ember.targets.onnx_io import exported_module_path
from ember.targets.onnxruntime_int8 import exact_int8_products

MAX_LAYER_ERROR = 1e-6  # relative to the layer's largest |output|
FLOAT_LAYER_ERROR = 1e-5  # fp32 sums of up to thousands of terms: ~sqrt(K) 2^-24 apart


def integer_layer_io(model: Any) -> dict[str, tuple[str, str]]:
    """Module path -> (input value, output value) of every SpikeLinear in the ONNX graph."""
    scopes: dict[str, list[Any]] = {}
    for node in model.graph.node:
        path = _spike_scope(node)
        if path is not None:
            scopes.setdefault(path, []).append(node)
    fixed = {i.name for i in model.graph.initializer}
    for node in model.graph.node:  # weight-only values (constants, unpacking casts)
        if all(i in fixed for i in node.input if i):
            fixed.update(node.output)
    owner = {o: path for path, nodes in scopes.items() for node in nodes for o in node.output}
    external = {}
    for path, nodes in scopes.items():
        produced = {o for node in nodes for o in node.output}
        external[path] = {i for node in nodes for i in node.input
                          if i and i not in produced and i not in fixed}
    io = {}
    for path, nodes in scopes.items():
        # layers reading one tensor with one mask (q/k/v) share its quantization once the
        # exporter merges common subexpressions: such inputs lead back to that tensor
        inputs = {next(iter(external[owner[i]])) if i in owner else i for i in external[path]}
        if len(inputs) == 1:
            io[path] = (inputs.pop(), nodes[-1].output[0])  # the epilogue's Add comes last
    return io


def check_integer_layers(onnx_model: Any, torch_model: Any,
                         inputs: dict[str, np.ndarray]) -> dict[str, Any] | None:
    """{"layers", "max_relative_error", "bit_exact", "worst"} or None without spiking layers;
    raises nothing: the caller decides what failing means."""
    import onnx
    import onnxruntime as ort
    import torch

    io = integer_layer_io(onnx_model)
    if not io:
        return None
    probe = onnx.ModelProto()
    probe.CopyFrom(onnx_model)
    exact_int8_products(probe)  # as the cpu target writes them: exact without VNNI too
    names = sorted({name for pair in io.values() for name in pair})
    probe.graph.output.extend(onnx.helper.make_tensor_value_info(n, onnx.TensorProto.FLOAT, None)
                              for n in names)
    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(probe.SerializeToString(), options,
                                   providers=["CPUExecutionProvider"])
    values = dict(zip(names, session.run(names, inputs), strict=True))
    errors, bounds = {}, {}
    with torch.no_grad():
        for path, (x_name, y_name) in io.items():
            layer = torch_model.get_submodule(path)
            expected = layer(torch.from_numpy(values[x_name])).numpy()
            scale = max(float(np.abs(values[y_name]).max()), 1e-30)
            errors[path] = float(np.abs(expected - values[y_name]).max()) / scale
            bounds[path] = MAX_LAYER_ERROR if layer.a_bits else FLOAT_LAYER_ERROR
    worst = max(errors, key=lambda path: errors[path] / bounds[path])
    return {"layers": len(errors), "max_relative_error": errors[worst], "worst": worst,
            "bit_exact": sum(e == 0.0 for e in errors.values()), "bound": bounds[worst]}


def _spike_scope(node: Any) -> str | None:
    from ember.passes.spike.linear import SpikeLinear

    path = exported_module_path(node, SpikeLinear)
    return path[-1] if path else None
