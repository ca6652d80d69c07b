#!/usr/bin/env bash
# The PyTorch-export check on the GPU host (after 'source .gpu/enter.sh'; needs torch): fogc trains each
# tiny example 3 steps, the export must reproduce step 3's loss, gradients and update. One PASS/FAIL per arch.

#   bash bench/export-check.sh [SUMMARY.json] [--backend cpu|webgpu] [--only fog-flash-tiny] [--jobs N]
set -euo pipefail
cd "$(dirname "$0")/.."
out=runs/export-check.json
if [ $# -gt 0 ] && [ "${1#--}" = "$1" ]; then out="$1"; shift; fi
mkdir -p "$(dirname "$out")"
python3 -c 'import torch' 2>/dev/null || { echo "FAIL export-check: python3 cannot import torch"; exit 1; }
command -v node >/dev/null || { echo "FAIL export-check: no node (source .gpu/enter.sh first)"; exit 1; }
export PYTHONUNBUFFERED=1
exec python3 bench/export-check.py --out "$out" "$@"
