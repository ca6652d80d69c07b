// Fused attention on subgroup matrices (compiler/kernels/attention-sgmm.ts) against the naive f64
// oracle of attention.test.ts (copied below): causal and not, GQA 4/2, partial tiles (seq 9, 19),
// FP8DPA with packed and with f32 inputs, a dO far below f16's normal range, one strip row split
// over two lanes (mma.M 4 at subgroup size 8), and a workgroup taller than the sequence whose
// own rows (Q and dO; K and V in bwd_dkv) reach their registers in two chunks through the step buffer. On an adapter with subgroup matrices the
// kernels run as generated with its MMA shape and default tiles; elsewhere (lavapipe) with
// FOGC_EMULATE_SGMM=1 the matrix operations are emulated per invocation (emulateSubgroupMatrices,
// f16 operands read from workgroup memory and multiplied in f32, as the tensor cores do), which
// checks all of the generated staging, masking, softmax and data movement; else skipped.
//
// Tolerances (expectClose: relative to the element plus the tensor's largest element):
// - FP8DPA: every operand the products see is exact in f16 (decoded E4M3/E5M2 codes, fake-quantised
//   P and dS as code values, f32 inputs that are FP8 values times a power of two, dO scaled by a
//   power of two), so only the f32 accumulation order differs from the FMA kernels: their 1e-5 and
//   FP8 rounding flips (attention.test.ts) hold, with 2e-5 for summation in a different order.
// - f32 inputs: Q, K, V, dO (scaled) and P, dS are rounded to f16, unit roundoff u = 2^-11. Each
//   product of two rounded operands is off by ≤ 2u relative; S's error enters P = exp(S − lse)
//   times τ·|q|·|k| (≤ 1 on average here), so every term of O, D, dQ, dK, dV carries a few u of
//   relative error, of random sign. Summed over ≤ 19 keys and 16 dimensions that is ≲ 1u of the
//   tensor's scale (measured worst: 0.9u, dQ of the small-dO case); TOL16 = 4u = 2^-9 leaves room
//   for other accumulation orders (tensor cores) and is far below what a wrong tile, mask or scale
//   gives (order 1). Without the dynamic dO scale, dO ~1e-6 would sit 16 subnormal steps above 0
//   (~3% error): the small-dO case would fail.
import { describe, expect, it } from "vitest";
import { type AttentionConfig, type AttentionFp8, type AttentionPass, attention } from "../../compiler/kernels/attention.js";
import { type AttentionSgmmTiles, attentionSgmm, attentionSgmmShape, attentionSgmmSupported, attentionSgmmTiles } from "../../compiler/kernels/attention-sgmm.js";
import type { MmaShape } from "../../compiler/kernels/gemm.js";
import type { KernelSource } from "../../compiler/kernels/reduce.js";
import { getGpu, SKIP_GPU } from "../helpers/gpu.js";
import { emulateSubgroupMatrices } from "../helpers/emulate-sgmm.js";
import { expectClose, f32, rng, run } from "./harness.js";
import { FP8_SCALES, FP8_SLOTS, fp8Case, oracle } from "./attention-oracle.js";

const TOL8 = 2e-5;
const FLIP = { count: 2, rtol: 0.25 };
const TOL16 = 2 ** -9;
const rand = rng(7);


// ---------- subgroup matrices emulated (adapters without them) ----------

// ---------- cases ----------

interface Shape extends Pick<AttentionConfig, "batch" | "seqLen" | "heads" | "kvHeads" | "headDim" | "causal"> {
  /** Where emulated: the MMA shape and tiles (the emulation runs any shape; small keeps it fast). */
  mma: MmaShape;
  sgTiles: AttentionSgmmTiles;
}
const A: Shape = { batch: 1, seqLen: 19, heads: 4, kvHeads: 2, headDim: 16, causal: true, mma: { M: 8, N: 8, K: 8 }, sgTiles: { subgroups: 2, cols: 8 } };
// 4 subgroups of 8 rows: one workgroup holds every query (or key) row (R = 32 > seq), staged in 2 chunks of 2C = 16 rows.
const A4: Shape = { ...A, sgTiles: { subgroups: 4, cols: 8 } };
const B: Shape = { batch: 2, seqLen: 9, heads: 4, kvHeads: 2, headDim: 16, causal: false, mma: { M: 4, N: 8, K: 8 }, sgTiles: { subgroups: 2, cols: 16 } };
// GPT-2-small's head_dim, a partial last tile, GQA 2/1 (natively: default tiles of 16×16×16 products).
const C: Shape = { batch: 1, seqLen: 70, heads: 2, kvHeads: 1, headDim: 64, causal: true, mma: { M: 8, N: 8, K: 8 }, sgTiles: { subgroups: 2, cols: 16 } };
const dims = ({ mma: _m, sgTiles: _t, ...d }: Shape) => d;
const TITLE = (s: Shape) =>
  `${s.causal ? "causal" : "non-causal"}, B ${s.batch}, GQA ${s.heads}/${s.kvHeads}, seq ${s.seqLen}, head_dim ${s.headDim} (emulated: mma ${s.mma.M}×${s.mma.N}×${s.mma.K}, ${s.sgTiles.subgroups} subgroups, ${s.sgTiles.cols} cols)`;

/** How the kernels run here: natively (the adapter's shape, default tiles), emulated, or why not at all. */
async function mode(): Promise<{ native: { mma: MmaShape; subgroupSize: number } } | { emulate: number } | string> {
  const gpu = await getGpu();
  const shape = attentionSgmmShape(gpu.caps);
  if (typeof shape !== "string") {
    return { native: shape };
  }
  if (process.env.FOGC_EMULATE_SGMM !== "1") return `adapter '${gpu.caps.adapterName}' cannot run them (${shape}); FOGC_EMULATE_SGMM=1 runs them emulated (slow)`;
  if (!gpu.caps.f16 || !gpu.caps.subgroups || gpu.caps.subgroupMinSize !== gpu.caps.subgroupMaxSize) {
    throw new Error(`adapter '${gpu.caps.adapterName}' lacks f16, subgroups or a fixed subgroup size to emulate subgroup matrices`);
  }
  return { emulate: gpu.caps.subgroupMinSize };
}

type Kernels = (pass: AttentionPass) => KernelSource;
async function kernelsFor(cfg: AttentionConfig, shape: Shape): Promise<Kernels | string> {
  const m = await mode();
  if (typeof m === "string") return m;
  if ("native" in m) {
    const gpu = await getGpu();
    const c = { ...cfg, maxSharedBytes: gpu.caps.maxComputeWorkgroupStorageSize };
    return (pass) => attentionSgmm(c, pass, m.native.mma, m.native.subgroupSize);
  }
  return (pass) => {
    const k = attentionSgmm({ ...cfg, maxSharedBytes: 32768 }, pass, shape.mma, m.emulate, shape.sgTiles);
    return { ...k, wgsl: emulateSubgroupMatrices(k.wgsl) };
  };
}

const TIMEOUT = 900_000;

describe.skipIf(SKIP_GPU)("attention on subgroup matrices, f32 inputs (f16 operands)", () => {
  const cases: [string, Shape, number][] = [
    [TITLE(A), A, 1],
    [TITLE(B), B, 1],
    [TITLE(C), C, 1],
    [`dO ~1e-6 (below f16's normal range: the dynamic power-of-two scale), ${TITLE(A)}`, A, 1e-6],
  ];
  for (const [title, shape, doAmp] of cases) {
    it(title, async (ctx) => {
      const cfg: AttentionConfig = { ...dims(shape), name: "atts", scale: 0.3 };
      const kernels = await kernelsFor(cfg, shape);
      if (typeof kernels === "string") return ctx.skip(kernels);
      const gpu = await getGpu();
      const { batch: Bn, seqLen: T, heads: H, kvHeads: KV, headDim: DH } = shape;
      const [q, k, v] = [rand(Bn * T * H * DH), rand(Bn * T * KV * DH), rand(Bn * T * KV * DH)];
      const dO = rand(Bn * T * H * DH, -doAmp, doAmp);
      const want = oracle(q, k, v, dO, cfg);
      const fwd = await run(gpu, kernels("fwd"), { q, k, v, o: q.byteLength, lse: Bn * H * T * 4 });
      const [o, lse] = [f32(fwd.o), f32(fwd.lse)];
      expectClose(o, want.o, TOL16, "O");
      expectClose(lse, want.lse, TOL16, "LSE");
      const dq = await run(gpu, kernels("bwd_dq"), { q, k, v, o, dout: dO, lse, delta: lse.byteLength, dq: q.byteLength });
      expectClose(f32(dq.delta), want.delta, TOL16, "D");
      expectClose(f32(dq.dq), want.dq, TOL16, "dQ");
      const dkv = await run(gpu, kernels("bwd_dkv"), { q, k, v, dout: dO, lse, delta: f32(dq.delta), dk: k.byteLength, dv: v.byteLength });
      expectClose(f32(dkv.dv), want.dv, TOL16, "dV");
      expectClose(f32(dkv.dk), want.dk, TOL16, "dK");
    }, TIMEOUT);
  }
});

describe.skipIf(SKIP_GPU)("attention on subgroup matrices, FP8DPA (E4M3 Q/K/V/P, E5M2 dO/dS)", () => {
  const [fp8, scales]: [AttentionFp8, Float32Array] = [FP8_SLOTS, FP8_SCALES];
  const cases: [string, Shape, boolean][] = [
    [`packed inputs, ${TITLE(A4)}`, A4, false],
    [`f32 inputs, ${TITLE(B)}`, B, true],
    [`packed inputs, ${TITLE(C)}`, C, false],
  ];
  for (const [title, shape, f32Inputs] of cases) {
    it(title, async (ctx) => {
      const cfg: AttentionConfig = { ...dims(shape), name: "atts8", scale: 0.3, fp8: { ...fp8, f32Inputs } };
      const kernels = await kernelsFor(cfg, shape);
      if (typeof kernels === "string") return ctx.skip(kernels);
      const gpu = await getGpu();
      const { batch: Bn, seqLen: T, heads: H, kvHeads: KV, headDim: DH } = shape;
      const { q, k, v, dO, want } = fp8Case(rand, cfg);
      const ins = f32Inputs
        ? { q: Float32Array.from(q.deq), k: Float32Array.from(k.deq), v: Float32Array.from(v.deq), dout: Float32Array.from(dO.deq) }
        : { q: q.words, k: k.words, v: v.words, dout: dO.words };
      const nq = Bn * T * H * DH * 4;
      const nk = Bn * T * KV * DH * 4;
      const fwd = await run(gpu, kernels("fwd"), { ...ins, scales, o: nq, lse: Bn * H * T * 4, amax: 8 });
      const [o, lse] = [f32(fwd.o), f32(fwd.lse)];
      expectClose(o, want.o, TOL8, "O", FLIP);
      expectClose(lse, want.lse, TOL8, "LSE");
      expectClose([f32(fwd.amax)[0]], [want.amaxP], TOL8, "amax P");
      const dq = await run(gpu, kernels("bwd_dq"), { ...ins, scales, o, lse, delta: lse.byteLength, dq: nq });
      expectClose(f32(dq.delta), want.delta, TOL8, "D");
      expectClose(f32(dq.dq), want.dq, TOL8, "dQ", FLIP);
      const dkv = await run(gpu, kernels("bwd_dkv"), { ...ins, scales, lse, delta: f32(dq.delta), dk: nk, dv: nk, amax: 8 });
      expectClose(f32(dkv.dk), want.dk, TOL8, "dK", FLIP);
      expectClose(f32(dkv.dv), want.dv, TOL8, "dV", FLIP);
      expectClose([f32(dkv.amax)[1]], [want.amaxDs], TOL8, "amax dS");
    }, TIMEOUT);
  }
});

describe("attention on subgroup matrices: contract and tiles", () => {
  const H100 = { f16: true, subgroups: true, subgroupMinSize: 32, subgroupMaxSize: 32, maxComputeWorkgroupStorageSize: 49152, subgroupMatrix: [{ componentType: "f16", resultComponentType: "f32", M: 16, N: 16, K: 16 }] };
  const cfg: AttentionConfig = { name: "t", batch: 8, seqLen: 1024, heads: 12, kvHeads: 4, headDim: 128, scale: 0.125, causal: true, maxSharedBytes: 49152 };
  const mma = H100.subgroupMatrix[0];
  it("binds exactly what the FMA kernels bind, in order", () => {
    const fp8: AttentionFp8 = { scaleInv: { q: 0, k: 1, v: 2, dO: 3 }, scale: { p: 4, dS: 5 }, amax: { p: 0, dS: 1 } };
    for (const c of [cfg, { ...cfg, fp8 }, { ...cfg, fp8: { ...fp8, f32Inputs: true } }]) {
      for (const pass of ["fwd", "bwd_dq", "bwd_dkv"] as const) {
        expect(attentionSgmm(c, pass, mma, 32).bindings, pass).toEqual(attention(c, pass).bindings);
      }
    }
  });
  it("picks tiles that fit the H100's 48 KiB and reports support", () => {
    expect(attentionSgmmSupported(cfg, H100)).toBe(true);
    for (const pass of ["fwd", "bwd_dq", "bwd_dkv"] as const) {
      const t = attentionSgmmTiles(cfg, pass, mma, 32);
      expect(t.subgroups * mma.M * t.cols, pass).toBeGreaterThanOrEqual(512);
      expect(attentionSgmm(cfg, pass, mma, 32).wgsl).toContain("subgroupMatrixMultiplyAccumulate(");
    }
    // bwd_dkv holds its K and V rows in registers (no [R][LD] copies): at GPT-2-small's head_dim 64
    // the budget takes 64 key rows (4 subgroups), not 32.
    const gpt2: AttentionConfig = { ...cfg, heads: 12, kvHeads: 12, headDim: 64 };
    expect(attentionSgmmTiles(gpt2, "bwd_dkv", mma, 32).subgroups * mma.M, "bwd_dkv rows at head_dim 64").toBeGreaterThanOrEqual(64);
    expect(attentionSgmm(gpt2, "bwd_dkv", mma, 32).wgsl).not.toMatch(/sh_k|sh_v/);
    expect(attentionSgmmSupported({ ...cfg, headDim: 72 }, H100)).toBe(false); // not a multiple of 16
    expect(attentionSgmmSupported(cfg, { ...H100, subgroupMatrix: [] })).toBe(false);
    expect(attentionSgmmSupported(cfg, { ...H100, isCpu: true })).toBe(false);
    expect(attentionSgmmSupported(cfg, { ...H100, subgroupMinSize: 16, subgroupMaxSize: 64 })).toBe(false);
  });
});
