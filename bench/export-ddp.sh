#!/usr/bin/env bash
# DDP smoke run of the PyTorch export (GPU host, after 'source .gpu/enter.sh'): torchrun starts 2 processes that
# SHARE ONE GPU through gloo (NCCL needs one GPU per rank) and train the exported GPT-2-small-size FOG-flash
# (bench/fog-flash-gpt2-small.fog) for 50 steps on the bytes of docs/, printing losses.

#   bash bench/export-ddp.sh [--precision recipe|bf16|fp32] [--fp8-backend auto|te|torch] [other train.py options]
set -euo pipefail
cd "$(dirname "$0")/.."
work="${WORK:-runs/export-ddp}"
rm -rf "$work" && mkdir -p "$work"
node --import tsx cli/fogc.ts export bench/fog-flash-gpt2-small.fog --to pytorch -o "$work/export"
echo "torchrun: 2 ranks, gloo backend, both on GPU ${CUDA_VISIBLE_DEVICES:-0} (not NCCL: it needs one GPU per rank)"
export PYTHONUNBUFFERED=1
CUDA_VISIBLE_DEVICES="${CUDA_VISIBLE_DEVICES:-0}" torchrun --standalone --nproc-per-node 2 "$work/export/train.py" \
  --dist-backend gloo --steps 50 --log-every 1 --precision recipe --jsonl "$work/ddp.jsonl" "$@"
python3 - "$work/ddp.jsonl" <<'PY'
import json, math, sys
recs = [json.loads(l) for l in open(sys.argv[1])]
first, last = recs[0]["loss"], recs[-1]["loss"]
ok = len(recs) >= 2 and recs[-1]["step"] == 50 and all(math.isfinite(r["loss"]) for r in recs) and last < first - 1.0
print("%s export-ddp: 2 ranks (gloo, one GPU), 50 steps, loss %.4f -> %.4f" % ("PASS" if ok else "FAIL", first, last))
sys.exit(0 if ok else 1)
PY
