// The fogc side of bench/train.sh: training throughput and memory of the GPU executor, per model ×
// precision mode, on random tokens. Each: build, warm-up steps, then timed steps (median ms/step →
// tokens/s); memory = f32 parameters + AdamW moments + the train step's transient and constant plan
// memory. Prints a line per run as it goes and appends one JSON record per run to --out.
// bench/train_torch.py reads those records to train the same models at the same batch in PyTorch.
import { appendFileSync, mkdirSync } from "node:fs";
import { dirname, relative, resolve } from "node:path";
import { numel, paramNodes } from "../compiler/ir.js";
import type { PrecisionMode } from "../compiler/model.js";
import { compile } from "../compiler/pipeline.js";
import { pruneGraph } from "../runtime/cpu-executor.js";
import { DeviceError, openGpu } from "../runtime/device.js";
import { zeroMoments } from "../runtime/executor.js";
import { PipelineCache } from "../runtime/gpu-build.js";
import { createGpuExecutor, type GpuExecutor } from "../runtime/gpu-executor.js";
import { probeOutputNames } from "../runtime/gpu-plan.js";
import { initParams } from "../runtime/init.js";
import { Prng } from "../runtime/prng.js";

const USAGE = `usage: node --import tsx bench/train.ts [--smoke] [--models gpt2-small,390m] [--modes bf16,fp8,fp8dpa]
  [--steps N] [--warmup N] [--batch-gpt2-small B] [--batch-390m B] [--seq T] [--out FILE.jsonl]`;

const ROOT = resolve(dirname(new URL(import.meta.url).pathname), "..");

/** The benchmarked configurations: a .fog file and the batch it runs at (sequence 1024 unless --seq). */
const MODELS: Record<string, { file: string; batch: number }> = {
  "gpt2-small": { file: "bench/fog-flash-gpt2-small.fog", batch: 8 },
  "390m": { file: "examples/fog-flash.fog", batch: 4 },
};
const SMOKE = { name: "tiny", file: "examples/fog-flash-tiny.fog", batch: 2, seq: 32 };
const MODES: readonly PrecisionMode[] = ["bf16", "fp8", "fp8dpa"];

class UsageError extends Error {}

function parseArgs(argv: string[]) {
  const opts = new Map<string, string>();
  const flags = new Set<string>();
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === "--smoke" || a === "--help" || a === "-h") flags.add(a);
    else if (a.startsWith("--") && i + 1 < argv.length) opts.set(a.slice(2), argv[++i]);
    else throw new UsageError(`unknown argument '${a}'`);
  }
  const known = new Set(["models", "modes", "steps", "warmup", "batch-gpt2-small", "batch-390m", "seq", "out"]);
  for (const k of opts.keys()) if (!known.has(k)) throw new UsageError(`unknown option --${k}`);
  const int = (name: string, dflt: number): number => {
    const v = opts.get(name);
    if (v === undefined) return dflt;
    const n = Number(v);
    if (!Number.isInteger(n) || n < 1) throw new UsageError(`--${name} must be a positive integer, got '${v}'`);
    return n;
  };
  const smoke = flags.has("--smoke");
  const modes = (opts.get("modes") ?? MODES.join(",")).split(",") as PrecisionMode[];
  for (const m of modes) if (!MODES.includes(m)) throw new UsageError(`--modes: '${m}' is not one of ${MODES.join(", ")}`);
  const names = (opts.get("models") ?? Object.keys(MODELS).join(",")).split(",");
  for (const n of names) if (!smoke && !(n in MODELS)) throw new UsageError(`--models: '${n}' is not one of ${Object.keys(MODELS).join(", ")}`);
  const seq = int("seq", smoke ? SMOKE.seq : 1024);
  const models = smoke
    ? [{ ...SMOKE, seq }]
    : names.map((name) => ({ name, file: MODELS[name].file, batch: int(`batch-${name}`, MODELS[name].batch), seq }));
  return {
    help: flags.has("--help") || flags.has("-h"),
    smoke,
    models,
    modes,
    steps: int("steps", smoke ? 2 : 4),
    warmup: int("warmup", smoke ? 1 : 2),
    out: opts.get("out"),
  };
}

/** The largest batch ≤ `want` whose logits (and their gradient: batch·seq·vocab f32) fit one storage binding. */
function fitBatch(want: number, seq: number, vocab: number, maxBinding: number): number {
  let b = want;
  while (b > 1 && b * seq * vocab * 4 > maxBinding) b--;
  return b;
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const mib = (bytes: number): string => `${(bytes / 2 ** 20).toFixed(0)} MiB`;

async function main(): Promise<void> {
  let args: ReturnType<typeof parseArgs>;
  try {
    args = parseArgs(process.argv.slice(2));
  } catch (e) {
    if (!(e instanceof UsageError)) throw e;
    console.error(`bench/train.ts: ${e.message}\n${USAGE}`);
    process.exit(1);
  }
  if (args.help) {
    console.log(USAGE);
    return;
  }
  if (args.out) mkdirSync(dirname(resolve(args.out)), { recursive: true });
  let gpu;
  try {
    gpu = await openGpu();
  } catch (e) {
    if (!(e instanceof DeviceError)) throw e;
    console.error(`bench/train.ts: ${e.message}\nfix: ${e.fix}`);
    process.exit(1);
  }
  const cache = new PipelineCache(gpu);
  const date = new Date().toISOString();
  const device = gpu.caps.adapterName;
  console.log(`fogc bench/train on ${device}${gpu.caps.isCpu ? " (CPU adapter)" : ""}, ${date}; ${args.warmup} warm-up + ${args.steps} timed steps per run`);
  const maxBinding = gpu.device.limits.maxStorageBufferBindingSize;

  for (const m of args.models) {
    const file = resolve(ROOT, m.file);
    for (const mode of args.modes) {
      const first = compile(file, { precision: mode, batch: 1, seqLen: m.seq });
      if (!first.program) throw new Error(`${m.file} does not compile:\n${first.diagnostics.map((d) => d.message).join("\n")}`);
      const batch = fitBatch(m.batch, m.seq, first.program.model.vocab, maxBinding);
      if (batch < m.batch) console.log(`  ${m.name}: batch ${m.batch} × ${m.seq} needs logits over the ${mib(maxBinding)} storage-binding limit; running batch ${batch}`);
      const r = compile(file, { precision: mode, batch, seqLen: m.seq });
      if (!r.program) throw new Error(`${m.file} does not compile at batch ${batch}`);
      const { forward, train, model, stats } = r.program;
      // No kurtosis probes: PyTorch's side has none, and the executor would plan a second step with them.
      const probes = probeOutputNames(train);
      const stepGraph = pruneGraph(train, Object.keys(train.outputs).filter((k) => !probes.includes(k)));
      // A run that fails (a buffer over a device limit, out of memory) is recorded as such; the rest go on.
      const failed = (e: unknown): void => {
        const error = `${(e as Error).name}: ${(e as Error).message.split("\n")[0]}`;
        console.log(`${m.name} ${mode}: FAILED ${error}`);
        const record = { side: "fogc", model: m.name, fog_model: model.name, file: relative(ROOT, file), mode, device, date, batch, seq: m.seq, error };
        if (args.out) appendFileSync(args.out, JSON.stringify(record) + "\n");
      };
      const t0 = performance.now();
      let exec: GpuExecutor;
      try {
        exec = await createGpuExecutor({ forward, train: stepGraph, model }, { gpu, pipelines: cache });
      } catch (e) {
        failed(e);
        continue;
      }
      const buildS = (performance.now() - t0) / 1000;
      try {
        const params = initParams(forward, 0);
        await exec.loadState({ params, m: zeroMoments(params), v: zeroMoments(params), scales: [], step: 0 });
        const prng = Prng.fromSeed(1);
        const tokensPerStep = batch * m.seq;
        const next = () => {
          const tokens = Int32Array.from({ length: tokensPerStep }, () => prng.nextInt(model.vocab));
          return { tokens, targets: Int32Array.from({ length: tokensPerStep }, () => prng.nextInt(model.vocab)), batch, seqLen: m.seq };
        };
        const hyper = (step: number) => ({ step, lr: 1e-4, beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0.1, clip: 1 });
        const losses: number[] = [];
        let step = 1;
        const w0 = performance.now();
        for (let i = 0; i < args.warmup; i++, step++) losses.push((await exec.trainStep(next(), hyper(step))).loss);
        const warmS = (performance.now() - w0) / 1000;
        const times: number[] = [];
        for (let i = 0; i < args.steps; i++, step++) {
          const batchData = next(); // sampled outside the timed region: data loading is not the step
          const t = performance.now();
          losses.push((await exec.trainStep(batchData, hyper(step))).loss);
          times.push(performance.now() - t);
        }
        const ms = median(times);
        const P = paramNodes(forward).reduce((a, p) => a + numel(p.shape), 0);
        const mem = exec.plans.train.memory;
        const memory = { params_bytes: 4 * P, optimizer_bytes: 8 * P, transient_bytes: mem.transient, transient_unshared_bytes: mem.unshared, const_bytes: mem.const };
        const peak = memory.params_bytes + memory.optimizer_bytes + memory.transient_bytes + memory.const_bytes;
        const record = {
          side: "fogc",
          model: m.name,
          fog_model: model.name,
          file: relative(ROOT, file),
          mode,
          device,
          date,
          params: P,
          batch,
          seq: m.seq,
          warmup_steps: args.warmup,
          timed_steps: args.steps,
          ms_per_step: ms,
          tokens_per_s: tokensPerStep / (ms / 1000),
          train_tflops: (stats.trainFlopsPerToken * tokensPerStep) / (ms / 1000) / 1e12,
          losses,
          dispatches: exec.plans.train.dispatches.length,
          build_s: buildS,
          warmup_s: warmS,
          memory: { ...memory, peak_bytes: peak },
        };
        console.log(
          `${m.name} ${mode.padEnd(6)} batch ${batch}×${m.seq}: ${ms.toFixed(1)} ms/step, ${record.tokens_per_s.toFixed(0)} tokens/s, ` +
            `${record.train_tflops.toFixed(2)} TFLOP/s (model FLOPs), memory ${mib(peak)} (transient ${mib(mem.transient)}), ` +
            `${record.dispatches} dispatches; build ${buildS.toFixed(1)} s, warm-up ${warmS.toFixed(1)} s; loss ${losses[0].toFixed(3)} → ${losses.at(-1)!.toFixed(3)}`,
        );
        if (!losses.every(Number.isFinite)) console.log(`  WARNING: ${m.name} ${mode} produced a non-finite loss`);
        if (args.out) appendFileSync(args.out, JSON.stringify(record) + "\n");
      } catch (e) {
        failed(e);
      } finally {
        exec.dispose();
      }
    }
  }
  gpu.destroy();
}

await main();
