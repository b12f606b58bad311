"""`fpga` artifacts: the design's C simulation binary (fpga/csim, built at compile time with
g++ and hashed in the manifest) runs on the inputs; the host quantizes and dequantizes
(runtime/engines/fpga_io.py). Each call writes the integer inputs (int8 codes, or int32 token
ids) to a private temporary
directory and reads the integer outputs back, so calls may run from several threads."""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from ember.errors import ArtifactError
from ember.runtime.engines.fpga_io import dequantize_output, quantize_input
from ember.runtime.manifest import payload_path

TIMEOUT_S = 600


def run_csim(binary: Path, x_q: np.ndarray, out_dtype: str,
             out_shape: tuple[int, ...]) -> np.ndarray:
    """The binary's integer outputs (N, *out_shape) for integer inputs x_q (N, ...), written
as they are typed (int8 codes or int32 token ids)."""
    count = len(x_q)
    with tempfile.TemporaryDirectory(prefix="ember-csim-") as tmp:
        source, result = Path(tmp) / "input.bin", Path(tmp) / "output.bin"
        np.ascontiguousarray(x_q).astype(x_q.dtype.newbyteorder("<")).tofile(source)
        done = subprocess.run([str(binary), str(source), str(result), str(count)],
                              capture_output=True, text=True, timeout=TIMEOUT_S, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"the C simulation failed: {done.stderr.strip()[:200]}")
        y = np.fromfile(result, dtype=np.dtype(out_dtype).newbyteorder("<"))
    return y.reshape(count, *out_shape)


class FpgaEngine:
    thread_safe = True

    def __init__(self, folder: Path, manifest: dict[str, Any], *, threads: int | None = None,
                 device: str | None = None) -> None:  # device: runs on the host CPU
        info = manifest["target_info"]
        self.binary = payload_path(folder, manifest, info.get("binary"))
        io = info.get("io") or {}
        try:
            self.input_scale = float(io["input_scale"])
            self.output_scales = np.asarray(io["output_scales"], np.float32)
            self.output_dtype = str(io["output_dtype"])
            self.output_shape = tuple(int(d) for d in io["output_shape"])
            self.channel_axis = int(io.get("output_channel_axis", 1))
            self.vocab = io.get("vocab")  # token models: ids must index the embedding
        except (KeyError, TypeError, ValueError):
            raise ArtifactError(f"{folder}: the manifest lacks the fpga design's I/O scales") \
                from None

    def run(self, inputs: list[np.ndarray]) -> list[np.ndarray]:
        x = inputs[0]
        if self.vocab is not None:
            if x.size and (x.min() < 0 or x.max() >= self.vocab):
                raise ValueError(f"token ids must be in [0, {self.vocab})")
            x_q = x.astype(np.int32)
        else:
            x_q = quantize_input(x, self.input_scale)
        y = run_csim(self.binary, x_q, self.output_dtype, self.output_shape)
        return [dequantize_output(y, self.output_scales, self.channel_axis)]
