// Row-wise kernels (norms fwd/bwd, softmax, cross-entropy, row absmax) on the test device against
// naive f64 oracles written here. Widths like 65 are not multiples of the workgroup size.
// Tolerances: f32 kernels 1e-5 relative (row sums of ≤ 65 terms plus exp/log/sqrt, each a few f32
// ulps ≈ 1e-7, stay far below it); FP8/bf16 outputs compare codes with the TS codec applied to the
// oracle, except where the oracle sits within 1e-5 of a rounding midpoint (the f32 kernel may
// legitimately round either way there).
import { describe, expect, it } from "vitest";
import { type NormConfig, crossEntropy, crossEntropyGrad, norm, normGrad, rowAbsmax, softmax } from "../../compiler/kernels/rowwise.js";
import { FP8_FORMATS, encodeOne, roundToBF16, unpackFP8 } from "../../runtime/fp8.js";
import { withGpu } from "../helpers/gpu.js";
import { expectClose, f32, rng, run, expectCodes } from "./harness.js";

const TOL = 1e-5;
const rand = rng(7);

interface NormRef {
  y: Float64Array;
  dx: Float64Array;
  dgain: Float64Array;
  dbias: Float64Array;
}

/** Naive f64 norm forward and backward (dx by the chain rule through mean and variance). */
function normRef(x: ArrayLike<number>, dy: ArrayLike<number>, W: number, c: Omit<NormConfig, "name" | "rows" | "width">, gain?: ArrayLike<number>, bias?: ArrayLike<number>): NormRef {
  const g = (j: number): number => (c.gain === "param" ? gain![j] : c.gain === "none" ? 1 : c.gain);
  const n = x.length;
  const out = { y: new Float64Array(n), dx: new Float64Array(n), dgain: new Float64Array(W), dbias: new Float64Array(W) };
  for (let o = 0; o < n; o += W) {
    const row = Array.from({ length: W }, (_, j) => x[o + j]);
    const mu = c.kind === "layer" ? row.reduce((a, v) => a + v, 0) / W : 0;
    const r = 1 / Math.sqrt(row.reduce((a, v) => a + (v - mu) ** 2, 0) / W + c.eps);
    const xh = row.map((v) => (v - mu) * r);
    // dL/dx̂_j = dy_j g_j; dx_i = r·(dx̂_i − mean(dx̂) [layer] − x̂_i·mean(dx̂ ⊙ x̂))
    const dxh = xh.map((_, j) => dy[o + j] * g(j));
    const m1 = c.kind === "layer" ? dxh.reduce((a, v) => a + v, 0) / W : 0;
    const m2 = dxh.reduce((a, v, j) => a + v * xh[j], 0) / W;
    for (let j = 0; j < W; j++) {
      out.y[o + j] = xh[j] * g(j) + (bias ? bias[j] : 0);
      out.dx[o + j] = r * (dxh[j] - m1 - xh[j] * m2);
      out.dgain[j] += dy[o + j] * xh[j];
      out.dbias[j] += dy[o + j];
    }
  }
  return out;
}

/** Sums partial rows [parts, W] into [W]. */
function sumParts(p: Float32Array, parts: number, W: number): Float64Array {
  const s = new Float64Array(W);
  for (let i = 0; i < parts * W; i++) s[i % W] += p[i];
  return s;
}


describe("norms", () => {
  const cases: { title: string; rows: number; W: number; c: Omit<NormConfig, "name" | "rows" | "width">; rpw?: number }[] = [
    { title: "RMSNorm, learned gain, width 65", rows: 5, W: 65, c: { kind: "rms", eps: 1e-5, gain: "param", wg: 32 } },
    { title: "LayerNorm, gain + bias, 2 rows per workgroup", rows: 5, W: 65, c: { kind: "layer", eps: 1e-5, gain: "param", bias: true, wg: 16 }, rpw: 2 },
    { title: "QK-norm: RMSNorm per head (group 8), frozen gain 1", rows: 7 * 4, W: 8, c: { kind: "rms", eps: 1e-6, gain: 1, wg: 8 } },
    { title: "LayerNorm without parameters", rows: 3, W: 33, c: { kind: "layer", eps: 1e-5, gain: "none" } },
  ];
  for (const { title, rows, W, c, rpw } of cases) {
    it(`${title}: forward and backward`, () =>
      withGpu(async (gpu) => {
        const x = rand(rows * W, -3, 3);
        const dy = rand(rows * W);
        const gain = rand(W, 0.5, 1.5);
        const bias = rand(W);
        const ref = normRef(x, dy, W, c, gain, c.bias ? bias : undefined);
        const cfg = { ...c, name: "n", rows, width: W, rowsPerWorkgroup: rpw };
        const y = await run(gpu, norm(cfg), { x, gain, bias, y: x.byteLength });
        expectClose(f32(y.y), ref.y, TOL, "y");
        const wrt = { x: true, gain: c.gain === "param", bias: !!c.bias };
        const parts = Math.ceil(rows / (rpw ?? 1));
        const g = await run(gpu, normGrad({ ...cfg, wrt }), { x, dy, gain, dx: x.byteLength, dgain: parts * W * 4, dbias: parts * W * 4 });
        expectClose(f32(g.dx), ref.dx, TOL, "dx");
        if (wrt.gain) expectClose(sumParts(f32(g.dgain), parts, W), ref.dgain, TOL, "dgain");
        if (wrt.bias) expectClose(sumParts(f32(g.dbias), parts, W), ref.dbias, TOL, "dbias");
      }));
  }

  it("gain gradient alone, all rows in one workgroup (the final column sum)", () =>
    withGpu(async (gpu) => {
      const [rows, W] = [9, 20];
      const x = rand(rows * W);
      const dy = rand(rows * W);
      const gain = rand(W);
      const c = { kind: "rms", eps: 1e-5, gain: "param" } as const;
      const cfg = { ...c, name: "ng", rows, width: W, rowsPerWorkgroup: rows, wrt: { x: false, gain: true, bias: false } };
      const g = await run(gpu, normGrad(cfg), { x, dy, gain, dgain: W * 4 });
      expectClose(f32(g.dgain), normRef(x, dy, W, c, gain).dgain, TOL, "dgain");
    }));

  // Row layouts: a row per invocation; 4 lanes reduced in workgroup memory; a subgroup's lanes
  // reduced by shuffles (where the adapter has subgroups). 13 rows, 5 per workgroup: the last pass of
  // each workgroup and the last workgroup have idle row slots, whose values must not leak into sums.
  const layouts = [{ lanes: 1 }, { lanes: 4 }, { subgroups: true }] as const;
  for (const layout of layouts) {
    it(`LayerNorm fwd/bwd and cross-entropy with row layout ${JSON.stringify(layout)}`, () =>
      withGpu(async (gpu) => {
        const [rows, W, rpw] = [13, 65, 5];
        const sub = "subgroups" in layout ? (gpu.caps.subgroups ? { subgroupSize: gpu.caps.subgroupMinSize } : undefined) : layout;
        if (!sub) return; // no subgroups on this adapter: the shuffle path cannot run here
        const x = rand(rows * W, -3, 3);
        const dy = rand(rows * W);
        const gain = rand(W, 0.5, 1.5);
        const bias = rand(W);
        const c = { kind: "layer", eps: 1e-5, gain: "param", bias: true } as const;
        const ref = normRef(x, dy, W, c, gain, bias);
        const cfg = { ...c, ...sub, name: "nl", rows, width: W, wg: 32, rowsPerWorkgroup: rpw };
        const y = await run(gpu, norm(cfg), { x, gain, bias, y: x.byteLength });
        expectClose(f32(y.y), ref.y, TOL, "y");
        const parts = Math.ceil(rows / rpw);
        const g = await run(gpu, normGrad({ ...cfg, wrt: { x: true, gain: true, bias: true } }), { x, dy, gain, dx: x.byteLength, dgain: parts * W * 4, dbias: parts * W * 4 });
        expectClose(f32(g.dx), ref.dx, TOL, "dx");
        expectClose(sumParts(f32(g.dgain), parts, W), ref.dgain, TOL, "dgain");
        expectClose(sumParts(f32(g.dbias), parts, W), ref.dbias, TOL, "dbias");
        const targets = Int32Array.from({ length: rows }, (_, r) => (r * 29 + 3) % W);
        const p = softmaxRows(x, rows, W);
        const loss = Array.from(targets, (t, r) => -Math.log(p[r * W + t])).reduce((a, b) => a + b, 0) / rows;
        const ce = await run(gpu, crossEntropy({ ...sub, name: "ce", rows, width: W, wg: 32, rowsPerWorkgroup: rpw }), { logits: x, targets, loss: parts * 4 });
        expectClose([f32(ce.loss).reduce((a, b) => a + b, 0)], [loss], TOL, "loss partials");
        const ra = await run(gpu, rowAbsmax({ ...sub, name: "ra", rows, width: W, wg: 32 }), { x, y: rows * 4 });
        expect(Array.from(f32(ra.y))).toEqual(Array.from({ length: rows }, (_, r) => Math.max(...Array.from(x.subarray(r * W, (r + 1) * W), Math.abs))));
      }));
  }

  it("norm + cast: E4M3 output with a scale from a buffer, amax captured", () =>
    withGpu(async (gpu) => {
      const [rows, W, s] = [6, 68, 37.5];
      const x = rand(rows * W, -4, 4);
      const gain = rand(W, -2, 2);
      const c = { kind: "rms", eps: 1e-5, gain: "param" } as const;
      const ref = normRef(x, x, W, c, gain);
      const k = norm({ ...c, name: "nc", rows, width: W, wg: 16, out: { dtype: "e4m3", scale: 1, amax: 2 } });
      const out = await run(gpu, k, { x, gain, y: rows * W, scales: Float32Array.of(0, s), amax: 16 });
      const spec = FP8_FORMATS.e4m3;
      expectCodes(unpackFP8(new Uint32Array(out.y), rows * W), ref.y.map((v) => v * s), (v) => encodeOne(v, spec, true));
      expectClose([f32(out.amax)[2]], [Math.max(...ref.y.map(Math.abs))], TOL, "amax");
    }));

  it("bf16 output (two per word, round to nearest even)", () =>
    withGpu(async (gpu) => {
      const [rows, W] = [3, 10];
      const x = rand(rows * W);
      const c = { kind: "layer", eps: 1e-5, gain: "none" } as const;
      const ref = normRef(x, x, W, c);
      const out = await run(gpu, norm({ ...c, name: "nb", rows, width: W, out: { dtype: "bf16" } }), { x, y: rows * W * 2 });
      const codes = new Uint16Array(out.y);
      const bits = (v: number): number => new Uint32Array(Float32Array.of(roundToBF16(v)).buffer)[0] >>> 16;
      expectCodes(codes, ref.y, bits);
    }));
});

function softmaxRows(x: ArrayLike<number>, rows: number, W: number): Float64Array {
  const p = new Float64Array(rows * W);
  for (let r = 0; r < rows; r++) {
    let m = -Infinity;
    for (let j = 0; j < W; j++) m = Math.max(m, x[r * W + j]);
    let z = 0;
    for (let j = 0; j < W; j++) z += Math.exp(x[r * W + j] - m);
    for (let j = 0; j < W; j++) p[r * W + j] = Math.exp(x[r * W + j] - m) / z;
  }
  return p;
}

describe("softmax, cross-entropy, row absmax", () => {
  const [rows, V] = [6, 65];
  const logits = rand(rows * V, -6, 6);
  const targets = Int32Array.from({ length: rows }, (_, r) => (r * 29 + 3) % V);
  const p = softmaxRows(logits, rows, V);

  it("softmax over rows of 65", () =>
    withGpu(async (gpu) => {
      const out = await run(gpu, softmax({ name: "sm", rows, width: V, wg: 32 }), { x: logits, y: logits.byteLength });
      expectClose(f32(out.y), p, TOL, "softmax");
    }));

  it("cross-entropy: the mean in one workgroup, or partial sums", () =>
    withGpu(async (gpu) => {
      const loss = Array.from(targets, (t, r) => -Math.log(p[r * V + t])).reduce((a, b) => a + b, 0) / rows;
      const one = await run(gpu, crossEntropy({ name: "ce", rows, width: V, rowsPerWorkgroup: rows }), { logits, targets, loss: 4 });
      expectClose(f32(one.loss), [loss], TOL, "mean loss");
      const parts = await run(gpu, crossEntropy({ name: "ce", rows, width: V, rowsPerWorkgroup: 4 }), { logits, targets, loss: 8 });
      expectClose([f32(parts.loss)[0] + f32(parts.loss)[1]], [loss], TOL, "partials");
      // A row per workgroup (the lowering's choice for vocabulary-wide rows): one partial per row.
      const perRow = await run(gpu, crossEntropy({ name: "ce", rows, width: V, rowsPerWorkgroup: 1 }), { logits, targets, loss: rows * 4 });
      expectClose([f32(perRow.loss).reduce((a, b) => a + b, 0)], [loss], TOL, "one partial per row");
    }));

  it("cross-entropy backward: (softmax − onehot)·dloss/M", () =>
    withGpu(async (gpu) => {
      const dloss = 1.7;
      const want = p.map((v, i) => ((v - (targets[Math.floor(i / V)] === i % V ? 1 : 0)) * dloss) / rows);
      const out = await run(gpu, crossEntropyGrad({ name: "ceg", rows, width: V }), { logits, targets, dloss: Float32Array.of(dloss), dlogits: logits.byteLength });
      expectClose(f32(out.dlogits), want, TOL, "dlogits");
    }));

  it("row absmax", () =>
    withGpu(async (gpu) => {
      const out = await run(gpu, rowAbsmax({ name: "ra", rows, width: V, wg: 16 }), { x: logits, y: rows * 4 });
      const want = Array.from({ length: rows }, (_, r) => Math.max(...Array.from(logits.subarray(r * V, (r + 1) * V), Math.abs)));
      expect(Array.from(f32(out.y))).toEqual(want.map(Math.fround));
    }));
});
