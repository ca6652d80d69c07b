// Human-readable summaries of a compiled model for `fogc compile`: sizes, parameters, FLOPs,
// memory, the precision every GEMM runs in (grouped over layers with identical rules) and the probes.
import { fmtScaling } from "./ir-text.js";
import { ATTENTION_GEMMS, type GemmName, type Graph, LEAF_OPS } from "./ir.js";
import { isFp8, ruleFor } from "./check-precision.js";
import type { CheckedModel } from "./model.js";
import { fuseGraph, type KernelGraph } from "./fuse.js";
import { probeOutputs } from "./probes.js";
import type { ModelStats } from "./stats.js";

export interface GemmPrecision {
  gemm: string;
  layers: number[];
  fp8: boolean;
  /** Formats of (forward input, weight or second operand, gradient) when FP8. */
  formats?: [string, string, string];
  scaling?: string;
}

const COMPONENT_GEMMS: Record<"attention" | "mlp", GemmName[]> = { attention: ["qkv", "qk", "pv", "out"], mlp: ["fc1", "fc2"] };

/** Which precision each GEMM of the model runs in, per the recipe (papers.md §3). */
export function precisionTable(m: CheckedModel): GemmPrecision[] {
  const rows: GemmPrecision[] = [];
  const used = new Set<string>();
  for (const st of m.block) collectCalls(st.expr, used);
  const push = (label: string, layer: number | undefined, component: string, gemm: GemmName) => {
    const rule = ruleFor(m.precision, layer, component, gemm);
    const fp8 = isFp8(rule, gemm);
    const row: GemmPrecision = fp8
      ? { gemm: label, layers: layer === undefined ? [] : [layer], fp8, formats: [rule.activations, ATTENTION_GEMMS.includes(gemm) ? rule.activations : rule.weights, rule.gradients], scaling: fmtScaling(rule.scaling) }
      : { gemm: label, layers: layer === undefined ? [] : [layer], fp8 };
    const prev = rows.find((r) => r.gemm === label && JSON.stringify({ ...r, layers: 0 }) === JSON.stringify({ ...row, layers: 0 }));
    if (prev && layer !== undefined) prev.layers.push(layer);
    else rows.push(row);
  };
  for (const c of m.components) {
    if (!used.has(c.name)) continue;
    for (const g of COMPONENT_GEMMS[c.kind]) for (let l = 0; l < m.layers; l++) push(`${c.name}.${g}`, l, c.name, g);
  }
  push("head", undefined, "head", "head");
  return rows;
}

function collectCalls(e: import("./model.js").BlockExpr, out: Set<string>): void {
  if (e.kind === "call") out.add(e.component.name);
  if (e.kind === "add") {
    collectCalls(e.left, out);
    collectCalls(e.right, out);
  } else if (e.kind !== "var") collectCalls(e.input, out);
}

function ranges(xs: number[]): string {
  if (!xs.length) return "-";
  const parts: string[] = [];
  let start = xs[0];
  for (let i = 1; i <= xs.length; i++) {
    if (i === xs.length || xs[i] !== xs[i - 1] + 1) {
      parts.push(start === xs[i - 1] ? `${start}` : `${start}-${xs[i - 1]}`);
      if (i < xs.length) start = xs[i];
    }
  }
  return parts.join(",");
}

export function fmtCount(n: number): string {
  if (n >= 1e9) return `${(n / 1e9).toFixed(3)} B`;
  if (n >= 1e6) return `${(n / 1e6).toFixed(2)} M`;
  if (n >= 1e3) return `${(n / 1e3).toFixed(1)} k`;
  return String(n);
}

export function fmtBytes(n: number): string {
  if (n >= 2 ** 30) return `${(n / 2 ** 30).toFixed(2)} GiB`;
  if (n >= 2 ** 20) return `${(n / 2 ** 20).toFixed(1)} MiB`;
  return `${(n / 2 ** 10).toFixed(1)} KiB`;
}

/** The summary `fogc compile` prints; with the training graph it also counts its probes. */
export function formatSummary(m: CheckedModel, s: ModelStats, train?: Graph): string {
  const t = m.train;
  const lines = [
    `model ${m.name} (${m.file})`,
    `  sizes       vocab ${m.vocab}, context ${m.context}, width ${m.width}, layers ${m.layers}, heads ${m.heads} (kv ${m.kvHeads}), head_dim ${m.headDim}, mlp ${m.mlpWidth}`,
    `  parameters  ${fmtCount(s.params)} (${s.params}); non-embedding ${fmtCount(s.nonEmbeddingParams)}`,
    `  FLOPs/token ${fmtCount(s.forwardFlopsPerToken)} forward, ${fmtCount(s.trainFlopsPerToken)} training (seq ${t.seqLen})`,
    `  memory      weights+grads ${fmtBytes(s.memory.paramsBytes)}, AdamW state ${fmtBytes(s.memory.optimizerBytes)}, activations ≈ ${fmtBytes(s.memory.activationBytes / t.batch)} per sequence of ${t.seqLen} (× batch ${t.batch}; f32, before FP8 storage and buffer reuse)`,
    `  precision   ${m.precision.name} (base mode ${m.precision.base.mode})`,
  ];
  const table = precisionTable(m);
  const w = Math.max(...table.map((r) => r.gemm.length), 4);
  lines.push(`    ${"gemm".padEnd(w)}  ${"layers".padEnd(8)}  ${"prec".padEnd(5)}  ${"x/w/grad".padEnd(15)}  scaling`);
  for (const r of table)
    lines.push(`    ${r.gemm.padEnd(w)}  ${ranges(r.layers).padEnd(8)}  ${(r.fp8 ? "fp8" : "bf16").padEnd(5)}  ${(r.formats?.join("/") ?? "-").padEnd(15)}  ${r.scaling ?? "-"}`);
  const p = m.probes;
  const locals = m.block.filter((st) => st.probe).map((st) => st.target);
  const count = train ? `${probeOutputs(train).length} ` : "";
  const what = [...p.tensors, ...locals].join(", ");
  lines.push(`  probes      ${p.enabled ? `${count}kurtosis (${p.mode}) every ${p.every} steps: ${what} × ${m.layers} layers` : "off"}`);
  if (train) lines.push(`  kernels     ${kernelLine(train, fuseGraph(train))}`);
  const o = t.optimizer;
  lines.push(`  training    ${t.steps} steps of ${t.batch} × ${t.seqLen} tokens (${t.tokenizer}, ${t.data.kind === "brown" ? "Brown corpus" : t.data.path}); AdamW lr ${o.lr}, ${t.schedule.kind} schedule, seed ${t.seed}`);
  return lines.join("\n");
}

/**
 * What the fusion pass (compiler/fuse.ts) makes of the training step: the kernels its graph ops
 * become, the fused ones by kind, and the values stored packed instead of f32. The GPU plan adds
 * the optimizer and scale-state kernels (runtime/gpu-kernels.ts) on top of these.
 */
export function kernelLine(g: Graph, k: KernelGraph): string {
  const ops = g.nodes.filter((n) => !LEAF_OPS.has(n.op)).length;
  const kernels = k.groups.filter((grp) => grp.kind !== "node" || !LEAF_OPS.has(g.nodes[grp.node].op));
  const count = (kind: string) => kernels.filter((grp) => grp.kind === kind).length;
  const epilogues = kernels.filter((grp) => grp.kind === "gemm" && (grp.bias !== undefined || grp.act !== undefined || grp.residual !== undefined)).length;
  const fused = kernels.filter((grp) => grp.nodes.length > 1).length;
  const stored = (f: string) => k.storage.filter((st) => st === f).length;
  const packed = [["e4m3", stored("e4m3")], ["e5m2", stored("e5m2")], ["bf16", stored("bf16")]].filter(([, n]) => n).map(([f, n]) => `${n} ${f}`);
  const single = count("node");
  return (
    `training step: ${ops} graph ops → ${kernels.length} kernels, ${fused} of them fusing several ops ` +
    `(${count("gemm")} GEMM, ${epilogues} with an epilogue; ${count("elementwise")} elementwise; ${count("reduce")} reduce; ` +
    `${count("embed")} scaled embedding; ${single} other); values stored packed: ${packed.length ? packed.join(", ") : "none"}`
  );
}
