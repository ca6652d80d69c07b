// Reductions (sum-to-shape with maps and partials, max/absmax, amax by atomicMax for current
// scaling, kurtosis moments per token and per sequence) on the test device against f64 oracles.
// Tolerance 1e-5 relative: f32 sums of ≤ 4550 terms of one sign-mixed magnitude stay well inside it
// (tree order; worst case n·2^-24 ≈ 3e-4 is never approached by random data, typical √n·2^-24).
import { describe, expect, it } from "vitest";
import { type Ew, kurtosis, reduce, sumToShape } from "../../compiler/kernels/reduce.js";
import { withGpu } from "../helpers/gpu.js";
import { expectClose, f32, rng, run } from "./harness.js";

const TOL = 1e-5;
const rand = rng(3);

describe("sumToShape", () => {
  it("views a broadcast gradient's reduction as [outer, red, inner]", () => {
    expect(sumToShape([70, 65], [65])).toEqual({ outer: 1, red: 70, inner: 65 });
    expect(sumToShape([70, 65], [70, 1])).toEqual({ outer: 70, red: 65, inner: 1 });
    expect(sumToShape([2, 7, 65], [])).toEqual({ outer: 1, red: 910, inner: 1 });
    expect(sumToShape([2, 7, 65], [1, 7, 65])).toEqual({ outer: 1, red: 2, inner: 455 });
    expect(sumToShape([4, 5], [4, 5])).toEqual({ outer: 20, red: 1, inner: 1 });
    expect(() => sumToShape([2, 7, 65], [1, 7, 1])).toThrow(/adjacent/);
    expect(() => sumToShape([4, 5], [3])).toThrow(/cannot reduce/);
  });
});

describe("reduce", () => {
  const [R, C] = [70, 65];
  const x = rand(R * C, -2, 2);
  const w = rand(R * C);
  const colSum = (f: (i: number) => number): Float64Array => {
    const s = new Float64Array(C);
    for (let i = 0; i < R * C; i++) s[i % C] += f(i);
    return s;
  };

  it("column sums (bias gradient), in one pass and as 3 partials + a second pass", () =>
    withGpu(async (gpu) => {
      const want = colSum((i) => x[i]);
      const one = await run(gpu, reduce({ name: "cs", outer: 1, red: R, inner: C, op: "sum", wg: 64 }), { in0: x, y: C * 4 });
      expectClose(f32(one.y), want, TOL, "one pass");
      const parts = await run(gpu, reduce({ name: "cs3", outer: 1, red: R, inner: C, op: "sum", parts: 3, wg: 64 }), { in0: x, y: 3 * C * 4 });
      const fin = await run(gpu, reduce({ name: "cs3f", outer: 1, red: 3, inner: C, op: "sum" }), { in0: f32(parts.y), y: C * 4 });
      expectClose(f32(fin.y), want, TOL, "two passes");
    }));

  it("row sums and a scalar sum of a mapped product (a scalar gain's gradient), scaled", () =>
    withGpu(async (gpu) => {
      const map: Ew = { op: "mul", args: [{ in: 0 }, { in: 1 }] };
      const rows = await run(gpu, reduce({ name: "rs", outer: R, red: C, inner: 1, op: "sum", inputs: 2, map, wg: 32 }), { in0: x, in1: w, y: R * 4 });
      const wantRows = Float64Array.from({ length: R }, (_, r) => x.subarray(r * C, (r + 1) * C).reduce((a, v, j) => a + v * w[r * C + j], 0));
      expectClose(f32(rows.y), wantRows, TOL, "row sums");
      const all = await run(gpu, reduce({ name: "ss", outer: 1, red: R * C, inner: 1, op: "sum", inputs: 2, map, scale: 0.5 }), { in0: x, in1: w, y: 4 });
      expectClose(f32(all.y), [0.5 * wantRows.reduce((a, v) => a + v, 0)], TOL, "scalar");
    }));

  it("max per column and amax by atomicMax (current scaling; keeps a larger old value)", () =>
    withGpu(async (gpu) => {
      const mx = await run(gpu, reduce({ name: "mx", outer: 1, red: R, inner: C, op: "max", wg: 64 }), { in0: x, y: C * 4 });
      const want = new Float64Array(C).fill(-Infinity);
      x.forEach((v, i) => (want[i % C] = Math.max(want[i % C], v)));
      expect(Array.from(f32(mx.y))).toEqual(Array.from(want));
      const amaxWant = Math.max(...Array.from(x, Math.abs));
      const k = reduce({ name: "am", outer: 1, red: R * C, inner: 1, op: "absmax", parts: 4, atomicAmax: 1 });
      const fresh = await run(gpu, k, { in0: x, amax: new Float32Array([7, 0.5]) });
      expect(Array.from(f32(fresh.amax))).toEqual([7, Math.fround(amaxWant)]);
      const kept = await run(gpu, k, { in0: x, amax: new Float32Array([0, 9]) });
      expect(f32(kept.amax)[1]).toBe(9);
    }));
});

describe("kurtosis (papers.md §7.1)", () => {
  const [B, T, D] = [3, 5, 24];
  // Heavy-tailed rows: one channel per token scaled up, so per-token and per-sequence forms differ.
  const x = rand(B * T * D).map((v, i) => (i % D === (Math.floor(i / D) * 5) % D ? v * 8 : v * (1 + (Math.floor(i / D) % 3))));
  function kurt(len: number): number {
    let total = 0;
    for (let o = 0; o < x.length; o += len) {
      let m2 = 0;
      let m4 = 0;
      for (let j = 0; j < len; j++) {
        m2 += x[o + j] ** 2;
        m4 += x[o + j] ** 4;
      }
      total += m4 / len / (m2 / len) ** 2;
    }
    return total / (x.length / len);
  }
  for (const [mode, len] of [["per_token", D], ["per_sequence", T * D]] as const) {
    it(`${mode}: one workgroup, and partials finished by a sum`, () =>
      withGpu(async (gpu) => {
        const cfg = { name: "k", tokens: B * T, width: D, mode, seqLen: T, wg: 32 };
        const n = (B * T * D) / len;
        const one = await run(gpu, kurtosis({ ...cfg, vectorsPerWorkgroup: n }), { x, y: 4 });
        expectClose(f32(one.y), [kurt(len)], TOL, "one");
        const parts = await run(gpu, kurtosis(cfg), { x, y: n * 4 });
        const fin = await run(gpu, reduce({ name: "kf", outer: 1, red: n, inner: 1, op: "sum" }), { in0: f32(parts.y), y: 4 });
        expectClose(f32(fin.y), [kurt(len)], TOL, "parts");
      }));
  }
  it("the two forms differ on this data", () => expect(Math.abs(kurt(D) - kurt(T * D))).toBeGreaterThan(0.1));
});
