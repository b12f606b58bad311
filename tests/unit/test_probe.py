"""Probe inputs for degenerate reference outputs (compiler/probe.py)."""

from __future__ import annotations

import numpy as np

from ember.compiler.probe import Probe, find_probe, is_degenerate


def test_tiny_outputs_are_probed_at_the_first_scale_that_lifts_them():
    x = {"x": np.array([[0.5, 0.25, -0.5, 0.125]], np.float32)}
    run = lambda inputs: {"y": inputs["x"] * np.float32(1e-12)}  # noqa: E731  degree 1
    probe = find_probe(x, run(x), run)
    assert isinstance(probe, Probe)
    assert probe.label == "the example inputs x1e+08"  # at x1e6, max|y| = 5e-7 < 1e-6
    assert float(probe.outputs["y"].max()) >= 1e-6
    assert x["x"][0, 0] == np.float32(0.5)  # the example inputs are left as they were


def test_outputs_that_ignore_the_input_are_reported_as_such():
    x = {"x": np.ones((2, 3), np.float32)}
    run = lambda inputs: {"y": np.zeros((2, 2), np.float32)}  # noqa: E731
    assert find_probe(x, run(x), run) == ("the outputs do not depend on the input: every "
                                          "probe gave the same outputs")


def test_probing_stops_at_overflow_and_says_so():
    x = {"x": np.ones((1, 2), np.float32)}

    def run(inputs):
        v = inputs["x"].astype(np.float32)
        return {"y": np.where(v > 1e6, np.float32(np.inf), v * np.float32(1e-20))}

    assert "stayed degenerate" in find_probe(x, run(x), run)


def test_token_ids_are_reversed_not_scaled():
    ids = {"input_ids": np.array([[3, 1, 2]], np.int64)}
    seen = []

    def run(inputs):
        seen.append(inputs["input_ids"].tolist())
        return {"logits": inputs["input_ids"].astype(np.float32)}

    probe = find_probe(ids, {"logits": np.zeros((1, 3), np.float32)}, run)
    assert seen == [[[2, 1, 3]]] and probe.label.startswith("the example inputs reversed")


def test_is_degenerate_looks_at_every_output():
    assert is_degenerate({"a": np.ones(3), "b": np.zeros(3)})
    assert not is_degenerate({"a": np.arange(3.0), "b": np.array([0.0, 2.0])})
