"""Resource and latency estimates of an integer design on a device profile. Estimates from a
documented model, not synthesis results.

Per layer, with `lanes` MAC units working every cycle (the folding):

- cycles     = ceil(products / lanes) for MAC layers (loops pipelined at II = 1), ceil(outputs
               / lanes) for the others (lanes: outputs per cycle); + DEPTH cycles of fill.
- DSP        = ceil(lanes / int8_per_dsp) for the products (two per DSP48E2, WP486 packing;
               the accumulation runs in the DSP's post-adder) + one per requantization
               multiplier lane, two when the accumulator is wider than the DSP's input.
- LUT / FF   = n per n-bit adder (one LUT6 and one register per bit with the carry chain):
               SFC input transforms, slot maps and output transforms, counted from the very
               expressions the C++ holds (targets/fpga/hls/expr.py) and replicated to keep
               pace with the products; rounding/clamping adders of each requantizer lane;
               comparators of pooling; + CONTROL LUT/FF per layer (counters, FSM).
- BRAM       = a weight memory as wide as the weights the lanes read per cycle and as deep
               as the words that takes (`_memory`: 512 x 72 BRAM36, 4096 x 72 URAM where the
               device has it, LUT RAM when shallow); ping-pong activation buffers between
               layers.
- latency    = sum of the layers' cycles (each layer hands a whole image to the next);
  interval   = the slowest layer's cycles (layers overlap on consecutive images: DATAFLOW).

The folding search starts every layer at one lane and doubles the lanes of the slowest layer
while the design stays within BUDGET of the device's DSPs, LUTs, FFs and memory.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from ember.targets.fpga.devices import BRAM_BITS, Device
from ember.targets.fpga.fixed import bits_for
from ember.targets.fpga.hls.expr import matrix_additions, separable_additions
from ember.targets.fpga.integer.layers import (
    AddLayer,
    ClampLayer,
    ConvLayer,
    FlattenLayer,
    Layer,
    LinearLayer,
    PoolLayer,
)
from ember.targets.fpga.integer.sfc import SFCLayer
from ember.targets.fpga.lower.graph import IntNetwork
from ember.targets.fpga.resources.decoder import decoder_layer_work
from ember.targets.fpga.resources.work import LayerWork

DEPTH = 12  # pipeline fill per layer, cycles
CONTROL_LUT, CONTROL_FF = 150, 200
URAM_THRESHOLD = 16
ACC_BITS = 32
BUDGET = 0.8
MAX_LANES = 1 << 16


@dataclass
class LayerEstimate:
    name: str
    op: str
    lanes: int
    cycles: int
    products: int
    product_dsp: int  # DSPs of the products alone (0 for spiking and ternary layers)
    dsp: int
    lut: int
    ff: int
    bram36: int
    uram: int
    additions: int
    sfc: dict[str, Any] | None = None


def layer_work(layer: Layer, net: IntNetwork) -> LayerWork:
    outputs = net.tensors[layer.output].size
    out_bits = 8 * outputs
    decoder = decoder_layer_work(layer, net, outputs, out_bits)
    if decoder is not None:
        return decoder
    if isinstance(layer, SFCLayer):
        return _sfc_work(layer, outputs, out_bits)
    if isinstance(layer, ConvLayer):
        k, cg, kh, kw = layer.weight.shape
        bits = 0 if layer.requant.mult is None else _acc_bits(layer.weight)
        return LayerWork(layer.name, layer.op, outputs * cg * kh * kw, k * cg * kh * kw, outputs,
                         bits, [], layer.weight.size * 8, layer.weight.size, out_bits)
    if isinstance(layer, LinearLayer):
        k, c = layer.weight.shape
        bits = 0 if layer.requant.mult is None else _acc_bits(layer.weight)
        tokens = outputs // k
        return LayerWork(layer.name, layer.op, tokens * k * c, k * c, outputs, bits, [],
                         layer.weight.size * 8, layer.weight.size, out_bits)
    if isinstance(layer, PoolLayer):
        window = layer.kernel[0] * layer.kernel[1]
        bits = 8 if layer.kind == "max" else 8 + bits_for(window)
        return LayerWork(layer.name, layer.op, 0, layer.out_shape[0], outputs,
                         0 if layer.kind == "max" else bits, [(outputs * (window - 1), bits)],
                         0, 1, out_bits)
    if isinstance(layer, AddLayer):
        return LayerWork(layer.name, layer.op, 0, outputs, outputs, 0, [(outputs, 24)], 0, 1,
                         out_bits)
    if isinstance(layer, ClampLayer):
        return LayerWork(layer.name, layer.op, 0, outputs, outputs, 0, [(outputs, 8)], 0, 1,
                         out_bits)
    if isinstance(layer, FlattenLayer):  # wiring: the same buffer goes on
        return LayerWork(layer.name, layer.op, 0, 1, 0, 0, [], 0, 1, 0)
    raise TypeError(f"no resource model for {type(layer).__name__}")


def _sfc_work(layer: SFCLayer, outputs: int, out_bits: int) -> LayerWork:
    p, c, k = layer.weight.shape
    th, tw = layer.tiles
    tiles = th * tw
    tdom = bits_for(layer.transform_bound())
    wide = bits_for(layer.wide_bound())
    adders = [
        (tiles * c * separable_additions(layer.s), tdom),  # S T S^T
        (tiles * c * matrix_additions(layer.slot_map), tdom),  # slot map
        (tiles * k * matrix_additions(layer.unslot), wide),  # unslot (shift-add)
        (tiles * k * separable_additions(layer.lam), wide),  # Lam Z Lam^T (shift-add)
    ]
    _, ho, wo = layer.out_shape
    return LayerWork(layer.name, layer.op, tiles * p * c * k, p * c * k, outputs, wide, adders,
                     layer.weight.size * 8, layer.weight.size, out_bits,
                     direct_products=ho * wo * k * c * 9, algorithm=layer.algorithm)


def _acc_bits(weight) -> int:
    rows = abs(weight.reshape(weight.shape[0], -1).astype(int)).sum(axis=1).max()
    return bits_for(int(rows) * 127)


def estimate_layer(work: LayerWork, lanes: int, dev: Device) -> LayerEstimate:
    cycles = math.ceil((work.products or work.work_adds or work.outputs) / lanes) + DEPTH
    busy = max(cycles - DEPTH, 1)
    pack = dev.int8_per_dsp if work.packed else 1
    product_dsp = math.ceil(lanes / pack) if work.products else 0
    dsp = product_dsp
    lut, ff = CONTROL_LUT, CONTROL_FF
    additions = work.work_adds
    if work.work_adds:  # adder lanes instead of multipliers
        lut += lanes * work.work_bits
        ff += lanes * work.work_bits
    for count, bits in work.adders:  # adder networks sized to keep pace
        units = math.ceil(count / busy)
        lut += units * bits
        ff += units * bits
        additions += count
    if work.requant_bits:
        rq_lanes = math.ceil(work.outputs / busy)
        dsp += rq_lanes * (1 if work.requant_bits <= dev.multiplier_width else 2)
        lut += rq_lanes * 2 * work.requant_bits  # rounding adder and clamp
        ff += rq_lanes * 2 * work.requant_bits
    ff += lanes * 16  # operand registers of the MAC lanes
    bram, uram, lutram = _memory(work, lanes, dev)
    lut += lutram
    sfc = _sfc_comparison(work, cycles, busy, dev) if work.direct_products else None
    return LayerEstimate(work.name, work.op, lanes, cycles, work.products, product_dsp, dsp, lut,
                         ff, bram, uram, additions, sfc)


def _memory(work: LayerWork, lanes: int, dev: Device) -> tuple[int, int, int]:
    """(BRAM36, URAM, LUTs used as RAM) for the weights and the output buffer.

    The lanes read `min(lanes, count)` weights per cycle: a memory that many weights wide (at
    least one 72-bit word, weights packed into it) and total bits / width words deep. It
    takes ceil(width / 72) x ceil(depth / 512) BRAM36 (each 512 x 72 in simple dual port), or
    ceil(width / 72) x ceil(depth / 4096) URAM (4096 x 72) on devices that have it where
    that replaces at least URAM_THRESHOLD BRAMs, or width x ceil(depth / 64) LUTs as LUT RAM
    when depth <= 64.
    """
    bram = uram = lutram = 0
    if work.weight_bits:
        per_cycle = min(lanes, work.weight_count)
        width = min(max(per_cycle * work.weight_bits // work.weight_count, 72),
                    work.weight_bits)
        depth = math.ceil(work.weight_bits / width)
        columns = math.ceil(width / 72)
        if depth <= 64:
            lutram += width * math.ceil(depth / 64)
        elif dev.uram and columns * math.ceil(depth / 512) >= URAM_THRESHOLD:
            uram += columns * math.ceil(depth / 4096)
        else:
            bram += columns * math.ceil(depth / 512)
    if work.activation_bits:  # ping-pong buffer
        bram += 2 * math.ceil(work.activation_bits / BRAM_BITS)
    return bram, uram, lutram


def _sfc_comparison(work: LayerWork, cycles: int, busy: int, dev: Device) -> dict[str, Any]:
    """The direct convolution at the same throughput (same cycles): its MAC lanes and DSPs
    against this layer's, and the transform adders SFC pays for them."""
    direct_lanes = math.ceil(work.direct_products / busy)
    sfc_lanes = math.ceil(work.products / busy)
    direct_dsp = math.ceil(direct_lanes / dev.int8_per_dsp)
    sfc_dsp = math.ceil(sfc_lanes / dev.int8_per_dsp)
    return {"algorithm": work.algorithm, "direct_products": work.direct_products,
            "products": work.products,
            "product_ratio": work.direct_products / work.products,
            "cycles": cycles, "direct_product_dsp": direct_dsp, "product_dsp": sfc_dsp,
            "dsp_ratio": direct_dsp / max(sfc_dsp, 1),
            "transform_additions": sum(c for c, _ in work.adders),
            "transform_lut": sum(math.ceil(c / busy) * b for c, b in work.adders)}


def plan(net: IntNetwork, dev: Device, fixed_lanes: int | None = None) -> dict[str, Any]:
    """Choose each MAC layer's lanes for `dev` and return the design's estimate."""
    works = [layer_work(layer, net) for layer in net.layers]
    lanes = {w.name: min(fixed_lanes or 1, w.max_lanes) for w in works}
    if fixed_lanes is None:
        _fold(works, lanes, dev)
    layers = [estimate_layer(w, lanes[w.name], dev) for w in works]
    return _summary(layers, dev, lanes)


def _fold(works: list[LayerWork], lanes: dict[str, int], dev: Device) -> None:
    """Double the slowest MAC layer's lanes while the design fits BUDGET of the device."""
    while True:
        estimates = {w.name: estimate_layer(w, lanes[w.name], dev) for w in works}
        slowest = max(works, key=lambda w: estimates[w.name].cycles)
        if lanes[slowest.name] >= min(slowest.max_lanes, MAX_LANES):
            return
        trial = dict(lanes)
        trial[slowest.name] = min(lanes[slowest.name] * 2, slowest.max_lanes)
        if not _fits([estimate_layer(w, trial[w.name], dev) for w in works], dev):
            return
        lanes.update(trial)


def _fits(layers: list[LayerEstimate], dev: Device) -> bool:
    totals = _totals(layers)
    return (totals["dsp"] <= BUDGET * dev.dsp and totals["lut"] <= BUDGET * dev.lut
            and totals["ff"] <= BUDGET * dev.ff and totals["bram36"] <= BUDGET * dev.bram36
            and totals["uram"] <= BUDGET * max(dev.uram, 0))


def _totals(layers: list[LayerEstimate]) -> dict[str, int]:
    return {key: sum(getattr(e, key) for e in layers)
            for key in ("dsp", "lut", "ff", "bram36", "uram", "products", "additions")}


def _summary(layers: list[LayerEstimate], dev: Device, lanes: dict[str, int]) -> dict[str, Any]:
    totals = _totals(layers)
    latency = sum(e.cycles for e in layers)
    interval = max(e.cycles for e in layers)
    capacity = {"dsp": dev.dsp, "lut": dev.lut, "ff": dev.ff, "bram36": dev.bram36,
                "uram": dev.uram}
    return {
        "kind": "estimate (analytical resource model, not synthesis results)",
        "device": dev.as_dict(),
        "totals": totals,
        "utilization": {k: (totals[k] / v if v else None) for k, v in capacity.items()},
        "fits": all(totals[k] <= v for k, v in capacity.items()),
        "latency_cycles": latency,
        "interval_cycles": interval,
        "latency_us": latency / dev.clock_mhz,
        "throughput_per_s": dev.clock_mhz * 1e6 / interval,
        "clock_mhz": dev.clock_mhz,
        "lanes": lanes,
        "layers": [asdict(e) for e in layers],
    }
