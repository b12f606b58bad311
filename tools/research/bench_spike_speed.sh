#!/usr/bin/env bash
# Speed and size of spiking SmolLM2-135M artifacts against the fp32 model, per target, one
# interleaved `ember bench` run per target (same machine, same thread count):
#   prefill  128 tokens
#   decode   1 token (the per-token cost of one decode step; ember's artifacts have no KV
#            cache, so attention over earlier tokens is not included)
# Rows (spike pass settings; calibration on 8 windows of 512 KJV tokens: speed does not
# depend on the calibration):
#   w8a8          w_bits=8, a_bits=8, no salient channels
#   w4a8          w_bits=4, a_bits=8, no salient channels
#   w4a4-salient  w_bits=4, a_bits=4, salient_frac=0.1 (2 steps)
# Usage: tools/research/bench_spike_speed.sh OUT_DIR [ROWS...]
#   then read OUT_DIR/report-<target>/report.md; artifact sizes go to OUT_DIR/sizes.txt and
#   compile times to OUT_DIR/compile_times.txt.
set -euo pipefail
out=${1:?usage: tools/research/bench_spike_speed.sh OUT_DIR [ROWS...]}
shift
rows=("${@:-w8a8 w4a8 w4a4-salient}")
read -r -a rows <<< "${rows[*]}"
ember=${EMBER:-ember}
targets=${TARGETS:-cpu tvm}
calib="data=text:kjv,calib_windows=8"
declare -A settings=(
  [w8a8]="w_bits=8,a_bits=8,salient_frac=0"
  [w4a8]="w_bits=4,a_bits=8,salient_frac=0"
  [w4a4-salient]="w_bits=4,a_bits=4,salient_frac=0.1"
  [w4a4]="w_bits=4,a_bits=4,salient_frac=0"
)
mkdir -p "$out"
build() {  # row, target, tokens
  local dir="$out/$1-$2-$3"
  [ -d "$dir" ] && return
  local start=$SECONDS options=()
  # tvm: rules only, so fp32 and spiking artifacts get the same (untuned) treatment
  [ "$2" = tvm ] && options=(--target-option tuning=false)
  [ "$1" != fp32 ] && options+=(--pass "spike:${settings[$1]},$calib")
  "$ember" compile --quiet --model builtin:smollm2-135m --tokens "$3" --target "$2" \
    -o "$dir" "${options[@]}"
  echo "compile $1-$2-$3: $((SECONDS - start)) s" | tee -a "$out/compile_times.txt"
  echo "$1-$2-$3: $(du -sb "$dir" | cut -f1) bytes" >> "$out/sizes.txt"
}
for target in $targets; do
  candidates=() baselines=()
  for tokens in 128 1; do
    build fp32 "$target" "$tokens"
    baselines+=(--baseline "$out/fp32-$target-$tokens")
    for row in "${rows[@]}"; do
      build "$row" "$target" "$tokens"
      candidates+=("$out/$row-$target-$tokens")
    done
  done
  "$ember" bench "${candidates[@]}" "${baselines[@]}" --budget 8 -o "$out/report-$target"
done
