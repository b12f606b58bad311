"""C++ text shared by the HLS layer writers (hls/layers.py, hls/decoder.py): identifiers,
constant arrays, function signatures and the pragmas of a layer's folding (`lanes` parallel
multipliers: a pipelined reduction loop unrolled `lanes` wide, and the lanes beyond one
reduction running other output channels)."""

from __future__ import annotations

import re

import numpy as np

from ember.targets.fpga.integer.layers import Layer

PER_LINE = 24


def ident(name: str) -> str:
    return "l_" + re.sub(r"\W", "_", name)


def array(ctype: str, name: str, values: np.ndarray) -> str:
    flat = [str(int(v)) for v in np.asarray(values).reshape(-1)]
    lines = [", ".join(flat[i:i + PER_LINE]) for i in range(0, len(flat), PER_LINE)]
    body = ",\n    ".join(lines)
    return f"static const {ctype} {name}[{len(flat)}] = {{\n    {body}\n}};"


def signature(layer: Layer, in_types: list[str], out_type: str, in_sizes: list[int]) -> str:
    args = [f"const {t} in{i}[{n}]" for i, (t, n) in enumerate(zip(in_types, in_sizes,
                                                                  strict=True))]
    size = int(np.prod(layer.out_shape))
    return f"static void {ident(layer.name)}({', '.join(args)}, {out_type} out[{size}])"


def reduction_pragmas(lanes: int, reduction: int) -> str:
    """The reduction loop: pipelined, `min(lanes, reduction)` products per cycle."""
    return (f"#pragma HLS PIPELINE II=1\n"
            f"#pragma HLS UNROLL factor={min(lanes, reduction)}")


def parallel_pragma(lanes: int, reduction: int) -> str:
    """The output-channel loop: the lanes beyond one reduction run other channels."""
    return f"#pragma HLS UNROLL factor={max(1, lanes // reduction)}"
