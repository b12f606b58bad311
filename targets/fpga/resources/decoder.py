"""Resource-model work of the decoder layers (targets/fpga/integer/decoder.py), per sample of T
tokens, in the terms of targets/fpga/resources/estimate.py:

- embedding: a table read per output (memory only);
- RMSNorm: T d squares (int8 x int8) and T d two-stage gain products (int8 x int16 x 21 bits,
  counted as two unpacked products each), and per token an integer division and square root
  (iterative: ~40 subtract steps of 42 bits each);
- RoPE: 2 T width products of int8 x int16 (unpacked);
- attention: per head the causal Q K^T and P V products, H hd T(T+1)/2 each (P V unpacked:
  16-bit probabilities), one score multiplier per (t, u) pair, and one division per pair for
  the probabilities (~32 subtract steps of 48 bits); the exp table in LUT RAM;
- SiLU x up: T ffn int8 products, a 256-entry SiLU table;
- spiking linear: no products; per token and output channel, one accumulation per spike and
  nonzero magnitude bit: one addition per ternary plane of the weight (1, or up to T_s on
  salient weight columns) or a - 1 (the spike's magnitude bits) for integer weights; salient
  activation channels spike T_s times. Counted at the worst case (no spike skipped).
"""

from __future__ import annotations

from typing import Any

from ember.targets.fpga.fixed import bits_for
from ember.targets.fpga.integer.decoder import (
    AttentionLayer,
    EmbeddingLayer,
    GatedSiluLayer,
    RMSNormLayer,
    RopeLayer,
    SpikeLayer,
)
from ember.targets.fpga.integer.layers import Layer
from ember.targets.fpga.resources.work import LayerWork

ROOT_STEPS, ROOT_BITS = 40, 42
DIVIDE_STEPS, DIVIDE_BITS = 32, 48


def decoder_layer_work(layer: Layer, net: Any, outputs: int, out_bits: int) -> LayerWork | None:
    """Decoder layers (targets/fpga/integer/decoder.py); None for the others."""
    if isinstance(layer, EmbeddingLayer):
        return LayerWork(layer.name, layer.op, 0, layer.table.shape[1], outputs, 0, [],
                         layer.table.size * 8, layer.table.size, out_bits)
    if isinstance(layer, RMSNormLayer):
        tokens = layer.out_shape[0]
        adders = [(2 * tokens * ROOT_STEPS, ROOT_BITS)]  # division, then square root
        return LayerWork(layer.name, layer.op, 3 * outputs, layer.out_shape[1], outputs, 48,
                         adders, layer.gain.size * 16, layer.gain.size, out_bits, packed=False)
    if isinstance(layer, RopeLayer):
        return LayerWork(layer.name, layer.op, 2 * outputs, layer.out_shape[1], outputs, 24,
                         [(outputs, 24)], layer.cos.size * 32, layer.cos.size, out_bits,
                         packed=False)
    if isinstance(layer, AttentionLayer):
        return _attention(layer, outputs, out_bits)
    if isinstance(layer, GatedSiluLayer):
        return LayerWork(layer.name, layer.op, outputs, outputs, outputs, 16, [], 256 * 8, 1,
                         out_bits)
    if isinstance(layer, SpikeLayer):
        return _spike(layer, outputs, out_bits)
    return None


def _attention(layer: AttentionLayer, outputs: int, out_bits: int) -> LayerWork:
    t, width = layer.out_shape
    hd = width // layer.heads
    pairs = layer.heads * t * (t + 1) // 2
    products = 2 * pairs * hd + pairs  # Q K^T, P V, the score multiplier
    adders = [(pairs * DIVIDE_STEPS, DIVIDE_BITS), (pairs, 32)]  # probabilities, row max
    return LayerWork(layer.name, layer.op, products, hd * layer.heads, outputs, 32, adders,
                     256 * 16, 1, out_bits, packed=False)


def _spike(layer: SpikeLayer, outputs: int, out_bits: int) -> LayerWork:
    k, c = layer.weight.shape
    tokens = layer.out_shape[0]
    planes = int(abs(layer.weight.astype(int)).max(initial=1))  # ternary: T_s planes at most
    per_pair = planes if layer.ternary else layer.spike_bits - 1
    spikes = (c - len(layer.salient)) + layer.steps * len(layer.salient)  # per token
    work = tokens * k * spikes * per_pair
    bits = bits_for(c * layer.steps * 127 * 127)
    weight_bits = bits_for(planes)  # w_bits codes; ternary planes: 2 bits, 3 with T_s = 2
    return LayerWork(layer.name, layer.op, 0, k * c, outputs, bits + 8, [],
                     layer.weight.size * weight_bits, layer.weight.size, out_bits,
                     work_adds=work, work_bits=bits)
