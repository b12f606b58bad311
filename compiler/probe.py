"""Probe inputs for a model whose reference outputs are degenerate.

A random-initialized deep network can give logits of 1e-15 on its example inputs, and an
artifact that computed anything at all of that size would agree with it. Such a model is
run again on probe inputs: the example's float inputs scaled by 10^2, 10^4, ... up to 10^30
(integer inputs, such as token ids, reversed along their last axis so they stay in range),
stopping at the first probe whose every output is finite and not degenerate. The artifact
is verified on that probe as well, under the same tolerance rule (the relative term carries
it: fp32 keeps its relative precision at any magnitude). A model whose outputs are the same
on every probe does not depend on its input (a zero-initialized classifier head); that is
reported, since no input can show a wrong artifact.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ember.runtime.compare import degenerate_reason

PROBE_SCALES = tuple(10.0 ** k for k in range(2, 31, 2))

Outputs = dict[str, np.ndarray]


@dataclass(frozen=True)
class Probe:
    """Inputs on which the reference outputs are not degenerate, and those outputs."""

    label: str  # how the inputs were made, e.g. "the example inputs x1e+04"
    inputs: dict[str, np.ndarray]
    outputs: Outputs


def is_degenerate(outputs: Outputs) -> bool:
    return any(degenerate_reason(_finite(v)) for v in outputs.values())


def find_probe(inputs: dict[str, np.ndarray], reference: Outputs,
               run: Callable[[dict[str, np.ndarray]], Outputs]) -> Probe | str:
    """The first probe with non-degenerate, finite outputs, or why there is none."""
    probed, unchanged = 0, True
    for label, probe_inputs in _candidates(inputs):
        try:
            outputs = run(probe_inputs)
        except Exception:  # a probe the model cannot run (an overflow check, say) shows nothing
            break
        if not all(np.isfinite(v).all() for v in outputs.values() if v.dtype.kind == "f"):
            break  # larger scales overflow too
        if not is_degenerate(outputs):
            return Probe(label, probe_inputs, outputs)
        probed += 1
        unchanged &= all(np.array_equal(outputs[k], v) for k, v in reference.items())
    if not probed:
        return "the model could not be run on any probe input (the example inputs scaled up)"
    if unchanged:
        return "the outputs do not depend on the input: every probe gave the same outputs"
    return "the outputs stayed degenerate on every probe (the example inputs scaled up to " \
        "overflow)"


def _candidates(inputs: dict[str, np.ndarray]):
    floats = [k for k, v in inputs.items() if v.dtype.kind == "f"]
    if not floats:
        yield "the example inputs reversed along their last axis", _reversed_ints(inputs)
        return
    for scale in PROBE_SCALES:
        scaled = {k: (v * np.asarray(scale, v.dtype) if k in floats else v)
                  for k, v in _reversed_ints(inputs).items()}
        yield f"the example inputs x{scale:.0e}", scaled


def _reversed_ints(inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {k: (np.ascontiguousarray(np.flip(v, -1)) if v.dtype.kind in "iu" and v.ndim
                else v) for k, v in inputs.items()}


def _finite(array: np.ndarray) -> np.ndarray:
    values = np.asarray(array, np.float64) if array.dtype.kind in "fiub" else np.zeros(1)
    return values[np.isfinite(values)]
