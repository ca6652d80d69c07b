// Activation memory of the GPU plan (no GPU): FP8DPA's attention kernels read Q, K, V and dO as packed
// codes, and FP8 casts saved for the backward that the backward can compute again (a weight's codes,
// a cast fused into a producer whose inputs the backward reads anyway) are computed again there
// rather than kept through the step (runtime/gpu-plan.ts recomputed). The executor tests
// (gpu-executor.test.ts) prove the step still matches the CPU reference.
import { describe, expect, it } from "vitest";
import type { Graph } from "../../compiler/ir.js";
import type { PrecisionMode } from "../../compiler/model.js";
import { compile } from "../../compiler/pipeline.js";
import { type GraphPlan, type PlanOptions, planTrainStep } from "../../runtime/gpu-plan.js";
import { H100_PLAN_OPTIONS, measure } from "../../bench/memory.js";

const LAVAPIPE_LIMITS: PlanOptions = { maxSharedBytes: 16384, maxBindingBytes: 1 << 27, offsetAlign: 256 };

const tiny = (precision: PrecisionMode, seqLen = 16): Graph =>
  compile(new URL("../../examples/fog-flash-tiny.fog", import.meta.url).pathname, { batch: 2, seqLen, precision }).program!.train;

/** First and last kernel binding each buffer. */
function lifetimes(plan: GraphPlan): Map<number, [number, number]> {
  const m = new Map<number, [number, number]>();
  plan.kernels.forEach((k, i) => {
    for (const b of k.bindings) m.set(b.buffer, [m.get(b.buffer)?.[0] ?? i, i]);
  });
  return m;
}

describe("GPU plan: FP8 activation memory", () => {
  it("FP8DPA attention kernels read packed Q/K/V/dO with their 1/s; FP8 (BF16 attention) reads f32", () => {
    for (const precision of ["fp8dpa", "fp8"] as const) {
      const plan = planTrainStep(tiny(precision), { ...LAVAPIPE_LIMITS, caps: H100_PLAN_OPTIONS.caps }, { probes: false });
      const att = plan.kernels.filter((k) => /\(attention (fwd|bwd_dq|bwd_dkv)\)/.test(k.label));
      expect(att.length).toBeGreaterThan(0);
      for (const k of att) {
        expect(/var<storage, read> q: array<u32>/.test(k.source.wgsl), `${precision} ${k.label}`).toBe(precision === "fp8dpa");
        if (k.label.includes("bwd")) expect(/var<storage, read> dout: array<u32>/.test(k.source.wgsl), k.label).toBe(precision === "fp8dpa");
      }
      const inv = plan.kernels.filter((k) => / 1\/s\)$/.test(k.label)).map((k) => k.label.replace(/^.*\(/, ""));
      if (precision === "fp8dpa") expect(new Set(inv)).toEqual(new Set(["Q/K 1/s)", "V 1/s)", "dO 1/s)"]));
      else expect(inv).toEqual([]);
    }
  });

  it("computes saved FP8 casts again in the backward: the forward's codes die in the forward", () => {
    const g = tiny("fp8dpa");
    const plan = planTrainStep(g, LAVAPIPE_LIMITS, { probes: false });
    const again = plan.kernels.filter((k) => k.label.endsWith("again for the backward)"));
    const names = new Set(again.map((k) => k.label.replace(/ \(.*$/, "").replace(/^b\d+\./, "")));
    // Weights (fprop → dgrad), the GELU output (fc2's wgrad operand, from fc1's output), Q and K after RoPE.
    for (const want of ["attn.q.weight.fp8", "ffn.fc1.weight.fp8", "ffn.fc2.weight.fp8", "ffn.gelu.fp8", "attn.q_rope.fp8", "attn.k_rope.fp8"]) expect(names, want).toContain(want);
    const life = lifetimes(plan);
    const role = (i: number) => (plan.kernels[i].node === undefined ? "step" : g.nodes[plan.kernels[i].node!].role);
    for (const k of again) {
      const q = k.node !== undefined ? g.nodes[k.node] : undefined;
      expect(q && role(plan.kernels.indexOf(k)), k.label).toBe("bwd");
      // The forward's codes of this cast: last bound by a forward kernel.
      const name = k.label.replace(/ \(.*$/, "");
      const fwd = plan.buffers.find((b) => b.label === name)!;
      expect(fwd, name).toBeDefined();
      expect(role(life.get(fwd.id)![1]), `${name}: last reader of the forward's codes`).toBe("fwd");
      // The backward's copy: bound by backward kernels only.
      const copy = plan.buffers.find((b) => b.label === `${name} (backward copy)`)!;
      const [first, last] = life.get(copy.id)!;
      expect([role(first), role(last)], name).toEqual(["bwd", "bwd"]);
    }
  });

  it("a cast computed again is the forward's kernel (same WGSL, so the same codes)", () => {
    const g = tiny("fp8dpa");
    const plan = planTrainStep(g, LAVAPIPE_LIMITS, { probes: false });
    const body = (wgsl: string) => wgsl.slice(wgsl.indexOf("\n") + 1);
    for (const k of plan.kernels.filter((x) => x.label.endsWith("again for the backward)") && !x.label.includes("(quantize,"))) {
      const fwdLabel = k.label.replace(", again for the backward)", ")");
      const fwd = plan.kernels.find((x) => x.label === fwdLabel);
      expect(fwd, fwdLabel).toBeDefined();
      expect(body(k.source.wgsl), k.label).toBe(body(fwd!.source.wgsl));
    }
  });

  it("leaves the BF16 step alone and gives FP8DPA < FP8 < BF16 transient memory", () => {
    const bf16 = planTrainStep(tiny("bf16"), LAVAPIPE_LIMITS, { probes: false });
    expect(bf16.kernels.some((k) => k.label.includes("again for the backward"))).toBe(false);
    const t = (["bf16", "fp8", "fp8dpa"] as const).map((mode) => measure(tiny(mode, 64), mode, LAVAPIPE_LIMITS).transient);
    expect(t[1]).toBeLessThan(t[0]);
    expect(t[2]).toBeLessThan(t[1]);
  });
});
