// Training-step throughput of a .fog model on the local WebGPU adapter, per precision mode: ms/step
// and tokens/s after warm-up, then GPU time per kernel kind from timestamp queries (one pass per
// kernel) when the adapter has them. Prints figures; never asserts on time.
import { resolve } from "node:path";
import { fusionSummary } from "../compiler/fuse.js";
import type { PrecisionMode } from "../compiler/model.js";
import { compile } from "../compiler/pipeline.js";
import { openGpu } from "../runtime/device.js";
import { zeroMoments } from "../runtime/executor.js";
import { PipelineCache } from "../runtime/gpu-build.js";
import { createGpuExecutor, type GpuExecutor } from "../runtime/gpu-executor.js";
import { initParams } from "../runtime/init.js";
import { profileByKind, profileStep } from "../runtime/profile.js";
import { Prng } from "../runtime/prng.js";

// Usage: node --import tsx bench/step.ts [file.fog] [--steps N] [--batch B] [--seq T]
//   [--modes bf16,fp8,fp8dpa] [--model NAME] [--no-kernels]
function arg(name: string): string | undefined {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : undefined;
}
const num = (name: string): number | undefined => {
  const v = arg(name);
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1) throw new Error(`--${name} must be a positive integer, got '${v}'`);
  return n;
};
const VALUED = new Set(["--steps", "--batch", "--seq", "--modes", "--model"]);
const positional = process.argv.slice(2).filter((a, i, all) => !a.startsWith("--") && !VALUED.has(all[i - 1]));
const file = resolve(positional[0] ?? new URL("../examples/fog-flash-tiny.fog", import.meta.url).pathname);
const steps = num("steps") ?? 10;
const modes = (arg("modes") ?? "bf16,fp8,fp8dpa").split(",") as PrecisionMode[];
const perKernel = !process.argv.includes("--no-kernels");

const gpu = await openGpu();
const cache = new PipelineCache(gpu);
console.log(`adapter: ${gpu.caps.adapterName}${gpu.caps.isCpu ? " (CPU)" : ""}; timestamps: ${gpu.caps.timestamps ? "yes" : "no"}`);

function hyper(step: number) {
  return { step, lr: 1e-3, beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0.1, clip: 1 };
}

for (const precision of modes) {
  const model = arg("model");
  const r = compile(file, { precision, ...(model ? { model } : {}), ...(num("batch") ? { batch: num("batch") } : {}), ...(num("seq") ? { seqLen: num("seq") } : {}) });
  if (!r.program) throw new Error(`${file} does not compile:\n${r.diagnostics.map((d) => d.message).join("\n")}`);
  const { forward, train, model: checked, stats } = r.program;
  const { batch, seqLen } = train;
  const t0 = performance.now();
  const exec = await createGpuExecutor({ forward, train, model: checked }, { gpu, pipelines: cache });
  const built = performance.now() - t0;
  try {
    const params = initParams(forward, 0);
    await exec.loadState({ params, m: zeroMoments(params), v: zeroMoments(params), scales: [], step: 0 });
    const prng = Prng.fromSeed(1);
    const V = checked.vocab;
    const next = () => {
      const tokens = Int32Array.from({ length: batch * seqLen }, () => prng.nextInt(V));
      return { tokens, targets: tokens.map((_, i) => tokens[(i + 1) % tokens.length]), batch, seqLen };
    };
    const w0 = performance.now();
    let step = 1;
    for (; step <= 2; step++) await exec.trainStep(next(), hyper(step)); // warm-up: first use compiles lazily on some drivers
    const warm = performance.now() - w0;
    const times: number[] = [];
    let loss = 0;
    for (let i = 0; i < steps; i++, step++) {
      const t = performance.now();
      loss = (await exec.trainStep(next(), hyper(step))).loss;
      times.push(performance.now() - t);
    }
    times.sort((a, b) => a - b);
    const median = times[Math.floor(times.length / 2)];
    const mean = times.reduce((a, b) => a + b, 0) / times.length;
    const mem = exec.plans.train.memory;
    console.log(
      `\n${checked.name} ${precision}: batch ${batch} × seq ${seqLen}, ${(stats.params / 1e6).toFixed(2)}M params, ` +
        `${exec.plans.train.dispatches.length} dispatches/step, ${cache.size} pipelines so far; plan+build ${built.toFixed(0)} ms, warm-up ${warm.toFixed(0)} ms`,
    );
    const fused = exec.trainFusion;
    if (fused) {
      const f = fusionSummary(fused);
      const packed = fused.storage.filter((s) => s !== "f32").length;
      console.log(`  fusion: ${f.fusedNodes} nodes folded into ${f.elementwise} elementwise, ${f.reduce} reduce, ${f.gemm} GEMM, ${f.embed} embed groups; ${packed} values stored packed (FP8/bf16)`);
    }
    console.log(`  transient memory ${(mem.transient / 2 ** 20).toFixed(2)} MiB after reuse (${(mem.unshared / 2 ** 20).toFixed(2)} MiB without)`);
    console.log(`  ${steps} steps: median ${median.toFixed(2)} ms/step, mean ${mean.toFixed(2)} ms/step, ${((batch * seqLen) / (median / 1000)).toFixed(0)} tokens/s (last loss ${loss.toFixed(4)})`);
    if (perKernel && gpu.caps.timestamps) {
      const prof = await profileStep(exec, next(), hyper(step));
      const ks = prof.rows;
      console.log(`  GPU time per kernel kind (one pass per kernel, so launch gaps excluded): total ${prof.gpuMs.toFixed(2)} ms`);
      for (const k of profileByKind(ks).slice(0, 16)) {
        console.log(`    ${k.kind.padEnd(28)} ${k.ms.toFixed(3).padStart(9)} ms  ${(100 * k.share).toFixed(1).padStart(5)} %  (${k.dispatches} dispatches)`);
      }
      if (prof.quantised) console.log("    (every timestamp is a multiple of 65.536 µs: Dawn quantises them; kernels shorter than that read as 0 or 65.5 µs)");
      const top = [...ks].sort((a, b) => b.ms - a.ms).slice(0, 5);
      console.log(`  slowest dispatches: ${top.map((k) => `${k.label} ${k.ms.toFixed(3)} ms`).join("; ")}`);
    }
  } finally {
    exec.dispose();
  }
}
gpu.destroy();
