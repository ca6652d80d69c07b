// Every VJP rule of compiler/autodiff.ts against central finite differences of the f64 reference:
// tiny graphs (op → fixed random weighted sum, or cross-entropy), plus structure checks (GEMM
// passes, names, straight-through casts, exhaustive tables).
import { describe, expect, it } from "vitest";
import { autodiff, VJP_RULES } from "../../compiler/autodiff.js";
import { GraphBuilder } from "../../compiler/graph-builder.js";
import type { Graph, NodeOf, OpAttrs } from "../../compiler/ir.js";
import { numel, paramNodes } from "../../compiler/ir.js";
import { SHAPE_RULES } from "../../compiler/shapes.js";
import { outputValue, REFERENCE_KERNELS, runReference } from "../../runtime/reference.js";
import { mulberry32 as rng } from "../helpers/mulberry32.js";


/** A graph under construction with the values of its parameters and inputs. */
class Case {
  readonly b: GraphBuilder;
  readonly params = new Map<number, Float64Array>();
  tokens?: Int32Array;
  targets?: Int32Array;
  private readonly rand: () => number;

  constructor(batch = 2, seqLen = 3, seed = 1) {
    this.b = new GraphBuilder(batch, seqLen);
    this.rand = rng(seed);
  }

  uniform(lo: number, hi: number): number {
    return lo + (hi - lo) * this.rand();
  }

  /** A parameter; default values uniform in [−1, 1]. */
  param(name: string, shape: number[], value: (i: number) => number = () => this.uniform(-1, 1)): number {
    const attrs: OpAttrs["param"] = { init: { kind: "const", value: 0 }, decay: false, lrScale: 1 };
    const id = this.b.add("param", [], attrs, name, shape);
    this.params.set(id, Float64Array.from({ length: numel(shape) }, (_, i) => value(i)));
    return id;
  }

  input(which: "tokens" | "targets", ids: number[]): number {
    this[which] = Int32Array.from(ids);
    return this.b.add("input", [], { input: which }, which, [ids.length]);
  }

  /** loss = Σ y ⊙ R for a fixed random R of RMS 1/√numel (keeps the loss O(1)), as [1,1]. */
  weightedSum(y: number): number {
    const shape = this.b.shape(y);
    const [M, N] = shape.length === 2 ? shape : [1, numel(shape)];
    const n = numel(shape);
    const rv = Float64Array.from({ length: n }, () => this.uniform(-1, 1) * Math.sqrt(3 / n));
    // R is a param so the reference can feed it; its own gradient is checked too (mul's rule).
    const R = this.param("R", shape, (i) => rv[i]);
    const z = this.b.add("mul", [y, R], {}, "z");
    const nn = { transA: false, transB: false };
    const rows = this.b.add("matmul", [this.b.add("const", [], { value: 1 }, "ones_m", [1, M]), z], nn, "rows");
    return this.b.add("matmul", [rows, this.b.add("const", [], { value: 1 }, "ones_n", [N, 1])], nn, "loss");
  }

  graph(loss: number): Graph {
    this.b.outputs.loss = loss;
    return this.b.build();
  }

  feeds(): Parameters<typeof runReference>[1] {
    return { params: this.params, tokens: this.tokens, targets: this.targets };
  }
}

/**
 * Central differences with step h = 1e-6·max(1, |x|): truncation error h²·f'''/6 ≈ 1e-13 and
 * rounding error ≈ ε·|L|/h ≈ 1e-10 for an O(1) loss, so |analytic − fd| ≤ 1e-6·|fd| + 1e-8 is
 * tight enough to catch a wrong factor anywhere yet never flakes on rounding.
 */
function gradCheck(c: Case, loss: number, rtol = 1e-6, atol = 1e-8): Graph {
  const fwd = c.graph(loss);
  const g = autodiff(fwd);
  const values = runReference(g, c.feeds());
  const lossAt = (): number => runReference(fwd, c.feeds()).get(loss)![0];
  const worst: string[] = [];
  for (const p of paramNodes(fwd)) {
    const analytic = outputValue(g, values, `grad:${p.name}`);
    const x = c.params.get(p.id)!;
    expect(analytic.length).toBe(x.length);
    for (let i = 0; i < x.length; i++) {
      const x0 = x[i];
      const h = 1e-6 * Math.max(1, Math.abs(x0));
      x[i] = x0 + h;
      const up = lossAt();
      x[i] = x0 - h;
      const down = lossAt();
      x[i] = x0;
      const fd = (up - down) / (2 * h);
      if (!(Math.abs(analytic[i] - fd) <= rtol * Math.abs(fd) + atol)) {
        worst.push(`${p.name}[${i}]: autodiff ${analytic[i]}, fd ${fd}`);
      }
    }
  }
  expect(worst).toEqual([]);
  return g;
}

const bwdNodes = (g: Graph): Graph["nodes"] => g.nodes.filter((n) => n.role === "bwd");

describe("autodiff: VJP rules against finite differences", () => {
  for (const [transA, transB] of [
    [false, false],
    [false, true],
    [true, false],
    [true, true],
  ] as const) {
    it(`matmul transA=${transA} transB=${transB}`, () => {
      const c = new Case();
      const a = c.param("a", transA ? [4, 3] : [3, 4]);
      const b = c.param("b", transB ? [5, 4] : [4, 5]);
      gradCheck(c, c.weightedSum(c.b.add("matmul", [a, b], { transA, transB }, "y")));
    });
  }

  for (const op of ["add", "sub", "mul", "div"] as const) {
    for (const shape of [[4, 3], [3], [4, 1], [1], []]) {
      it(`${op} with a [${shape}] second operand`, () => {
        const c = new Case(2, 2);
        const a = c.param("a", [4, 3]);
        // Divisors in ±[0.5, 1.5], away from zero.
        const b = c.param("b", shape, () => (c.uniform(0, 1) < 0.5 ? -1 : 1) * c.uniform(0.5, 1.5));
        gradCheck(c, c.weightedSum(c.b.add(op, [a, b], {}, "y")));
      });
    }
  }

  it("scale", () => {
    const c = new Case();
    gradCheck(c, c.weightedSum(c.b.add("scale", [c.param("x", [3, 4])], { factor: -2.5 }, "y")));
  });

  for (const op of ["gelu", "silu", "tanh"] as const) {
    it(op, () => {
      const c = new Case();
      gradCheck(c, c.weightedSum(c.b.add(op, [c.param("x", [4, 5], () => c.uniform(-3, 3))], {}, "y")));
    });
  }

  for (const [norm, group, width, gain, bias] of [
    ["rmsnorm", 6, 6, true, false],
    ["rmsnorm", 4, 8, true, false],
    ["rmsnorm", 4, 8, false, false],
    ["layernorm", 6, 6, true, true],
    ["layernorm", 4, 8, true, true],
    ["layernorm", 4, 8, true, false],
    ["layernorm", 4, 8, false, false],
  ] as const) {
    it(`${norm} group ${group} of width ${width}${gain ? " with gain" : ""}${bias ? " and bias" : ""}`, () => {
      const c = new Case();
      const ins = [c.param("x", [3, width])];
      if (gain) ins.push(c.param("gain", [group], () => c.uniform(0.5, 1.5)));
      if (bias) ins.push(c.param("bias", [group]));
      gradCheck(c, c.weightedSum(c.b.add(norm, ins, { eps: 1e-5, group }, "y")));
    });
  }

  for (const [label, attrs] of [
    ["plain", { headDim: 4, seqLen: 3, base: 10000, inverse: false }],
    ["inverse", { headDim: 4, seqLen: 3, base: 10000, inverse: true }],
    // original 32, low 1, high 4 puts the 4 frequencies of base 100 in all three Llama-3.1 regimes.
    [
      "Llama-3.1 scaled",
      { headDim: 8, seqLen: 3, base: 100, inverse: false, scaling: { factor: 8, lowFreq: 1, highFreq: 4, original: 32 } },
    ],
  ] as const) {
    it(`rope ${label}`, () => {
      const c = new Case(2, 3);
      const x = c.param("x", [6, 2 * attrs.headDim]);
      gradCheck(c, c.weightedSum(c.b.add("rope", [x], attrs, "y")));
    });
  }

  for (const [label, heads, kvHeads, causal] of [
    ["GQA causal (heads 4, kv 2)", 4, 2, true],
    ["GQA non-causal", 4, 2, false],
    ["MQA causal (heads 4, kv 1)", 4, 1, true],
  ] as const) {
    it(`attention ${label}, seq 5, batch 2`, () => {
      const hd = 3;
      const c = new Case(2, 5);
      const q = c.param("q", [10, heads * hd]);
      const k = c.param("k", [10, kvHeads * hd]);
      const v = c.param("v", [10, kvHeads * hd]);
      const attrs = { heads, kvHeads, headDim: hd, seqLen: 5, scale: 0.7, causal };
      gradCheck(c, c.weightedSum(c.b.add("attention", [q, k, v], attrs, "y")));
    });
  }

  it("xielu across x < 0 and x > 0 (away from the kinks at ε and 0)", () => {
    const c = new Case();
    const x = c.param("x", [4, 6], (i) => (i % 2 ? 1 : -1) * c.uniform(0.05, 3));
    const rhoP = c.param("rho_p", [1], () => 0.2034);
    const rhoN = c.param("rho_n", [1], () => -1.0502);
    gradCheck(c, c.weightedSum(c.b.add("xielu", [x, rhoP, rhoN], { beta: 0.5, eps: -1e-6 }, "y")));
  });

  for (const act of ["silu", "gelu"] as const) {
    it(`glu ${act}`, () => {
      const c = new Case();
      gradCheck(c, c.weightedSum(c.b.add("glu", [c.param("x", [4, 6], () => c.uniform(-3, 3))], { act }, "y")));
    });
  }

  it("embed with repeated ids (unused rows get zero gradient)", () => {
    const c = new Case(2, 3);
    const table = c.param("table", [5, 4]);
    const ids = c.input("tokens", [1, 3, 1, 0, 3, 3]);
    const g = gradCheck(c, c.weightedSum(c.b.add("embed", [table, ids], {}, "y")));
    const d = outputValue(g, runReference(g, c.feeds()), "grad:table");
    expect(Array.from(d.subarray(8, 12))).toEqual([0, 0, 0, 0]);
  });

  it("cross_entropy", () => {
    const c = new Case(2, 3);
    const logits = c.param("logits", [6, 5], () => c.uniform(-2, 2));
    const targets = c.input("targets", [0, 4, 2, 2, 1, 3]);
    gradCheck(c, c.b.add("cross_entropy", [logits, targets], {}, "loss"));
  });

  it("fan-out: gradients of a node used three times are summed", () => {
    const c = new Case();
    const x = c.param("x", [3, 4]);
    const y = c.b.add("add", [c.b.add("mul", [c.b.add("tanh", [x], {}, "t"), x], {}, "tx"), x], {}, "y");
    const g = gradCheck(c, c.weightedSum(y));
    expect(g.nodes[g.outputs["grad:x"]].name).toBe("x.grad");
  });

  it("row_absmax is detached: Smooth-SwiGLU's s·((glu/s)·W) has the gradient of glu·W", () => {
    const c = new Case();
    const x = c.param("x", [6, 8], () => c.uniform(-2, 2));
    const w = c.param("w2", [3, 4]);
    const s = c.b.add("row_absmax", [x], { cols: 4 }, "s");
    const z = c.b.add("div", [c.b.add("glu", [x], { act: "silu" }, "a"), s], {}, "z");
    const fc2 = c.b.add("matmul", [z, w], { transA: false, transB: true, gemm: "fc2" }, "fc2");
    const y = c.b.add("mul", [fc2, s], {}, "y");
    const g = gradCheck(c, c.weightedSum(y));
    expect(bwdNodes(g).some((n) => n.inputs.includes(s) && n.op !== "mul" && n.op !== "div")).toBe(false);
  });

  it("a tiny transformer step: tied embedding, QK-norm, RoPE, GQA attention, post-norm, xIELU MLP, cross-entropy", () => {
    const [B, T, D, H, KV, hd, F, V] = [2, 4, 8, 2, 1, 4, 6, 11];
    const c = new Case(B, T, 7);
    const add = c.b.add.bind(c.b);
    const lin = (x: number, w: number, name: string): number =>
      add("matmul", [x, w], { transA: false, transB: true }, name);
    const norm = (x: number, group: number, name: string, gain?: number): number =>
      add("rmsnorm", gain === undefined ? [x] : [x, gain], { eps: 1e-5, group }, name);
    const rope = (x: number, name: string): number =>
      add("rope", [x], { headDim: hd, seqLen: T, base: 10000, inverse: false }, name);

    const emb = c.param("emb", [V, D]);
    const e = add("embed", [emb, c.input("tokens", [1, 5, 5, 9, 0, 2, 10, 5])], {}, "e");
    const h0 = add("scale", [e], { factor: 2 }, "h0");
    const q = rope(norm(lin(h0, c.param("wq", [H * hd, D]), "q"), hd, "qn"), "qr");
    const k = rope(norm(lin(h0, c.param("wk", [KV * hd, D]), "k"), hd, "kn"), "kr");
    const v = lin(h0, c.param("wv", [KV * hd, D]), "v");
    const attrs = { heads: H, kvHeads: KV, headDim: hd, seqLen: T, scale: 0.125, causal: true };
    const a = add("attention", [q, k, v], attrs, "attn");
    const post = norm(lin(a, c.param("wo", [D, H * hd]), "o"), D, "post", c.param("g_attn", [D], () => 0.7));
    const h1 = add("add", [h0, post], {}, "h1");
    const rho = [c.param("rho_p", [1], () => 0.2), c.param("rho_n", [1], () => -1)];
    const m = add("xielu", [lin(h1, c.param("w1", [F, D]), "fc1"), ...rho], { beta: 0.5, eps: -1e-6 }, "act");
    const h2 = add("add", [h1, lin(m, c.param("w2", [D, F]), "fc2")], {}, "h2");
    const logits = lin(h2, emb, "logits");
    const targets = c.input("targets", [5, 5, 9, 0, 2, 10, 5, 1]);
    const g = gradCheck(c, add("cross_entropy", [logits, targets], {}, "loss"));
    expect(c.b.shape(logits)).toEqual([B * T, V]);
    expect(g.nodes[g.outputs["grad:emb"]].name).toBe("emb.grad"); // embed and the tied head both contribute
  });
});

describe("autodiff: structure", () => {
  it("tags a linear layer's backward GEMMs: forward NT gives dX = dY·W (NN, dgrad), dW = dYᵀ·X (TN, wgrad)", () => {
    const c = new Case();
    const x = c.param("x", [4, 3]);
    const w = c.param("w", [5, 3]);
    const y = c.b.add("matmul", [x, w], { transA: false, transB: true, gemm: "fc1" }, "b0.mlp.fc1");
    const g = autodiff(c.graph(c.weightedSum(y)));
    const dx = g.nodes[g.outputs["grad:x"]] as NodeOf<"matmul">;
    const dw = g.nodes[g.outputs["grad:w"]] as NodeOf<"matmul">;
    expect([dx.op, dx.inputs[1], dx.name]).toEqual(["matmul", w, "b0.mlp.fc1.grad_a"]);
    expect(dx.attrs).toEqual({ transA: false, transB: false, gemm: "fc1", pass: "dgrad" });
    expect([dw.op, dw.inputs[1], dw.name]).toEqual(["matmul", x, "b0.mlp.fc1.grad_b"]);
    expect(dw.attrs).toEqual({ transA: true, transB: false, gemm: "fc1", pass: "wgrad" });
    expect(dx.role).toBe("bwd");
  });

  it("quantize and cast are straight-through: the gradient passes unchanged", () => {
    const c = new Case();
    const scaling = { kind: "current", margin: 0, pow2: false } as const;
    c.b.scaleSlots.push({ id: 0, name: "x", format: "e4m3", scaling, saturate: true, role: "activation" });
    const x = c.param("x", [3, 4]);
    const y = c.b.add("cast", [c.b.add("quantize", [x], { slot: 0 }, "xq")], { to: "bf16" }, "xb");
    const g = autodiff(c.graph(c.weightedSum(y)));
    const dx = g.nodes[g.outputs["grad:x"]];
    // dL/dy = R (the weighted-sum weights) flows through both casts untouched.
    expect(dx.name).toBe("z.grad_a");
    const values = runReference(g, c.feeds());
    const R = paramNodes(g).find((p) => p.name === "R")!;
    expect(Array.from(values.get(dx.id)!)).toEqual(Array.from(c.params.get(R.id)!));
  });

  it("skips gradients nobody needs, zero-fills unreached parameters, and rejects bad losses", () => {
    const c = new Case();
    const x = c.param("x", [3, 4]);
    const unused = c.param("unused", [2]);
    const loss = c.weightedSum(c.b.add("tanh", [x], {}, "y"));
    const g = autodiff(c.graph(loss));
    const z = g.nodes[g.outputs["grad:unused"]];
    expect([z.op, z.shape, z.attrs]).toEqual(["const", [2], { value: 0 }]);
    expect(unused).toBeDefined();
    // No gradient is computed for the constant all-ones operands of the weighted sum.
    expect(bwdNodes(g).filter((n) => n.op === "matmul").length).toBe(2);
    expect(() => autodiff(g, { loss: "nope" })).toThrow(/no output "nope"/);
    expect(() => autodiff({ ...g, outputs: { loss: x } })).toThrow(/not one element/);
  });

  it("a backward-only op on the loss path is an error", () => {
    const c = new Case();
    const x = c.param("x", [3, 4]);
    const y = c.b.add("silu_grad", [x, x], {}, "odd");
    expect(() => autodiff(c.graph(c.weightedSum(y)))).toThrow(/backward-only/);
  });

  it("every op kind has a VJP entry and a reference kernel (runtime check of the exhaustive tables)", () => {
    const kinds = Object.keys(SHAPE_RULES).sort();
    expect(Object.keys(VJP_RULES).sort()).toEqual(kinds);
    expect(Object.keys(REFERENCE_KERNELS).sort()).toEqual(kinds);
    for (const k of kinds) expect(typeof REFERENCE_KERNELS[k as keyof typeof REFERENCE_KERNELS]).toBe("function");
  });
});
