#!/usr/bin/env bash
# The GPU host's checks in one call, the same way each session (after `bash scripts/pack-gpu.sh` here,
# with the device tool's carry [".gpu"]): the kernel and executor tests on the real adapter (tensor-core
# GEMM and attention paths included), then the kernel benchmarks and the training-step benchmark.
# Each part writes OUT_DIR/<part>.log and the script goes on when one fails; the summary lists the exit
# codes. Parts: tests attention gemm step (default all), e.g. `bash bench/gpu-check.sh /tmp/o tests step`.
#
#   source .gpu/enter.sh && bash bench/gpu-check.sh "$OUT"
set -uo pipefail
cd "$(dirname "$0")/.."
out=${1:-runs/gpu-check}
shift || true
parts=("$@")
[ ${#parts[@]} -eq 0 ] && parts=(tests attention gemm step)
mkdir -p "$out"
command -v node >/dev/null || { echo "bench/gpu-check.sh: no node (source .gpu/enter.sh first)" >&2; exit 1; }
summary=()
run() {
  local name=$1
  shift
  local t0=$SECONDS
  "$@" >"$out/$name.log" 2>&1
  local rc=$?
  summary+=("$name: exit $rc, $((SECONDS - t0)) s")
  echo "== $name (exit $rc, $((SECONDS - t0)) s)"
  tail -n 25 "$out/$name.log"
}
for p in "${parts[@]}"; do
  case "$p" in
    tests) run tests node node_modules/vitest/vitest.mjs run test/kernels test/runtime/gpu-executor.test.ts test/runtime/fp8-wgsl.test.ts test/runtime/gpu-plan-memory.test.ts ;;
    attention) run attention node --import tsx bench/attention.ts ;;
    gemm) run gemm node --import tsx bench/gemm.ts --tune --tune-seconds 0.05 --shapes 4096,fc1 --paths subgroup-matrix,fma ;;
    step) run step node --import tsx bench/step.ts bench/fog-flash-gpt2-small.fog --steps 5 --batch 4 --seq 1024 ;;
    *) echo "bench/gpu-check.sh: unknown part $p (tests attention gemm step)" >&2 ;;
  esac
done
echo "== $(date -u +%F) $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null)"
printf '%s\n' "${summary[@]}"
