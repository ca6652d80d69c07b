// The WebGPU executor against the CPU reference executor on lavapipe: one training step and 5-step
// runs of a small model that uses every construct of the example architectures, in each precision
// mode and FP8 scaling recipe; plus determinism, eval, sampling, probes, state and plan-time errors.
import { mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it, vi } from "vitest";
import type { PrecisionMode } from "../../compiler/model.js";
import { compile } from "../../compiler/pipeline.js";
import { CpuExecutor } from "../../runtime/cpu-executor.js";
import { type AdamWStep, type Batch, cloneState, type Executor, type ExecutorInit, type TrainState, zeroMoments } from "../../runtime/executor.js";
import { createGpuExecutor, type GpuExecutor } from "../../runtime/gpu-executor.js";
import { PipelineCache } from "../../runtime/gpu-build.js";
import { type GemmKernel, gemmPathsFor } from "../../compiler/kernels/gemm.js";
import { gemmTuneKey } from "../../runtime/gemm-autotune.js";
import { type GraphPlan, type PlanOptions, planTrainStep } from "../../runtime/gpu-plan.js";
import { initParams } from "../../runtime/init.js";
import { Prng } from "../../runtime/prng.js";
import { SKIP_GPU, getGpu } from "../helpers/gpu.js";

// Width 16, one layer, heads 2 / kv 1, head_dim 8, vocab 256, batch 2 × seq 8. The block strings
// together what the seven examples use: post-norm with a 1/√L gain (FOG), frozen-gain QK RMSNorm,
// tanh QK-reg with a trainable α (FOG-flash), llama3 RoPE scaling, pre-norm, LayerScale (OP),
// LayerNorm, GeLU, xIELU, SwiGLU, Smooth-SwiGLU, a probe local, the ×50 embedding multiplier and
// the tied head with a final norm. Recipes: delayed (max, history 4), delayed (most recent,
// margin 1, pow2), current (pow2) and blockwise scaling.
const SRC = `
precision delayed_all {
  mode        = fp8dpa
  activations = e4m3
  weights     = e4m3
  gradients   = e5m2
  scaling     = delayed(history = 4, margin = 0, amax = max)
}
precision delayed_pow2 { mode = fp8dpa  scaling = delayed(history = 3, margin = 1, amax = most_recent, pow2 = true) }
precision current_pow2 { mode = fp8  scaling = current(pow2 = true) }
precision blockwise {
  mode        = fp8
  activations = e4m3
  weights     = e4m3
  gradients   = e4m3
  scaling     = blockwise(activations = [1, 8], weights = [8, 8])
}

model mix {
  vocab     = 256
  context   = 8
  width     = 16
  layers    = 1
  heads     = 2
  kv_heads  = 1
  head_dim  = 8
  mlp_width = 32

  embedding { multiplier = 50 }
  head { tied = true  norm = rmsnorm(eps = 1e-5) }

  attention attn_a {
    qk_norm = rmsnorm(eps = 1e-5, gain = frozen(1))
    rope    = rope
  }
  attention attn_b {
    qk_norm = tanh(alpha = 1, trainable = true)
    rope    = rope(base = 500000, scaling = llama3(factor = 8, low_freq = 1, high_freq = 4, original = 8192))
  }
  mlp f_gelu   { activation = gelu }
  mlp f_xielu  { activation = xielu(alpha_p = 0.8, alpha_n = 0.8, beta = 0.5, eps = -1e-6) }
  mlp f_swiglu { activation = swiglu }
  mlp f_smooth { activation = smooth_swiglu }

  block {
    h = h + rmsnorm(attn_a(h), eps = 1e-5, gain = 1 / sqrt(layers))
    h = h + layerscale(f_gelu(rmsnorm(h, eps = 1e-5)), init = 0.5)
    h = h + attn_b(layernorm(h, eps = 1e-5))
    h = h + rmsnorm(f_xielu(h), eps = 1e-5)
    h = h + f_swiglu(rmsnorm(h, eps = 1e-5, gain = none))
    probe a = f_smooth(h)
    h = h + 0.5 * a
  }

  precision = delayed_all

  train {
    tokenizer = bytes
    batch     = 2
    seq_len   = 8
    optimizer = adamw(lr = 1e-2, beta1 = 0.9, beta2 = 0.95, eps = 1e-8, weight_decay = 0.1, clip = 1.0)
  }
}
model mix_pow2 extends mix { precision = delayed_pow2 }
model mix_current extends mix { precision = current_pow2 }
model mix_blockwise extends mix { precision = blockwise }
`;

/** A case: the model, the precision mode (undefined: the recipe's), or "f32": bf16 with every cast made exact. */
type Mode = PrecisionMode | "f32" | undefined;

function program(model: string, mode: Mode): ExecutorInit {
  const precision = mode === "f32" ? "bf16" : mode;
  const r = compile("mix.fog", { model, readFile: () => SRC, ...(precision ? { precision } : {}) });
  if (!r.program) throw new Error(r.diagnostics.map((d) => d.message).join("\n"));
  const { forward, train, model: checked } = r.program;
  // "f32": casts to f32 are identities on both backends, so the step is all-f32: tight tolerances.
  if (mode === "f32") train.nodes = train.nodes.map((n) => (n.op === "cast" ? { ...n, attrs: { to: "f32" as const } } : n));
  return { forward, train, model: checked };
}

function batches(count: number, seed: number): Batch[] {
  const prng = Prng.fromSeed(seed);
  return Array.from({ length: count }, () => {
    const stream = Int32Array.from({ length: 17 }, () => prng.nextInt(256));
    const tokens = new Int32Array(16);
    const targets = new Int32Array(16);
    for (let b = 0; b < 2; b++) {
      tokens.set(stream.subarray(b * 8, b * 8 + 8), b * 8);
      targets.set(stream.subarray(b * 8 + 1, b * 8 + 9), b * 8);
    }
    return { tokens, targets, batch: 2, seqLen: 8 };
  });
}

const hyper = (step: number): AdamWStep => ({ step, lr: 1e-2, beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0.1, clip: 1 });

function freshState(init: ExecutorInit): TrainState {
  const params = initParams(init.forward, 7);
  return { params, m: zeroMoments(params), v: zeroMoments(params), scales: [], step: 0 };
}

const shared: { cache?: PipelineCache } = {};
const made: Executor[] = [];
afterAll(() => made.forEach((e) => e.dispose()));

async function gpuExecutor(init: ExecutorInit): Promise<GpuExecutor> {
  const gpu = await getGpu();
  shared.cache ??= new PipelineCache(gpu);
  const e = await createGpuExecutor(init, { gpu, pipelines: shared.cache });
  made.push(e);
  return e;
}

async function pair(init: ExecutorInit, state = freshState(init)): Promise<{ gpu: GpuExecutor; cpu: CpuExecutor }> {
  const gpu = await gpuExecutor(init);
  const cpu = new CpuExecutor(init);
  await gpu.loadState(state);
  await cpu.loadState(state);
  return { gpu, cpu };
}

const rel = (a: number, b: number): number => Math.abs(a - b) / Math.abs(b);
const maxAbs = (x: ArrayLike<number>): number => {
  let m = 0;
  for (let i = 0; i < x.length; i++) m = Math.max(m, Math.abs(x[i]));
  return m;
};

/** Per tensor: max |a − b| / max |b|, the worst over all tensors. */
function worstRel(a: Map<string, Float32Array>, b: Map<string, Float32Array>): number {
  let worst = 0;
  for (const [k, want] of b) {
    const got = a.get(k)!;
    const scale = maxAbs(want) || 1;
    for (let i = 0; i < want.length; i++) worst = Math.max(worst, Math.abs(got[i] - want[i]) / scale);
  }
  return worst;
}

/**
 * Updated parameters: every element within `tol`·(max |p| of its tensor), except elements whose
 * first AdamW step went the other way (a gradient within rounding noise of 0 flips sign: the update
 * is ±lr·g/(|g| + eps)), at most `flips` of all, each within 2·lr of the reference.
 */
function expectParamsClose(a: TrainState, b: TrainState, tol: number, flips: number, lr: number): void {
  let total = 0;
  let off = 0;
  for (const [k, want] of b.params) {
    const got = a.params.get(k)!;
    const scale = maxAbs(want) || 1;
    for (let i = 0; i < want.length; i++) {
      total++;
      const d = Math.abs(got[i] - want[i]);
      if (d <= tol * scale) continue;
      off++;
      expect(d, `${k}[${i}]: ${got[i]} vs ${want[i]}`).toBeLessThanOrEqual(2 * lr * (1 + 1e-3));
    }
  }
  expect(off / total, `${off} of ${total} parameters moved the other way`).toBeLessThanOrEqual(flips);
}

/**
 * FP8 scale state after the same steps: ring heads equal, scales and amax histories close. Both sides
 * record amax(dS) of the dS they cast (D from the quantised P); FP8DPA's dS slots get 1e-2 because
 * dS = P⊙(dP − D) cancels, so a summation-order difference in D is amplified in its largest element.
 */
function expectScalesClose(a: TrainState, b: TrainState, tol: number, names: string[]): void {
  expect(a.scales.length).toBe(b.scales.length);
  a.scales.forEach((x, i) => {
    const y = b.scales[i];
    const t = names[i].endsWith(".dS") ? Math.max(tol, 1e-2) : tol;
    expect(x.head, `slot ${i} head`).toBe(y.head);
    expect(rel(x.scale, y.scale), `slot ${i} scale ${x.scale} vs ${y.scale}`).toBeLessThanOrEqual(t);
    for (let j = 0; j < y.history.length; j++) expect(Math.abs(x.history[j] - y.history[j]), `slot ${i} amax[${j}]`).toBeLessThanOrEqual(t * Math.abs(y.history[j]));
  });
}

// Tolerances of one step from the same state (loss relative; gradients as the AdamW first moment
// m = (1 − β₁)·clip·g, per tensor relative to its max; scale state relative). In "f32" every op is
// f32 on both sides and only summation order differs (f32 sums of ≤ 256 terms: ~1e-6). With bf16
// or FP8 casts, one element that lands within an ulp of a rounding boundary rounds the other way on
// one side: a bf16 flip moves that element by 2⁻⁸, an FP8 one by 2⁻³ relative, which the backward
// spreads over every gradient upstream of it. The loss is computed before most casts can matter.
const STEP_TOL: Record<string, { loss: number; gradNorm: number; m: number; params: number; flips: number; scales: number }> = {
  f32: { loss: 1e-6, gradNorm: 1e-6, m: 1e-5, params: 1e-5, flips: 1e-3, scales: 1e-6 },
  bf16: { loss: 1e-5, gradNorm: 2e-3, m: 5e-2, params: 1e-4, flips: 2e-3, scales: 0 },
  fp8: { loss: 1e-5, gradNorm: 2e-3, m: 5e-2, params: 1e-4, flips: 2e-3, scales: 1e-5 },
};

// Five steps: the runs' FP8 scales come from their own amaxes, so after one flip the two runs cast
// later steps with slightly different scales (a different FP8 grid): the gap grows step by step.
const RUN_TOL: Record<string, number> = { f32: 1e-5, bf16: 2e-3, fp8: 1e-2 };

const CASES: [model: string, mode: Mode][] = [
  ["mix", "f32"],
  ["mix", "bf16"],
  ["mix", "fp8"],
  ["mix", "fp8dpa"],
  ["mix_pow2", undefined],
  ["mix_current", undefined],
  ["mix_blockwise", undefined],
];

/** Kernels of a plan whose label names a GEMM, with the path their WGSL uses. */
const gemms = (plan: Pick<GraphPlan, "kernels">) =>
  plan.kernels
    .filter((k) => /\(gemm/.test(k.label))
    .map((k) => {
      const [fp8, bf16] = [/gemm \w+ \S+ e[45]m[23]xe[45]m[23]/.test(k.source.wgsl), /gemm \w+ \S+ bf16xbf16/.test(k.source.wgsl)];
      // Where the adapter has subgroup matrices, FP8×FP8 and (pre-scaled) bf16×bf16 GEMMs take them.
      return { label: k.label, sgmm: k.source.wgsl.includes("subgroupMatrixMultiplyAccumulate"), fp8, tensorCores: fp8 || bf16 };
    });

/**
 * The step's GEMMs run where the adapter allows: FP8×FP8 and bf16×bf16 on subgroup matrices when it
 * has them (the H100), so that the CPU comparison above covers that path there; every other GEMM on FMA.
 */
function expectGemmPaths(gpu: GpuExecutor, packedFp8: boolean): void {
  const sgmm = gemmPathsFor(gpu.gpu.caps).includes("subgroup-matrix");
  const all = gemms({ kernels: [...gpu.trainKernels] });
  expect(all.length).toBeGreaterThan(0);
  for (const k of all) expect(k.sgmm, k.label).toBe(sgmm && k.tensorCores);
  expect(all.some((k) => k.fp8), "FP8 GEMMs read packed FP8 operands").toBe(packedFp8);
}

describe.skipIf(SKIP_GPU)("GPU executor vs the CPU reference executor", () => {
  it.each(CASES)("one step and five steps of %s (%s)", async (model, mode) => {
    const init = program(model, mode);
    const kind = mode === "f32" ? "f32" : mode === "bf16" ? "bf16" : "fp8";
    const tol = STEP_TOL[kind];
    const { gpu, cpu } = await pair(init);
    // Blockwise casts stay f32 (the GEMM takes one scale per tensor); every other FP8 recipe packs.
    expectGemmPaths(gpu, kind === "fp8" && model !== "mix_blockwise");
    const data = batches(5, 11);
    const [a, b] = [await gpu.trainStep(data[0], hyper(1)), await cpu.trainStep(data[0], hyper(1))];
    expect(Number.isFinite(a.loss) && a.loss > 0).toBe(true);
    expect(rel(a.loss, b.loss), `loss ${a.loss} vs ${b.loss}`).toBeLessThanOrEqual(tol.loss);
    expect(rel(a.gradNorm, b.gradNorm), `grad norm ${a.gradNorm} vs ${b.gradNorm}`).toBeLessThanOrEqual(tol.gradNorm);
    const [sa, sb] = [await gpu.readState(), await cpu.readState()];
    expect(sa.step).toBe(1);
    expect(worstRel(sa.m, sb.m), "AdamW m (the clipped gradient)").toBeLessThanOrEqual(tol.m);
    expectParamsClose(sa, sb, tol.params, tol.flips, 1e-2);
    expectScalesClose(sa, sb, tol.scales, init.train.scaleSlots.map((x) => x.name));

    const losses: [number, number][] = [[a.loss, b.loss]];
    for (let s = 2; s <= 5; s++) losses.push([(await gpu.trainStep(data[s - 1], hyper(s))).loss, (await cpu.trainStep(data[s - 1], hyper(s))).loss]);
    for (const [i, [x, y]] of losses.entries()) expect(rel(x, y), `step ${i + 1} loss ${x} vs ${y}`).toBeLessThanOrEqual(RUN_TOL[kind]);
    expect(losses[4][0]).toBeLessThan(losses[0][0]); // it trains
  });

  it("runs with the default tiles, and says so, when the GEMM tile cache cannot be read", async () => {
    const dir = mkdtempSync(join(tmpdir(), "fogc-tiles-"));
    mkdirSync(join(dir, "fogc"));
    writeFileSync(join(dir, "fogc", "gemm-tiles.json"), "{not json");
    const saved = process.env.XDG_CACHE_HOME;
    const warn = vi.spyOn(console, "warn").mockImplementation(() => {});
    try {
      process.env.XDG_CACHE_HOME = dir;
      const init = program("mix", "fp8");
      const { gpu, cpu } = await pair(init);
      const [b] = batches(1, 5);
      expect((await gpu.trainStep(b, hyper(1))).loss).toBeCloseTo((await cpu.trainStep(b, hyper(1))).loss, 3);
      expect(warn.mock.calls.map((c) => String(c[0])).join("\n")).toMatch(/gemm-tiles\.json is not valid JSON.*default GEMM tiles/);
    } finally {
      warn.mockRestore();
      if (saved === undefined) delete process.env.XDG_CACHE_HOME;
      else process.env.XDG_CACHE_HOME = saved;
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("is deterministic: the same state and batches give bit-identical losses, norms and weights", async () => {
    const init = program("mix", "fp8dpa");
    const state = freshState(init);
    const runs = [];
    for (let r = 0; r < 2; r++) {
      const gpu = await gpuExecutor(init);
      await gpu.loadState(state);
      const stats = [];
      for (const [i, batch] of batches(3, 5).entries()) stats.push(await gpu.trainStep(batch, hyper(i + 1)));
      runs.push({ stats, state: await gpu.readState() });
    }
    expect(runs[1].stats).toEqual(runs[0].stats);
    expect(runs[1].state).toEqual(runs[0].state);
  });

  it("evaluates, samples and measures probes like the CPU, without touching the training state", async () => {
    const init = program("mix", "fp8");
    const { gpu, cpu } = await pair(init);
    const [data] = batches(1, 3);
    for (const e of [gpu, cpu]) await e.trainStep(data, hyper(1));
    const before = await gpu.readState();
    const [la, lb] = [await gpu.evalLoss(data), await cpu.evalLoss(data)];
    expect(rel(la, lb)).toBeLessThanOrEqual(1e-4);
    expect(await gpu.readState()).toEqual(before); // eval casts with a copy of the scale state
    const lengths = [3, 8];
    const [ga, gb] = [await gpu.lastLogits(data.tokens, lengths), await cpu.lastLogits(data.tokens, lengths)];
    expect(ga.length).toBe(2 * 256);
    expect(maxAbs(ga.map((x, i) => x - gb[i]))).toBeLessThanOrEqual(1e-3 * maxAbs(gb));
    if (cpu.trainStepWithProbes) {
      const [pa, pb] = [await gpu.trainStepWithProbes(data, hyper(2)), await cpu.trainStepWithProbes(data, hyper(2))];
      expect(Object.keys(pa.kurtosis ?? {}).sort()).toEqual(Object.keys(pb.kurtosis ?? {}).sort());
      expect(Object.keys(pa.kurtosis ?? {}).length).toBeGreaterThan(0);
      for (const [k, v] of Object.entries(pb.kurtosis ?? {})) expect(rel(pa.kurtosis![k], v), k).toBeLessThanOrEqual(1e-3);
      expect(rel(pa.loss, pb.loss)).toBeLessThanOrEqual(1e-5);
    }
  });

  it("reads and loads its state exactly (checkpoints resume bit for bit)", async () => {
    const init = program("mix_pow2", undefined);
    const state = freshState(init);
    const data = batches(3, 9);
    const a = await gpuExecutor(init);
    await a.loadState(state);
    await a.trainStep(data[0], hyper(1));
    await a.trainStep(data[1], hyper(2));
    const saved = await a.readState();
    expect(saved.scales.some((s) => s.head !== 0 && s.scale !== 1)).toBe(true);
    const b = await gpuExecutor(init);
    await b.loadState(cloneState(saved));
    expect(await b.readState()).toEqual(saved);
    b.readbackChunkBytes = 1024; // several staging buffers, as a 390M model's 4.6 GB state needs
    expect(await b.readState()).toEqual(saved);
    expect(await b.trainStep(data[2], hyper(3))).toEqual(await a.trainStep(data[2], hyper(3)));
    await expect(b.loadState({ ...saved, scales: saved.scales.slice(1) })).rejects.toThrow(/scale slots/);
    await expect(b.trainStep({ ...data[0], tokens: new Int32Array(3) }, hyper(4))).rejects.toThrow(/lowered for 2×8/);
  });

  it("fails at plan time, naming the node, for FP8DPA with current scaling of P and dS", async () => {
    await expect(gpuExecutor(program("mix_current", "fp8dpa"))).rejects.toThrow(/cannot lower attention .*"b0\.attn_a\.sdpa".*current scaling/);
  });
});

const LAVAPIPE_LIMITS: PlanOptions = { maxSharedBytes: 16384, maxBindingBytes: 1 << 27, offsetAlign: 256 };
const H100_CAPS = { f16: true, subgroups: true, subgroupMinSize: 32, subgroupMaxSize: 32, maxComputeWorkgroupStorageSize: 49152, subgroupMatrix: [{ componentType: "f16", resultComponentType: "f32", M: 16, N: 16, K: 16 }] };

describe("GPU plan: FP8 storage and fusion", () => {
  const tiny = (precision: "bf16" | "fp8" | "fp8dpa") => {
    const r = compile(new URL("../../examples/fog-flash-tiny.fog", import.meta.url).pathname, { batch: 2, seqLen: 16, precision });
    return r.program!.train;
  };

  it("stores GEMM-only FP8 operands as packed codes (1 byte each) and bf16 ones as bf16 (2 bytes)", () => {
    for (const precision of ["fp8", "bf16"] as const) {
      const g = tiny(precision);
      const plan = planTrainStep(g, LAVAPIPE_LIMITS, { probes: true }); // the whole graph: node ids as in g
      const storage = plan.fused!.storage;
      const packed = g.nodes.filter((n) => storage[n.id] !== "f32");
      // fp8: the linear layers' operands are FP8 (the head stays bf16); bf16: every GEMM operand is bf16.
      expect(packed.some((n) => storage[n.id] === (precision === "fp8" ? "e4m3" : "bf16"))).toBe(true);
      for (const n of packed) {
        const buf = plan.buffers.find((b) => b.label === n.name);
        const elements = n.shape.reduce((a, d) => a * d, 1);
        expect(buf?.bytes, n.name).toBe(Math.ceil(elements / (storage[n.id] === "bf16" ? 2 : 4)) * 4);
      }
    }
  });

  it("takes the subgroup-matrix path for FP8×FP8 and bf16×bf16 GEMMs where the adapter offers it, FMA for the rest", () => {
    const plan = planTrainStep(tiny("fp8dpa"), { ...LAVAPIPE_LIMITS, caps: H100_CAPS }, { probes: false });
    const all = gemms(plan);
    expect(all.filter((k) => k.sgmm).length).toBeGreaterThan(0);
    for (const k of all) expect(k.sgmm, k.label).toBe(k.tensorCores);
    const fma = gemms(planTrainStep(tiny("fp8dpa"), LAVAPIPE_LIMITS, { probes: false }));
    expect(fma.some((k) => k.sgmm)).toBe(false);
  });

  it("runs a tuned GEMM shape with its cached tile and every other GEMM with the default", () => {
    const g = tiny("fp8dpa");
    const configs = (plan: GraphPlan) => plan.kernels.flatMap((k) => ((k.source as Partial<GemmKernel>).gemm ? [(k.source as GemmKernel).gemm] : []));
    const plain = configs(planTrainStep(g, { ...LAVAPIPE_LIMITS, caps: H100_CAPS }, { probes: false }));
    const first = plain.find((c) => c.path === "subgroup-matrix")!;
    const shape = { M: first.M, N: first.N, K: first.K, transA: first.transA, transB: first.transB, a: first.a, b: first.b, path: first.path };
    const tile = { bm: 64, bn: 64, bk: 32, tm: 4, tn: 4, fmaLoads: "shared" as const, mma: { M: 16, N: 16, K: 16 }, sgRows: 2, sgCols: 2, subgroupSize: 32, sharedLayout: "k-major" as const, pad: 8, stages: 1 as const };
    const entries = { [gemmTuneKey("test adapter", shape)]: { tile, seconds: 1, defaultSeconds: 2, tunedAt: "2026-11-23" } };
    const tuned = configs(planTrainStep(g, { ...LAVAPIPE_LIMITS, caps: H100_CAPS, tunedTiles: { adapter: "test adapter", entries } }, { probes: false }));
    expect(tuned.length).toBe(plain.length);
    const same = (c: GemmKernel["gemm"]) => gemmTuneKey("test adapter", c) === gemmTuneKey("test adapter", shape);
    expect(tuned.filter(same).length).toBeGreaterThan(0);
    for (const c of tuned) expect(c.tile, c.name).toEqual(same(c) ? tile : undefined);
    // Another adapter's entries are not this one's.
    const other = configs(planTrainStep(g, { ...LAVAPIPE_LIMITS, caps: H100_CAPS, tunedTiles: { adapter: "another adapter", entries } }, { probes: false }));
    for (const c of other) expect(c.tile, c.name).toBeUndefined();
  });

  it("fuses: fewer dispatches than graph nodes, every kernel with a cost (GEMMs 2MNK)", () => {
    const g = tiny("fp8dpa");
    const plan = planTrainStep(g, LAVAPIPE_LIMITS, { probes: false });
    const labels = plan.kernels.map((k) => k.label);
    expect(labels.some((l) => l.includes("(gemm+residual)"))).toBe(true);
    expect(labels.some((l) => /\(gelu\+fp8\)/.test(l))).toBe(true);
    expect(labels.some((l) => l.includes("(embed+scale)"))).toBe(true);
    for (const k of plan.kernels) expect(k.cost && k.cost.bytes > 0, k.label).toBe(true);
    const fc1 = g.nodes.find((n) => n.name === "b0.ffn.fc1")!;
    const k = plan.kernels.find((x) => x.label === "b0.ffn.fc1 (gemm)")!;
    expect(k.cost!.flops).toBe(2 * fc1.shape[0] * fc1.shape[1] * 96);
  });
});

describe("GPU plan of every example", () => {
  const examples = readdirSync(new URL("../../examples", import.meta.url)).filter((f) => f.endsWith("-tiny.fog"));
  it.each(examples)("%s lowers in each precision mode", (file) => {
    for (const precision of ["bf16", "fp8", "fp8dpa"] as const) {
      const r = compile(new URL(`../../examples/${file}`, import.meta.url).pathname, { batch: 1, seqLen: 8, precision });
      expect(r.program, r.diagnostics.map((d) => d.message).join("\n")).toBeDefined();
      const plan = planTrainStep(r.program!.train, LAVAPIPE_LIMITS, { probes: true });
      expect(plan.kernels.length).toBeGreaterThan(r.program!.train.nodes.length / 3);
      // And with subgroup matrices (the H100): every FP8×FP8 and bf16×bf16 GEMM on that path.
      const sg = planTrainStep(r.program!.train, { ...LAVAPIPE_LIMITS, caps: H100_CAPS }, { probes: true });
      for (const k of gemms(sg)) expect(k.sgmm, k.label).toBe(k.tensorCores);
    }
  });
});
