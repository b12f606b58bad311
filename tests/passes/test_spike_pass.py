"""The spike pass on a tiny Llama (GQA): masks, counts, degenerate settings, declines, and
compiled artifacts that run the integer semantics."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from ember.compiler.config import ExampleSpec
from ember.compiler.models.tiny import tiny_cnn, tiny_llama
from ember.errors import UnsupportedModelError
from ember.passes.contract import PassContext
from ember.passes.spike.linear import SpikeLinear
from ember.passes.spike.quantize import SpikeQuantization
from ember.runtime import load
from ember.tools.cli.main import main

CALIB = {"data": "random", "calib_windows": 4, "calib_seq": 32}


def _model():
    return tiny_llama("builtin:tiny-llama", ExampleSpec(), seed=0).module


def _spiked(**options):
    model = _model()
    result = SpikeQuantization(**{**CALIB, **options})(model, PassContext())
    assert not any(isinstance(m, SpikeLinear) for m in model.modules())  # input untouched
    return result.model, result


def test_every_decoder_linear_spikes_with_ceil_p_d_salient_channels():
    model, result = _spiked(salient_frac=0.1, salient_steps=2)
    layers = [m for m in model.modules() if isinstance(m, SpikeLinear)]
    assert len(layers) == 2 * 7
    for layer in layers:
        assert layer.salient_idx.numel() == math.ceil(0.1 * layer.in_features)
    # q/k/v read one tensor and share one mask; so do gate/up
    attn = model.lm.model.layers[0].self_attn
    assert torch.equal(attn.q_proj.salient_idx, attn.k_proj.salient_idx)
    assert torch.equal(attn.q_proj.salient_idx, attn.v_proj.salient_idx)
    mlp = model.lm.model.layers[0].mlp
    assert torch.equal(mlp.gate_proj.salient_idx, mlp.up_proj.salient_idx)
    assert "lm_head" in result.stats["kept_float"]
    embedding = model.lm.model.embed_tokens.weight  # rounded to fp16 values, stored as fp16
    assert torch.equal(embedding, embedding.half().float())
    ace = result.stats["ace"]
    expected = sum(m.out_features * (m.in_features + m.salient_idx.numel()) for m in layers)
    assert ace["per_token"]["spiking_ops"] == expected
    assert ace["ratio_to_uniform"] == pytest.approx(expected / ace["per_token"]["uniform_ops"])


def test_second_run_is_not_modified():
    model, _ = _spiked()
    again = SpikeQuantization(**CALIB)(model, PassContext())
    assert not again.modified


def test_zero_fraction_is_uniform_quantization_and_random_is_reproducible():
    model, result = _spiked(salient_frac=0.0)
    assert all(m.salient_idx.numel() == 0 for m in model.modules() if isinstance(m, SpikeLinear))
    assert result.stats["ace"]["ratio_to_uniform"] == 1.0
    first, _ = _spiked(saliency="random")
    second, _ = _spiked(saliency="random")
    masks = [m.salient_idx for m in first.modules() if isinstance(m, SpikeLinear)]
    again = [m.salient_idx for m in second.modules() if isinstance(m, SpikeLinear)]
    assert all(torch.equal(a, b) for a, b in zip(masks, again, strict=True))


def test_float_activations_with_ternary_weight_planes():
    model, result = _spiked(a_bits=16, weight_quant="ternary", salient_frac=0.1,
                            salient_steps=2)
    layers = [m for m in model.modules() if isinstance(m, SpikeLinear)]
    for layer in layers:
        codes = layer.codes()
        limits = torch.ones(layer.in_features)
        limits[layer.salient_weight_columns] = 2
        assert bool((codes.abs() <= limits).all())
        assert layer.salient_weight_columns.numel() == math.ceil(0.1 * layer.in_features)
    assert result.stats["ace"]["per_token"]["macs"] == 0  # additions only


def test_exact_model_equals_its_fake_quantized_twin():
    model, _ = _spiked(a_bits=4, salient_frac=0.1, weight_quant="gptq")
    ids = torch.randint(0, 256, (1, 24), generator=torch.Generator().manual_seed(3))
    exact = model(ids)
    for m in model.modules():
        if isinstance(m, SpikeLinear):
            m.exact = False
    fake = model(ids)
    assert torch.allclose(exact, fake, atol=2e-3, rtol=1e-3)


def test_non_language_models_are_declined():
    cnn = tiny_cnn("builtin:tiny-cnn", ExampleSpec(), seed=0).module
    with pytest.raises(UnsupportedModelError, match="causal language models"):
        SpikeQuantization(**CALIB)(cnn, PassContext())


@pytest.mark.parametrize("bad", [{"w_bits": 9}, {"a_bits": 12}, {"salient_frac": 1.0},
                                 {"weight_quant": "awq"}, {"kv": True},
                                 {"group_scales": "mixed"}])
def test_bad_options_say_what_is_wrong(bad):
    with pytest.raises(ValueError):
        SpikeQuantization(**bad)


def _compile(capsys, out, model="builtin:tiny-llama", options="data=random,calib_windows=4,"
             "calib_seq=32") -> tuple[int, str]:
    code = main(["compile", "--model", model, "--pass", f"spike:{options}", "--target", "cpu",
                 "-o", str(out), "--quiet"])
    return code, capsys.readouterr().err


def test_cli_compiles_a_verified_integer_artifact(tmp_path, capsys):
    import onnx

    out = tmp_path / "spiked"
    code, err = _compile(capsys, out)
    assert code == 0, err
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["verification"]["status"] == "passed"
    layers = manifest["verification"]["integer_layers"]
    assert layers["layers"] == layers["bit_exact"] == 2 * 7  # every layer, bit for bit
    assert manifest["passes"][0]["stats"]["ace"]["ratio_to_uniform"] > 1.0
    model = onnx.load(str(out / "model.onnx"))
    ops = {node.op_type for node in model.graph.node}
    assert "MatMulInteger" in ops
    int4 = [i for i in model.graph.initializer if i.data_type == onnx.TensorProto.INT4]
    assert len(int4) == 2 * 7 * 2  # plain and salient weights of every linear, packed
    # the runtime reproduces the reference outputs the torch module computed
    session = load(out)
    ref = np.load(out / "reference_io.npz")
    got = session.run({"input_ids": ref["input:input_ids"]})
    np.testing.assert_allclose(got["logits"], ref["output:logits"], atol=1e-4)


def test_cli_declines_a_cnn_with_exit_code_2(tmp_path, capsys):
    code, err = _compile(capsys, tmp_path / "x", model="builtin:tiny-cnn")
    assert code == 2
    assert "causal language models" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "x").exists()


def test_tvm_artifact_verifies_with_integer_products(tmp_path, capsys, tvm_available):
    from ember.targets.host import cpu_features

    out = tmp_path / "tvm"
    code = main(["compile", "--model", "builtin:tiny-llama", "--pass",
                 "spike:data=random,calib_windows=4,calib_seq=32", "--target", "tvm",
                 "--target-option", "tuning=false", "-o", str(out), "--quiet"])
    assert code == 0, capsys.readouterr().err
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["verification"]["status"] == "passed"
    if "avx512_vnni" in cpu_features():  # every MatMulInteger on the VNNI kernel
        assert manifest["target_info"]["schedule"]["int8_products_vnni"] == 2 * 7 * 2


def test_layer_check_finds_a_layer_that_differs():
    from ember.compiler.export import export_onnx
    from ember.compiler.verify_layers import check_integer_layers

    model, _ = _spiked()
    ids = np.random.default_rng(0).integers(0, 256, (1, 12)).astype(np.int64)
    onnx_model = export_onnx(model, {"input_ids": ids}, ["logits"], {})
    clean = check_integer_layers(onnx_model, model, {"input_ids": ids})
    assert clean["layers"] == clean["bit_exact"] == 14
    layer = model.lm.model.layers[1].mlp.up_proj
    layer.bias[3] += 1e-3  # the torch layer no longer computes what the graph does
    broken = check_integer_layers(onnx_model, model, {"input_ids": ids})
    assert broken["worst"] == "lm.model.layers.1.mlp.up_proj"
    assert broken["max_relative_error"] > broken["bound"]
