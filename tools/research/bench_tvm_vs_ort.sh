#!/usr/bin/env bash
# TVM vs ONNX Runtime on the same machine, same thread count, one interleaved run:
# SmolLM2-135M prefill (128 tokens) and the digits CNN at batch 1 and 32, each as
#   tvm        ember's schedule rules only (tuning=false: the database is not read)
#   tvm-tuned  rules + MetaSchedule records from a bounded tuning run (--tune-minutes)
# against the cpu (ONNX Runtime) artifact of the same model.
# Usage: tools/research/bench_tvm_vs_ort.sh OUT_DIR     (then read OUT_DIR/report/report.md)
# Tuning minutes: SMOL_TUNE_MINUTES (default 18), DIGITS_TUNE_MINUTES (default 8); compile
# times, tuning included, go to OUT_DIR/compile_times.txt.
set -euo pipefail
out=${1:?usage: tools/research/bench_tvm_vs_ort.sh OUT_DIR}
ember=${EMBER:-ember}
mkdir -p "$out"
build() {  # name, variant, target, extra compile flags...
  local name=$1 variant=$2 target=$3; shift 3
  [ -d "$out/$name-$variant" ] && return
  local start=$SECONDS
  "$ember" compile --quiet --target "$target" -o "$out/$name-$variant" "$@"
  echo "compile $name-$variant: $((SECONDS - start)) s" | tee -a "$out/compile_times.txt"
}
smol=(--model builtin:smollm2-135m --tokens 128)
b1=(--model builtin:digits-cnn)
b32=(--model builtin:digits-cnn --shape 32,1,28,28)
for spec in "smollm2-128 smol ${SMOL_TUNE_MINUTES:-18}" "digits-b1 b1 ${DIGITS_TUNE_MINUTES:-8}" \
            "digits-b32 b32 ${DIGITS_TUNE_MINUTES:-8}"; do
  read -r name flags minutes <<< "$spec"
  declare -n model="$flags"
  build "$name" cpu cpu "${model[@]}"
  build "$name" tvm tvm "${model[@]}" --target-option tuning=false
  build "$name" tvm-tuned tvm "${model[@]}" --tune-minutes "$minutes"
done
"$ember" bench "$out"/{smollm2-128,digits-b1,digits-b32}-tvm \
  "$out"/{smollm2-128,digits-b1,digits-b32}-tvm-tuned \
  --baseline "$out"/smollm2-128-cpu --baseline "$out"/digits-b1-cpu \
  --baseline "$out"/digits-b32-cpu --budget 8 -o "$out/report"
