"""Fuzzing the four doors bad input comes through: the config parser, the ONNX loader, the
manifest reader and input loading. Whatever hypothesis generates, only ember's own error
types (UserError and its kinds) may come out; anything else is an internal error, which a
user would see as a crash. Bounded: a fixed number of examples each, no deadline."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import ember.runtime as rt
from ember.compiler.config import load_config_file, parse_pass_flag, validate_config
from ember.errors import UserError

FUZZ = settings(max_examples=60, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow])
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-10**12, 10**12),
                    st.floats(allow_nan=True), st.text(max_size=12))
VALUES = st.recursive(SCALARS, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)),
    max_leaves=12)
CONFIG_KEYS = st.sampled_from(["model", "example", "passes", "target", "target_options",
                               "output", "verify", "seed", "tokens", "shape", "inputs",
                               "dynamic", "atol", "rtol", "enabled"])


def _outcome(call) -> str:
    """"ok", "declined" (one of ember's own errors) or "internal: <what>" (anything else)."""
    try:
        call()
    except UserError:
        return "declined"
    except Exception as exc:  # the defect this suite looks for: reported, then asserted on
        return f"internal: {type(exc).__name__}: {exc}"
    return "ok"


SAFE = ("ok", "declined")  # pytest shows the "internal: ..." outcome when one is not


@FUZZ
@given(st.dictionaries(CONFIG_KEYS, VALUES, max_size=6))
def test_config_validation(data):
    assert _outcome(lambda: validate_config(data)) in SAFE


@FUZZ
@given(st.dictionaries(st.sampled_from(["model", "passes", "target", "example"]), st.one_of(
    st.just("builtin:tiny-cnn"), st.lists(st.one_of(
        st.sampled_from(["fold_bn", "sfc", "prune", "spike"]),
        st.dictionaries(st.sampled_from(["prune", "spike", "sfc", "fold_bn"]),
                        st.dictionaries(st.sampled_from(
                            ["method", "ratio", "scope", "data", "steps", "w_bits", "a_bits",
                             "algorithm", "into", "round_to"]), SCALARS, max_size=3),
                        max_size=1)), max_size=3), SCALARS), max_size=4))
def test_pass_parameters_of_any_type(data):
    assert _outcome(lambda: validate_config({"model": "builtin:tiny-cnn", **data})) in SAFE


@FUZZ
@given(st.text(max_size=60))
def test_pass_flags(text):
    def parse():
        validate_config({"model": "builtin:tiny-cnn", "passes": [parse_pass_flag(text)]})
    assert _outcome(parse) in SAFE


@FUZZ
@given(st.binary(max_size=200) | st.text(max_size=200).map(str.encode))
def test_config_files(tmp_path, content):
    path = tmp_path / "config.yaml"
    path.write_bytes(content)
    assert _outcome(lambda: validate_config(load_config_file(path))) in SAFE


@pytest.fixture(scope="module")
def onnx_bytes() -> bytes:
    from onnx import TensorProto, helper, numpy_helper

    weight = numpy_helper.from_array(np.ones((4, 3), np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["m"]), helper.make_node("Relu", ["m"], ["y"])],
        "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])], [weight])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]
                             ).SerializeToString()


@FUZZ
@given(st.data())
def test_onnx_loader_on_mutated_files(tmp_path, onnx_bytes, data):
    from ember.compiler.config import ExampleSpec
    from ember.compiler.models.onnx_file import onnx_file

    content = bytearray(onnx_bytes)
    for _ in range(data.draw(st.integers(1, 4))):
        at = data.draw(st.integers(0, len(content) - 1))
        content[at] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(1, len(content)))
    path = tmp_path / "m.onnx"
    path.write_bytes(bytes(content[:cut]))
    assert _outcome(lambda: onnx_file(f"onnx:{path}", str(path), ExampleSpec(), 0)) in SAFE


@pytest.fixture(scope="module")
def artifact(tmp_path_factory):
    from ember.compiler.api import compile_model

    return compile_model({"model": "builtin:tiny-cnn", "target": "cpu",
                          "output": str(tmp_path_factory.mktemp("fuzz") / "a")})


def _paths(value, prefix=()):
    """Every path into a JSON value, leaves and containers."""
    yield prefix
    items = value.items() if isinstance(value, dict) else enumerate(value) \
        if isinstance(value, list) else ()
    for key, child in items:
        yield from _paths(child, (*prefix, key))


@FUZZ
@given(st.data())
def test_manifest_mutations(tmp_path, artifact, data):
    """A forger's manifest: any value replaced or removed, the digest recomputed to match;
    loading, running and checking may refuse it, never crash."""
    from ember.runtime.manifest import DIGEST, digest_line

    folder = shutil.copytree(artifact, tmp_path / "a", dirs_exist_ok=True)
    manifest = json.loads((folder / "manifest.json").read_text())
    for _ in range(data.draw(st.integers(1, 3))):
        path = data.draw(st.sampled_from([p for p in _paths(manifest) if p]))
        parent = manifest
        for key in path[:-1]:
            parent = parent[key]
        if data.draw(st.booleans()) and isinstance(parent, dict):
            del parent[path[-1]]
        else:
            parent[path[-1]] = data.draw(VALUES)
    (folder / "manifest.json").write_text(json.dumps(manifest))
    (folder / DIGEST).write_text(digest_line(folder))

    def use():
        session = rt.load(folder)
        inputs, _ = session.reference_io()
        session.run(inputs)
        session.check()
    assert _outcome(use) in SAFE


@FUZZ
@given(st.binary(max_size=300))
def test_npy_files(tmp_path, content):
    from ember.runtime.arrays import load_npy

    path = tmp_path / "x.npy"
    path.write_bytes(b"\x93NUMPY" + content)
    try:
        array = load_npy(path)
    except ValueError as exc:  # the one error load_npy promises: a message naming the file
        assert str(exc).startswith("x.npy"), exc
    else:
        assert isinstance(array, np.ndarray) and array.dtype != object


@FUZZ
@given(st.data())
def test_inputs_of_any_shape_and_type(artifact, data):
    session = rt.load(artifact)
    dtype = data.draw(st.sampled_from(["float32", "float64", "int64", "uint8", "bool",
                                       "float16"]))
    shape = data.draw(st.lists(st.integers(0, 20), max_size=5))
    name = data.draw(st.sampled_from(["image", "x", ""]))
    assert _outcome(lambda: session.run({name: np.zeros(shape, dtype)})) in SAFE
