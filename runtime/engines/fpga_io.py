"""The numeric boundary of an `fpga` artifact, shared by the engine and the golden model.

The design computes on integers only. Outside it, on the host:

    x_q = clamp(round_half_even(x / s_in), -127, 127)      float32 input -> int8
    y   = float32(y_q) * float32(s_out[k])                  int8 or int32 output -> float32

`s_out` holds one scale per output channel (a layer's int32 accumulators) or one per tensor
(an int8 output). Both sides run exactly these numpy lines, so their outputs agree bit for bit
whenever the integers do. Files between the host and the C simulation are raw little-endian
arrays: int8 inputs, image after image; int8 or int32 outputs likewise.
"""

from __future__ import annotations

import numpy as np

INT8_LEVELS = 127


def quantize_input(x: np.ndarray, scale: float) -> np.ndarray:
    q = np.rint(np.asarray(x, np.float32) / np.float32(scale))
    return np.clip(q, -INT8_LEVELS, INT8_LEVELS).astype(np.int8)


def dequantize_output(y: np.ndarray, scales: np.ndarray, channel_axis: int = 1) -> np.ndarray:
    """float32(y) * s, with `scales` of length 1 or the size of `channel_axis`."""
    scales = np.asarray(scales, np.float32)
    shape = [1] * y.ndim
    if scales.size > 1:
        shape[channel_axis] = scales.size
    return y.astype(np.float32) * scales.reshape(shape)
