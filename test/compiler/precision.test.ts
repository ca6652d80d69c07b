// The precision pass: which GEMM operands get quantize (and in which format) or bf16 casts, per
// recipe and override; the FP8DPA slots of P and dS; and the reference's fake-quantised attention.
import { describe, expect, it } from "vitest";
import { compile } from "../../compiler/pipeline.js";
import type { Graph, Node } from "../../compiler/ir.js";
import { runReference } from "../../runtime/reference.js";
import { decodeOne, encodeOne, FP8_FORMATS } from "../../runtime/fp8.js";
import { GraphBuilder } from "../../compiler/graph-builder.js";

const TINY = (precision: string) => `model m {
  vocab = 256  context = 16  width = 16  layers = 2  heads = 2  kv_heads = 1  mlp_width = 32
  attention attn { qk_norm = rmsnorm(gain = frozen(1)) }
  mlp ffn { activation = gelu }
  block {
    h = h + rmsnorm(attn(h))
    h = h + rmsnorm(ffn(h))
  }
  ${precision}
  train { batch = 2  seq_len = 8  steps = 10 }
}
`;

function train(precision: string): Graph {
  const text = TINY(precision);
  const r = compile("m.fog", { readFile: () => text });
  expect(r.diagnostics).toEqual([]);
  return r.program!.train;
}

/** For each GEMM (matmul by name), the dtype feeding each operand: e4m3/e5m2 (quantize), bf16 (cast) or f32. */
function operandTypes(g: Graph): Map<string, string[]> {
  const out = new Map<string, string[]>();
  for (const n of g.nodes) if (n.op === "matmul") out.set(n.name, n.inputs.map((i) => g.nodes[i].dtype));
  return out;
}

const byName = (g: Graph, name: string): Node => g.nodes.find((n) => n.name === name)!;

describe("precision pass", () => {
  it("bf16: every GEMM operand is rounded to bf16, nothing is quantised", () => {
    const g = train("precision = bf16");
    expect(g.nodes.some((n) => n.op === "quantize")).toBe(false);
    for (const [name, types] of operandTypes(g)) expect(types, name).toEqual(["bf16", "bf16"]);
    expect(g.scaleSlots).toEqual([]);
  });

  it("fp8: fprop E4M3×E4M3, dgrad E5M2×E4M3, wgrad E5M2×E4M3; head and attention stay bf16", () => {
    const g = train("precision = fp8");
    const t = operandTypes(g);
    expect(t.get("b0.attn.q")).toEqual(["e4m3", "e4m3"]);
    expect(t.get("b1.ffn.fc2")).toEqual(["e4m3", "e4m3"]);
    expect(t.get("b1.ffn.fc2.grad_a")).toEqual(["e5m2", "e4m3"]);
    expect(t.get("b1.ffn.fc2.grad_b")).toEqual(["e5m2", "e4m3"]);
    expect(t.get("head")).toEqual(["bf16", "bf16"]);
    expect((byName(g, "b0.attn.sdpa") as Node & { op: "attention" }).attrs.fp8).toBeUndefined();
    // The three projections share one quantised input (one scale, as TE's fused QKV).
    const q = byName(g, "b0.attn.q");
    const k = byName(g, "b0.attn.k");
    expect(q.inputs[0]).toBe(k.inputs[0]);
  });

  it("fp8dpa: attention inputs are quantised and P/dS get slots shared by forward and backward", () => {
    const g = train("precision = fp8dpa");
    const fwd = byName(g, "b0.attn.sdpa") as Node & { op: "attention" };
    expect(fwd.inputs.map((i) => g.nodes[i].dtype)).toEqual(["e4m3", "e4m3", "e4m3"]);
    expect(fwd.attrs.fp8).toBeDefined();
    const gq = byName(g, "b0.attn.sdpa.grad_q") as Node & { op: "attention_grad" };
    expect(gq.attrs.fp8).toEqual(fwd.attrs.fp8);
    expect(g.nodes[gq.inputs[3]].dtype).toBe("e5m2");
    const slots = g.scaleSlots;
    expect(slots[fwd.attrs.fp8!.p]).toMatchObject({ format: "e4m3", role: "activation" });
    expect(slots[fwd.attrs.fp8!.ds]).toMatchObject({ format: "e5m2", role: "gradient" });
  });

  it("overrides: op level beats layer level, which beats the model", () => {
    const g = train(`precision { mode = fp8dpa  override layers 1 { mode = bf16 }  override layers 1 ffn.fc1 { mode = fp8 }  override attn { mode = fp8 } }`);
    const t = operandTypes(g);
    expect(t.get("b0.ffn.fc2")).toEqual(["e4m3", "e4m3"]);
    expect(t.get("b1.ffn.fc2")).toEqual(["bf16", "bf16"]);
    expect(t.get("b1.ffn.fc1")).toEqual(["e4m3", "e4m3"]);
    // mode fp8 on the attention component keeps its projections FP8 but not Q·Kᵀ and P·V.
    expect(t.get("b0.attn.q")).toEqual(["e4m3", "e4m3"]);
    expect((byName(g, "b0.attn.sdpa") as Node & { op: "attention" }).attrs.fp8).toBeUndefined();
  });

  it("Q·Kᵀ and P·V of the fused attention cannot disagree", () => {
    const text = TINY("precision { mode = fp8dpa  override attn.qk { mode = bf16 } }");
    const r = compile("m.fog", { readFile: () => text });
    expect(r.program).toBeUndefined();
    expect(r.diagnostics.map((d) => d.message)).toEqual([
      "attn.qk and attn.pv must both be FP8 or both not (layer 0): the fused attention computes them in one kernel",
    ]);
  });

  it("--precision replaces the mode everywhere", () => {
    const text = TINY("precision { mode = fp8  override head { mode = fp8 } }");
    const r = compile("m.fog", { readFile: () => text, precision: "bf16" });
    expect(r.program!.train.nodes.some((n) => n.op === "quantize")).toBe(false);
  });
});

describe("reference attention in FP8DPA", () => {
  it("fake-quantises P before P·V (checked against a direct computation)", () => {
    const b = new GraphBuilder(1, 3);
    b.scaleSlots.push({ id: 0, name: "P", format: "e4m3", scaling: { kind: "current", margin: 0, pow2: false }, saturate: true, role: "activation" });
    b.scaleSlots.push({ id: 1, name: "dS", format: "e5m2", scaling: { kind: "current", margin: 0, pow2: false }, saturate: true, role: "gradient" });
    const init = { kind: "const", value: 0 } as const;
    const q = b.add("param", [], { init, decay: false, lrScale: 1 }, "q", [3, 2]);
    const k = b.add("param", [], { init, decay: false, lrScale: 1 }, "k", [3, 2]);
    const v = b.add("param", [], { init, decay: false, lrScale: 1 }, "v", [3, 2]);
    const attrs = { heads: 1, kvHeads: 1, headDim: 2, seqLen: 3, scale: 0.7, causal: true };
    const plain = b.add("attention", [q, k, v], attrs, "plain");
    const quant = b.add("attention", [q, k, v], { ...attrs, fp8: { p: 0, ds: 1 } }, "fp8");
    const Q = [0.3, -1.2, 0.9, 0.4, -0.5, 1.1];
    const K = [1.0, 0.2, -0.7, 0.8, 0.35, -0.6];
    const V = [0.5, -0.25, 1.5, 0.75, -1.0, 2.0];
    const vals = runReference(b.build(), { params: new Map([[q, Float64Array.from(Q)], [k, Float64Array.from(K)], [v, Float64Array.from(V)]]) });
    // Direct: softmax rows, P quantised with current scaling s = 448 / max P.
    const rows: number[][] = [];
    for (let i = 0; i < 3; i++) {
      const s = Array.from({ length: i + 1 }, (_, j) => 0.7 * (Q[2 * i] * K[2 * j] + Q[2 * i + 1] * K[2 * j + 1]));
      const m = Math.max(...s);
      const e = s.map((x) => Math.exp(x - m));
      const z = e.reduce((a, x) => a + x, 0);
      rows.push(e.map((x) => x / z));
    }
    const amax = Math.max(...rows.flat());
    const sc = Math.fround(448 / amax);
    const spec = FP8_FORMATS.e4m3;
    const fq = (x: number) => decodeOne(encodeOne(x * sc, spec, true), spec) / sc;
    const want = rows.flatMap((p) => [0, 1].map((d) => p.reduce((a, pj, j) => a + fq(pj) * V[2 * j + d], 0)));
    const got = Array.from(vals.get(quant)!);
    got.forEach((x, i) => expect(x).toBeCloseTo(want[i], 12));
    // and the quantisation is visible
    expect(Math.max(...got.map((x, i) => Math.abs(x - vals.get(plain)![i])))).toBeGreaterThan(1e-4);
  });
});
