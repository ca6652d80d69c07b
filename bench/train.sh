#!/usr/bin/env bash
# fogc vs PyTorch training throughput and memory, same models, same batch, same GPU, one run (GPU host,
# after 'source .gpu/enter.sh'; needs torch with CUDA). fogc first (bench/train.ts: GPT-2-small-size and
# 390M FOG-flash in BF16, FP8, FP8DPA), then the exported PyTorch modules of the same models in eager bf16
# and under torch.compile (bench/train_torch.py), then the summary table with the ratios. About 5 minutes
# on one H100 with the defaults.
#
#   bash bench/train.sh [OUT_DIR]            # default runs/bench-train; the log is OUT_DIR/bench-train.log
#   bash bench/train.sh --smoke [OUT_DIR]    # the tiny model, 2 steps per mode (checks the wiring)
#   bash bench/train.sh --no-torch [OUT_DIR] # fogc side and its summary only
# Extra options go through FOGC_ARGS (bench/train.ts: --models, --modes, --steps, --warmup, --batch-390m, ...)
# and TORCH_ARGS (bench/train_torch.py: --modes eager,compile,recipe, --steps, --warmup).
set -euo pipefail
cd "$(dirname "$0")/.."
smoke=()
torch=1
out=runs/bench-train
for a in "$@"; do
  case "$a" in
    --smoke) smoke=(--smoke) ;;
    --no-torch) torch=0 ;;
    -*) echo "bench/train.sh: unknown option $a (use --smoke, --no-torch, FOGC_ARGS, TORCH_ARGS)" >&2; exit 1 ;;
    *) out="$a" ;;
  esac
done
command -v node >/dev/null || { echo "bench/train.sh: no node (source .gpu/enter.sh first)" >&2; exit 1; }
if [ "$torch" = 1 ]; then
  python3 -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null ||
    { echo "bench/train.sh: python3 cannot import torch with CUDA (pass --no-torch for the fogc side alone)" >&2; exit 1; }
fi
mkdir -p "$out"
rm -f "$out/fogc.jsonl" "$out/torch.jsonl"
export PYTHONUNBUFFERED=1
{
  echo "bench/train.sh $(date -u +%Y-%m-%dT%H:%M:%SZ) on $(hostname); git $(git rev-parse --short HEAD 2>/dev/null || echo '?')$(git diff --quiet 2>/dev/null || echo ' (modified tree)')"
  command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
  # shellcheck disable=SC2086  # FOGC_ARGS is a list of options
  node --import tsx bench/train.ts "${smoke[@]}" --out "$out/fogc.jsonl" ${FOGC_ARGS:-}
  if [ "$torch" = 1 ]; then
    # shellcheck disable=SC2086
    python3 bench/train_torch.py --fogc "$out/fogc.jsonl" --out "$out/torch.jsonl" --work "$out/export" ${TORCH_ARGS:-}
  else
    python3 bench/train_torch.py --fogc "$out/fogc.jsonl" --no-torch
  fi
} 2>&1 | tee "$out/bench-train.log"
