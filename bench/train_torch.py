#!/usr/bin/env python3
# The PyTorch side of bench/train.sh: for every model bench/train.ts measured (its JSON records), export
# the same .fog model with 'fogc export --to pytorch', import the exported nn.Module and its train.py,
# and train it on random tokens at the same batch and sequence: AdamW (fused), clip, bf16 autocast,
# eagerly and under torch.compile. Tokens/s (median step) and torch.cuda.max_memory_allocated, one JSON
# record per run; then the summary table of both sides with the ratios the performance issue asks for.
"""
    python3 bench/train_torch.py --fogc runs/bench-train/fogc.jsonl --out runs/bench-train/torch.jsonl
        [--modes eager,compile] [--warmup 2] [--steps 4] [--work DIR] [--no-torch]

--modes: eager (bf16 autocast), compile (the same under torch.compile), recipe (eager, the .fog recipe's
FP8 GEMMs through fp8.py: Transformer Engine when it imports). --no-torch prints the summary of the
fogc records alone (no GPU, no torch: for checking this script where torch is not installed).
"""
import argparse
import datetime
import gc
import importlib
import importlib.util
import json
import math
import os
import shutil
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODES = ("eager", "compile", "recipe")
# Goals of the performance issue (issue 6), checked in the summary.
GOAL_GPT2_TOKENS = 200e3
GOAL_FP8DPA_SPEEDUP = 1.15
GOAL_FP8DPA_ACTIVATION = 0.6


def parse_args(argv=None):
    p = argparse.ArgumentParser(description="PyTorch side of bench/train.sh: the exported modules of the models bench/train.ts measured.")
    p.add_argument("--fogc", required=True, help="JSON lines written by bench/train.ts --out")
    p.add_argument("--out", help="append one JSON record per PyTorch run to this file")
    p.add_argument("--modes", default="eager,compile", help="comma-separated: %s" % ", ".join(MODES))
    p.add_argument("--warmup", type=int, default=2, help="untimed steps first (torch.compile compiles here)")
    p.add_argument("--steps", type=int, default=4, help="timed steps (median reported)")
    p.add_argument("--work", default=os.path.join(ROOT, "runs", "bench-train", "export"), help="where the exported packages go")
    p.add_argument("--no-torch", action="store_true", help="only print the summary of the fogc records")
    p.add_argument("--torch-records", help="summarise these saved PyTorch records (--out of an earlier run) instead of running torch")
    args = p.parse_args(argv)
    args.modes = [m for m in args.modes.split(",") if m]
    bad = [m for m in args.modes if m not in MODES]
    if bad:
        p.error("--modes: %s not one of %s" % (", ".join(bad), ", ".join(MODES)))
    if args.warmup < 1 or args.steps < 1:
        p.error("--warmup and --steps must be at least 1")
    return args


def read_jsonl(path):
    if not os.path.exists(path):
        raise SystemExit("train_torch.py: no such file %s (run bench/train.ts --out first)" % path)
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def models_of(records):
    """One entry per model, in first-seen order: the .fog file and the batch/seq fogc ran it at."""
    seen = {}
    for r in records:
        if r.get("side") == "fogc" and r["model"] not in seen:
            seen[r["model"]] = {"model": r["model"], "file": r["file"], "fog_model": r["fog_model"], "batch": r["batch"], "seq": r["seq"]}
    return list(seen.values())


def export(model, work):
    """fogc export FILE --model NAME --to pytorch -o WORK/<model>; returns the package directory."""
    out = os.path.join(work, model["model"].replace("-", "_"))
    os.makedirs(work, exist_ok=True)
    cmd = ["node", "--import", "tsx", os.path.join(ROOT, "cli", "fogc.ts"), "export", os.path.join(ROOT, model["file"]),
           "--model", model["fog_model"], "--to", "pytorch", "-o", out]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError("fogc export failed (%s):\n%s%s" % (" ".join(cmd), done.stdout, done.stderr))
    return out


def load_package(path, name):
    """The exported package as modules: model (the nn.Module) and train (its optimizer and train step)."""
    spec = importlib.util.spec_from_file_location(name, os.path.join(path, "__init__.py"), submodule_search_locations=[path])
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return importlib.import_module(name + ".model"), importlib.import_module(name + ".train")


def run_torch(torch, pkg_model, pkg_train, model_info, mode, args, device):
    """One run: a fresh module in `mode`, warm-up then timed steps on random tokens. Returns the record."""
    batch, seq = model_info["batch"], model_info["seq"]
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats(device)
    torch.manual_seed(0)
    module = pkg_model.Model().to(device)
    report = module.set_precision("recipe" if mode == "recipe" else "bf16")
    pkg_model.check_manifest(module)
    # lr as low as fogc's side uses: a benchmark, not a training run; fused AdamW as train.py on CUDA.
    optimizer = pkg_train.make_optimizer(module, 1e-4, fused=True)
    net = torch.compile(module) if mode == "compile" else module
    vocab = pkg_model.CONFIG["vocab"]
    clip = pkg_train.TRAIN["optimizer"]["clip"]

    def batch_data():
        return (torch.randint(0, vocab, (batch, seq), device=device), torch.randint(0, vocab, (batch, seq), device=device))

    losses = []
    torch.cuda.synchronize(device)
    w0 = time.perf_counter()
    for _ in range(args.warmup):
        tokens, targets = batch_data()
        loss, _gn = pkg_train.train_step(net, optimizer, tokens, targets, 1e-4, clip)
        losses.append(float(loss))
    torch.cuda.synchronize(device)
    warm_s = time.perf_counter() - w0
    times = []
    for _ in range(args.steps):
        tokens, targets = batch_data()
        torch.cuda.synchronize(device)
        t = time.perf_counter()
        loss, _gn = pkg_train.train_step(net, optimizer, tokens, targets, 1e-4, clip)
        torch.cuda.synchronize(device)
        times.append(time.perf_counter() - t)
        losses.append(float(loss))
    ms = sorted(times)[len(times) // 2] * 1000
    params = sum(p.numel() for p in module.parameters())
    record = {
        "side": "torch", "model": model_info["model"], "fog_model": model_info["fog_model"], "file": model_info["file"],
        "mode": mode, "device": torch.cuda.get_device_name(device), "date": datetime.datetime.now(datetime.timezone.utc).isoformat(),
        "torch": torch.__version__, "params": params, "batch": batch, "seq": seq, "warmup_steps": args.warmup, "timed_steps": args.steps,
        "ms_per_step": ms, "tokens_per_s": batch * seq / (ms / 1000), "losses": losses, "warmup_s": warm_s,
        "memory": {"max_allocated_bytes": torch.cuda.max_memory_allocated(device), "max_reserved_bytes": torch.cuda.max_memory_reserved(device)},
        "fp8_report": list(report or []),
    }
    del net, module, optimizer
    if mode == "compile":
        torch._dynamo.reset()  # compiled graphs hold the module's tensors; the next run measures its own peak
    gc.collect()
    return record


def fmt_rate(x):
    return "–" if x is None else ("%.0f" % x)


def fmt_mib(x):
    return "–" if x is None else ("%.0f" % (x / 2 ** 20))


def ratio(a, b):
    return None if a is None or b is None or b == 0 else a / b


def fmt_ratio(x):
    return "–" if x is None else "%.3f" % x


def summary(fogc, torch_recs, out=sys.stdout):
    """The table of every run and, per model, the ratios the performance issue's goals are stated in."""
    w = out.write
    devices = sorted({r["device"] for r in fogc + torch_recs})
    dates = sorted({r["date"][:10] for r in fogc + torch_recs})
    w("\n== bench/train summary: %s, %s ==\n" % ("; ".join(devices) or "?", ", ".join(dates) or "?"))
    w("%-12s %-8s %-12s %6s %10s %12s %12s %14s\n" % ("model", "side", "mode", "batch", "ms/step", "tokens/s", "memory MiB", "transient MiB"))
    for r in fogc + torch_recs:
        if "error" in r:
            w("%-12s %-8s %-12s %6s  error: %s\n" % (r["model"], r["side"], r["mode"], r.get("batch", "?"), r["error"]))
            continue
        mem = r["memory"].get("peak_bytes", r["memory"].get("max_allocated_bytes"))
        w("%-12s %-8s %-12s %6d %10.1f %12s %12s %14s\n" % (r["model"], r["side"], r["mode"], r["batch"], r["ms_per_step"], fmt_rate(r["tokens_per_s"]),
                                                           fmt_mib(mem), fmt_mib(r["memory"].get("transient_bytes"))))
    w("(fogc memory: f32 parameters + AdamW moments + the train step's transient and constant buffers; torch: max_memory_allocated)\n")

    def get(recs, model, mode, key):
        for r in recs:
            if r["model"] == model and r["mode"] == mode and "error" not in r:
                return r["memory"].get(key) if key.endswith("bytes") else r.get(key)
        return None

    for model in [m["model"] for m in models_of(fogc)]:
        f8 = get(fogc, model, "fp8dpa", "tokens_per_s")
        bf = get(fogc, model, "bf16", "tokens_per_s")
        eager = get(torch_recs, model, "eager", "tokens_per_s")
        comp = get(torch_recs, model, "compile", "tokens_per_s")
        speedup = ratio(f8, bf)
        act = ratio(get(fogc, model, "fp8dpa", "transient_bytes"), get(fogc, model, "bf16", "transient_bytes"))
        w("\n%s:\n" % model)
        w("  fogc FP8DPA / torch eager bf16 tokens/s     %s\n" % fmt_ratio(ratio(f8, eager)))
        w("  fogc FP8DPA / torch.compile bf16 tokens/s   %s\n" % fmt_ratio(ratio(f8, comp)))
        w("  fogc FP8DPA / fogc BF16 tokens/s            %s\n" % fmt_ratio(speedup))
        w("  fogc FP8DPA / fogc BF16 memory (total)      %s\n" % fmt_ratio(ratio(get(fogc, model, "fp8dpa", "peak_bytes"), get(fogc, model, "bf16", "peak_bytes"))))
        w("  fogc FP8DPA / fogc BF16 transient memory    %s\n" % fmt_ratio(act))
        w("  fogc FP8DPA / torch eager memory            %s\n" % fmt_ratio(ratio(get(fogc, model, "fp8dpa", "peak_bytes"), get(torch_recs, model, "eager", "max_allocated_bytes"))))
        if model == "gpt2-small" and f8 is not None:
            ok = f8 >= GOAL_GPT2_TOKENS and eager is not None and f8 >= eager
            w("  goal FP8DPA >= %.0fk tokens/s and >= torch eager: %s\n" % (GOAL_GPT2_TOKENS / 1e3, "met" if ok else "not met"))
        if model == "390m" and speedup is not None and act is not None:
            ok = speedup >= GOAL_FP8DPA_SPEEDUP and act <= GOAL_FP8DPA_ACTIVATION
            w("  goal FP8DPA >= %.2fx BF16 tokens/s with <= %.1fx its transient (activation) memory: %s\n" % (GOAL_FP8DPA_SPEEDUP, GOAL_FP8DPA_ACTIVATION, "met" if ok else "not met"))


def main(argv=None):
    args = parse_args(argv)
    fogc = read_jsonl(args.fogc)
    models = models_of(fogc)
    if not models:
        raise SystemExit("train_torch.py: %s has no fogc records" % args.fogc)
    torch_recs = read_jsonl(args.torch_records) if args.torch_records else []
    if not args.no_torch and not args.torch_records:
        try:
            import torch
        except ImportError:
            raise SystemExit("train_torch.py: python3 cannot import torch (pass --no-torch for the fogc summary alone)")
        if not torch.cuda.is_available():
            raise SystemExit("train_torch.py: no CUDA device: the comparison must run on the GPU fogc ran on")
        device = torch.device("cuda", 0)
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        print("torch %s on %s; %d warm-up + %d timed steps per run" % (torch.__version__, torch.cuda.get_device_name(device), args.warmup, args.steps), flush=True)
        if os.path.isdir(args.work):
            shutil.rmtree(args.work)
        for info in models:
            t0 = time.time()
            path = export(info, args.work)
            pkg_model, pkg_train = load_package(path, "fogc_bench_" + info["model"].replace("-", "_"))
            print("%s: exported %s (%s) in %.1f s" % (info["model"], info["file"], info["fog_model"], time.time() - t0), flush=True)
            for mode in args.modes:
                try:
                    rec = run_torch(torch, pkg_model, pkg_train, info, mode, args, device)
                    print("%s torch %-7s batch %dx%d: %.1f ms/step, %.0f tokens/s, max allocated %.0f MiB; warm-up %.1f s; loss %.3f -> %.3f" % (
                        info["model"], mode, rec["batch"], rec["seq"], rec["ms_per_step"], rec["tokens_per_s"],
                        rec["memory"]["max_allocated_bytes"] / 2 ** 20, rec["warmup_s"], rec["losses"][0], rec["losses"][-1]), flush=True)
                    if not all(math.isfinite(x) for x in rec["losses"]):
                        print("  WARNING: non-finite loss", flush=True)
                except Exception as e:  # an OOM or a compile failure ends this run only; the table says so
                    rec = {"side": "torch", "model": info["model"], "mode": mode, "batch": info["batch"], "device": torch.cuda.get_device_name(device),
                           "date": datetime.datetime.now(datetime.timezone.utc).isoformat(), "error": "%s: %s" % (type(e).__name__, str(e).splitlines()[0] if str(e) else "")}
                    print("%s torch %s: FAILED %s" % (info["model"], mode, rec["error"]), flush=True)
                    torch.cuda.empty_cache()
                torch_recs.append(rec)
                if args.out:
                    with open(args.out, "a") as f:
                        f.write(json.dumps(rec) + "\n")
    summary(fogc, torch_recs)


if __name__ == "__main__":
    main()
