// Fused attention (forward, dQ, dK/dV) on the test device against a naive f64 oracle with the full
// T×T softmax, causal and not, GQA, partial tiles (seq 7, 9, 19) and the FP8DPA variant.
// Tolerances: f32 paths 1e-5 relative to the tensor's scale (sums of ≤ 19·16 products in f32).
// FP8DPA: the oracle decodes the same E4M3/E5M2 inputs with the TS codec and fake-quantises P and
// dS with it, so the same 1e-5 holds — except that the kernel's P (f32) may sit on the other side of
// an FP8 rounding midpoint than the oracle's (f64): ~1.6e-5 of elements per quantised tensor, each
// moving one FP8 step (≤ 2^-3 relative). Up to 2 such elements per tensor may be off by ≤ 2^-2.
import { describe, expect, it } from "vitest";
import { type AttentionConfig, type AttentionPass, attention, attentionTiles } from "../../compiler/kernels/attention.js";
import { attentionRows } from "../../compiler/kernels/attention-rows.js";
import type { KernelSource } from "../../compiler/kernels/reduce.js";
import { withGpu } from "../helpers/gpu.js";
import { expectClose, f32, rng, run } from "./harness.js";
import { FP8_SCALES, FP8_SLOTS, fp8Case, oracle } from "./attention-oracle.js";

const TOL = 1e-5;
const FLIP = { count: 2, rtol: 0.25 };
const rand = rng(5);


/** `subgroups`: row max/sum by subgroup shuffles (subgroupSize = the adapter's minimum), where the adapter has them. */
type Shape = Pick<AttentionConfig, "batch" | "seqLen" | "heads" | "kvHeads" | "headDim" | "causal" | "tiles"> & { subgroups?: boolean };
const SHAPES: [string, Shape][] = [
  ["causal, GQA 4/2, seq 7, head_dim 8, 4×4 tiles", { batch: 2, seqLen: 7, heads: 4, kvHeads: 2, headDim: 8, causal: true, tiles: { br: 4, bc: 4, lanes: 2 } }],
  ["causal, GQA 4/2, seq 19, head_dim 16, default tiles", { batch: 1, seqLen: 19, heads: 4, kvHeads: 2, headDim: 16, causal: true }],
  ["non-causal, GQA 2/1, seq 9, head_dim 16, 8×4 tiles", { batch: 1, seqLen: 9, heads: 2, kvHeads: 1, headDim: 16, causal: false, tiles: { br: 8, bc: 4, lanes: 4 } }],
  ["causal, GQA 4/2, seq 9, head_dim 8, 8×8 tiles, lane reductions by subgroup shuffles", { batch: 1, seqLen: 9, heads: 4, kvHeads: 2, headDim: 8, causal: true, tiles: { br: 8, bc: 8, lanes: 4 }, subgroups: true }],
  // Default tiles with the adapter's subgroup size: on a GPU with subgroups of ≥ 16, the 32×16/8 and 32×32/16 tiles (attentionTiles).
  ["causal, GQA 2/1, seq 70, head_dim 64, default tiles, subgroup shuffles", { batch: 1, seqLen: 70, heads: 2, kvHeads: 1, headDim: 64, causal: true, subgroups: true }],
];

// The tiled kernels (GPUs) and the row-per-invocation ones (CPU adapters, attention-rows.ts), same oracle.
const GENERATORS: [string, (cfg: AttentionConfig, pass: AttentionPass) => KernelSource][] = [
  ["tiled", attention],
  ["row per invocation", (cfg, pass) => attentionRows(cfg, pass)],
];

describe.each(GENERATORS)("attention, f32 (%s)", (_, attention) => {
  for (const [title, shape] of SHAPES) {
    it(title, () =>
      withGpu(async (gpu) => {
        if (shape.subgroups && !gpu.caps.subgroups) return; // the shuffle path needs subgroups
        const cfg: AttentionConfig = { ...shape, name: "att", scale: 0.3, ...(shape.subgroups ? { subgroupSize: gpu.caps.subgroupMinSize } : {}) };
        const { batch: B, seqLen: T, heads: H, kvHeads: KV, headDim: DH } = shape;
        const [q, k, v, dO] = [rand(B * T * H * DH), rand(B * T * KV * DH), rand(B * T * KV * DH), rand(B * T * H * DH)];
        const want = oracle(q, k, v, dO, cfg);
        const fwd = await run(gpu, attention(cfg, "fwd"), { q, k, v, o: q.byteLength, lse: B * H * T * 4 });
        const [o, lse] = [f32(fwd.o), f32(fwd.lse)];
        expectClose(o, want.o, TOL, "O");
        expectClose(lse, want.lse, TOL, "LSE");
        const dq = await run(gpu, attention(cfg, "bwd_dq"), { q, k, v, o, dout: dO, lse, delta: lse.byteLength, dq: q.byteLength });
        expectClose(f32(dq.delta), want.delta, TOL, "D");
        expectClose(f32(dq.dq), want.dq, TOL, "dQ");
        const dkv = await run(gpu, attention(cfg, "bwd_dkv"), { q, k, v, dout: dO, lse, delta: f32(dq.delta), dk: k.byteLength, dv: v.byteLength });
        expectClose(f32(dkv.dk), want.dk, TOL, "dK");
        expectClose(f32(dkv.dv), want.dv, TOL, "dV");
      }));
  }
});

describe.each(GENERATORS)("attention, FP8DPA (E4M3 Q/K/V/P, E5M2 dO/dS) (%s)", (_, attention) => {
  const [fp8, scales] = [FP8_SLOTS, FP8_SCALES];
  for (const [title, shape] of SHAPES.slice(0, 2)) {
    it(title, () =>
      withGpu(async (gpu) => {
        const cfg: AttentionConfig = { ...shape, name: "att8", scale: 0.3, fp8, subgroups: gpu.caps.subgroups };
        const { batch: B, seqLen: T, heads: H, kvHeads: KV, headDim: DH } = shape;
        const { q, k, v, dO, want } = fp8Case(rand, cfg);
        const plain = oracle(q.deq, k.deq, v.deq, dO.deq, cfg);
        const words = { q: q.words, k: k.words, v: v.words, scales };
        const nq = B * T * H * DH * 4;
        const nk = B * T * KV * DH * 4;
        const fwd = await run(gpu, attention(cfg, "fwd"), { ...words, o: nq, lse: B * H * T * 4, amax: 8 });
        const [o, lse] = [f32(fwd.o), f32(fwd.lse)];
        expectClose(o, want.o, TOL, "O", FLIP);
        expectClose(lse, want.lse, TOL, "LSE");
        expectClose([f32(fwd.amax)[0]], [want.amaxP], TOL, "amax P");
        const dq = await run(gpu, attention(cfg, "bwd_dq"), { ...words, o, dout: dO.words, lse, delta: lse.byteLength, dq: nq });
        expectClose(f32(dq.dq), want.dq, TOL, "dQ", FLIP);
        const dkv = await run(gpu, attention(cfg, "bwd_dkv"), { ...words, dout: dO.words, lse, delta: f32(dq.delta), dk: nk, dv: nk, amax: 8 });
        expectClose(f32(dkv.dk), want.dk, TOL, "dK", FLIP);
        expectClose(f32(dkv.dv), want.dv, TOL, "dV", FLIP);
        expectClose([f32(dkv.amax)[1]], [want.amaxDs], TOL, "amax dS");
        // The fake quantisation is visible: the unquantised oracle is far outside the tolerance.
        for (const key of ["o", "dq", "dk", "dv"] as const) {
          const diff = Math.max(...want[key].map((x, i) => Math.abs(x - plain[key][i])));
          expect(diff, key).toBeGreaterThan(100 * TOL * Math.max(...want[key].map(Math.abs)));
        }
      }));
  }
});

describe("attention tiles", () => {
  const cfg: AttentionConfig = { name: "t", batch: 8, seqLen: 1024, heads: 12, kvHeads: 12, headDim: 128, scale: 0.125, causal: true };
  it("picks the largest tiles that fit the workgroup-memory budget, per pass", () => {
    for (const pass of ["fwd", "bwd_dq", "bwd_dkv"] as const) {
      for (const bytes of [16384, 32768, 49152]) {
        const t = attentionTiles({ ...cfg, maxSharedBytes: bytes }, pass);
        expect(t.br * t.bc).toBeGreaterThanOrEqual(32);
        expect(() => attention({ ...cfg, maxSharedBytes: bytes }, pass)).not.toThrow();
      }
    }
  });
  it("rejects tiles over the budget and bad lane counts", () => {
    expect(() => attention({ ...cfg, tiles: { br: 64, bc: 64, lanes: 4 } }, "fwd")).toThrow(/workgroup memory/);
    expect(() => attention({ ...cfg, tiles: { br: 8, bc: 8, lanes: 3 } }, "fwd")).toThrow(/bad tiles/);
  });
});
