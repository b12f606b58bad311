#!/usr/bin/env bash
# Speed of pruned SmolLM2-135M artifacts against the dense model, per target, one interleaved
# `ember bench` run per target (same machine, same thread count):
#   prefill  128 tokens
#   decode   1 token (the per-token cost of one decode step; ember's artifacts have no KV
#            cache, so attention over earlier tokens is not included)
# Pruned models come from tools/research/bench_prune_quality.py (HF directories, compiled via hf:DIR).
# Usage: tools/research/bench_prune_speed.sh QUALITY_DIR OUT_DIR [ROWS...]   (default rows: pat)
#   then read OUT_DIR/report-<target>/report.md; compile times go to OUT_DIR/compile_times.txt.
set -euo pipefail
quality=${1:?usage: tools/research/bench_prune_speed.sh QUALITY_DIR OUT_DIR [ROWS...]}
out=${2:?usage: tools/research/bench_prune_speed.sh QUALITY_DIR OUT_DIR [ROWS...]}
shift 2
rows=("${@:-pat}")
ember=${EMBER:-ember}
targets=${TARGETS:-cpu tvm}
mkdir -p "$out"
build() {  # row, target, tokens
  local dir="$out/$1-$2-$3"
  [ -d "$dir" ] && return
  local start=$SECONDS options=()
  # tvm: rules only, so dense and pruned get the same (untuned) treatment
  [ "$2" = tvm ] && options=(--target-option tuning=false)
  "$ember" compile --quiet --model "hf:$quality/$1" --tokens "$3" --target "$2" -o "$dir" \
    "${options[@]}"
  echo "compile $1-$2-$3: $((SECONDS - start)) s" | tee -a "$out/compile_times.txt"
}
for target in $targets; do
  candidates=() baselines=()
  for tokens in 128 1; do
    build dense "$target" "$tokens"
    baselines+=(--baseline "$out/dense-$target-$tokens")
    for row in "${rows[@]}"; do
      build "$row" "$target" "$tokens"
      candidates+=("$out/$row-$target-$tokens")
    done
  done
  "$ember" bench "${candidates[@]}" "${baselines[@]}" --budget 8 -o "$out/report-$target"
done
