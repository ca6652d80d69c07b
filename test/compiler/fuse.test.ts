// The fusion pass on small hand-built graphs: which nodes land in which kernel group, how values are
// stored, and the cases that must NOT fuse (a value with a second reader, a graph output, current
// or blockwise scaling, a quantize read by attention). The GPU executor tests prove the semantics.
import { describe, expect, it } from "vitest";
import { fuseGraph, type KernelGroup, storageOf } from "../../compiler/fuse.js";
import { GraphBuilder } from "../../compiler/graph-builder.js";
import type { Graph, Scaling } from "../../compiler/ir.js";
import { compile } from "../../compiler/pipeline.js";
import { kernelLine } from "../../compiler/report.js";

const DELAYED: Scaling = { kind: "delayed", history: 4, margin: 0, amax: "max", pow2: false };
const CURRENT: Scaling = { kind: "current", margin: 0, pow2: true };
const BLOCKWISE: Scaling = { kind: "blockwise", activationBlock: [1, 8], weightBlock: [8, 8], pow2: false };

/** x [8, 16] (a param), w [16, 16] (a param); `build` adds the rest and names the outputs. */
function graph(build: (b: GraphBuilder, x: number, w: number) => Record<string, number>): Graph {
  const b = new GraphBuilder(1, 8);
  const x = b.add("param", [], { init: { kind: "const", value: 1 }, decay: false, lrScale: 1 }, "x", [8, 16]);
  const w = b.add("param", [], { init: { kind: "const", value: 1 }, decay: false, lrScale: 1 }, "w", [16, 16]);
  Object.assign(b.outputs, build(b, x, w));
  return b.build();
}

const slot = (b: GraphBuilder, scaling: Scaling, format: "e4m3" | "e5m2" = "e4m3"): number => {
  const id = b.scaleSlots.length;
  b.scaleSlots.push({ id, name: `s${id}`, format, scaling, saturate: true, role: "activation" });
  return id;
};

/** The group holding node `id`. */
function groupOf(g: Graph, id: number): KernelGroup {
  const grp = fuseGraph(g).groups.find((x) => x.nodes.includes(id));
  if (!grp) throw new Error(`node ${id} is in no group`);
  return grp;
}

describe("fusion pass", () => {
  it("fuses a single-reader elementwise chain into one expression over its leaves", () => {
    let ids: number[] = [];
    const g = graph((b, x) => {
      const m = b.add("scale", [x], { factor: 2 }, "m");
      const t = b.add("tanh", [m], {}, "t");
      const y = b.add("mul", [t, x], {}, "y");
      ids = [m, t, y];
      return { y };
    });
    const grp = groupOf(g, ids[0]);
    expect(grp.kind).toBe("elementwise");
    expect(grp.nodes).toEqual(ids);
    expect(grp.output).toBe(ids[2]);
    if (grp.kind !== "elementwise") throw new Error();
    expect(grp.inputs).toEqual([0]); // x, read twice, is one leaf
    expect(grp.expr).toEqual({ op: "mul", args: [{ op: "tanh", args: [{ op: "scale", args: [{ in: 0 }], factor: 2 }] }, { in: 0 }] });
    expect(fuseGraph(g).groups.map((x) => x.output)).toEqual([0, 1, ids[2]]);
  });

  it("does not inline a value that has a second reader or is a graph output", () => {
    let ids: number[] = [];
    const g = graph((b, x) => {
      const t = b.add("tanh", [x], {}, "t"); // read by two nodes
      const a = b.add("mul", [t, x], {}, "a");
      const c = b.add("add", [t, x], {}, "c");
      const s = b.add("silu", [c], {}, "s"); // c is also an output
      ids = [t, a, c, s];
      return { a, c, s };
    });
    const [t, a, c, s] = ids;
    expect(groupOf(g, t).nodes).toEqual([t]);
    expect(groupOf(g, a).nodes).toEqual([a]);
    expect(groupOf(g, c).nodes).toEqual([c]);
    expect(groupOf(g, s).nodes).toEqual([s]);
  });

  it("puts bias, activation and residual into the GEMM epilogue, in that order, each the only reader", () => {
    let ids: number[] = [];
    const g = graph((b, x, w) => {
      const bias = b.add("param", [], { init: { kind: "const", value: 0 }, decay: false, lrScale: 1 }, "bias", [16]);
      const mm = b.add("matmul", [x, w], { transA: false, transB: true }, "mm");
      const withBias = b.add("add", [mm, bias], {}, "mm+b");
      const act = b.add("gelu", [withBias], {}, "act");
      const res = b.add("add", [x, act], {}, "res");
      ids = [bias, mm, withBias, act, res];
      return { res };
    });
    const [bias, mm, withBias, act, res] = ids;
    const grp = groupOf(g, mm);
    expect(grp).toMatchObject({ kind: "gemm", matmul: mm, bias, act: "gelu", residual: 0, output: res, nodes: [mm, withBias, act, res] });
  });

  it("stops the epilogue where a value has another reader (fc1's output is read by gelu_grad)", () => {
    let ids: number[] = [];
    const g = graph((b, x, w) => {
      const mm = b.add("matmul", [x, w], { transA: false, transB: false }, "mm");
      const act = b.add("gelu", [mm], {}, "act");
      const dact = b.add("gelu_grad", [mm, act], {}, "dact");
      ids = [mm, act, dact];
      return { dact };
    });
    const [mm, act, dact] = ids;
    expect(groupOf(g, mm).nodes).toEqual([mm]);
    // act's only reader is dact: it joins dact's chain instead (mm is a leaf, read twice).
    expect(groupOf(g, act)).toMatchObject({ kind: "elementwise", nodes: [act, dact], inputs: [mm] });
  });

  it("stores a quantize read only by GEMMs as FP8 and fuses it into its producer when scaling is delayed", () => {
    let ids: number[] = [];
    const g = graph((b, x, w) => {
      const sx = slot(b, DELAYED);
      const sw = slot(b, DELAYED);
      const act = b.add("gelu", [x], {}, "act");
      const qa = b.add("quantize", [act], { slot: sx }, "act.fp8");
      const qw = b.add("quantize", [w], { slot: sw }, "w.fp8");
      const mm = b.add("matmul", [qa, qw], { transA: false, transB: true }, "mm");
      ids = [act, qa, qw, mm];
      return { mm };
    });
    const [act, qa, qw, mm] = ids;
    const storage = storageOf(g);
    expect([storage[act], storage[qa], storage[qw], storage[mm]]).toEqual(["f32", "e4m3", "e4m3", "f32"]);
    expect(groupOf(g, act)).toMatchObject({ kind: "elementwise", nodes: [act, qa], output: qa, quantize: qa });
    // A parameter has no kernel to fuse into: the weight's quantize is its own kernel.
    expect(groupOf(g, qw).nodes).toEqual([qw]);
    expect(groupOf(g, mm).nodes).toEqual([mm]);
  });

  it("keeps current and blockwise casts apart, and the f32 fake cast where a non-GEMM reads the quantize", () => {
    for (const scaling of [CURRENT, BLOCKWISE]) {
      let ids: number[] = [];
      const g = graph((b, x, w) => {
        const act = b.add("tanh", [x], {}, "act");
        const qa = b.add("quantize", [act], { slot: slot(b, scaling) }, "act.fp8");
        const mm = b.add("matmul", [qa, w], { transA: false, transB: false }, "mm");
        ids = [act, qa, mm];
        return { mm };
      });
      const [act, qa] = ids;
      expect(storageOf(g)[qa]).toBe(scaling.kind === "current" ? "e4m3" : "f32");
      expect(groupOf(g, act).nodes).toEqual([act]);
      expect(groupOf(g, qa).nodes).toEqual([qa]);
    }
    let q = -1;
    const g = graph((b, x) => {
      q = b.add("quantize", [x], { slot: slot(b, DELAYED) }, "q.fp8");
      const att = b.add("attention", [q, q, q], { heads: 2, kvHeads: 2, headDim: 8, seqLen: 8, scale: 0.35, causal: true }, "attn");
      return { att };
    });
    expect(storageOf(g)[q]).toBe("f32");
  });

  it("fuses a reduction into the chain it sums when the leaves all have the reduced shape", () => {
    let ids: number[] = [];
    const g = graph((b, x) => {
      const y = b.add("tanh", [x], {}, "y");
      const p = b.add("mul", [y, x], {}, "p");
      const s = b.add("sum_to", [p], { shape: [1] }, "s");
      ids = [y, p, s];
      return { s };
    });
    expect(groupOf(g, ids[0])).toMatchObject({ kind: "reduce", nodes: ids, output: ids[2], inputs: [0] });
  });

  it("folds the ×50 embedding multiplier into the gather", () => {
    const r = compile(new URL("../../examples/fog-flash-tiny.fog", import.meta.url).pathname, { batch: 1, seqLen: 8, precision: "fp8dpa" });
    const g = r.program!.train;
    const embed = g.nodes.find((n) => n.op === "embed")!;
    const grp = groupOf(g, embed.id);
    expect(grp.kind).toBe("embed");
    expect(grp.nodes.map((id) => g.nodes[id].op)).toEqual(["embed", "scale"]);
  });

  it("covers every node of a training graph exactly once, each group after its inputs", () => {
    const r = compile(new URL("../../examples/fog-flash-tiny.fog", import.meta.url).pathname, { batch: 1, seqLen: 8, precision: "fp8" });
    const g = r.program!.train;
    const { groups } = fuseGraph(g);
    const seen = new Map<number, number>();
    groups.forEach((grp, i) => grp.nodes.forEach((id) => seen.set(id, i)));
    expect(groups.flatMap((x) => x.nodes).sort((a, b) => a - b)).toEqual(g.nodes.map((n) => n.id));
    groups.forEach((grp, i) => {
      for (const id of grp.nodes) for (const inp of g.nodes[id].inputs) expect(seen.get(inp)!).toBeLessThanOrEqual(i);
      // Only the output's value leaves a group.
      for (const id of grp.nodes.filter((x) => x !== grp.output)) {
        for (const n of g.nodes) if (n.inputs.includes(id)) expect(grp.nodes).toContain(n.id);
      }
    });
    expect(groups.length).toBeLessThan(g.nodes.length);
  });
});

describe("the fusion line of `fogc compile`", () => {
  const example = (precision: "bf16" | "fp8dpa") =>
    compile(new URL("../../examples/fog-flash-tiny.fog", import.meta.url).pathname, { batch: 2, seqLen: 16, precision }).program!.train;
  const parse = (line: string) => {
    const m = /(\d+) graph ops → (\d+) kernels, (\d+) of them fusing several ops .*values stored packed: (.*)$/.exec(line);
    expect(m, line).not.toBeNull();
    return { ops: Number(m![1]), kernels: Number(m![2]), fused: Number(m![3]), packed: m![4] };
  };

  for (const precision of ["bf16", "fp8dpa"] as const) {
    it(`counts every non-leaf op of the ${precision} step in exactly one kernel`, () => {
      const g = example(precision);
      const k = fuseGraph(g);
      const line = parse(kernelLine(g, k));
      const leaves = g.nodes.filter((n) => n.op === "param" || n.op === "input" || n.op === "const").length;
      expect(line.ops).toBe(g.nodes.length - leaves);
      // Each op is in one group; a kernel of n ops absorbs n − 1 of them.
      const covered = k.groups.flatMap((grp) => grp.nodes);
      expect(new Set(covered).size).toBe(covered.length);
      const absorbed = k.groups.reduce((a, grp) => a + grp.nodes.length - 1, 0);
      expect(line.kernels).toBe(line.ops - absorbed);
      expect(line.fused).toBeGreaterThan(0);
      if (precision === "bf16") expect(line.packed).not.toMatch(/e4m3|e5m2/);
      else expect(line.packed).toMatch(/\d+ e4m3, \d+ e5m2/);
    });
  }
});
