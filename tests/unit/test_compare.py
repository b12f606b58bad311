"""The verification comparison rule: |a - b| <= atol + rtol * |b|, shapes and dtypes equal."""

from __future__ import annotations

import numpy as np

from ember.runtime.compare import Tolerance, compare_outputs, describe_failure

TOL = Tolerance(atol=1e-3, rtol=1e-2)


def test_within_tolerance_passes_and_reports_errors():
    ref = np.array([1.0, -200.0, 0.0], np.float32)
    got = ref + np.array([5e-4, -1.5, 0.0], np.float32)  # 1.5 <= 1e-3 + 1e-2 * 200
    result = compare_outputs({"y": got}, {"y": ref}, TOL)
    assert result["status"] == "passed"
    assert result["outputs"]["y"]["max_abs"] == 1.5
    assert result["outputs"]["y"]["max_rel"] == 1.5 / 200


def test_beyond_tolerance_fails_with_a_line_naming_the_output():
    ref = np.array([1.0, 2.0], np.float32)
    result = compare_outputs({"y": ref + 0.1}, {"y": ref}, TOL)
    assert result["status"] == "failed"
    assert describe_failure(result).startswith("output 'y': max abs error 0.1")


def test_shape_or_dtype_mismatch_fails():
    ref = np.zeros((2, 3), np.float32)
    shape = compare_outputs({"y": np.zeros((3, 2), np.float32)}, {"y": ref}, TOL)
    dtype = compare_outputs({"y": np.zeros((2, 3), np.float64)}, {"y": ref}, TOL)
    assert shape["status"] == dtype["status"] == "failed"
    assert "expected float32[2, 3]" in describe_failure(shape)


def test_nan_and_infinity_where_the_reference_has_them_pass():
    ref = np.array([np.nan, -np.inf, np.inf, 2.0], np.float32)
    same = compare_outputs({"y": ref.copy()}, {"y": ref}, TOL)
    assert same["status"] == "passed" and same["outputs"]["y"]["max_abs"] == 0.0
    for wrong in ([1.0, -np.inf, np.inf, 2.0], [np.nan, np.inf, np.inf, 2.0],
                  [np.nan, -np.inf, np.inf, np.nan]):
        got = np.array(wrong, np.float32)
        assert compare_outputs({"y": got}, {"y": ref}, TOL)["status"] == "failed", wrong


def test_tiny_outputs_are_checked_relative_to_their_size():
    """Logits of 1e-15 (a deep random network) used to pass an atol of 1e-5 whatever the
    artifact computed; the absolute term now shrinks with the output."""
    reference = {"y": np.array([1e-15, -2e-15, 3e-15], np.float32)}
    wrong = {"y": np.array([3e-15, 1e-15, -1e-15], np.float32)}
    result = compare_outputs(wrong, reference, Tolerance(atol=1e-5, rtol=1e-5))
    assert result["status"] == "failed"
    assert result["degenerate_reference"] == {"y": "near zero (max |y| = 3e-15)"}
    close = {"y": reference["y"] * np.float32(1 + 1e-7)}
    assert compare_outputs(close, reference, Tolerance(1e-5, 1e-5))["status"] == "passed"


def test_outputs_of_ordinary_size_keep_the_absolute_tolerance():
    reference = {"y": np.array([0.0, 2.0, -3.0], np.float32)}
    near = {"y": np.array([8e-6, 2.0, -3.0], np.float32)}
    result = compare_outputs(near, reference, Tolerance(atol=1e-5, rtol=0.0))
    assert result["status"] == "passed" and "degenerate_reference" not in result
    assert result["outputs"]["y"]["scale"] == 3.0


def test_zero_and_constant_references_are_named_degenerate():
    zeros = {"y": np.zeros((1, 10), np.float32)}
    result = compare_outputs(zeros, zeros, Tolerance(1e-5, 1e-5))
    assert result["status"] == "passed"
    assert result["degenerate_reference"] == {"y": "near zero (max |y| = 0)"}
    constant = {"y": np.full((1, 4), 0.25, np.float32)}
    assert compare_outputs(constant, constant, Tolerance(1e-5, 1e-5))[
        "degenerate_reference"] == {"y": "constant (every element is 0.25)"}
