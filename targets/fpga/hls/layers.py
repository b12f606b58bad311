"""One C++ function per integer layer (targets/fpga/integer/layers.py, sfc.py), computing the
same integers as the numpy golden model for one image, with HLS pragmas for the layer's
folding: `lanes` parallel multipliers (an unrolled, array-partitioned reduction under a
pipelined loop). Weights are `static const` arrays in weights.h."""

from __future__ import annotations

import numpy as np

from ember.targets.fpga.hls.cpp import (
    array,
    ident,
    parallel_pragma,
    reduction_pragmas,
    signature,
)
from ember.targets.fpga.hls.expr import assignments, separable
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


def _store(layer: Layer, requant, index: str, acc: str) -> str:
    if requant.mult is None:
        return f"out[{index}] = {acc};"
    f = ident(layer.name)
    return (f"out[{index}] = requant({acc}, {f}_mult[k], {f}_shift[k], {requant.lo}, "
            f"{requant.hi});")


def _conv(layer: ConvLayer, in_types: list[str], out_type: str, lanes: int,
         in_shapes: list[tuple[int, ...]]):
    f = ident(layer.name)
    k, cg, kh, kw = layer.weight.shape
    _, ho, wo = layer.out_shape
    (sh, sw), (ph, pw), g = layer.stride, layer.padding, layer.groups
    c = cg * g
    h, w = _input_hw(layer, in_shapes[0], c)
    consts = [array("weight_t", f"{f}_w", layer.weight), array("acc_t", f"{f}_b", layer.bias)]
    consts += _requant_arrays(f, layer.requant)
    reduction = cg * kh * kw
    body = f"""{signature(layer, in_types, out_type, [c * h * w])} {{
#pragma HLS ARRAY_PARTITION variable={f}_w cyclic factor={min(lanes, layer.weight.size)}
  for (int oy = 0; oy < {ho}; oy++)
    for (int ox = 0; ox < {wo}; ox++)
      for (int k = 0; k < {k}; k++) {{
{parallel_pragma(lanes, reduction)}
        const int g = k / {k // g};
        acc_t acc = {f}_b[k];
        for (int r = 0; r < {reduction}; r++) {{
{reduction_pragmas(lanes, reduction)}
          const int ci = r / {kh * kw}, ky = r / {kw} % {kh}, kx = r % {kw};
          const int iy = oy * {sh} - {ph} + ky, ix = ox * {sw} - {pw} + kx;
          if (iy >= 0 && iy < {h} && ix >= 0 && ix < {w})
            acc += (acc_t)in0[((g * {cg} + ci) * {h} + iy) * {w} + ix] * {f}_w[k * {reduction} + r];
        }}
        {_store(layer, layer.requant, f"(k * {ho} + oy) * {wo} + ox", "acc")}
      }}
}}"""
    return consts, body


def _linear(layer: LinearLayer, in_types: list[str], out_type: str, lanes: int,
           in_shapes: list[tuple[int, ...]]):
    f = ident(layer.name)
    k, c = layer.weight.shape
    consts = [array("weight_t", f"{f}_w", layer.weight), array("acc_t", f"{f}_b", layer.bias)]
    consts += _requant_arrays(f, layer.requant)
    tokens = in_shapes[0][0] if len(in_shapes[0]) == 2 else 1  # (tokens, C): per token
    body = f"""{signature(layer, in_types, out_type, [tokens * c])} {{
#pragma HLS ARRAY_PARTITION variable={f}_w cyclic factor={min(lanes, layer.weight.size)}
  for (int t = 0; t < {tokens}; t++)
  for (int k = 0; k < {k}; k++) {{
{parallel_pragma(lanes, c)}
    acc_t acc = {f}_b[k];
    for (int c = 0; c < {c}; c++) {{
{reduction_pragmas(lanes, c)}
      acc += (acc_t)in0[t * {c} + c] * {f}_w[k * {c} + c];
    }}
    {_store(layer, layer.requant, f"t * {k} + k", "acc")}
  }}
}}"""
    return consts, body


def _sfc(layer: SFCLayer, in_types: list[str], out_type: str, lanes: int,
        in_shapes: list[tuple[int, ...]]):
    """Per tile: the additions-only input transform and slot map for every channel, the P
    int8 products per (channel, output channel), then alignment shifts and the
    additions-only output transform per output channel."""
    f = ident(layer.name)
    p, c, _ = layer.weight.shape
    th, tw = layer.tiles
    m = layer.m
    h, w = _input_hw(layer, in_shapes[0], c)
    consts = [array("weight_t", f"{f}_w", layer.weight),
              array("int", f"{f}_vshift", layer.slot_shift),
              array("int", f"{f}_align", layer.align),
              array("wide_t", f"{f}_b", layer.bias),
              array("int32_t", f"{f}_mult", layer.mult), array("int", f"{f}_shift", layer.shift)]
    body = f"""{signature(layer, in_types, out_type, [c * h * w])} {{
  // {layer.algorithm}: {m}x{m} output tiles, {p} products per tile and channel pair
#pragma HLS ARRAY_PARTITION variable={f}_w cyclic factor={min(lanes, layer.weight.size)}
  for (int ty = 0; ty < {th}; ty++)
    for (int tx = 0; tx < {tw}; tx++) {{
      const int oy0 = ty * {m}, ox0 = tx * {m};
{_sfc_slots(layer, f, h, w)}
{_sfc_products(layer, f, lanes)}
{_sfc_outputs(layer, f)}
    }}
}}"""
    return consts, body


def _sfc_slots(layer: SFCLayer, f: str, h: int, w: int) -> str:
    """vq[P][C]: each channel's L x L tile, S T S^T and the slot map (additions only), then
    each slot's power-of-two step."""
    p, c, _ = layer.weight.shape
    r, length = layer.s.shape
    ph, pw = layer.padding
    tile = [[f"t[{a}][{b}]" for b in range(length)] for a in range(length)]
    transform = separable("z", layer.s, tile, "tdom_t")
    transform += assignments("v", layer.slot_map, [f"z{q}" for q in range(r * r)], "tdom_t")
    lines = "\n        ".join(transform)
    return f"""      data_t vq[{p}][{c}];
#pragma HLS ARRAY_PARTITION variable=vq complete dim=1
      for (int c = 0; c < {c}; c++) {{
#pragma HLS PIPELINE II=1
        tdom_t t[{length}][{length}];
        for (int a = 0; a < {length}; a++)
          for (int b = 0; b < {length}; b++) {{
            const int iy = oy0 - {ph} + a, ix = ox0 - {pw} + b;
            const bool inside = iy >= 0 && iy < {h} && ix >= 0 && ix < {w};
            t[a][b] = inside ? (tdom_t)in0[(c * {h} + iy) * {w} + ix] : (tdom_t)0;
          }}
        {lines}
        const tdom_t v[{p}] = {{{", ".join(f"v{q}" for q in range(p))}}};
        for (int q = 0; q < {p}; q++) vq[q][c] = slot_round(v[q], {f}_vshift[q]);
      }}"""


def _sfc_products(layer: SFCLayer, f: str, lanes: int) -> str:
    """ms[P][K]: the int8 products summed over channels, aligned by shifts."""
    p, c, k = layer.weight.shape
    return f"""      wide_t ms[{p}][{k}];
      for (int q = 0; q < {p}; q++)
        for (int k = 0; k < {k}; k++) {{
{parallel_pragma(lanes, c)}
          acc_t acc = 0;
          for (int c = 0; c < {c}; c++) {{
{reduction_pragmas(lanes, c)}
            acc += (acc_t)vq[q][c] * {f}_w[(q * {c} + c) * {k} + k];
          }}
          ms[q][k] = (wide_t)acc << {f}_align[q * {k} + k];
        }}"""


def _sfc_outputs(layer: SFCLayer, f: str) -> str:
    """Per output channel: unslot and Lam Z Lam^T (shift-and-add), bias, requantized stores
    of the tile's pixels inside the map."""
    p, _, k = layer.weight.shape
    _, ho, wo = layer.out_shape
    m, r = layer.m, layer.s.shape[0]
    unslot = assignments("u", layer.unslot, [f"ms[{q}][k]" for q in range(p)], "wide_t")
    grid = [[f"u{i * r + j}" for j in range(r)] for i in range(r)]
    lines = "\n          ".join(unslot + separable("y", layer.lam, grid, "wide_t"))
    stores = "\n".join(
        f"        if (oy0 + {a} < {ho} && ox0 + {b} < {wo}) out[(k * {ho} + oy0 + {a}) * {wo} + "
        f"ox0 + {b}] = requant(y{a * m + b} + {f}_b[k], {f}_mult[k], {f}_shift[k], "
        f"{layer.lo}, 127);" for a in range(m) for b in range(m))
    return f"""      for (int k = 0; k < {k}; k++) {{
#pragma HLS PIPELINE II=1
          {lines}
{stores}
      }}"""


def _pool(layer: PoolLayer, in_types: list[str], out_type: str, lanes: int,
         in_shapes: list[tuple[int, ...]]):
    c, ho, wo = layer.out_shape
    (kh, kw), (sh, sw) = layer.kernel, layer.stride
    h, w = _input_hw(layer, in_shapes[0], c)
    if layer.kind == "max":
        init, step, final = "-128", "acc = v > acc ? v : acc;", "acc"
    else:
        init, step = "0", "acc += v;"
        final = f"requant(acc, {layer.mult}, {layer.shift}, -127, 127)"
    body = f"""{signature(layer, in_types, out_type, [c * h * w])} {{
  for (int c = 0; c < {c}; c++) {{
#pragma HLS UNROLL factor={lanes}
    for (int oy = 0; oy < {ho}; oy++)
      for (int ox = 0; ox < {wo}; ox++) {{
#pragma HLS PIPELINE II=1
        acc_t acc = {init};
        for (int ky = 0; ky < {kh}; ky++)
          for (int kx = 0; kx < {kw}; kx++) {{
            const acc_t v = in0[(c * {h} + oy * {sh} + ky) * {w} + ox * {sw} + kx];
            {step}
          }}
        out[(c * {ho} + oy) * {wo} + ox] = {final};
      }}
  }}
}}"""
    return [], body


def _add(layer: AddLayer, in_types: list[str], out_type: str, lanes: int,
        in_shapes: list[tuple[int, ...]]):
    n = int(np.prod(layer.out_shape))
    body = f"""{signature(layer, in_types, out_type, [n, n])} {{
  for (int i = 0; i < {n}; i++) {{
#pragma HLS PIPELINE II=1
#pragma HLS UNROLL factor={lanes}
    const wide_t s = (wide_t)in0[i] * {layer.mult_a} + (wide_t)in1[i] * {layer.mult_b};
    out[i] = clamp_int((s + ((wide_t)1 << {layer.shift - 1})) >> {layer.shift}, {layer.lo}, 127);
  }}
}}"""
    return [], body


def _clamp(layer: ClampLayer, in_types: list[str], out_type: str, lanes: int,
          in_shapes: list[tuple[int, ...]]):
    n = int(np.prod(layer.out_shape))
    body = f"""{signature(layer, in_types, out_type, [n])} {{
  for (int i = 0; i < {n}; i++) {{
#pragma HLS PIPELINE II=1
#pragma HLS UNROLL factor={lanes}
    out[i] = clamp_int(in0[i], {layer.lo}, {layer.hi});
  }}
}}"""
    return [], body


def _requant_arrays(f: str, requant) -> list[str]:
    if requant.mult is None:
        return []
    return [array("int32_t", f"{f}_mult", requant.mult), array("int", f"{f}_shift", requant.shift)]


def _input_hw(layer: Layer, shape: tuple[int, ...], channels: int) -> tuple[int, int]:
    if shape[0] != channels:
        raise ValueError(f"layer {layer.name}: input has {shape[0]} channels, expected {channels}")
    return shape[1], shape[2]


def _flatten(layer: FlattenLayer, in_types: list[str], out_type: str, lanes: int,
            in_shapes: list[tuple[int, ...]]):
    return [], ""  # the top function passes the same buffer on (C-order is already flat)


WRITERS = ((SFCLayer, _sfc), (ConvLayer, _conv), (LinearLayer, _linear), (PoolLayer, _pool),
           (AddLayer, _add), (ClampLayer, _clamp), (FlattenLayer, _flatten))
