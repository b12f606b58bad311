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


def test_block_wise_weight_steps_and_a_quantized_head():
    model, result = _spiked(a_bits=16, w_bits=4, w_group=32, weight_quant="gptq", lm_head=True)
    layers = [m for m in model.modules() if isinstance(m, SpikeLinear)]
    assert len(layers) == 2 * 7 + 1 and model.lm.lm_head in layers
    assert "lm_head" not in result.stats["kept_float"] and "lm_head" in result.stats["layers"]
    assert isinstance(model.lm.model.embed_tokens, torch.nn.Embedding)  # the input side stays
    for layer in layers:
        blocks = layer.in_features // 32
        assert layer.weight_group == 32 and layer.weight_scale.shape == (blocks,
                                                                       layer.out_features)
        codes = layer.codes().to(torch.float64).T.reshape(blocks, 32, -1)
        assert codes.abs().max() <= 7
        # GPTQ moves codes, but the block steps are each block's own max |w| / 7: a block's
        # largest code reaches 6 or 7 (never far below, as one step per row would give)
        assert codes.abs().amax(1).min() >= 6
    ids = torch.randint(0, 256, (1, 24), generator=torch.Generator().manual_seed(3))
    exact = model(ids)
    for layer in layers:
        layer.exact = False
    assert torch.allclose(exact, model(ids), atol=1e-4, rtol=1e-4)  # one weight function


def test_block_sizes_must_divide_every_layer():
    with pytest.raises(UnsupportedModelError, match="w_group=256 does not divide the 64 inputs"):
        SpikeQuantization(**CALIB, a_bits=16, w_group=256)(_model(), PassContext())


def test_non_language_models_are_declined():
    cnn = tiny_cnn("builtin:tiny-cnn", ExampleSpec(), seed=0).module
    with pytest.raises(UnsupportedModelError, match="causal language models"):
        SpikeQuantization(**CALIB)(cnn, PassContext())


@pytest.mark.parametrize("bad", [{"w_bits": 9}, {"a_bits": 12}, {"salient_frac": 1.0},
                                 {"weight_quant": "awq"}, {"kv": True},
                                 {"group_scales": "mixed"}, {"w_group": 48},
                                 {"w_group": 32, "a_bits": 8}, {"lm_head": "yes"},
                                 {"lm_head": True, "weight_quant": "ternary"}])
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


def test_weight_only_artifacts_run_matmul_nbits(tmp_path, capsys):
    """4-bit weight-only layers and head: MatMulNBits with int8 activation blocks (within the
    stated floor), with float blocks (the layer's own function), or the standard ops."""
    import onnx

    options = "a_bits=16,w_group=32,lm_head=true,data=random,calib_windows=4,calib_seq=32"
    errors = {}
    for kind in ("int8", "float", "standard"):
        out = tmp_path / kind
        code = main(["compile", "--model", "builtin:tiny-llama", "--pass", f"spike:{options}",
                     "--target-option", f"int4_products={kind}", "-o", str(out), "--quiet"])
        assert code == 0, capsys.readouterr().err
        manifest = json.loads((out / "manifest.json").read_text())
        ops = [n.op_type for n in onnx.load(str(out / "model.onnx")).graph.node]
        expected = 0 if kind == "standard" else 2 * 7 + 1
        assert ops.count("MatMulNBits") == expected
        assert manifest["target_info"]["int4_products"] == {"kind": kind,
                                                            "matmul_nbits": expected}
        errors[kind] = manifest["verification"]["outputs"]["logits"]["max_abs"]
    assert errors["float"] < 1e-5 and errors["standard"] < 1e-5
    assert 1e-4 < errors["int8"]  # the activations were rounded: the fast path was taken


@pytest.mark.parametrize(("target", "options", "message"), [
    ("fpga", "a_bits=16,w_group=32", "block-wise weight steps (spike w_group) have no integer"),
    ("gpu", "lm_head=true", "a quantized LM head (spike lm_head=true) has no kernel")])
def test_targets_without_the_kernel_decline_in_one_line(tmp_path, capsys, target, options,
                                                         message):
    code = main(["compile", "--model", "builtin:tiny-llama", "--pass",
                 f"spike:{options},data=random,calib_windows=4,calib_seq=32", "--target", target,
                 "-o", str(tmp_path / "x"), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "x").exists()


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
