// The probe pass (compiler/probes.ts): kurtosis nodes per layer and tensor in every example, the
// `probes { }` settings (enabled, tensors, mode, probe locals), multi-node taps, stripProbes, and
// the count in the `fogc compile` summary.
import { readdirSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { printGraph } from "../../compiler/ir-text.js";
import type { Graph, NodeOf } from "../../compiler/ir.js";
import { PROBE_TENSORS } from "../../compiler/model.js";
import { compile } from "../../compiler/pipeline.js";
import { KURTOSIS_PREFIX, parseProbeKey, probeKey, probeOutputs, stripProbes } from "../../compiler/probes.js";
import { formatSummary } from "../../compiler/report.js";
import { inferShape, ShapeError } from "../../compiler/shapes.js";

const tiny = readdirSync("examples").filter((f) => f.endsWith("-tiny.fog"));

const kurtosisNodes = (g: Graph): NodeOf<"kurtosis">[] => g.nodes.filter((n): n is NodeOf<"kurtosis"> => n.op === "kurtosis");

const MODEL = (probes: string, block = "h = h + attn(rmsnorm(h))\n    h = h + ffn(rmsnorm(h))") => `model m {
  vocab = 256  context = 16  width = 16  layers = 3  heads = 2  kv_heads = 1  mlp_width = 32
  attention attn { }
  mlp ffn { activation = swiglu }
  block {
    ${block}
  }
  precision = fp8
  ${probes}
  train { batch = 2  seq_len = 8  steps = 10 }
}
`;

function trainGraph(text: string): Graph {
  const r = compile("m.fog", { readFile: () => text });
  expect(r.diagnostics).toEqual([]);
  return r.program!.train;
}

describe("insertProbes", () => {
  it.each(tiny)("%s: layers × 8 kurtosis probes, role probe, named outputs, read by nothing", (file) => {
    const r = compile(`examples/${file}`, { batch: 1, seqLen: 4 });
    expect(r.diagnostics).toEqual([]);
    const { model, train, forward } = r.program!;
    const ks = kurtosisNodes(train);
    expect(ks.length).toBe(model.layers * PROBE_TENSORS.length);
    expect(kurtosisNodes(forward)).toEqual([]);
    const keys = probeOutputs(train).map((p) => p.key).sort();
    const want = PROBE_TENSORS.flatMap((t) => Array.from({ length: model.layers }, (_, l) => probeKey(t, l))).sort();
    expect(keys).toEqual(want);
    for (const k of ks) {
      expect(k.role).toBe("probe");
      expect(k.shape).toEqual([]);
      expect(k.attrs.mode).toBe("per_token");
      expect(train.outputs[KURTOSIS_PREFIX + probeKey(k.attrs.probe, k.attrs.layer)]).toBe(k.id);
      // A probe reads forward tensors only (f32, before any FP8/bf16 cast).
      for (const i of k.inputs) {
        expect(train.nodes[i].role).toBe("fwd");
        expect(train.nodes[i].dtype).toBe("f32");
      }
      expect(k.inputs.length).toBe(k.attrs.probe === "qkv" ? 3 : 1);
    }
    const consumers = new Set(train.nodes.flatMap((n) => n.inputs));
    for (const k of ks) expect(consumers.has(k.id)).toBe(false);
    // Without the probes, the graph is the precision pass's output.
    const stripped = stripProbes(train);
    expect(stripped.nodes.length).toBe(train.nodes.length - ks.length);
    expect(Object.keys(stripped.outputs).filter((k) => k.startsWith(KURTOSIS_PREFIX))).toEqual([]);
    expect(printGraph(stripped)).toBe(printGraph({ ...train, nodes: train.nodes.filter((n) => n.role !== "probe"), outputs: stripped.outputs }));
    expect(formatSummary(model, r.program!.stats, train)).toMatch(new RegExp(`probes +${ks.length} kurtosis \\(per_token\\) every \\d+ steps`));
  });

  it("qkv measures the q, k and v GEMM outputs together; q and k after QK-norm", () => {
    const g = trainGraph(MODEL("", "h = h + attn(rmsnorm(h))").replace("attention attn { }", "attention attn { qk_norm = rmsnorm }"));
    const byKey = new Map(probeOutputs(g).map((p) => [p.key, g.nodes[p.id]]));
    const qkv = byKey.get("qkv_layer01")!;
    expect(qkv.inputs.map((i) => g.nodes[i].name)).toEqual(["b1.attn.q", "b1.attn.k", "b1.attn.v"]);
    expect(g.nodes[byKey.get("q_layer01")!.inputs[0]].name).toBe("b1.attn.q_norm");
    expect(g.nodes[byKey.get("k_layer01")!.inputs[0]].name).toBe("b1.attn.k_norm");
  });

  it("probes { enabled = false } adds none", () => {
    const g = trainGraph(MODEL("probes { enabled = false }"));
    expect(kurtosisNodes(g)).toEqual([]);
    expect(g.nodes.some((n) => n.role === "probe")).toBe(false);
    expect(stripProbes(g)).toBe(g);
  });

  it("tensors, mode and probe locals are respected", () => {
    const g = trainGraph(MODEL("probes { tensors = [qkv, mlp_out]  mode = per_sequence  every = 7 }", "probe a = attn(rmsnorm(h))\n    h = h + a\n    h = h + ffn(rmsnorm(h))"));
    const ks = kurtosisNodes(g);
    expect(ks.map((k) => probeKey(k.attrs.probe, k.attrs.layer)).sort()).toEqual(
      ["a", "qkv", "mlp_out"].flatMap((t) => [0, 1, 2].map((l) => probeKey(t, l))).sort(),
    );
    for (const k of ks) expect(k.attrs).toMatchObject({ mode: "per_sequence", seqLen: 8 });
    expect(g.nodes[g.outputs["kurtosis:a_layer02"]].inputs.map((i) => g.nodes[i].name)).toEqual(["b2.attn.o"]);
  });

  it("a component called twice in a layer gets a second, numbered probe", () => {
    const g = trainGraph(MODEL("probes { tensors = [qkv_input] }", "h = h + attn(rmsnorm(h))\n    h = h + attn(rmsnorm(h))\n    h = h + ffn(rmsnorm(h))"));
    expect(probeOutputs(g).map((p) => p.key)).toEqual(["qkv_input_layer00", "qkv_input1_layer00", "qkv_input_layer01", "qkv_input1_layer01", "qkv_input_layer02", "qkv_input1_layer02"]);
  });

  it("probe keys round-trip", () => {
    expect(probeKey("qkv_input", 3)).toBe("qkv_input_layer03");
    expect(probeKey("q", 123)).toBe("q_layer123");
    expect(parseProbeKey("mlp_out_layer12")).toEqual({ probe: "mlp_out", layer: 12 });
    expect(parseProbeKey("mlp_out_avg")).toBeUndefined();
  });

  it("the kurtosis shape rule: inputs must share rows; per_sequence needs whole sequences", () => {
    const attrs = { mode: "per_token" as const, seqLen: 4, probe: "p", layer: 0 };
    expect(inferShape({ op: "kurtosis", attrs }, [[8, 6], [8, 2]], ["f32", "f32"])).toEqual([]);
    expect(() => inferShape({ op: "kurtosis", attrs }, [[8, 6], [4, 2]], ["f32", "f32"])).toThrow(ShapeError);
    expect(() => inferShape({ op: "kurtosis", attrs: { ...attrs, mode: "per_sequence" } }, [[6, 2]], ["f32"])).toThrow(/whole number of sequences/);
  });
});
