"""Input checking against an artifact signature."""

from __future__ import annotations

import numpy as np
import pytest

from ember.errors import InputError
from ember.runtime.signature import check_inputs, tensor_spec

SPECS = [tensor_spec("ids", [1, "seq"], "int64"), tensor_spec("mask", [1, "seq"], "float32")]


def _ok(seq: int = 5):
    return {"ids": np.zeros((1, seq), np.int64), "mask": np.ones((1, seq), np.float32)}


def test_accepts_symbolic_dims_bound_consistently():
    checked = check_inputs(_ok(7), SPECS)
    assert list(checked) == ["ids", "mask"]
    assert checked["ids"].shape == (1, 7)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d.pop("mask"), "missing input 'mask'"),
        (lambda d: d.update(extra=np.zeros(1)), "unexpected input 'extra'"),
        (lambda d: d.update(ids=d["ids"].astype(np.int32)), "dtype int32 does not match"),
        (lambda d: d.update(ids=np.zeros((1, 5, 1), np.int64)), "has rank 3"),
        (lambda d: d.update(ids=np.zeros((2, 5), np.int64)), "does not match [1, seq] (axis 0)"),
        (lambda d: d.update(mask=np.ones((1, 4), np.float32)), "dim 'seq' is 4 here but 5"),
        (lambda d: d.update(ids=[[1, 2]]), "expected a plain numpy array"),
    ],
)
def test_rejects_bad_inputs(mutate, message):
    inputs = _ok()
    mutate(inputs)
    with pytest.raises(InputError) as info:
        check_inputs(inputs, SPECS)
    assert message in str(info.value)


def test_scalar_inputs_keep_rank_zero():
    """A 0-d input (Clip's min, say) reaches the engine 0-d: numpy's ascontiguousarray would
    make it 1-d, which TVM's VM refuses."""
    specs = [{"name": "min", "shape": [], "dtype": "float32"}]
    checked = check_inputs({"min": np.array(0.5, np.float32)}, specs)
    assert checked["min"].shape == () and checked["min"].flags.c_contiguous
