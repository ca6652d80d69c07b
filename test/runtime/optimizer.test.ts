// AdamW, clipping and learning-rate schedules (runtime/optimizer.ts) against hand-computed values,
// and parameter initialisation (runtime/init.ts): determinism, statistics, softplus⁻¹.
import { describe, expect, it } from "vitest";
import { GraphBuilder } from "../../compiler/graph-builder.js";
import type { Init } from "../../compiler/ir.js";
import { initParams, softplusInv } from "../../runtime/init.js";
import { adamwUpdate, type AdamWStep, clipFactor, globalNorm, learningRate } from "../../runtime/optimizer.js";

const hyper = (step: number, lr = 0.1): AdamWStep => ({ step, lr, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.1, clip: 1 });

describe("AdamW", () => {
  it("matches a hand-computed two-step reference (decoupled decay, bias correction)", () => {
    const p = Float32Array.of(1, -2);
    const m = new Float32Array(2);
    const v = new Float32Array(2);
    // t = 1, g = (0.5, −1): m = 0.1g, v = 0.001g², m̂ = g, v̂ = g² ⇒ step = lr·g/(|g| + ε);
    // p = p·(1 − 0.1·0.1) − 0.1·sign(g)·|g|/(|g| + 1e-8) = (0.99 − 0.099999998, −1.98 + 0.0999999990).
    adamwUpdate(p, [0.5, -1], m, v, hyper(1), { decay: true, lrScale: 1 });
    expect(m[0]).toBe(Math.fround(0.05));
    expect(v[1]).toBe(Math.fround(0.001));
    expect(p[0]).toBe(Math.fround(0.890000002));
    expect(p[1]).toBe(Math.fround(-1.880000001));
    // t = 2, g = (0.25, 0.5): m₀ = 0.9·0.05 + 0.1·0.25 = 0.07, v₀ = 0.999·0.00025 + 0.001·0.0625 = 0.00031225,
    // m̂₀ = 0.07/0.19, v̂₀ = 0.00031225/0.001999 ⇒ p₀ = 0.890000002·0.99 − 0.1·0.368421/(0.395225 + 1e-8).
    adamwUpdate(p, [0.25, 0.5], m, v, hyper(2), { decay: true, lrScale: 1 });
    expect(p[0]).toBeCloseTo(0.7878820404574624, 6);
    expect(p[1]).toBeCloseTo(-1.8345662973609032, 6);
  });

  it("decay mask, lr multiplier 0 (frozen) and the gradient scale", () => {
    const p = Float32Array.of(1);
    adamwUpdate(p, [0.5], new Float32Array(1), new Float32Array(1), hyper(1), { decay: false, lrScale: 1 });
    expect(p[0]).toBe(Math.fround(1 - 0.1 * (0.5 / (0.5 + 1e-8))));
    const q = Float32Array.of(1);
    adamwUpdate(q, [0.5], new Float32Array(1), new Float32Array(1), hyper(1), { decay: true, lrScale: 0 });
    expect(q[0]).toBe(1);
    // Adam is invariant to a constant gradient scale at t = 1, but m and v see the scaled gradient.
    const m = new Float32Array(1);
    adamwUpdate(Float32Array.of(1), [4], m, new Float32Array(1), hyper(1), { decay: true, lrScale: 1 }, 0.25);
    expect(m[0]).toBeCloseTo(0.1, 7);
  });

  it("global-norm clipping", () => {
    expect(globalNorm([[3], Float32Array.of(4)])).toBe(5);
    expect(clipFactor(5, 1)).toBeCloseTo(1 / (5 + 1e-6), 12);
    expect(clipFactor(0.5, 1)).toBe(1);
    expect(clipFactor(5, 0)).toBe(1); // clip = 0 disables
    expect(clipFactor(Number.NaN, 1)).toBe(1);
  });
});

describe("schedules", () => {
  const peak = 1e-3;

  it("linear warmup from 0", () => {
    const s = { kind: "constant" as const, warmup: 10 };
    expect(learningRate(s, peak, 0, 100)).toBe(0);
    expect(learningRate(s, peak, 5, 100)).toBeCloseTo(5e-4, 15);
    expect(learningRate(s, peak, 10, 100)).toBe(peak);
    expect(learningRate(s, peak, 99, 100)).toBe(peak);
  });

  it("wsd: constant, then 1-sqrt decay over the last 20 % to min_lr", () => {
    const s = { kind: "wsd" as const, warmup: 10, decay: 0.2, minLr: 1e-5 };
    expect(learningRate(s, peak, 5, 100)).toBeCloseTo(5e-4, 15);
    expect(learningRate(s, peak, 79, 100)).toBe(peak);
    expect(learningRate(s, peak, 80, 100)).toBeCloseTo(1e-5 + (peak - 1e-5) * (1 - Math.sqrt(1 / 20)), 15);
    expect(learningRate(s, peak, 84, 100)).toBeCloseTo(1e-5 + (peak - 1e-5) * (1 - Math.sqrt(0.25)), 15);
    expect(learningRate(s, peak, 99, 100)).toBe(1e-5);
    expect(learningRate(s, peak, 100, 100)).toBe(1e-5);
  });

  it("cosine from peak after warmup to min_lr at the last step", () => {
    const s = { kind: "cosine" as const, warmup: 10, minLr: 1e-4 };
    expect(learningRate(s, peak, 10, 101)).toBeCloseTo(peak, 15);
    expect(learningRate(s, peak, 55, 101)).toBeCloseTo((peak + 1e-4) / 2, 15);
    expect(learningRate(s, peak, 100, 101)).toBeCloseTo(1e-4, 15);
  });
});

describe("init", () => {
  const graph = (names: string[], init: Init, n = 4000) => {
    const b = new GraphBuilder(1, 1);
    for (const name of names) b.add("param", [], { init, decay: true, lrScale: 1 }, name, [n]);
    return b.build();
  };

  it("normal(std) by seed and name, independent of declaration order", () => {
    const a = initParams(graph(["x", "y"], { kind: "normal", std: 0.02 }), 3);
    const b = initParams(graph(["y", "x"], { kind: "normal", std: 0.02 }), 3);
    const c = initParams(graph(["x", "y"], { kind: "normal", std: 0.02 }), 4);
    expect(a.get("x")).toEqual(b.get("x"));
    expect(a.get("x")).not.toEqual(a.get("y"));
    expect(a.get("x")).not.toEqual(c.get("x"));
    const x = a.get("x")!;
    const mean = x.reduce((s, v) => s + v, 0) / x.length;
    const std = Math.sqrt(x.reduce((s, v) => s + v * v, 0) / x.length);
    expect(Math.abs(mean)).toBeLessThan(0.002);
    expect(std).toBeGreaterThan(0.019);
    expect(std).toBeLessThan(0.021);
  });

  it("const and softplus_inv", () => {
    expect(initParams(graph(["g"], { kind: "const", value: 0.25 }, 3), 0).get("g")).toEqual(Float32Array.of(0.25, 0.25, 0.25));
    const rho = initParams(graph(["r"], { kind: "softplus_inv", value: 0.8 }, 1), 0).get("r")![0];
    expect(rho).toBeCloseTo(0.2034, 4); // papers.md §5.6: ln(e^0.8 − 1)
    expect(softplusInv(0.3)).toBeCloseTo(-1.0502, 4);
    expect(Math.log1p(Math.exp(softplusInv(30)))).toBeCloseTo(30, 10);
  });
});
