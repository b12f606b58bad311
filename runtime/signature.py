"""Input/output signatures: names, shapes (ints or symbolic names) and dtypes.

Inputs given to a session are checked against the artifact's signature before the engine
sees them: exact names, exact dtypes, equal rank, fixed dims equal, and each symbolic dim
bound to one size across all inputs.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ember.errors import InputError

Dim = int | str


def tensor_spec(name: str, shape: list[Dim], dtype: str) -> dict[str, Any]:
    return {"name": name, "shape": list(shape), "dtype": dtype}


def check_inputs(inputs: dict[str, Any], specs: list[dict[str, Any]]) -> dict[str, np.ndarray]:
    """Validated inputs as contiguous arrays, in signature order; InputError otherwise."""
    if not isinstance(inputs, dict):
        raise InputError(f"inputs must be a dict of name -> numpy array, "
                         f"got {type(inputs).__name__}")
    expected = [s["name"] for s in specs]
    missing = [n for n in expected if n not in inputs]
    extra = [n for n in inputs if n not in expected]
    if missing:
        raise InputError(f"missing input {missing[0]!r} (the model takes {', '.join(expected)})")
    if extra:
        raise InputError(f"unexpected input {extra[0]!r} (the model takes {', '.join(expected)})")
    bound: dict[str, int] = {}
    checked = {}
    for spec in specs:
        checked[spec["name"]] = _check_one(spec, inputs[spec["name"]], bound)
    return checked


def _check_one(spec: dict[str, Any], value: Any, bound: dict[str, int]) -> np.ndarray:
    name, shape, dtype = spec["name"], spec["shape"], spec["dtype"]
    if not isinstance(value, np.ndarray) or isinstance(value, np.ma.MaskedArray):
        raise InputError(f"input {name!r}: expected a plain numpy array, got "
                         f"{type(value).__name__}")
    if value.dtype != np.dtype(dtype):
        raise InputError(f"input {name!r}: dtype {value.dtype} does not match the model's {dtype}")
    if value.ndim != len(shape):
        raise InputError(f"input {name!r}: shape {list(value.shape)} has rank {value.ndim}, "
                         f"the model expects {_show(shape)}")
    for axis, (size, dim) in enumerate(zip(value.shape, shape, strict=True)):
        if isinstance(dim, int) and size != dim:
            raise InputError(f"input {name!r}: shape {list(value.shape)} does not match "
                             f"{_show(shape)} (axis {axis})")
        if isinstance(dim, str) and bound.setdefault(dim, size) != size:
            raise InputError(f"input {name!r}: dim {dim!r} is {size} here but {bound[dim]} "
                             "in another input")
    return np.require(value, requirements="C")  # ascontiguousarray makes a 0-d array 1-d


def _show(shape: list[Dim]) -> str:
    return "[" + ", ".join(str(d) for d in shape) + "]"
