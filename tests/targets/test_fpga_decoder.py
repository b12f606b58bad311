"""Llama-style decoders on the fpga target: the float trace the lowering calibrates on is the
transformers model, the integer layers match independent float computations within their
quantization, and the C simulation equals the golden model exactly (plain, spiking and
ternary linears)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from ember.compiler.config import ExampleSpec
from ember.compiler.models import load_model
from ember.passes import PASSES
from ember.passes.contract import PassContext
from ember.targets.fpga.devices import device
from ember.targets.fpga.integer.decoder import (
    NORM_BITS,
    PROB_BITS,
    AttentionLayer,
    RMSNormLayer,
    SpikeLayer,
)
from ember.targets.fpga.lower.decoder import float_trace, lower_causal_lm
from ember.targets.fpga.resources.estimate import estimate_layer, layer_work
from ember.targets.module_reader import causal_lm
from tests.targets.fpga_helpers import needs_gxx, simulate


def _tiny(passes: dict | None = None):
    loaded = load_model("builtin:tiny-llama", ExampleSpec(tokens=12), 0)
    ids = loaded.inputs["input_ids"]
    model = loaded.module
    if passes is not None:
        ctx = PassContext(example_inputs={"input_ids": torch.from_numpy(ids)})
        model = PASSES["spike"](**passes)(model, ctx).model
    calibration = np.concatenate([ids, np.random.default_rng(1).integers(0, 256, (5, 12))])
    return model, ids, calibration


def test_float_trace_is_the_transformers_model():
    model, ids, _ = _tiny()
    with torch.no_grad():
        expected = model(torch.from_numpy(ids)).numpy()
        traced = float_trace(causal_lm(model), torch.from_numpy(ids))["logits"].numpy()
    np.testing.assert_allclose(traced, expected, atol=1e-5, rtol=1e-5)


SPIKES = {"plain int8": None,
          "w4a4 salient": dict(w_bits=4, a_bits=4, salient_frac=0.1, salient_steps=2,
                               data="random"),
          "ternary": dict(weight_quant="ternary", w_bits=2, a_bits=8, data="random")}


@needs_gxx
@pytest.mark.parametrize("case", list(SPIKES))
def test_decoder_csim_equals_golden(case, tmp_path):
    model, ids, calibration = _tiny(SPIKES[case])
    net = lower_causal_lm(causal_lm(model), calibration)
    spiking = [layer for layer in net.layers if isinstance(layer, SpikeLayer)]
    assert len(spiking) == (0 if SPIKES[case] is None else 14)
    out, golden = simulate(net, calibration, tmp_path)
    np.testing.assert_array_equal(out, golden)
    with torch.no_grad():
        expected = model(torch.from_numpy(ids)).numpy()
    got = net.golden(ids)
    assert np.abs(got - expected).max() < 0.25 * np.ptp(expected)
    assert (got.argmax(-1) == expected.argmax(-1)).mean() >= 0.75


def test_rmsnorm_inverse_root_is_floor_of_the_real_one():
    layer = RMSNormLayer("n", "RMSNorm", ["x"], "y", (3, 4), gain=np.ones(4, np.int16), eps=0)
    x = np.array([[[1, 2, 3, 4], [0, 0, 0, 0], [127, -127, 127, -127]]])
    r = np.maximum((x.astype(float) ** 2).sum(-1), 1)
    expected = np.floor(2**NORM_BITS / np.sqrt(r))
    np.testing.assert_array_equal(layer.inverse_root(x), expected)


def test_attention_probabilities_follow_the_causal_softmax():
    rng = np.random.default_rng(5)
    q, k = rng.integers(-127, 128, (1, 6, 16)), rng.integers(-127, 128, (1, 6, 8))
    scale = 0.01  # s_q s_k / sqrt(hd) per integer score unit
    from ember.targets.fpga.fixed import fixed_point
    from ember.targets.fpga.integer.decoder import EXP_STEP

    mult, shift = fixed_point(scale / EXP_STEP)
    layer = AttentionLayer("a", "Attention", ["q", "k", "v"], "y", (6, 16), heads=2,
                           kv_heads=1, score_mult=int(mult[0]), score_shift=int(shift[0]))
    p = layer.probabilities(q, k) / 2**PROB_BITS
    qh = q.reshape(1, 6, 2, 8).transpose(0, 2, 1, 3).astype(float)
    kh = k.reshape(1, 6, 1, 8).transpose(0, 2, 1, 3).astype(float)
    scores = qh @ kh.transpose(0, 1, 3, 2) * scale
    scores = np.where(np.tril(np.ones((6, 6), bool)), scores, -np.inf)
    soft = np.exp(scores - scores.max(-1, keepdims=True))
    soft /= soft.sum(-1, keepdims=True)
    # the exp table steps by 1/16: each weight within ~3% of its float value, rows sum to 1
    assert np.abs(p - soft).max() < 0.03
    np.testing.assert_allclose(p.sum(-1), 1.0, atol=6 / 2**PROB_BITS)
    assert np.all(np.triu(p[0, 0], 1) == 0)


def test_spiking_layers_use_no_product_dsps():
    model, _, calibration = _tiny(SPIKES["w4a4 salient"])
    net = lower_causal_lm(causal_lm(model), calibration)
    layer = next(layer for layer in net.layers if isinstance(layer, SpikeLayer))
    work = layer_work(layer, net)
    k, c = layer.weight.shape
    spikes = (c - len(layer.salient)) + layer.steps * len(layer.salient)
    assert work.products == 0 and work.work_adds == 12 * k * spikes * (layer.spike_bits - 1)
    estimate = estimate_layer(work, 64, device("u250"))
    assert estimate.product_dsp == 0 and estimate.cycles == math.ceil(work.work_adds / 64) + 12
