#!/usr/bin/env python3
# Checks 'fogc export --to pytorch' against fogc, per examples/*-tiny.fog: fogc trains 3 steps (bf16), the export
# loads fogc's step-2 checkpoint and must reproduce step 3's loss, gradients and AdamW update. Needs torch
# (bench/export-check.sh runs it); one PASS/FAIL line per architecture, a JSON summary to --out.
"""
For each tiny example:
  1. fogc run --steps 3 --precision bf16 --backend cpu|webgpu --checkpoint W/ckpt --checkpoint-every 1 --log W/log.jsonl
     (the first update runs at lr 0 under warmup, so step 2's checkpoint holds one real update);
  2. fogc export --to pytorch -o W/export;
  3. bench/export-batch.ts: the token ids of step 3's batch, and the CPU reference's loss and gradients
     of that batch at step 2's weights (W/grads.safetensors);
  4. in PyTorch (fp32, TF32 off, SDPA math kernel), module in set_precision("bf16_gemm_inputs") = fogc's
     BF16 numerics (GEMM operands and output gradients rounded to bf16): load step 2, forward + backward
     on step 3's batch, then one train.py step (AdamW, clip, schedule) from step 2's moments.
Compared: loss vs fogc's logged step-3 loss (relative 1e-3); gradients vs the CPU reference (global
relative L2 1e-3, worst tensor 1e-2); grad norm vs the log (1e-3); parameter update vs fogc's step-3
checkpoint (global relative L2 of the update difference 1e-2). The pure-fp32 loss (no bf16 rounding) is
reported for information. Then the .fog recipe (bf16 autocast + FP8 GEMMs, fp8.py) runs on the same weights and batch
(after one pass that sets the delayed scales): loss within 2e-2 and gradients within 0.25 (relative L2)
of the bf16 numbers, a loose check that the FP8 path is wired right. With --backend webgpu the loss is fogc's GPU loss, the gradients still the CPU
reference's.
"""
import argparse
import concurrent.futures
import contextlib
import importlib
import importlib.util
import json
import math
import os
import shutil
import subprocess
import sys
import time

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
K = 2  # checkpoint step; the loss of step K + 1 is compared
TOL = {"loss": 1e-3, "grad": 1e-3, "grad_worst": 1e-2, "grad_norm": 1e-3, "update": 1e-2, "recipe_loss": 2e-2, "recipe_grad": 0.25}


def sh(cmd, log):
    with open(log, "a") as f:
        f.write("$ " + " ".join(cmd) + "\n")
        f.flush()
        r = subprocess.run(cmd, cwd=ROOT, stdout=f, stderr=subprocess.STDOUT)
    if r.returncode:
        raise RuntimeError("%s failed (exit %d); see %s" % (" ".join(cmd[:4]), r.returncode, log))


def fogc_side(example, work, backend):
    """The node part of one architecture (parallel across architectures)."""
    if os.path.exists(work):
        shutil.rmtree(work)
    os.makedirs(work)
    log = os.path.join(work, "node.log")
    node = ["node", "--import", "tsx"]
    fog = os.path.join("examples", example + ".fog")
    t0 = time.time()
    sh(node + ["cli/fogc.ts", "run", fog, "--steps", str(K + 1), "--precision", "bf16", "--backend", backend,
               "--checkpoint", os.path.join(work, "ckpt"), "--checkpoint-every", "1", "--log", os.path.join(work, "log.jsonl")], log)
    sh(node + ["cli/fogc.ts", "export", fog, "--to", "pytorch", "-o", os.path.join(work, "export")], log)
    sh(node + ["bench/export-batch.ts", fog, "--step", str(K + 1), "--precision", "bf16", "--out", os.path.join(work, "batch.json"),
               "--grads", ckpt(work, K), "--grads-out", os.path.join(work, "grads.safetensors")], log)
    return time.time() - t0


def ckpt(work, step):
    return os.path.join(work, "ckpt", "step-%08d.safetensors" % step)


def load_package(path, name):
    spec = importlib.util.spec_from_file_location(name, os.path.join(path, "__init__.py"), submodule_search_locations=[path])
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return {sub: importlib.import_module(name + "." + sub) for sub in ("model", "train", "schedule", "safetensors_lite", "fp8")}


def sdpa_math():
    try:
        from torch.nn.attention import SDPBackend, sdpa_kernel
    except ImportError:
        return contextlib.nullcontext()
    return sdpa_kernel(SDPBackend.MATH)


def rel(a, b):
    return abs(a - b) / max(abs(b), 1e-30)


def tensor_rel(diffs):
    """(global relative L2, worst (name, relative L2)) over {name: (error, reference)}."""
    num = den = 0.0
    worst = ("", 0.0)
    for name, (err, ref) in diffs.items():
        e, r = float(err.double().norm()), float(ref.double().norm())
        num, den = num + e * e, den + r * r
        if r > 0 and e / r > worst[1]:
            worst = (name, e / r)
    return math.sqrt(num) / max(math.sqrt(den), 1e-30), worst


def torch_side(example, work, device, fp8_backend):
    pkg = load_package(os.path.join(work, "export"), "fogx_" + example.replace("-", "_"))
    M, T, S = pkg["model"], pkg["train"], pkg["schedule"]
    read = pkg["safetensors_lite"].read_torch
    logged = [json.loads(l) for l in open(os.path.join(work, "log.jsonl"))]
    rec = next(r for r in logged if "event" not in r and r["step"] == K + 1)
    batch = json.load(open(os.path.join(work, "batch.json")))
    tokens = torch.tensor(batch["tokens"], dtype=torch.int64, device=device)
    targets = torch.tensor(batch["targets"], dtype=torch.int64, device=device)
    out = {"arch": example, "loss_fogc": rec["loss"], "loss_reference": batch["loss"]}

    model = M.Model().to(device)
    M.check_manifest(model)
    meta = M.load_fogc_checkpoint(model, ckpt(work, K))
    out["checkpoint_step"] = int(meta["step"])
    with sdpa_math():
        model.set_precision("fp32")
        with torch.no_grad():
            out["loss_fp32"] = float(model(tokens, targets))
        model.set_precision("bf16_gemm_inputs")
        loss = model(tokens, targets)
        loss.backward()
    out["loss_export"] = float(loss)
    out["loss_rel"] = rel(out["loss_export"], rec["loss"])
    out["loss_fp32_rel"] = rel(out["loss_fp32"], rec["loss"])

    _, ref = read(os.path.join(work, "grads.safetensors"))
    diffs = {n: (p.grad.detach().cpu() - ref["grad." + n], ref["grad." + n]) for n, p in model.named_parameters()}
    out["grad_rel"], out["grad_worst"] = tensor_rel(diffs)
    gn = math.sqrt(sum(float(p.grad.double().norm()) ** 2 for p in model.parameters()))
    out["grad_norm_export"], out["grad_norm_fogc"] = gn, rec["grad_norm"]
    out["grad_norm_rel"] = rel(gn, rec["grad_norm"])

    # One training step of the exported loop from step K's weights and moments vs fogc's step K + 1.
    model2 = M.Model().to(device)
    model2.set_precision("bf16_gemm_inputs")
    train_spec = T.TRAIN
    peak = train_spec["optimizer"]["lr"]
    opt = T.make_optimizer(model2, peak)
    M.load_fogc_checkpoint(model2, ckpt(work, K), optimizer=opt)
    lr = S.learning_rate(train_spec["schedule"], peak, K, K + 1)
    out["lr_rel"] = rel(lr, rec["lr"]) if rec["lr"] else abs(lr)
    with sdpa_math():
        T.train_step(model2, opt, tokens, targets, lr, train_spec["optimizer"]["clip"])
    _, before = read(ckpt(work, K))
    _, after = read(ckpt(work, K + 1))
    upd = {}
    for n, p in model2.named_parameters():
        d_ref = after["param." + n] - before["param." + n]
        upd[n] = (p.detach().cpu() - before["param." + n] - d_ref, d_ref)
    out["update_rel"], out["update_worst"] = tensor_rel(upd)

    # The .fog recipe (bf16 autocast + its FP8 GEMMs) on the same weights and batch, against the
    # bf16_gemm_inputs numbers: a first forward/backward records amaxes, fp8.update sets the delayed
    # scales, the second is compared (loosely: FP8 rounding is not fogc's emulation of it).
    model3 = M.Model().to(device)
    out["recipe_report"] = model3.set_precision("recipe", fp8_backend=fp8_backend)
    M.load_fogc_checkpoint(model3, ckpt(work, K))
    model3(tokens, targets).backward()
    model3.zero_grad(set_to_none=True)
    pkg["fp8"].update(model3)
    loss3 = model3(tokens, targets)
    loss3.backward()
    out["recipe_loss"] = float(loss3)
    out["recipe_loss_rel"] = rel(out["recipe_loss"], out["loss_export"])
    out["recipe_grad_rel"], out["recipe_grad_worst"] = tensor_rel(
        {n: (p.grad.detach().float().cpu() - ref["grad." + n], ref["grad." + n]) for n, p in model3.named_parameters()})
    out["recipe_pass"] = math.isfinite(out["recipe_loss"]) and out["recipe_loss_rel"] <= TOL["recipe_loss"] and out["recipe_grad_rel"] <= TOL["recipe_grad"]

    out["pass"] = (out["loss_rel"] <= TOL["loss"] and out["grad_rel"] <= TOL["grad"] and out["grad_worst"][1] <= TOL["grad_worst"]
                   and out["grad_norm_rel"] <= TOL["grad_norm"] and out["update_rel"] <= TOL["update"] and out["lr_rel"] <= 1e-9)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="JSON summary file")
    ap.add_argument("--backend", choices=["cpu", "webgpu"], default="cpu", help="fogc's training backend (default cpu: the exact reference)")
    ap.add_argument("--only", action="append", default=None, help="example name (e.g. fog-flash-tiny); repeatable")
    ap.add_argument("--workdir", default=os.path.join(ROOT, "runs", "export-check"))
    ap.add_argument("--jobs", type=int, default=min(7, os.cpu_count() or 1), help="fogc runs in parallel")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--fp8-backend", choices=["auto", "te", "torch"], default="auto", help="FP8 target of the recipe check")
    args = ap.parse_args()
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    device = torch.device(args.device)
    examples = sorted(f[:-4] for f in os.listdir(os.path.join(ROOT, "examples")) if f.endswith("-tiny.fog"))
    if args.only:
        examples = [e for e in examples if e in args.only]
    print("export check: %d architectures, fogc backend %s, torch %s on %s" % (len(examples), args.backend, torch.__version__,
          torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"), flush=True)
    results, t0 = [], time.time()
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        futures = {e: pool.submit(fogc_side, e, os.path.join(args.workdir, e), args.backend) for e in examples}
        for e in examples:
            work = os.path.join(args.workdir, e)
            try:
                node_s = futures[e].result()
                r = torch_side(e, work, device, args.fp8_backend)
                r["fogc_seconds"] = node_s
            except Exception as ex:  # one architecture's failure must not hide the others'
                r = {"arch": e, "pass": False, "recipe_pass": False, "error": "%s: %s" % (type(ex).__name__, ex)}
            results.append(r)
            if "error" in r:
                print("FAIL %-28s %s" % (e, r["error"]), flush=True)
            else:
                print("%s %-28s loss %.6f vs fogc %.6f (rel %.1e; fp32 rel %.1e)  grads rel %.1e (worst %s %.1e)  grad_norm rel %.1e  update rel %.1e"
                      "  | recipe %s: loss rel %.1e, grads rel %.1e" % (
                          "PASS" if r["pass"] else "FAIL", e, r["loss_export"], r["loss_fogc"], r["loss_rel"], r["loss_fp32_rel"], r["grad_rel"],
                          r["grad_worst"][0], r["grad_worst"][1], r["grad_norm_rel"], r["update_rel"],
                          "PASS" if r["recipe_pass"] else "FAIL", r["recipe_loss_rel"], r["recipe_grad_rel"]), flush=True)
                for line in r["recipe_report"]:
                    print("     recipe: " + line)
    summary = {"backend": args.backend, "device": str(device), "torch": torch.__version__, "tolerances": TOL, "checkpoint_step": K,
               "seconds": time.time() - t0, "passed": sum(1 for r in results if r["pass"]), "failed": sum(1 for r in results if not r["pass"]),
               "recipe_failed": sum(1 for r in results if not r["recipe_pass"]),
               "results": results}
    with open(args.out, "w") as f:
        json.dump(summary, f, indent=2)
    print("%d passed, %d failed (fogc parity); recipe-mode checks failed: %d" % (summary["passed"], summary["failed"], summary["recipe_failed"]))
    print("wrote %s" % args.out)
    sys.exit(0 if summary["failed"] == 0 and summary["recipe_failed"] == 0 else 1)


if __name__ == "__main__":
    main()
