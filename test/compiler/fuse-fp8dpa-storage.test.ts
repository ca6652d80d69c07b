// Storage of FP8DPA attention inputs (compiler/fuse.ts storageOf): Q, K, V (E4M3) and dO (E5M2) are
// stored as packed codes when every FP8 input of each attention reading them can be (the attention
// kernels take all of them packed or all f32), and stay f32 fake casts otherwise. The GPU executor
// tests (test/runtime/gpu-executor.test.ts, fp8dpa cases) prove the semantics against the CPU.
import { describe, expect, it } from "vitest";
import { storageOf } from "../../compiler/fuse.js";
import { GraphBuilder } from "../../compiler/graph-builder.js";
import type { Fp8Format, Graph, Scaling } from "../../compiler/ir.js";
import { compile, compileDecode } from "../../compiler/pipeline.js";

const DELAYED: Scaling = { kind: "delayed", history: 4, margin: 0, amax: "max", pow2: false };
const BLOCKWISE: Scaling = { kind: "blockwise", activationBlock: [1, 8], weightBlock: [8, 8], pow2: false };

interface Case {
  /** Scaling and format of dO's slot. */
  dO?: { scaling: Scaling; format: Fp8Format };
  headDim?: number;
  /** A non-GEMM, non-attention reader of V's quantize. */
  extraReader?: boolean;
}

/** x [8, 16]; q, k, v, dO = quantize(x) through their own slots; attention (fp8) and its three gradients. */
function graph(c: Case = {}): { g: Graph; q: number; k: number; v: number; dO: number } {
  const b = new GraphBuilder(1, 8);
  const slot = (name: string, format: Fp8Format, scaling: Scaling = DELAYED): number => {
    const id = b.scaleSlots.length;
    b.scaleSlots.push({ id, name, format, scaling, saturate: true, role: format === "e5m2" ? "gradient" : "activation" });
    return id;
  };
  const x = b.add("param", [], { init: { kind: "const", value: 1 }, decay: false, lrScale: 1 }, "x", [8, 16]);
  const [q, k, v] = ["q", "k", "v"].map((n) => b.add("quantize", [x], { slot: slot(n, "e4m3") }, `${n}.fp8`));
  const fp8 = { p: slot("P", "e4m3"), ds: slot("dS", "e5m2") };
  const headDim = c.headDim ?? 8;
  const attrs = { heads: 16 / headDim, kvHeads: 16 / headDim, headDim, seqLen: 8, scale: 0.35, causal: true, fp8 };
  const att = b.add("attention", [q, k, v], attrs, "attn");
  const dO = b.add("quantize", [att], { slot: slot("dO", c.dO?.format ?? "e5m2", c.dO?.scaling) }, "attn.grad.fp8");
  b.role = "bwd";
  const grads = (["q", "k", "v"] as const).map((wrt) => b.add("attention_grad", [q, k, v, dO], { ...attrs, wrt }, `attn.grad_${wrt}`));
  const outputs: Record<string, number> = { dq: grads[0], dk: grads[1], dv: grads[2] };
  if (c.extraReader) outputs.t = b.add("tanh", [v], {}, "t");
  Object.assign(b.outputs, outputs);
  return { g: b.build(), q, k, v, dO };
}

describe("FP8DPA attention inputs: storage", () => {
  it("stores Q, K, V as E4M3 codes and dO as E5M2 codes", () => {
    const { g, q, k, v, dO } = graph();
    const s = storageOf(g);
    expect([s[q], s[k], s[v], s[dO]]).toEqual(["e4m3", "e4m3", "e4m3", "e5m2"]);
  });

  it("keeps all four f32 when one of them cannot be packed (the kernels take all packed or none)", () => {
    const cases: [string, Case][] = [
      ["dO blockwise", { dO: { scaling: BLOCKWISE, format: "e5m2" } }],
      ["dO in e4m3 (the kernels decode dO as e5m2)", { dO: { scaling: DELAYED, format: "e4m3" } }],
      ["V read by a non-GEMM", { extraReader: true }],
      ["head_dim not a multiple of 4", { headDim: 2 }],
    ];
    for (const [what, c] of cases) {
      const { g, q, k, v, dO } = graph(c);
      const s = storageOf(g);
      expect([s[q], s[k], s[v], s[dO]], what).toEqual(["f32", "f32", "f32", "f32"]);
    }
  });

  it("keeps the decode graph's cached attention inputs f32 (the cached kernel takes f32)", () => {
    const r = compile(new URL("../../examples/fog-flash-tiny.fog", import.meta.url).pathname, { batch: 1, seqLen: 8, precision: "fp8dpa" });
    const g = compileDecode(r.program!.model, { batch: 1, rows: 1, context: 8 });
    const s = storageOf(g);
    const inputs = g.nodes.filter((n) => n.op === "attention" && n.attrs.cached && n.attrs.fp8).flatMap((n) => n.inputs);
    expect(inputs.length).toBeGreaterThan(0);
    for (const i of inputs) expect(s[i], g.nodes[i].name).toBe("f32");
  });

  it("packs the attention inputs of the FP8DPA step, not those of the FP8 step (BF16 attention)", () => {
    for (const precision of ["fp8dpa", "fp8"] as const) {
      const g = compile(new URL("../../examples/fog-flash-tiny.fog", import.meta.url).pathname, { batch: 2, seqLen: 16, precision }).program!.train;
      const s = storageOf(g);
      const inputs = g.nodes.filter((n) => n.op === "attention_grad").flatMap((n) => n.inputs);
      expect(inputs.length).toBeGreaterThan(0);
      for (const i of inputs) expect(s[i], `${precision} ${g.nodes[i].name}`).toBe(precision === "fp8" ? "f32" : g.nodes[i].name.includes(".grad") ? "e5m2" : "e4m3");
    }
  });
});
