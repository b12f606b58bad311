"""C++ for the decoder layers of targets/fpga/integer/decoder.py, one function per layer, the
same integers as the numpy golden model for one sample of T tokens. Divisions and square
roots are integer ones (floor), multiplications by constants small (RoPE tables, requant
multipliers); spiking layers accumulate shifted weights spike by spike, without a
multiplier."""

from __future__ import annotations

import numpy as np

from ember.targets.fpga.hls.cpp import (
    array,
    ident,
    parallel_pragma,
    reduction_pragmas,
    signature,
)
from ember.targets.fpga.integer.decoder import (
    EXP_TABLE,
    NORM_BITS,
    PROB_BITS,
    AttentionLayer,
    EmbeddingLayer,
    GatedSiluLayer,
    RMSNormLayer,
    RopeLayer,
    SpikeLayer,
)


def _embedding(layer: EmbeddingLayer, in_types, out_type, lanes, in_shapes):
    f = ident(layer.name)
    vocab, d = layer.table.shape
    t = layer.out_shape[0]
    body = f"""{signature(layer, in_types, out_type, [t])} {{
  for (int t = 0; t < {t}; t++) {{
    const int id = in0[t];
    const bool inside = id >= 0 && id < {vocab};
    for (int c = 0; c < {d}; c++) {{
#pragma HLS PIPELINE II=1
#pragma HLS UNROLL factor={lanes}
      out[t * {d} + c] = inside ? {f}_table[id * {d} + c] : (data_t)0;
    }}
  }}
}}"""
    return [array("data_t", f"{f}_table", layer.table)], body


def _rmsnorm(layer: RMSNormLayer, in_types, out_type, lanes, in_shapes):
    f = ident(layer.name)
    t, d = layer.out_shape
    body = f"""{signature(layer, in_types, out_type, [t * d])} {{
  for (int t = 0; t < {t}; t++) {{
    wide_t r = {layer.eps};
    for (int c = 0; c < {d}; c++) {{
#pragma HLS PIPELINE II=1
#pragma HLS UNROLL factor={lanes}
      r += (wide_t)in0[t * {d} + c] * in0[t * {d} + c];
    }}
    if (r < 1) r = 1;
    // inv = floor(2^F / sqrt(r)) = isqrt(floor(2^(2F) / r))
    const wide_t inv = (wide_t)isqrt64(((uint64_t)1 << {2 * NORM_BITS}) / (uint64_t)r);
    for (int c = 0; c < {d}; c++) {{
#pragma HLS PIPELINE II=1
#pragma HLS UNROLL factor={lanes}
      const wide_t scaled = (wide_t)in0[t * {d} + c] * {f}_gain[c] * inv;
      out[t * {d} + c] = requant(scaled, {layer.mult}, {layer.shift}, -127, 127);
    }}
  }}
}}"""
    return [array("int16_t", f"{f}_gain", layer.gain)], body


def _rope(layer: RopeLayer, in_types, out_type, lanes, in_shapes):
    f = ident(layer.name)
    t, width = layer.out_shape
    hd = width // layer.heads
    half = hd // 2
    body = f"""{signature(layer, in_types, out_type, [t * width])} {{
  for (int t = 0; t < {t}; t++)
    for (int h = 0; h < {layer.heads}; h++)
      for (int i = 0; i < {hd}; i++) {{
#pragma HLS PIPELINE II=1
#pragma HLS UNROLL factor={lanes}
        const int base = t * {width} + h * {hd};
        const wide_t rot = i < {half} ? -(wide_t)in0[base + i + {half}]
                                      : (wide_t)in0[base + i - {half}];
        const wide_t acc = (wide_t)in0[base + i] * {f}_cos[t * {hd} + i]
                           + rot * {f}_sin[t * {hd} + i];
        out[base + i] = requant(acc, {layer.mult}, {layer.shift}, -127, 127);
      }}
}}"""
    return [array("int32_t", f"{f}_cos", layer.cos), array("int32_t", f"{f}_sin", layer.sin)], body


def _attention(layer: AttentionLayer, in_types, out_type, lanes, in_shapes):
    t, width = layer.out_shape
    hd = width // layer.heads
    kv_width = in_shapes[1][1]
    group = layer.heads // layer.kv_heads
    body = f"""{signature(layer, in_types, out_type, [t * width, t * kv_width, t * kv_width])} {{
  for (int h = 0; h < {layer.heads}; h++) {{
    const int g = h / {group};
    for (int t = 0; t < {t}; t++) {{
      acc_t score[{t}];
      acc_t top = 0;
      for (int u = 0; u <= t; u++) {{
        acc_t a = 0;
        for (int i = 0; i < {hd}; i++) {{
{reduction_pragmas(lanes, hd)}
          a += (acc_t)in0[t * {width} + h * {hd} + i] * in1[u * {kv_width} + g * {hd} + i];
        }}
        score[u] = a;
        if (u == 0 || a > top) top = a;
      }}
      wide_t e[{t}];
      wide_t z = 0;
      for (int u = 0; u <= t; u++) {{
#pragma HLS PIPELINE II=1
        const wide_t gap = (wide_t)(top - score[u]) * {layer.score_mult};
        wide_t j = (gap + ((wide_t)1 << {layer.score_shift - 1})) >> {layer.score_shift};
        if (j > {len(EXP_TABLE) - 1}) j = {len(EXP_TABLE) - 1};
        e[u] = exp_table[j];
        z += e[u];
      }}
      for (int i = 0; i < {hd}; i++) {{
        acc_t acc = 0;
        for (int u = 0; u <= t; u++) {{
{reduction_pragmas(lanes, hd)}
          const wide_t p = (e[u] * ((wide_t)1 << {PROB_BITS + 1}) + z) / (2 * z);
          acc += (acc_t)p * in2[u * {kv_width} + g * {hd} + i];
        }}
        out[t * {width} + h * {hd} + i] = requant(acc, {layer.mult}, {layer.shift}, -127, 127);
      }}
    }}
  }}
}}"""
    return [], body


def _gated_silu(layer: GatedSiluLayer, in_types, out_type, lanes, in_shapes):
    f = ident(layer.name)
    n = int(np.prod(layer.out_shape))
    body = f"""{signature(layer, in_types, out_type, [n, n])} {{
  for (int i = 0; i < {n}; i++) {{
#pragma HLS PIPELINE II=1
#pragma HLS UNROLL factor={lanes}
    const wide_t a = {f}_silu[in0[i] + 128];  // SiLU as a 256-entry table
    out[i] = requant(a * in1[i], {layer.mult}, {layer.shift}, -127, 127);
  }}
}}"""
    return [array("data_t", f"{f}_silu", layer.table)], body


def _spike(layer: SpikeLayer, in_types, out_type, lanes, in_shapes):
    """Per token: spike codes by shifts, then per output channel the plain channels' one
    spike and the salient channels' T_s burst spikes, each added as shifted weights."""
    f = ident(layer.name)
    k, c = layer.weight.shape
    t = layer.out_shape[0]
    plain, salient = layer.plain, layer.salient
    k_min = min(layer.plain_shift, layer.salient_shift) if len(salient) else layer.plain_shift
    times = "ternary_times" if layer.ternary else f"spike_times<{layer.spike_bits}>"
    amp = layer.amplitude
    consts = [array("weight_t", f"{f}_w", layer.weight), array("wide_t", f"{f}_b", layer.bias),
              array("int32_t", f"{f}_mult", layer.mult), array("int", f"{f}_shift", layer.shift),
              array("int", f"{f}_plain", plain if len(plain) else np.zeros(1, int)),
              array("int", f"{f}_salient", salient if len(salient) else np.zeros(1, int))]
    salient_loop = "" if not len(salient) else f"""
      acc_t acc_s = 0;
      for (int j = 0; j < {len(salient)}; j++) {{
{reduction_pragmas(lanes, c)}
        const weight_t w = {f}_w[k * {c} + {f}_salient[j]];
        int rest = q_s[j];  // burst: T_s spikes of at most {amp} each, soft reset
        for (int s = 0; s < {layer.steps}; s++) {{
          const int spike = rest > {amp} ? {amp} : (rest < -{amp} ? -{amp} : rest);
          rest -= spike;
          acc_s += {times}(w, spike);
        }}
      }}
      acc += (wide_t)acc_s << {layer.salient_shift - k_min};"""
    body = f"""{signature(layer, in_types, out_type, [t * c])} {{
  for (int t = 0; t < {t}; t++) {{
    int q_p[{max(len(plain), 1)}], q_s[{max(len(salient), 1)}];
    for (int j = 0; j < {len(plain)}; j++)
      q_p[j] = spike_code(in0[t * {c} + {f}_plain[j]], {layer.plain_shift}, {amp});
    for (int j = 0; j < {len(salient)}; j++)
      q_s[j] = spike_code(in0[t * {c} + {f}_salient[j]], {layer.salient_shift},
                          {layer.steps * amp});
    for (int k = 0; k < {k}; k++) {{
{parallel_pragma(lanes, c)}
      acc_t acc_p = 0;
      for (int j = 0; j < {len(plain)}; j++) {{
{reduction_pragmas(lanes, c)}
        acc_p += {times}({f}_w[k * {c} + {f}_plain[j]], q_p[j]);
      }}
      wide_t acc = ((wide_t)acc_p << {layer.plain_shift - k_min}) + {f}_b[k];{salient_loop}
      out[t * {k} + k] = requant(acc, {f}_mult[k], {f}_shift[k], {layer.lo}, 127);
    }}
  }}
}}"""
    return consts, body


WRITERS = ((EmbeddingLayer, _embedding), (RMSNormLayer, _rmsnorm), (RopeLayer, _rope),
           (AttentionLayer, _attention), (GatedSiluLayer, _gated_silu), (SpikeLayer, _spike))
