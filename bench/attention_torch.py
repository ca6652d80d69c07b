# PyTorch reference for bench/attention.ts: times F.scaled_dot_product_attention (causal, bf16,
# GQA) forward and forward+backward on the same shapes, and writes the JSON that bench/attention.ts
# reads to print fogc/PyTorch ratios. Never asserts.
#   python3 bench/attention_torch.py [--out bench/attention_torch.json] [--iters N]
import argparse
import json

import torch
import torch.nn.functional as F

SHAPES = [
    dict(label="B8 T1024 H12 Dh64", batch=8, seqLen=1024, heads=12, kvHeads=12, headDim=64),
    dict(label="B8 T4096 H8 KV4 Dh128", batch=8, seqLen=4096, heads=8, kvHeads=4, headDim=128),
]


def flops(s):
    # FlashAttention's convention, causal: forward 4·B·H·T²·Dh/2, backward 2.5× the forward.
    fwd = 4 * s["batch"] * s["heads"] * s["seqLen"] ** 2 * s["headDim"] / 2
    return fwd, 3.5 * fwd


def sdpa(q, k, v):
    if k.shape[1] != q.shape[1]:
        try:
            return F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
        except TypeError:  # torch < 2.5: expand the kv heads
            rep = q.shape[1] // k.shape[1]
            k, v = k.repeat_interleave(rep, 1), v.repeat_interleave(rep, 1)
    return F.scaled_dot_product_attention(q, k, v, is_causal=True)


def time_ms(fn, iters):
    for _ in range(2):
        fn()
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(iters):
        fn()
    end.record()
    torch.cuda.synchronize()
    return start.elapsed_time(end) / iters


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="bench/attention_torch.json")
    ap.add_argument("--iters", type=int, default=20)
    a = ap.parse_args()
    results = []
    for s in SHAPES:
        B, T, H, KV, D = s["batch"], s["seqLen"], s["heads"], s["kvHeads"], s["headDim"]
        opts = dict(device="cuda", dtype=torch.bfloat16)
        q = torch.randn(B, H, T, D, **opts, requires_grad=True)
        k = torch.randn(B, KV, T, D, **opts, requires_grad=True)
        v = torch.randn(B, KV, T, D, **opts, requires_grad=True)
        do = torch.randn(B, H, T, D, **opts)

        def fwd():
            with torch.no_grad():
                sdpa(q, k, v)

        def fwdbwd():
            sdpa(q, k, v).backward(do)

        f, total = flops(s)
        fwd_ms, all_ms = time_ms(fwd, a.iters), time_ms(fwdbwd, a.iters)
        r = dict(label=s["label"], fwd_ms=fwd_ms, fwdbwd_ms=all_ms, fwd_tflops=f / fwd_ms / 1e9, fwdbwd_tflops=total / all_ms / 1e9)
        print(f"{s['label']:<26} fwd {fwd_ms:8.3f} ms {r['fwd_tflops']:7.1f} TFLOP/s   fwd+bwd {all_ms:8.3f} ms {r['fwdbwd_tflops']:7.1f} TFLOP/s")
        results.append(r)
    device = f"{torch.cuda.get_device_name()} torch {torch.__version__}"
    with open(a.out, "w") as fh:
        json.dump(dict(device=device, results=results), fh, indent=2)
    print(f"wrote {a.out} ({device})")


if __name__ == "__main__":
    main()
