// The probe pass: appends kurtosis measurements (papers.md §7) to the training graph, one `kurtosis`
// node of role "probe" per (tensor, layer) that the model's probe spec selects, as graph outputs
// `kurtosis:<probe>_layerNN`. Executors compute them on logging steps only (stripProbes for the rest).
import { GraphBuilder } from "./graph-builder.js";
import type { Graph, Node, NodeOf } from "./ir.js";
import type { CheckedModel } from "./model.js";

/** Graph outputs of the probe pass are named `kurtosis:` + `probeKey(probe, layer)`. */
export const KURTOSIS_PREFIX = "kurtosis:";

/** `qkv_input_layer03`: the name of one probe's value in outputs and in the JSONL log. */
export function probeKey(probe: string, layer: number): string {
  return `${probe}_layer${String(layer).padStart(2, "0")}`;
}

/** The inverse of probeKey (undefined for names that are not per-layer probe keys, e.g. `q_avg`). */
export function parseProbeKey(key: string): { probe: string; layer: number } | undefined {
  const m = /^(.+)_layer(\d+)$/.exec(key);
  return m ? { probe: m[1], layer: Number(m[2]) } : undefined;
}

/** One probe of a graph: its key (output name without the prefix) and its node. */
export interface ProbeOutput {
  key: string;
  probe: string;
  layer: number;
  id: number;
}

/**
 * Appends the model's kurtosis probes to `train` (no change when `probes { enabled = false }`).
 * Selected taps: the spec's `tensors` (papers.md §7.2 names) plus every `probe NAME = ...` local of
 * the block. A multi-node tap (`qkv`: the q, k and v GEMM outputs) is one kurtosis of the
 * concatenated per-token vectors. A name that two taps of one layer share (a block calling `attn`
 * twice) gets a counter on the second, like node names: `qkv_input`, `qkv_input1`.
 * The probe nodes read forward tensors only and feed nothing, so the step's results do not depend
 * on whether they run.
 */
export function insertProbes(train: Graph, model: CheckedModel): Graph {
  const spec = model.probes;
  if (!spec.enabled) return train;
  const wanted = new Set<string>([...spec.tensors, ...model.block.filter((s) => s.probe).map((s) => s.target)]);
  const b = GraphBuilder.from(train);
  b.role = "probe";
  for (const tap of train.taps) {
    if (!wanted.has(tap.probe)) continue;
    let probe = tap.probe;
    for (let n = 1; b.outputs[KURTOSIS_PREFIX + probeKey(probe, tap.layer)] !== undefined; n++) probe = `${tap.probe}${n}`;
    const key = probeKey(probe, tap.layer);
    b.span = train.nodes[tap.nodes[0]].span;
    const id = b.add("kurtosis", [...tap.nodes], { mode: spec.mode, seqLen: train.seqLen, probe, layer: tap.layer }, `b${tap.layer}.kurtosis.${probe}`);
    b.outputs[KURTOSIS_PREFIX + key] = id;
  }
  b.span = undefined;
  return b.build();
}

/** The probes of a graph (its `kurtosis:*` outputs), in node order. */
export function probeOutputs(g: Graph): ProbeOutput[] {
  const out: ProbeOutput[] = [];
  for (const [name, id] of Object.entries(g.outputs)) {
    if (!name.startsWith(KURTOSIS_PREFIX)) continue;
    const n = g.nodes[id] as NodeOf<"kurtosis">;
    if (n.op !== "kurtosis") throw new Error(`probeOutputs: output "${name}" is a ${n.op}, not a kurtosis`);
    out.push({ key: name.slice(KURTOSIS_PREFIX.length), probe: n.attrs.probe, layer: n.attrs.layer, id });
  }
  return out.sort((a, b) => a.id - b.id);
}

/**
 * `g` without its probe nodes (role "probe") and their outputs, renumbered: the graph an executor
 * runs on steps that do not log probes. Scale slots and taps are kept.
 */
export function stripProbes(g: Graph): Graph {
  if (!g.nodes.some((n) => n.role === "probe")) return g;
  const remap = new Map<number, number>();
  const nodes: Node[] = [];
  for (const n of g.nodes) {
    if (n.role === "probe") continue;
    const inputs = n.inputs.map((i) => {
      const j = remap.get(i);
      if (j === undefined) throw new Error(`stripProbes: ${n.op} "${n.name}" reads probe node %${i}`);
      return j;
    });
    remap.set(n.id, nodes.length);
    nodes.push({ ...n, id: nodes.length, inputs } as Node);
  }
  const outputs: Record<string, number> = {};
  for (const [name, id] of Object.entries(g.outputs)) {
    const j = remap.get(id);
    if (j !== undefined) outputs[name] = j;
  }
  const taps = g.taps.map((t) => ({ ...t, nodes: t.nodes.map((i) => remap.get(i) as number) }));
  return { nodes, outputs, scaleSlots: g.scaleSlots, taps, batch: g.batch, seqLen: g.seqLen };
}
