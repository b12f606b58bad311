#!/usr/bin/env bash
# TVM vs ONNX Runtime on the same machine, same thread count, one interleaved run:
# SmolLM2-135M prefill (128 tokens) and the digits CNN at batch 1 and 32.
# Usage: tools/bench_tvm_vs_ort.sh OUT_DIR     (then read OUT_DIR/report/report.md)
set -euo pipefail
out=${1:?usage: tools/bench_tvm_vs_ort.sh OUT_DIR}
ember=${EMBER:-ember}
mkdir -p "$out"
build() {  # name, target, extra compile flags...
  local name=$1 target=$2; shift 2
  [ -d "$out/$name-$target" ] && return
  local start=$SECONDS
  "$ember" compile --quiet --target "$target" -o "$out/$name-$target" "$@"
  echo "compile $name-$target: $((SECONDS - start)) s" | tee -a "$out/compile_times.txt"
}
for target in cpu tvm; do
  build smollm2-128 "$target" --model builtin:smollm2-135m --tokens 128
  build digits-b1 "$target" --model builtin:digits-cnn
  build digits-b32 "$target" --model builtin:digits-cnn --shape 32,1,28,28
done
"$ember" bench "$out"/smollm2-128-tvm "$out"/digits-b1-tvm "$out"/digits-b32-tvm \
  --baseline "$out"/smollm2-128-cpu --baseline "$out"/digits-b1-cpu \
  --baseline "$out"/digits-b32-cpu --budget 8 -o "$out/report"
