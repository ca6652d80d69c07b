// Elementwise kernels (fused expression trees with broadcast inputs and casts, RoPE, GLU, xIELU,
// embedding gather/scatter) on the test device against naive f64 oracles written here.
// Tolerances: f32 paths 1e-5 relative (a handful of f32 ops and expr.ts's erf, |error| ≤ 1e-7);
// RoPE 1e-5 too (positions < 16, so the f32 angle θ = pos·f carries ≤ 16·2^-24 of error); FP8/bf16
// outputs must match the TS codec's codes wherever the oracle is not within 1e-5 of a midpoint.
import { describe, expect, it } from "vitest";
import { elementwise, embed, embedGrad, embedGradIndexed, glu, gluGrad, rope, tokenIndex, xielu, xieluParamGrad } from "../../compiler/kernels/elementwise.js";
import type { Ew } from "../../compiler/kernels/reduce.js";
import { FP8_FORMATS, encodeOne, roundToBF16, unpackFP8 } from "../../runtime/fp8.js";
import { withGpu } from "../helpers/gpu.js";
import { expectClose, f32, rng, run, expectCodes } from "./harness.js";

const TOL = 1e-5;
const rand = rng(11);

/** erf by its Maclaurin series (|x| < 3 needs ~40 terms; f64 keeps ~1e-15 relative). */
function erf(x: number): number {
  let term = x;
  let sum = x;
  for (let n = 1; n < 80; n++) {
    term *= (-x * x) / n;
    sum += term / (2 * n + 1);
  }
  return (2 / Math.sqrt(Math.PI)) * sum;
}
const gelu = (x: number): number => 0.5 * x * (1 + erf(x / Math.SQRT2));
const geluD = (x: number): number => 0.5 * (1 + erf(x / Math.SQRT2)) + (x * Math.exp(-0.5 * x * x)) / Math.sqrt(2 * Math.PI);
const sig = (x: number): number => 1 / (1 + Math.exp(-x));
const silu = (x: number): number => x * sig(x);
const siluD = (x: number): number => sig(x) * (1 + x * (1 - sig(x)));
const softplus = (x: number): number => Math.log1p(Math.exp(x));


describe("fused elementwise chains", () => {
  // y = gelu(x + bias[col]) · g[row] + s: same-shape, row-broadcast, column-broadcast and scalar inputs.
  const [rows, cols] = [5, 65];
  const expr: Ew = { op: "add", args: [{ op: "mul", args: [{ op: "gelu", args: [{ op: "add", args: [{ in: 0 }, { in: 1 }] }] }, { in: 2 }] }, { in: 3 }] };
  const x = rand(rows * cols, -4, 4);
  const bias = rand(cols);
  const g = rand(rows, -2, 2);
  const s = Float32Array.of(0.25);
  const want = Float64Array.from(x, (v, i) => gelu(v + bias[i % cols]) * g[Math.floor(i / cols)] + s[0]);
  const cfg = { name: "ew", rows, cols, inputs: ["none", "row", "col", "scalar"] as const, expr, wg: 64 };
  const data = { in0: x, in1: bias, in2: g, in3: s };

  it("f32 output", () =>
    withGpu(async (gpu) => {
      const out = await run(gpu, elementwise({ ...cfg, inputs: [...cfg.inputs] }), { ...data, y: x.byteLength });
      expectClose(f32(out.y), want, TOL, "y");
    }));

  it("E5M2 output with scale and amax, and bf16 output", () =>
    withGpu(async (gpu) => {
      const k = elementwise({ ...cfg, inputs: [...cfg.inputs], out: { dtype: "e5m2", scale: 0, amax: 1 } });
      const out = await run(gpu, k, { ...data, y: rows * cols, scales: Float32Array.of(1000), amax: 8 });
      const spec = FP8_FORMATS.e5m2;
      expectCodes(unpackFP8(new Uint32Array(out.y), rows * cols), want.map((v) => v * 1000), (v) => encodeOne(v, spec, true));
      expectClose([f32(out.amax)[1]], [Math.max(...want.map(Math.abs))], TOL, "amax");
      if (gpu.caps.subgroups) {
        // amax by subgroupMax (no barriers): the same value, exactly (max does not depend on order).
        const ks = elementwise({ ...cfg, inputs: [...cfg.inputs], out: { dtype: "e5m2", scale: 0, amax: 1, subgroups: true } });
        expect(ks.wgsl).toContain("subgroupMax");
        const os = await run(gpu, ks, { ...data, y: rows * cols, scales: Float32Array.of(1000), amax: 8 });
        expect(f32(os.amax)[1]).toBe(f32(out.amax)[1]);
        expect(Array.from(new Uint32Array(os.y))).toEqual(Array.from(new Uint32Array(out.y)));
      }
      const kb = elementwise({ ...cfg, inputs: [...cfg.inputs], out: { dtype: "bf16" } });
      const ob = await run(gpu, kb, { ...data, y: rows * cols * 2 });
      const bits = (v: number): number => new Uint32Array(Float32Array.of(roundToBF16(v)).buffer)[0] >>> 16;
      expectCodes(new Uint16Array(ob.y), want, bits);
    }));
});

describe("RoPE", () => {
  const [T, H, D] = [7, 3, 16];
  const rows = 2 * T;
  const x = rand(rows * H * D);
  const scaling = { factor: 8, lowFreq: 1, highFreq: 4, original: 32 };
  function ropeRef(inv: boolean, withScaling: boolean): Float64Array {
    const half = D / 2;
    const y = new Float64Array(x.length);
    for (let r = 0; r < rows; r++)
      for (let h = 0; h < H; h++)
        for (let i = 0; i < half; i++) {
          let f = 10000 ** ((-2 * i) / D);
          if (withScaling) {
            const lam = (2 * Math.PI) / f;
            const a = (scaling.original / lam - scaling.lowFreq) / (scaling.highFreq - scaling.lowFreq);
            f = lam < scaling.original / scaling.highFreq ? f : lam > scaling.original / scaling.lowFreq ? f / scaling.factor : ((1 - a) * f) / scaling.factor + a * f;
          }
          const th = (inv ? -1 : 1) * (r % T) * f;
          const o = (r * H + h) * D;
          y[o + i] = x[o + i] * Math.cos(th) - x[o + i + half] * Math.sin(th);
          y[o + i + half] = x[o + i + half] * Math.cos(th) + x[o + i] * Math.sin(th);
        }
    return y;
  }
  for (const [inverse, sc] of [[false, false], [true, false], [false, true]] as const) {
    it(`${inverse ? "inverse" : "forward"}${sc ? " with Llama-3.1 scaling" : ""}`, () =>
      withGpu(async (gpu) => {
        const k = rope({ name: "rope", rows, heads: H, headDim: D, seqLen: T, base: 10000, inverse, scaling: sc ? scaling : undefined, wg: 32 });
        const out = await run(gpu, k, { x, y: x.byteLength });
        expectClose(f32(out.y), ropeRef(inverse, sc), TOL, "rope");
      }));
  }
  it("forward fused with an E4M3 cast (4 pairs per invocation)", () =>
    withGpu(async (gpu) => {
      const k = rope({ name: "rope8", rows, heads: H, headDim: D, seqLen: T, base: 10000, inverse: false, out: { dtype: "e4m3", scale: 0 } });
      const out = await run(gpu, k, { x, y: x.length, scales: Float32Array.of(200) });
      const spec = FP8_FORMATS.e4m3;
      expectCodes(unpackFP8(new Uint32Array(out.y), x.length), ropeRef(false, false).map((v) => v * 200), (v) => encodeOne(v, spec, true));
    }));
});

describe("GLU, xIELU", () => {
  const [rows, F] = [3, 33];
  const x = rand(rows * 2 * F, -3, 3);
  const dy = rand(rows * F);
  for (const [act, f, df] of [["silu", silu, siluD], ["gelu", gelu, geluD]] as const) {
    it(`GLU(${act}) forward and backward`, () =>
      withGpu(async (gpu) => {
        const at = (r: number, j: number): number => x[r * 2 * F + j];
        const y = Float64Array.from({ length: rows * F }, (_, e) => f(at(Math.floor(e / F), e % F)) * at(Math.floor(e / F), F + (e % F)));
        const dx = new Float64Array(x.length);
        for (let r = 0; r < rows; r++)
          for (let j = 0; j < F; j++) {
            dx[r * 2 * F + j] = dy[r * F + j] * at(r, F + j) * df(at(r, j));
            dx[r * 2 * F + F + j] = dy[r * F + j] * f(at(r, j));
          }
        const cfg = { name: "glu", rows, width: F, act, wg: 32 };
        expectClose(f32((await run(gpu, glu(cfg), { x, y: rows * F * 4 })).y), y, TOL, "y");
        expectClose(f32((await run(gpu, gluGrad(cfg), { x, dy, dx: x.byteLength })).dx), dx, TOL, "dx");
      }));
  }

  it("xIELU forward, dx, dρ_p, dρ_n (incl. x in (ε, 0] and near 0)", () =>
    withGpu(async (gpu) => {
      const [beta, eps] = [0.5, -1e-6];
      const xs = Float32Array.from([...rand(200, -6, 3), 0, -5e-7, -1e-6, -2e-6, 1e-4, -1e-3, -0.49, -0.51]);
      const g = rand(xs.length);
      const [rp, rn] = [0.2034, -1.0502];
      const [ap, an] = [softplus(rp), beta + softplus(rn)];
      const gfn = (v: number): number => Math.expm1(Math.min(v, eps)) - v;
      const want = Float64Array.from(xs, (v) => (v > 0 ? ap * v * v + beta * v : an * gfn(v) + beta * v));
      const wantDx = Float64Array.from(xs, (v, i) => g[i] * (v > 0 ? 2 * ap * v + beta : an * ((v < eps ? Math.exp(v) : 0) - 1) + beta));
      let dp = 0;
      let dn = 0;
      xs.forEach((v, i) => (v > 0 ? (dp += g[i] * v * v) : (dn += g[i] * gfn(v))));
      const cfg = { name: "xielu", n: xs.length, beta, eps, wg: 64 };
      const rho = { rho_p: Float32Array.of(rp), rho_n: Float32Array.of(rn) };
      expectClose(f32((await run(gpu, xielu(cfg), { x: xs, ...rho, y: xs.byteLength })).y), want, TOL, "y");
      expectClose(f32((await run(gpu, xielu(cfg, true), { x: xs, ...rho, dy: g, dx: xs.byteLength })).dx), wantDx, TOL, "dx");
      for (const [wrt, sum, r] of [["rho_p", dp, rp], ["rho_n", dn, rn]] as const) {
        const out = await run(gpu, xieluParamGrad({ ...cfg, wrt, parts: 3 }), { x: xs, ...rho, dy: g, y: 12 });
        const parts = f32(out.y);
        expectClose([parts[0] + parts[1] + parts[2]], [sum * sig(r)], TOL, wrt);
      }
    }));
});

describe("embedding", () => {
  const [M, D, V] = [70, 65, 37];
  const ids = Int32Array.from({ length: M }, (_, t) => (t * 7 + (t >> 3)) % 11); // repeats; most rows unused
  const table = rand(V * D);
  it("gather with a fused scale", () =>
    withGpu(async (gpu) => {
      const out = await run(gpu, embed({ name: "emb", tokens: M, dim: D, vocab: V, scale: 50 }), { ids, table, y: M * D * 4 });
      expectClose(f32(out.y), Float64Array.from({ length: M * D }, (_, e) => 50 * table[ids[Math.floor(e / D)] * D + (e % D)]), TOL, "y");
    }));
  it("scatter-add backward: deterministic, no atomics", () =>
    withGpu(async (gpu) => {
      const dy = rand(M * D);
      const want = new Float64Array(V * D);
      for (let t = 0; t < M; t++) for (let d = 0; d < D; d++) want[ids[t] * D + d] += dy[t * D + d];
      const k = embedGrad({ name: "embg", tokens: M, dim: D, vocab: V, wg: 32 });
      const a = f32((await run(gpu, k, { ids, dy, dtable: V * D * 4 })).dtable);
      expectClose(a, want, TOL, "dtable");
      const b = f32((await run(gpu, k, { ids, dy, dtable: V * D * 4 })).dtable);
      expect(Array.from(b)).toEqual(Array.from(a)); // bit-identical run to run
      // The token-index variant (the training step's) adds the same rows in the same (token) order.
      const indexed = embedGradIndexed({ name: "embgi", tokens: M, dim: D, vocab: V });
      const c = f32((await run(gpu, indexed, { index: tokenIndex(ids, V), dy, dtable: V * D * 4 })).dtable);
      expect(Array.from(c)).toEqual(Array.from(a));
    }));
  it("token index: ids grouped in token order, out-of-range ids clamped as the lookup clamps them", () => {
    const idx = tokenIndex(Int32Array.of(2, 0, 2, 5, -1, 2), 4);
    expect(Array.from(idx.subarray(0, 5))).toEqual([0, 2, 2, 5, 6]); // offsets per id 0..3 and the end
    expect(Array.from(idx.subarray(5))).toEqual([1, 4, 0, 2, 5, 3]); // id 0: tokens 1, 4 (−1); id 2: 0, 2, 5; id 3: 3 (5)
  });
});
