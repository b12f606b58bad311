"""The HLS-style C++ project of an integer network: types header, weights, one function per
layer, a top function, a file-driven testbench and a build script.

    fpga/ember_types.h   fixed-width integer types and the requantization helpers
    fpga/weights.h       every constant array (weights, biases, multipliers, shifts)
    fpga/model.h         sizes and the top function's signature
    fpga/model.cpp       one static function per layer, `ember_top` calling them (DATAFLOW)
    fpga/testbench.cpp   reads int8 images from a file, runs ember_top, writes the outputs
    fpga/build.sh        the C simulation build (g++ or any C++20 compiler)

The C++ is plain C++20 with `#pragma HLS` annotations (ignored by g++); the integer types are
`<cstdint>` ones wide enough for each stage, with the exact widths a synthesis build would use
(ap_int<N>) stated in ember_types.h.
"""

from __future__ import annotations

from pathlib import Path

from ember.targets.fpga.fixed import bits_for
from ember.targets.fpga.hls.cpp import array, ident
from ember.targets.fpga.hls.decoder import WRITERS as DECODER_WRITERS
from ember.targets.fpga.hls.layers import WRITERS as LAYER_WRITERS
from ember.targets.fpga.integer.decoder import EXP_TABLE, AttentionLayer
from ember.targets.fpga.integer.layers import FlattenLayer, Layer
from ember.targets.fpga.integer.sfc import SFCLayer
from ember.targets.fpga.lower.graph import IntNetwork

FILES = ("ember_types.h", "weights.h", "model.h", "model.cpp", "testbench.cpp", "build.sh")


def emit(layer: Layer, in_types: list[str], in_shapes: list[tuple[int, ...]], out_type: str,
         lanes: int) -> tuple[list[str], str]:
    """(constant arrays, function definition) of `layer`."""
    for kind, writer in LAYER_WRITERS + DECODER_WRITERS:
        if isinstance(layer, kind):
            return writer(layer, in_types, out_type, lanes, in_shapes)
    raise TypeError(f"no C++ writer for {type(layer).__name__}")


def write_project(net: IntNetwork, lanes: dict[str, int], folder: Path) -> list[str]:
    """Write the project into `folder` (created); returns the file names."""
    folder.mkdir(parents=True, exist_ok=True)
    constants, functions, calls = _layers(net, lanes)
    if any(isinstance(layer, AttentionLayer) for layer in net.layers):
        constants.insert(0, array("wide_t", "exp_table", EXP_TABLE))
    texts = {
        "ember_types.h": _types(net),
        "weights.h": "#pragma once\n#include \"ember_types.h\"\n\n" + "\n\n".join(constants) + "\n",
        "model.h": _model_header(net),
        "model.cpp": _model(functions, calls, net),
        "testbench.cpp": TESTBENCH,
        "build.sh": BUILD,
    }
    for name, text in texts.items():
        (folder / name).write_text(text)
    (folder / "build.sh").chmod(0o755)
    return list(FILES)


def _layers(net: IntNetwork, lanes: dict[str, int]) -> tuple[list[str], list[str], list[str]]:
    buffers = {net.input.name: "input"}
    constants, functions, calls = [], [], []
    for layer in net.layers:
        if isinstance(layer, FlattenLayer):
            buffers[layer.output] = buffers[layer.inputs[0]]
            continue
        specs = [net.tensors[i] for i in layer.inputs]
        out = net.tensors[layer.output]
        out_type = _ctype(out.kind)
        consts, function = emit(layer, [_ctype(s.kind) for s in specs], [s.shape for s in specs],
                                out_type, lanes.get(layer.name, 1))
        constants += consts
        functions.append(f"// {layer.name}: {layer.op}\n{function}")
        target = "output" if layer.output == net.output else f"b_{ident(layer.output)}"
        if target != "output":
            calls.append(f"  static {out_type} {target}[{out.size}];")
        calls.append(f"  {ident(layer.name)}({', '.join(buffers[i] for i in layer.inputs)}, "
                     f"{target});")
        buffers[layer.output] = target
    if buffers[net.output] != "output":  # the network ends in a flatten of some buffer
        calls.append(f"  for (int i = 0; i < EMBER_OUT_SIZE; i++) output[i] = "
                     f"{buffers[net.output]}[i];")
    return constants, functions, calls


def _ctype(kind: str) -> str:
    return "acc_t" if kind == "int32" else "data_t"


def _types(net: IntNetwork) -> str:
    """ember_types.h: the integer types, with the widths the design needs, then HELPERS."""
    sfc = [layer for layer in net.layers if isinstance(layer, SFCLayer)]
    tdom = max((bits_for(s.transform_bound()) for s in sfc), default=8)
    wide = max((bits_for(s.wide_bound()) for s in sfc), default=32)
    return f"""#pragma once
// Integer types of the ember fpga design. The C simulation uses <cstdint> types at least as
// wide as each stage needs; a synthesis build would use ap_int<N> of exactly these widths:
//   data_t   activations           8 bits
//   weight_t weights               8 bits
//   acc_t    product accumulators  32 bits
//   tdom_t   SFC transform domain  {tdom} bits
//   wide_t   SFC output transform  {wide} bits (also the requantizer's product)
#include <cstdint>

typedef int8_t data_t;
typedef int8_t weight_t;
typedef int32_t acc_t;
typedef int16_t tdom_t;
typedef int64_t wide_t;
""" + HELPERS


def _model_header(net: IntNetwork) -> str:
    out = net.output_spec
    return f"""#pragma once
#include "ember_types.h"

#define EMBER_IN_SIZE {net.input.size}
#define EMBER_OUT_SIZE {out.size}
typedef {_ctype(net.input.kind)} in_t;
typedef {_ctype(out.kind)} out_t;

void ember_top(const in_t input[EMBER_IN_SIZE], out_t output[EMBER_OUT_SIZE]);
"""


def _model(functions: list[str], calls: list[str], net: IntNetwork) -> str:
    body = "\n".join(calls)
    return f"""// ember fpga design: {len(net.layers)} layers, input {net.input.shape}, output
// {net.output_spec.shape} ({net.output_spec.kind}). Generated; edit the model, not this file.
#include "model.h"
#include "weights.h"

{chr(10).join(functions)}

void ember_top(const in_t input[EMBER_IN_SIZE], out_t output[EMBER_OUT_SIZE]) {{
#pragma HLS INTERFACE mode=m_axi port=input
#pragma HLS INTERFACE mode=m_axi port=output
#pragma HLS DATAFLOW
{body}
}}
"""


#: ember_types.h after the typedefs: requantization, SFC slot rounding, spike arithmetic
#: without multipliers and the integer square root, shared by every design
HELPERS = """
static inline data_t clamp_int(wide_t v, int lo, int hi) {
  return (data_t)(v < lo ? lo : (v > hi ? hi : v));
}

// y = clamp((acc * mult + 2^(shift-1)) >> shift): round half up of acc * mult / 2^shift
static inline data_t requant(wide_t acc, int32_t mult, int shift, int lo, int hi) {
  return clamp_int((acc * mult + ((wide_t)1 << (shift - 1))) >> shift, lo, hi);
}

// an SFC slot's power-of-two step: round half up of v / 2^e, then int8
static inline data_t slot_round(tdom_t v, int e) {
  const int32_t half = e > 0 ? (1 << (e - 1)) : 0;
  return clamp_int(((int32_t)v + half) >> e, -127, 127);
}

// a spike code: round half up of x / 2^k, within +-limit
static inline int spike_code(int x, int k, int limit) {
  const int q = (x + (k > 0 ? 1 << (k - 1) : 0)) >> k;
  return q > limit ? limit : (q < -limit ? -limit : q);
}

// w * spike without a multiplier: the shifted weight added once per magnitude bit
template <int BITS>
static inline acc_t spike_times(weight_t w, int spike) {
  const int magnitude = spike < 0 ? -spike : spike;
  acc_t sum = 0;
  for (int b = 0; b < BITS - 1; b++)
    if (magnitude >> b & 1) sum += (acc_t)w << b;
  return spike < 0 ? -sum : sum;
}

// a sum of ternary weight planes (|w| <= T_s): the spike added or subtracted once per plane
static inline acc_t ternary_times(weight_t w, int spike) {
  const int planes = w < 0 ? -w : w;
  acc_t sum = 0;
  for (int p = 0; p < planes; p++) sum += spike;
  return w < 0 ? -sum : sum;
}

// floor(sqrt(n)), bit by bit
static inline uint64_t isqrt64(uint64_t n) {
  uint64_t root = 0, bit = (uint64_t)1 << 62;
  while (bit > n) bit >>= 2;
  while (bit) {
    if (n >= root + bit) { n -= root + bit; root = (root >> 1) + bit; }
    else root >>= 1;
    bit >>= 2;
  }
  return root;
}
"""


TESTBENCH = """// C simulation testbench: INPUT holds COUNT samples of EMBER_IN_SIZE in_t values
// (int8 codes, or int32 token ids); OUTPUT receives COUNT results of EMBER_OUT_SIZE out_t
// values (raw, little-endian).
#include <cstdio>
#include <cstdlib>
#include <vector>
#include "model.h"

int main(int argc, char** argv) {
  if (argc != 4) {
    std::fprintf(stderr, "usage: %s INPUT OUTPUT COUNT\\n", argv[0]);
    return 2;
  }
  const long count = std::atol(argv[3]);
  std::FILE* in = std::fopen(argv[1], "rb");
  std::FILE* out = std::fopen(argv[2], "wb");
  if (!in || !out) {
    std::fprintf(stderr, "cannot open %s or %s\\n", argv[1], argv[2]);
    return 2;
  }
  std::vector<in_t> x(EMBER_IN_SIZE);
  std::vector<out_t> y(EMBER_OUT_SIZE);
  for (long i = 0; i < count; i++) {
    if (std::fread(x.data(), sizeof(in_t), EMBER_IN_SIZE, in) != EMBER_IN_SIZE) {
      std::fprintf(stderr, "input ended after %ld of %ld images\\n", i, count);
      return 1;
    }
    ember_top(x.data(), y.data());
    std::fwrite(y.data(), sizeof(out_t), EMBER_OUT_SIZE, out);
  }
  std::fclose(in);
  return std::fclose(out) == 0 ? 0 : 1;
}
"""

BUILD = """#!/bin/sh
# C simulation build of the ember fpga design: ./build.sh [OUTPUT]  (CXX picks the compiler)
set -e
cd "$(dirname "$0")"
${CXX:-g++} -std=c++20 -O2 -Wall -Wno-unknown-pragmas -o "${1:-csim}" model.cpp testbench.cpp
"""
