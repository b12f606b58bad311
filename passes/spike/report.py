"""Spiking operation count (the paper's ACE), bits and an energy estimate (design: spike.md §8).

Per token, a SpikeLinear with d_out outputs costs

    multi-level activations:  d_out (|NS| + T_s |S|) MACs     (a-bit spike x integer weight)
    ternary weights:          d_out Σ_j T_j accumulates (ACs)  (one add/sub per weight plane)

against d_out d_in fp32 MACs for the float layer; `ratio_to_uniform` divides by the count
the same layer has with one step everywhere (the spec's "1 + p (T_s - 1)").

Energy is an estimate at 45 nm (Horowitz, ISSCC 2014): fp32 MAC 4.6 pJ, fp32 add 0.9 pJ;
an a-bit spike x integer weight MAC costed as an int8 multiply plus an int32 add, 0.3 pJ; a
ternary add/sub as an int32 add, 0.1 pJ with integer activations, or an fp32 add with float
ones; a weight-only integer layer with float activations as an fp32 MAC. Not measured.
"""

from __future__ import annotations

import math
from typing import Any

from torch import nn

from ember.passes.spike.linear import SpikeLinear

PJ = {"fp32_mac": 4.6, "fp32_add": 0.9, "int_mac": 0.3, "int_add": 0.1}
ENERGY_MODEL = ("estimate: 45 nm (Horowitz, ISSCC 2014): fp32 MAC 4.6 pJ, fp32 add 0.9 pJ, "
                "spike x int weight MAC 0.3 pJ (int8 mult + int32 add), ternary add 0.1 pJ")


def layer_counts(layer: SpikeLinear) -> dict[str, Any]:
    d_in, d_out = layer.in_features, layer.out_features
    salient = int(layer.salient_idx.numel())
    if layer.weight_grid == "ternary":
        extra = int(layer.salient_weight_columns.numel()) * (layer.steps - 1)
        ops, kind = d_out * (d_in + extra), "ac"
        energy = PJ["int_add" if layer.a_bits else "fp32_add"]
    else:
        ops, kind = d_out * (d_in + salient * (layer.steps - 1)), "mac"
        energy = PJ["int_mac" if layer.a_bits else "fp32_mac"]
    act_bits = (layer.a_bits * (d_in + salient * (layer.steps - 1)) / d_in
                if layer.a_bits else 32.0)
    return {"in": d_in, "out": d_out, "kind": kind, "ops": ops, "uniform_ops": d_out * d_in,
            "fp32_macs": d_out * d_in, "activation_bits": act_bits,
            "weight_bits": code_bits(layer), "energy_pj": ops * energy}


def code_bits(layer: SpikeLinear) -> int:
    """Bits that hold the layer's weight codes: ceil(log2(2 max|q| + 1)) (4 for int4,
    2 for ternary with one step, 3 with two)."""
    largest = max(int(t.abs().max().item()) for t in (layer.plain_t, layer.salient_t)
                  if t.numel())
    return math.ceil(math.log2(2 * largest + 1))


def spike_report(model: nn.Module) -> dict[str, Any] | None:
    """Totals per token over every SpikeLinear of `model`, or None when it has none."""
    layers = {name: layer_counts(m) for name, m in model.named_modules()
              if isinstance(m, SpikeLinear)}
    if not layers:
        return None
    ops = sum(v["ops"] for v in layers.values())
    uniform = sum(v["uniform_ops"] for v in layers.values())
    fp32_macs = sum(v["fp32_macs"] for v in layers.values())
    energy = sum(v["energy_pj"] for v in layers.values())
    weights = sum(v["in"] * v["out"] for v in layers.values())
    act_bits = sum(v["activation_bits"] * v["in"] * v["out"] for v in layers.values()) / weights
    weight_bits = sum(v["weight_bits"] * v["in"] * v["out"] for v in layers.values()) / weights
    macs = sum(v["ops"] for v in layers.values() if v["kind"] == "mac")
    return {
        "per_token": {"spiking_ops": ops, "macs": macs, "acs": ops - macs,
                      "uniform_ops": uniform, "fp32_macs": fp32_macs},
        "ratio_to_uniform": ops / uniform,
        "activation_bits": act_bits,
        "weight_bits": weight_bits,
        "energy_uj_per_token": energy * 1e-6,
        "fp32_energy_uj_per_token": fp32_macs * PJ["fp32_mac"] * 1e-6,
        "energy_model": ENERGY_MODEL,
        "layers": len(layers),
    }
