// Tunes the GEMM tiles of a model's training step on this adapter: plans the step for each mode asked,
// lists its distinct tensor-core GEMM shapes (the FMA ones too with --fma), times the candidate tiles
// of each (runtime/gemm-autotune.ts tuneGemm: results checked against the default tile's) and caches
// the winners, which the executor's plans then run with (FOGC_TUNED_TILES=0 ignores them). Prints
// default vs tuned per shape and the step's GEMM time both ways (FLOP-weighted by each shape's uses).
//   node --import tsx bench/tune-model.ts FILE.fog [--modes bf16,fp8dpa] [--batch B] [--seq T]
//     [--tune-seconds S] [--fma] [--quick]
// --quick: single-buffered k-major candidates only (on the H100 double buffering and the as-stored
// copies never won: docs/perf.md), about a third of the candidates.
import { resolve } from "node:path";
import type { GemmKernel } from "../compiler/kernels/gemm.js";
import type { PrecisionMode } from "../compiler/model.js";
import { compile } from "../compiler/pipeline.js";
import { openGpu } from "../runtime/device.js";
import { type GemmShape, gemmTileCandidates, gemmTuneKey, tuneGemm } from "../runtime/gemm-autotune.js";
import { planOptions } from "../runtime/gpu-executor.js";
import { planTrainStep } from "../runtime/gpu-plan.js";

function arg(name: string): string | undefined {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : undefined;
}
const VALUED = new Set(["--modes", "--batch", "--seq", "--tune-seconds"]);
const positional = process.argv.slice(2).filter((a, i, all) => !a.startsWith("--") && !VALUED.has(all[i - 1]));
if (!positional[0]) throw new Error("usage: node --import tsx bench/tune-model.ts FILE.fog [--modes bf16,fp8dpa] [--batch B] [--seq T] [--tune-seconds S] [--fma]");
const file = resolve(positional[0]);
const modes = (arg("modes") ?? "bf16,fp8dpa").split(",") as PrecisionMode[];
const seconds = Number(arg("tune-seconds") ?? 0.05);
const withFma = process.argv.includes("--fma");
const quick = process.argv.includes("--quick");

const gpu = await openGpu();
console.log(`bench/tune-model.ts ${new Date().toISOString()} adapter: ${gpu.caps.adapterName}; ${file}; modes ${modes.join(",")}`);
const shapes = new Map<string, { shape: GemmShape; uses: number }>();
for (const precision of modes) {
  const batch = Number(arg("batch") ?? 0);
  const seq = Number(arg("seq") ?? 0);
  const r = compile(file, { precision, ...(batch ? { batch } : {}), ...(seq ? { seqLen: seq } : {}) });
  if (!r.program) throw new Error(`${file} does not compile:\n${r.diagnostics.map((d) => d.message).join("\n")}`);
  // The default tiles' plan (no tuned entries), as the executor plans it otherwise.
  const plan = planTrainStep(r.program.train, planOptions(gpu, false), { probes: false });
  for (const k of plan.kernels) {
    const cfg = (k.source as Partial<GemmKernel>).gemm;
    if (!cfg || (cfg.path === "fma" && !withFma)) continue;
    const shape: GemmShape = { M: cfg.M, N: cfg.N, K: cfg.K, transA: cfg.transA, transB: cfg.transB, a: cfg.a, b: cfg.b, path: cfg.path };
    const key = gemmTuneKey(gpu.caps.adapterName, shape);
    const seen = shapes.get(key);
    if (seen) seen.uses++;
    else shapes.set(key, { shape, uses: 1 });
  }
}
console.log(`${shapes.size} distinct GEMM shapes`);
let [before, after] = [0, 0];
for (const [key, { shape, uses }] of shapes) {
  const t0 = performance.now();
  const candidates = gemmTileCandidates(shape, gpu.caps).filter((t) => !quick || shape.path === "fma" || (t.stages === 1 && t.sharedLayout === "k-major"));
  const r = await tuneGemm(gpu, shape, { secondsPerCandidate: seconds, candidates });
  const flops = 2 * shape.M * shape.N * shape.K;
  before += uses * r.defaultSeconds;
  after += uses * r.best.seconds;
  const tf = (s: number) => (flops / s / 1e12).toFixed(1).padStart(6);
  const t = r.best.tile;
  console.log(
    `${key.slice(key.indexOf("|") + 1).padEnd(44)} ×${String(uses).padStart(3)}  default ${(r.defaultSeconds * 1e3).toFixed(3)} ms ${tf(r.defaultSeconds)} TFLOP/s` +
      `  tuned ${(r.best.seconds * 1e3).toFixed(3)} ms ${tf(r.best.seconds)} TFLOP/s  ${t.bm}x${t.bn}x${t.bk} ${t.sgRows}x${t.sgCols}sg ${t.sharedLayout} stages ${t.stages}  (${((performance.now() - t0) / 1e3).toFixed(1)} s)`,
  );
}
console.log(`GEMM time of the planned steps (each shape × its uses, f32 output, no epilogue): default ${(before * 1e3).toFixed(2)} ms, tuned ${(after * 1e3).toFixed(2)} ms (${(before / after).toFixed(3)}×)`);
gpu.destroy();
