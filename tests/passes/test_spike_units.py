"""Spike pass building blocks: neurons, quantizers, saliency, SpikeLinear against a numpy
integer reference, and its ONNX lowering on ONNX Runtime's integer kernels."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from ember.passes.spike.linear import SpikeLinear
from ember.passes.spike.neurons import burst, gif_step, ternary_planes
from ember.passes.spike.quantizers import gptq, round_to_grid, weight_scales
from ember.passes.spike.saliency import (
    GramCollector,
    activation_saliency,
    top_channels,
    weight_saliency,
)
from ember.spike_codes import amplitude, weight_steps


@pytest.mark.parametrize("a_bits,steps", [(4, 2), (4, 4), (2, 3), (8, 2)])
def test_burst_decomposition_is_exact_for_every_code(a_bits, steps):
    codes = torch.arange(0, steps * amplitude(a_bits) + 1, dtype=torch.float64)
    spikes = burst(codes, steps, a_bits)
    assert torch.equal(spikes.sum(0), codes)  # including the top code T_s * A
    assert spikes.max() <= amplitude(a_bits) and spikes.min() >= 0


def test_burst_refuses_codes_it_cannot_emit():
    # the reference code's top code 2^(a + log2 T) - 1 = 31 at a = 4, T = 2 (pitfall 1)
    with pytest.raises(ValueError):
        burst(torch.tensor([31.0]), 2, 4)


@pytest.mark.parametrize("steps", [1, 2, 4])
def test_ternary_planes_sum_to_the_code(steps):
    codes = torch.arange(-steps, steps + 1, dtype=torch.float64)
    planes = ternary_planes(codes, steps)
    assert torch.equal(planes.sum(0), codes)
    assert set(planes.unique().tolist()) <= {-1.0, 0.0, 1.0}
    # planes after the first are non-zero only where |q| >= tau (sparse)
    for tau in range(2, steps + 1):
        assert torch.equal(planes[tau - 1] != 0, codes.abs() >= tau)


def test_one_gif_step_is_the_uniform_quantizer():
    x = torch.linspace(-3.1, 5.3, 997, dtype=torch.float64)  # no ties
    delta, zero, levels = 0.37, 6.0, 15
    expected = torch.clamp(torch.round(x / delta) + zero, 0, levels)
    assert torch.equal(gif_step(x / delta + zero, levels), expected)


def test_activation_saliency_closed_form_equals_the_hook_statistic():
    torch.manual_seed(0)
    x = torch.randn(300, 24, dtype=torch.float64)
    w = torch.randn(16, 24, dtype=torch.float64)
    # the reference code's statistic: mean over tokens of x_j (x WᵀW)_j
    hook = (x * (x @ w.T @ w)).mean(dim=0)
    closed = activation_saliency(x.T @ x, 300, [w])
    assert torch.allclose(closed, hook, rtol=1e-12, atol=1e-12)


def test_shared_mask_score_is_the_sum_over_members():
    torch.manual_seed(1)
    x = torch.randn(200, 12, dtype=torch.float64)
    ws = [torch.randn(8, 12, dtype=torch.float64) for _ in range(3)]
    gram = x.T @ x
    shared = activation_saliency(gram, 200, ws)
    parts = sum(activation_saliency(gram, 200, [w]) for w in ws)
    stacked = activation_saliency(gram, 200, [torch.cat(ws)])
    assert torch.allclose(shared, parts) and torch.allclose(shared, stacked)


def test_activation_saliency_is_invariant_under_channel_smoothing():
    torch.manual_seed(2)
    x = torch.randn(100, 10, dtype=torch.float64)
    w = torch.randn(6, 10, dtype=torch.float64)
    s = torch.rand(10, dtype=torch.float64) + 0.5
    before = activation_saliency(x.T @ x, 100, [w])
    xs, ws = x / s, w * s
    assert torch.allclose(activation_saliency(xs.T @ xs, 100, [ws]), before)


def test_gram_collector_accumulates_over_calls():
    lin = torch.nn.Linear(5, 3)
    collector = GramCollector({"lin": lin})
    a, b = torch.randn(4, 5), torch.randn(2, 3, 5)
    lin(a)
    lin(b)
    collector.close()
    both = torch.cat([a, b.reshape(-1, 5)]).to(torch.float64)
    assert collector.tokens["lin"] == 10
    assert torch.allclose(collector.gram["lin"], both.T @ both)


def test_top_channels_takes_the_ceiling_count_and_is_signed():
    score = torch.tensor([-5.0, 1.0, 3.0, -1.0, 2.0, 0.0, 4.0, -2.0, 0.5, 6.0, -9.0])
    assert top_channels(score, 0.1).tolist() == [6, 9]  # ceil(1.1) = 2; -9 is never chosen


def test_gptq_beats_round_to_nearest_on_correlated_inputs():
    torch.manual_seed(3)
    mix = torch.randn(32, 32, dtype=torch.float64)
    x = torch.randn(2000, 32, dtype=torch.float64) @ mix  # correlated channels
    w = torch.randn(16, 32, dtype=torch.float64)
    scale = w.abs().amax(1) / 7
    limits = torch.full((32,), 7.0, dtype=torch.float64)
    rtn = round_to_grid(w, scale, limits)
    comp = gptq(w, x.T @ x, 2000, scale, limits)
    assert comp.abs().max() <= 7 and torch.equal(comp, comp.round())

    def err(q):
        return ((x @ (w - q * scale[:, None]).T) ** 2).mean()

    assert err(comp) < 0.8 * err(rtn)


def test_block_steps_are_each_blocks_own_range():
    torch.manual_seed(5)
    w = torch.randn(6, 64, dtype=torch.float64)
    w[2, 40] = 50.0  # one outlier: only its own block's step grows
    scale = weight_scales(w, "int", 4, group=16)
    assert scale.shape == (4, 6)
    assert scale[2, 2] == pytest.approx(50.0 / 7)
    assert scale[:, 2].tolist().count(scale[2, 2].item()) == 1
    steps = weight_steps(scale, 64)
    assert steps.shape == (6, 64) and torch.equal(steps[2, 32:48], scale[2, 2].expand(16))
    codes = round_to_grid(w, steps, torch.full((64,), 7.0, dtype=torch.float64))
    assert (w - codes * steps).abs().max() <= steps.max() / 2 + 1e-12
    assert torch.equal(weight_scales(w, "int", 4), w.abs().amax(1) / 7)  # group 0: per row


def test_gptq_with_block_steps_beats_round_to_nearest():
    torch.manual_seed(6)
    x = torch.randn(2000, 64, dtype=torch.float64) @ torch.randn(64, 64, dtype=torch.float64)
    w = torch.randn(16, 64, dtype=torch.float64)
    steps = weight_steps(weight_scales(w, "int", 4, group=32), 64)
    limits = torch.full((64,), 7.0, dtype=torch.float64)
    rtn = round_to_grid(w, steps, limits)
    comp = gptq(w, x.T @ x, 2000, steps, limits)
    assert comp.abs().max() <= 7 and torch.equal(comp, comp.round())

    def err(q):
        return ((x @ (w - q * steps).T) ** 2).mean()

    assert err(comp) < 0.8 * err(rtn)


def test_weight_saliency_prefers_columns_with_large_weights():
    torch.manual_seed(4)
    x = torch.randn(500, 8, dtype=torch.float64)
    w = torch.randn(4, 8, dtype=torch.float64)
    w[:, 5] *= 20
    assert int(torch.argmax(weight_saliency(w, x.T @ x, 500))) == 5


# --- SpikeLinear against a numpy integer reference ------------------------------------------

def numpy_reference(x, codes, scale, bias, salient, a_bits, steps, decoupled,
                    full_row_sums=False):
    """Integer semantics in numpy int64, written independently of the torch module."""
    x = x.astype(np.float32)
    top = 2 ** a_bits - 1
    plain = np.setdiff1d(np.arange(x.shape[-1]), salient)
    y = np.zeros(x.shape[:-1] + (codes.shape[0],), np.float32)
    for idx, group_top in ((plain, top), (np.asarray(salient, dtype=int), steps * top)):
        if idx.size == 0:
            continue
        part = x[..., idx]
        src = part if decoupled else x
        lo = np.minimum(src.min(-1, keepdims=True), np.float32(0))
        hi = np.maximum(src.max(-1, keepdims=True), np.float32(0))
        delta = np.maximum((hi - lo) / np.float32(group_top), np.float32(1e-8))
        zero = np.round(-lo / delta)
        q = np.clip(np.round(part / delta) + zero, 0, group_top).astype(np.int64)
        w = codes[:, idx].astype(np.int64)
        sums = (codes if full_row_sums else codes[:, idx]).astype(np.int64).sum(1)
        acc = q @ w.T - zero.astype(np.int64) * sums
        y = y + acc.astype(np.float32) * delta
    return y * scale + bias, acc


def _layer(decoupled=False, a_bits=4, steps=2, d_in=40, d_out=24, seed=0, salient=(1, 7, 30)):
    g = torch.Generator().manual_seed(seed)
    codes = torch.randint(-7, 8, (d_out, d_in), generator=g)
    scale = torch.rand(d_out, generator=g) * 0.02 + 0.001
    bias = torch.randn(d_out, generator=g)
    layer = SpikeLinear(codes, scale, bias, torch.tensor(salient, dtype=torch.long), a_bits,
                        steps, decoupled)
    return layer, codes.numpy(), scale.numpy(), bias.numpy()


@pytest.mark.parametrize("decoupled", [False, True])
@pytest.mark.parametrize("a_bits,steps", [(4, 2), (4, 4), (8, 2), (3, 1)])
def test_spike_linear_matches_the_numpy_integer_reference(decoupled, a_bits, steps):
    salient = (1, 7, 30) if steps > 1 else ()
    layer, codes, scale, bias = _layer(decoupled, a_bits, steps, salient=salient)
    x = torch.randn(3, 5, 40) * 2
    x[..., 7] *= 15  # an outlier channel, salient here
    expected, _ = numpy_reference(x.numpy(), codes, scale, bias, list(salient), a_bits, steps,
                                  decoupled)
    np.testing.assert_array_equal(layer(x).numpy(), expected)


def test_full_row_zero_point_correction_is_caught():
    layer, codes, scale, bias = _layer()
    x = torch.randn(4, 40) - 1.0  # negative minima: non-zero zero points
    wrong, _ = numpy_reference(x.numpy(), codes, scale, bias, [1, 7, 30], 4, 2, False,
                               full_row_sums=True)
    assert np.abs(layer(x).numpy() - wrong).max() > 1e-3


@given(st.integers(0, 2**31 - 1), st.sampled_from([(4, 2, False), (4, 2, True), (2, 4, True)]))
@settings(max_examples=25, deadline=None)
def test_exact_path_equals_fake_quantization(seed, config):
    a_bits, steps, decoupled = config
    layer, *_ = _layer(decoupled, a_bits, steps, seed=seed % 1000)
    x = torch.randn(6, 40, generator=torch.Generator().manual_seed(seed)) * 3
    exact = layer(x)
    layer.exact = False
    fake = layer(x)
    assert torch.allclose(exact, fake, rtol=1e-5, atol=1e-5)


def test_no_salient_channels_is_uniform_quantization():
    torch.manual_seed(5)
    layer, codes, scale, bias = _layer(salient=())
    x = torch.randn(8, 40)
    lo = torch.minimum(x.amin(-1, keepdim=True), torch.tensor(0.0))
    hi = torch.maximum(x.amax(-1, keepdim=True), torch.tensor(0.0))
    delta = (hi - lo) / 15
    zero = torch.round(-lo / delta)
    xq = delta * (torch.clamp(torch.round(x / delta) + zero, 0, 15) - zero)
    uniform = xq @ (torch.from_numpy(codes).float() * torch.from_numpy(scale)[:, None]).T
    assert torch.allclose(layer(x), uniform + torch.from_numpy(bias), atol=1e-5)


def test_float_activations_are_not_quantized():
    g = torch.Generator().manual_seed(6)
    codes = torch.randint(-1, 2, (8, 16), generator=g)
    scale = torch.rand(8, generator=g)
    layer = SpikeLinear(codes, scale, None, torch.empty(0, dtype=torch.long), 0, 1,
                        weight_grid="ternary")
    x = torch.randn(3, 16)
    assert torch.allclose(layer(x), x @ (codes.float() * scale[:, None]).T, atol=1e-6)


def test_masks_survive_save_and_load(tmp_path):
    layer, *_ = _layer()
    torch.save(layer.state_dict(), tmp_path / "layer.pt")
    fresh, *_ = _layer(seed=9, salient=(0, 2, 4))  # same shapes, other masks and codes
    fresh.load_state_dict(torch.load(tmp_path / "layer.pt"))
    assert fresh.salient_idx.tolist() == [1, 7, 30]
    assert torch.equal(fresh.codes(), layer.codes())


@pytest.mark.parametrize("a_bits,steps,decoupled", [(4, 2, False), (4, 2, True), (8, 2, False),
                                                    (8, 4, True), (4, 1, False)])
def test_onnx_lowering_runs_integer_kernels_bit_for_bit(a_bits, steps, decoupled):
    import onnxruntime as ort

    from ember.passes.spike.onnx_lowering import pack_low_bit_weights, translation_table

    layer, *_ = _layer(decoupled, a_bits, steps, d_in=96, d_out=64,
                       salient=(3, 10, 50, 90) if steps > 1 else ())
    x = torch.randn(2, 7, 96) * 2
    program = torch.onnx.export(layer.eval(), (x,), dynamo=True, verbose=False,
                                custom_translation_table=translation_table())
    model = program.model_proto
    pack_low_bit_weights(model)
    import onnx

    kinds = {i.data_type for i in model.graph.initializer}
    assert onnx.TensorProto.INT4 in kinds and onnx.TensorProto.INT8 not in kinds  # all packed
    ops = [node.op_type for node in model.graph.node]
    assert "MatMulInteger" in ops and "MatMul" not in ops
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    out = session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]
    np.testing.assert_array_equal(out, layer(x).numpy())


def test_weight_only_lowering_keeps_float_activations_exactly():
    import onnx
    import onnxruntime as ort

    from ember.compiler.export import export_onnx

    g = torch.Generator().manual_seed(8)
    codes = torch.randint(-2, 3, (48, 64), generator=g)
    layer = SpikeLinear(codes, torch.rand(48, generator=g), torch.randn(48, generator=g),
                        torch.empty(0, dtype=torch.long), 0, 2, weight_grid="ternary")
    x = torch.randn(3, 64)
    model = export_onnx(layer.eval(), {"x": x.numpy()}, ["y"], {})  # ember's exporter
    assert onnx.TensorProto.INT4 in {i.data_type for i in model.graph.initializer}
    assert "DequantizeLinear" not in {n.op_type for n in model.graph.node}
    assert onnx.TensorProto.INT8 not in {i.data_type for i in model.graph.initializer}
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    out = session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]
    np.testing.assert_allclose(out, layer(x).numpy(), rtol=1e-5, atol=1e-5)


def test_weights_exactly_fp16_are_stored_as_fp16_losslessly():
    import onnx
    import onnxruntime as ort
    from onnx import helper, numpy_helper

    from ember.passes.spike.onnx_lowering import pack_half_precision_weights, unpack_weights

    rng = np.random.default_rng(0)
    half = rng.standard_normal((300, 256)).astype(np.float16).astype(np.float32)
    full = rng.standard_normal((256, 300)).astype(np.float32)  # not exactly fp16
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "a"], ["h"]),
         helper.make_node("MatMul", ["h", "b"], ["y"])], "g",
        [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [2, 300])],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [2, 300])],
        [numpy_helper.from_array(half, "a"), numpy_helper.from_array(full, "b")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    x = rng.standard_normal((2, 300)).astype(np.float32)
    before = ort.InferenceSession(model.SerializeToString()).run(None, {"x": x})[0]
    assert pack_half_precision_weights(model) == 1
    kinds = {i.name: i.data_type for i in model.graph.initializer}
    assert kinds["a__fp16"] == onnx.TensorProto.FLOAT16 and kinds["b"] == onnx.TensorProto.FLOAT
    after = ort.InferenceSession(model.SerializeToString()).run(None, {"x": x})[0]
    np.testing.assert_array_equal(after, before)
    widened = unpack_weights(model)
    assert {i.data_type for i in widened.graph.initializer} == {onnx.TensorProto.FLOAT}
    assert "Cast" not in {n.op_type for n in widened.graph.node}
