"""Config validation: every bad config is one ConfigError line naming what is wrong."""

from __future__ import annotations

import pytest

from ember.compiler.api import resolve_config
from ember.compiler.config import load_config_file, parse_pass_flag, validate_config
from ember.errors import ConfigError


def test_yaml_config_resolves_with_pass_forms(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(
        "model: builtin:tiny-cnn\n"
        "example: {shape: [2, 3, 16, 16]}\n"
        "passes:\n  - fold_bn\n  - fold_bn: {into: conv}\n"
        "target: tvm\ntarget_options: {opt_level: 2}\noutput: out/x\n"
    )
    config = resolve_config(path)
    assert [(p.name, p.params) for p in config.passes] == [("fold_bn", {}),
                                                            ("fold_bn", {"into": "conv"})]
    assert config.example.shape == [2, 3, 16, 16]
    assert config.target == "tvm" and config.target_options == {"opt_level": 2}


def test_overrides_replace_file_values(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("model: builtin:tiny-cnn\ntarget: cpu\n")
    assert resolve_config(path, target="null").target == "null"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"model": "builtin:tiny-cnn", "colour": 1}, "unknown key 'colour'"),
        ({"model": "builtin:tiny-cnn", "example": {"tokenz": 3}}, "unknown key 'example.tokenz'"),
        ({"target": "cpu"}, "missing key 'model'"),
        ({"model": "builtin:tiny-cnn", "passes": ["shrink"]}, "unknown pass 'shrink'"),
        ({"model": "builtin:tiny-cnn", "target": "quantum"}, "unknown target 'quantum'"),
        ({"model": "builtin:tiny-cnn", "passes": [{"fold_bn": {"into": "rnn"}}]},
         "pass fold_bn: into must be one of"),
        ({"model": "builtin:tiny-cnn", "passes": [{"fold_bn": {"depth": 2}}]},
         "pass fold_bn: FoldBatchNorm.__init__() got an unexpected keyword argument 'depth'"),
        ({"model": "builtin:tiny-cnn", "target": "cpu", "target_options": {"cores": 2}},
         "unknown option 'cores' for target cpu"),
        ({"model": "builtin:tiny-cnn", "target": "cpu", "target_options": {"threads": "many"}},
         "target option 'threads' must be int"),
        ({"model": "builtin:tiny-llama", "example": {"tokens": 0}}, "example.tokens"),
        ({"model": "builtin:tiny-cnn", "example": {"tokens": 4, "shape": [1]}},
         "give one of tokens, shape or inputs"),
        ({"model": "builtin:tiny-llama", "target": "tvm", "target_options": {"first_cache": 64}},
         "target option 'first_cache' applies to generation artifacts only"),
        ({"model": "builtin:tiny-llama", "target": "tvm", "generate": {},
          "target_options": {"prefill_chunk": 0}}, "'prefill_chunk' must be a positive"),
    ],
)
def test_invalid_configs_name_the_problem(data, message):
    with pytest.raises(ConfigError) as info:
        validate_config(data)
    text = str(info.value)
    assert message in text
    assert "\n" not in text


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config_file(tmp_path / "nope.yaml")


def test_unreadable_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_config_file(tmp_path)  # a directory cannot be read as a file


def test_yaml_syntax_error_names_line(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("model: builtin:tiny-cnn\npasses: [fold_bn\ntarget: cpu\n")
    with pytest.raises(ConfigError, match=r"YAML syntax error at line \d+"):
        load_config_file(path)


def test_empty_and_non_mapping_files(tmp_path):
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    with pytest.raises(ConfigError, match="empty"):
        load_config_file(empty)
    listing = tmp_path / "list.yaml"
    listing.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="mapping"):
        resolve_config(listing)


def test_pass_flag_parsing():
    assert parse_pass_flag("fold_bn") == {"name": "fold_bn", "params": {}}
    assert parse_pass_flag("prune:ratio=0.25,steps=200,method=pat,deep=true") == {
        "name": "prune", "params": {"ratio": 0.25, "steps": 200, "method": "pat", "deep": True}}
    with pytest.raises(ConfigError, match="not key=value"):
        parse_pass_flag("fold_bn:into")


def test_verification_tolerance_is_the_loosest_of_model_and_passes():
    from types import SimpleNamespace

    from ember.compiler.api import _tolerance, _with_reference_noise
    from ember.compiler.pipeline import PassRecord
    from ember.runtime.compare import Tolerance

    config = validate_config({"model": "builtin:tiny-cnn", "passes": [{"sfc": {"bits": 8}}]})
    records = [PassRecord("sfc", {}, True, {}, 0.0)]
    deep = SimpleNamespace(tolerance=Tolerance(atol=3e-4, rtol=2e-4))
    assert _tolerance(config, deep, records) == Tolerance(atol=3e-4, rtol=2e-4)
    loose = SimpleNamespace(tolerance=Tolerance(atol=1e-5, rtol=1e-5))
    assert _tolerance(config, loose, records) == Tolerance(atol=1e-4, rtol=1e-4)
    unchanged = [PassRecord("sfc", {}, False, {}, 0.0)]
    assert _tolerance(config, deep, unchanged) == deep.tolerance
    # the fp32 reference's own error raises atol (x8), unless the user set atol
    assert _with_reference_noise(deep.tolerance, 5e-4, config).atol == pytest.approx(4e-3)
    assert _with_reference_noise(deep.tolerance, 1e-5, config) == deep.tolerance
    pinned = validate_config({"model": "builtin:tiny-cnn", "verify": {"atol": 1e-4}})
    assert _with_reference_noise(deep.tolerance, 5e-4, pinned) == deep.tolerance


def test_reference_error_measures_fp32_rounding():
    import numpy as np
    import torch

    from ember.compiler.reference_noise import reference_error

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.Linear(64, 4)).eval()
    x = {"x": (np.random.default_rng(0).standard_normal((2, 64)) * 1e4).astype(np.float32)}
    with torch.no_grad():
        reference = {"y": model(torch.from_numpy(x["x"])).numpy()}
    error = reference_error(model, x, reference)
    assert 0 < error < 1e-2 * np.abs(reference["y"]).max()
    assert reference_error(lambda *a: 1 / 0, x, reference) is None
