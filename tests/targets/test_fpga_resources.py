"""The resource model's arithmetic, checked by hand against its documented rules."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
import torch
from torch import nn

from ember.passes.contract import PassContext
from ember.passes.sfc.lower import SFCLowering
from ember.sfc_algorithms import algorithm
from ember.targets.fpga.devices import BRAM_BITS, DEVICES, device
from ember.targets.fpga.hls.expr import matrix_additions, row_additions, row_expression
from ember.targets.fpga.integer.sfc import integer_matrices
from ember.targets.fpga.resources.estimate import (
    BUDGET,
    CONTROL_LUT,
    DEPTH,
    estimate_layer,
    layer_work,
    plan,
)
from tests.targets.fpga_helpers import images, lowered


def _conv_net(sfc: bool, size: int = 12):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)).eval()
    if sfc:
        model = SFCLowering()(model, PassContext(
            example_inputs={"x": torch.zeros(1, 16, size, size)})).model
    x = images((16, size, size), count=16)
    return lowered(model, x)


def test_direct_conv_work_and_dsps():
    net = _conv_net(False)
    conv = net.layers[0]
    work = layer_work(conv, net)
    assert work.products == 12 * 12 * 32 * 16 * 9
    est = estimate_layer(work, 64, device("zu9eg"))
    assert est.cycles == math.ceil(work.products / 64) + DEPTH
    # 64 lanes, two int8 products per DSP48E2, plus the requantizer lanes
    requant = math.ceil(work.outputs / (est.cycles - DEPTH))
    assert 16 <= work.requant_bits <= 24  # |acc| <= 16 * 9 * 127^2 + |bias|
    assert est.dsp == 32 + requant
    artix = estimate_layer(work, 64, device("artix7-100t"))
    assert artix.dsp == 64 + requant


def test_sfc_needs_3_68x_fewer_multipliers_per_tile_at_equal_throughput():
    net = _conv_net(True)  # 12 x 12: 2 x 2 tiles of 6 x 6, no padding waste
    sfc = net.layers[0]
    work = layer_work(sfc, net)
    assert work.products == 4 * 88 * 16 * 32
    assert work.direct_products == 12 * 12 * 9 * 16 * 32
    est = estimate_layer(work, 256, device("zu9eg"))
    assert est.sfc["product_ratio"] == pytest.approx(324 / 88)  # 3.68
    busy = est.cycles - DEPTH
    assert est.sfc["direct_product_dsp"] == math.ceil(math.ceil(work.direct_products / busy) / 2)
    assert est.sfc["dsp_ratio"] == pytest.approx(3.68, abs=0.02)
    assert est.sfc["transform_lut"] > 0 and est.lut > CONTROL_LUT


def test_sfc_transform_additions_are_counted_from_the_matrices():
    alg = algorithm("sfc6_6x6", "symbolic")
    s, slot_map, unslot, du, lam, dl = integer_matrices(alg)
    assert (du, dl) == (3, 6)
    net = _conv_net(True)
    work = layer_work(net.layers[0], net)
    per_tile_in = (8 + 8) * matrix_additions(s) + matrix_additions(slot_map)
    per_tile_out = matrix_additions(unslot) + (8 + 6) * matrix_additions(lam)
    assert sum(c for c, _ in work.adders) == 4 * (16 * per_tile_in + 32 * per_tile_out)


def test_row_expressions_use_shifts_and_count_their_additions():
    row = np.array([6, 0, -3, 1, -1])
    text = row_expression(row, ["a", "b", "c", "d", "e"])
    assert "*" not in text and text == "((a << 2) + (a << 1)) - ((c << 1) + c) + d - e"
    assert row_additions(row) == len(re.findall(r" [+-] ", text)) == 5
    values = dict(a=5, b=7, c=-2, d=3, e=11)
    assert eval(text, {}, values) == 6 * 5 - 3 * -2 + 3 - 11


def test_weight_memories_are_as_wide_as_the_lanes_read():
    net = _conv_net(False)
    work = layer_work(net.layers[0], net)  # 32 x 16 x 9 = 4608 int8 weights
    buffers = 2 * math.ceil(work.activation_bits / BRAM_BITS)
    narrow = estimate_layer(work, 1, device("zu9eg"))  # packed 72 bits x 512 words: one BRAM
    assert narrow.bram36 == 1 + buffers and narrow.uram == 0
    wide = estimate_layer(work, 64, device("zu9eg"))  # 512 bits x 72 words: 8 columns
    assert wide.bram36 == 8 + buffers
    flat = estimate_layer(work, 4608, device("zu9eg"))  # one word: LUT RAM, no BRAM
    assert flat.bram36 == buffers and flat.lut > 4608 * 8
    big = layer_work(net.layers[0], net)
    big.weight_count, big.weight_bits = 4_000_000, 32_000_000
    on_u250 = estimate_layer(big, 72, device("u250"))  # 576 bits x 55556 words: 8 x 14 URAM
    assert on_u250.uram == 8 * 14 and on_u250.bram36 == buffers


@pytest.mark.parametrize("key", list(DEVICES))
def test_folding_fits_the_budget(key):
    net = _conv_net(True, size=24)
    dev = device(key)
    result = plan(net, dev)
    totals = result["totals"]
    assert totals["dsp"] <= BUDGET * dev.dsp and totals["lut"] <= BUDGET * dev.lut
    assert result["latency_cycles"] == sum(layer["cycles"] for layer in result["layers"])
    assert result["latency_us"] == pytest.approx(result["latency_cycles"] / dev.clock_mhz)
    assert result["kind"].startswith("estimate")
    one_lane = plan(net, dev, fixed_lanes=1)
    assert result["interval_cycles"] < one_lane["interval_cycles"]  # folding bought speed
