// Kurtosis (papers.md §7.1) on the reference op against known distributions, with tolerances from
// the sample size, and the early-warning monitor (runtime/kurtosis.ts) on synthetic series: silent
// on stable and slowly drifting ones, early on a slow rise before a planted spike, at once on a jump.
import { describe, expect, it } from "vitest";
import { GraphBuilder } from "../../compiler/graph-builder.js";
import type { KurtosisMode } from "../../compiler/ir.js";
import { DEFAULT_MONITOR, formatWarning, KurtosisMonitor, kurtosisRecord, type Warning } from "../../runtime/kurtosis.js";
import { kurtosisOfRows } from "../../runtime/reference-ops.js";
import { runReference } from "../../runtime/reference.js";
import { Prng } from "../../runtime/prng.js";

/** The `kurtosis` op of the reference on tensors [rows, widths[i]] (rows = batch·seqLen). */
function kurtosisOp(parts: Float64Array[], widths: number[], mode: KurtosisMode = "per_token", seqLen = 1): number {
  const rows = parts[0].length / widths[0];
  const b = new GraphBuilder(rows / seqLen, seqLen);
  const ids = widths.map((w, i) => b.add("param", [], { init: { kind: "const", value: 0 }, decay: false, lrScale: 1 }, `x${i}`, [rows, w]));
  const k = b.add("kurtosis", ids, { mode, seqLen, probe: "p", layer: 0 }, "k");
  const values = runReference(b.build(), { params: new Map(ids.map((id, i) => [id, parts[i]])) });
  return values.get(k)![0];
}

const sample = (n: number, draw: () => number): Float64Array => Float64Array.from({ length: n }, draw);

/** Raw moments μ2, μ4, μ6, μ8 of a symmetric zero-mean distribution. */
type Moments = [number, number, number, number];

/**
 * For the ratio R = mean(x⁴)/mean(x²)² over D iid samples (delta method): its mean to O(1/D²),
 * κ + (3κ·Var(x²)/μ2² − 2·Cov(x⁴,x²)/μ2³)/D, and its variance·D.
 */
function ratioStats([m2, m4, m6, m8]: Moments, D: number): { mean: number; varTimesD: number } {
  const kappa = m4 / m2 ** 2;
  const varX2 = m4 - m2 ** 2;
  const covX4X2 = m6 - m4 * m2;
  const varX4 = m8 - m4 ** 2;
  return {
    mean: kappa + ((3 * kappa * varX2) / m2 ** 2 - (2 * covX4X2) / m2 ** 3) / D,
    varTimesD: varX4 / m2 ** 4 - (4 * m4 * covX4X2) / m2 ** 5 + (4 * m4 ** 2 * varX2) / m2 ** 6,
  };
}

describe("kurtosis of known distributions (reference op, per token)", () => {
  // T tokens of D channels: the per-token mean has sd ≈ sqrt(Var(R)/T) = sqrt(varTimesD/(T·D)).
  const T = 64;
  const D = 1024;
  const prng = Prng.fromSeed(7, 1);
  const normal = (): number => prng.normalPair()[0];
  const student = (nu: number) => (): number => {
    let chi2 = 0;
    for (let i = 0; i < nu; i++) chi2 += normal() ** 2;
    return normal() / Math.sqrt(chi2 / nu);
  };
  const nu = 10;
  const tm = (p: number): number => [nu - 2, nu - 4, nu - 6, nu - 8].slice(0, p).reduce((a, b) => a * b, 1);
  const cases: [string, number, () => number, Moments][] = [
    ["Gaussian", 3, normal, [1, 3, 15, 105]],
    ["uniform", 1.8, () => 2 * prng.nextFloat() - 1, [1 / 3, 1 / 5, 1 / 7, 1 / 9]],
    ["Laplace", 6, () => {
      const u = prng.nextFloat() - 0.5;
      return -Math.sign(u) * Math.log(1 - 2 * Math.abs(u));
    }, [2, 24, 720, 40320]],
    // Student-t with ν = 10: μ_2k = (2k−1)!!·ν^k / Π_{i≤k}(ν − 2i); kurtosis 3 + 6/(ν − 4) = 4.
    ["Student-t(10)", 4, student(nu), [nu / tm(1), (3 * nu ** 2) / tm(2), (15 * nu ** 3) / tm(3), (105 * nu ** 4) / tm(4)]],
  ];
  it.each(cases)("%s ≈ %d within 4 sd of the sample-size error", (_, kappa, draw, moments) => {
    const x = sample(T * D, draw);
    const k = kurtosisOp([x], [D]);
    const { mean, varTimesD } = ratioStats(moments, D);
    expect(Math.abs(mean - kappa)).toBeLessThan(0.1); // the O(1/D) bias is small at D = 1024 (Laplace: −0.076)
    const tol = 4 * Math.sqrt(varTimesD / (T * D)); // Gaussian 0.077, uniform 0.013, Laplace 0.54, t(10) 0.42
    expect(Math.abs(k - mean)).toBeLessThan(tol);
  });

  it("Gaussian: exactly 3D/(D+2) in expectation (x/|x| is uniform on the sphere), per token and per sequence", () => {
    expect(ratioStats([1, 3, 15, 105], D).mean).toBeCloseTo((3 * D) / (D + 2), 4); // 3 − 6/D vs 3 − 6/(D + 2)
    const x = sample(T * D, normal);
    expect(Math.abs(kurtosisOp([x], [D]) - (3 * D) / (D + 2))).toBeLessThan(4 * Math.sqrt(24 / (T * D)));
    // per_sequence: 8 sequences of 8 tokens flatten to vectors of L = 8·D.
    const L = 8 * D;
    expect(Math.abs(kurtosisOp([x], [D], "per_sequence", 8) - (3 * L) / (L + 2))).toBeLessThan(4 * Math.sqrt(24 / (T * D)));
  });

  it("constant magnitude is exactly 1", () => {
    const x = sample(8 * 64, () => (prng.nextFloat() < 0.5 ? -0.37 : 0.37));
    expect(kurtosisOp([x], [64])).toBeCloseTo(1, 12);
    expect(kurtosisOp([x], [64], "per_sequence", 4)).toBeCloseTo(1, 12);
  });

  it("one outlier in a vector of D: D(c⁴ + D − 1)/(c² + D − 1)², → D; one non-zero channel: exactly D", () => {
    const W = 64;
    for (const c of [3, 50, 1e4]) {
      const x = new Float64Array(W).fill(1);
      x[17] = c;
      const exact = (W * (c ** 4 + W - 1)) / (c ** 2 + W - 1) ** 2;
      expect(kurtosisOp([x], [W])).toBeCloseTo(exact, 10);
      if (c === 1e4) expect(exact).toBeGreaterThan(W - 1e-4);
    }
    const one = new Float64Array(W);
    one[5] = -2.5;
    expect(kurtosisOp([one], [W])).toBe(W);
    expect(kurtosisOp([new Float64Array(W)], [W])).toBeNaN(); // an all-zero vector has no kurtosis
  });

  it("several inputs are one vector per token: their rows concatenated", () => {
    const rows = 6;
    const a = sample(rows * 3, normal);
    const b = sample(rows * 5, () => 3 * normal());
    const cat = new Float64Array(rows * 8);
    for (let r = 0; r < rows; r++) {
      cat.set(a.subarray(r * 3, r * 3 + 3), r * 8);
      cat.set(b.subarray(r * 5, r * 5 + 5), r * 8 + 3);
    }
    for (const [mode, seqLen] of [["per_token", 1], ["per_sequence", 3]] as const) {
      const together = kurtosisOp([a, b], [3, 5], mode, seqLen);
      expect(together).toBeCloseTo(kurtosisOp([cat], [8], mode, seqLen), 12);
      expect(together).toBeCloseTo(kurtosisOfRows([b, a], [5, 3], mode, seqLen), 12); // order does not matter
      expect(Math.abs(together - (kurtosisOp([a], [3], mode, seqLen) + kurtosisOp([b], [5], mode, seqLen)) / 2)).toBeGreaterThan(0.01);
    }
  });
});

/** AR(1) noise with marginal sd `sigma` and lag-1 correlation `rho` (kurtosis series are smooth-ish). */
function arNoise(seed: number, n: number, sigma: number, rho: number): number[] {
  const p = Prng.fromSeed(seed, 11);
  let e = p.normalPair()[0];
  return Array.from({ length: n }, () => {
    e = rho * e + Math.sqrt(1 - rho * rho) * p.normalPair()[0];
    return sigma * e;
  });
}

/** Feeds one series (value at point i is logged at step (i+1)·every) and returns every warning. */
function run(series: number[], every = 10, name = "qkv_input_layer03", monitor = new KurtosisMonitor()): Warning[] {
  return series.flatMap((v, i) => monitor.observe((i + 1) * every, { [name]: v }));
}

describe("KurtosisMonitor", () => {
  it("is silent on stable noisy series (100 seeds × 300 points, log-noise sd 0.03 and 0.1, lag-1 correlation 0.5)", () => {
    for (const sigma of [0.03, 0.1]) {
      for (let seed = 0; seed < 100; seed++) {
        const level = 2 + (seed % 7) * 3; // kurtosis 2 … 20
        expect(run(arNoise(seed, 300, sigma, 0.5).map((e) => level * Math.exp(e)))).toEqual([]);
      }
    }
  });

  it("is silent on the slow climb of healthy training (3 → 17 over 1,500 steps, calibration.md) with noise", () => {
    for (let seed = 0; seed < 50; seed++) {
      const noise = arNoise(seed, 150, 0.05, 0.5);
      const series = noise.map((e, i) => 3 * Math.exp(Math.log(17 / 3) * ((1 - Math.exp(-i / 40)) / (1 - Math.exp(-150 / 40))) + e));
      expect(run(series)).toEqual([]);
    }
  });

  it("warns ≥ 100 steps before a spike that a slow rise starts 150 steps ahead of, and not before the rise", () => {
    // Flat at 5 (noise sd 0.03) until step 500, then ×8 log-linearly (≈ +15% per logged point) until the spike at 650.
    const spike = 650;
    for (let seed = 0; seed < 20; seed++) {
      const noise = arNoise(seed, 65, 0.03, 0.5);
      const series = noise.map((e, i) => {
        const step = (i + 1) * 10;
        return 5 * Math.exp((step <= 500 ? 0 : (Math.log(8) * (step - 500)) / 150) + e);
      });
      const warnings = run(series);
      expect(warnings.length).toBeGreaterThan(0);
      const w = warnings[0];
      expect(w.step).toBeGreaterThan(500);
      expect(spike - w.step).toBeGreaterThanOrEqual(100);
      expect(w).toMatchObject({ probe: "qkv_input", layer: 3, series: "qkv_input_layer03", reason: "band" });
      expect(w.value).toBeGreaterThan(w.threshold);
      expect(w.baseline).toBeGreaterThan(4.5);
      expect(w.baseline).toBeLessThan(5.6);
    }
  });

  it("warns at once on a sudden jump", () => {
    const series = arNoise(3, 60, 0.03, 0.5).map((e, i) => 4 * Math.exp(e) * (i >= 40 ? 3 : 1));
    const warnings = run(series);
    expect(warnings.length).toBe(1);
    expect(warnings[0]).toMatchObject({ step: 410, since: 410, reason: "jump" });
    expect(warnings[0].baseline).toBeCloseTo(4, 0);
  });

  it("judges nothing during the warm-up and until the baseline has minHistory points", () => {
    const { warmup, minHistory } = DEFAULT_MONITOR;
    const wild = Array.from({ length: warmup + minHistory }, (_, i) => 3 * 10 ** (i % 3));
    expect(run(wild)).toEqual([]);
  });

  it("warns once per excursion, again after the series came back into its band", () => {
    const level = (i: number): number => (i >= 30 && i < 34) || (i >= 60 && i < 64) ? 9 : 5;
    const warnings = run(Array.from({ length: 80 }, (_, i) => level(i) * (1 + 0.01 * Math.sin(i))));
    expect(warnings.map((w) => [w.step, w.since, w.reason])).toEqual([
      [320, 310, "band"],
      [620, 610, "band"],
    ]);
  });

  it("orders a step's warnings by when each series left its band: the first probe that left is named", () => {
    const m = new KurtosisMonitor();
    let raised: Warning[] = [];
    for (let i = 0; i < 50; i++) {
      const step = (i + 1) * 10;
      const wiggle = 1 + 0.01 * Math.cos(i);
      // mlp_out of layer 5 rises ×1.6 at step 400 (band after two points); q of layer 1 jumps ×2.5 at step 410.
      const w = m.observe(step, { q_layer01: 3 * wiggle * (step >= 410 ? 2.5 : 1), mlp_out_layer05: 6 * wiggle * (step >= 400 ? 1.6 : 1), k_layer00: 3 * wiggle });
      if (w.length) {
        raised = w;
        break;
      }
    }
    expect(raised.map((w) => [w.series, w.step, w.since, w.reason])).toEqual([
      ["mlp_out_layer05", 410, 400, "band"],
      ["q_layer01", 410, 410, "jump"],
    ]);
    expect(formatWarning(raised)).toMatch(/^fogc: kurtosis warning at step 410: layer 5 mlp_out kurtosis 9\.\d+, baseline 6\.\d+, has been above its band \(≤ 8\.\d+\) since step 400; 1 more probe out of band$/);
  });

  it("reports a non-finite value once and keeps it out of the baseline", () => {
    const series = Array.from({ length: 30 }, (_, i) => (i === 20 || i === 21 ? NaN : 4));
    const warnings = run(series);
    expect(warnings.map((w) => [w.step, w.reason])).toEqual([[210, "non_finite"]]);
    expect(formatWarning(warnings)).toContain("is not finite");
  });

  it("kurtosisRecord adds the mean over layers of each probe", () => {
    expect(kurtosisRecord({ q_layer00: 2, q_layer01: 4, k_layer00: 3, a_layer02: 5 })).toEqual({ q_layer00: 2, q_layer01: 4, k_layer00: 3, a_layer02: 5, q_avg: 3, k_avg: 3, a_avg: 5 });
  });

  it("rejects bad options", () => {
    expect(() => new KurtosisMonitor({ window: 0 })).toThrow(/window/);
    expect(() => new KurtosisMonitor({ minHistory: 30 })).toThrow(/minHistory/);
    expect(() => new KurtosisMonitor({ k: -1 })).toThrow(/k must be/);
  });
});
