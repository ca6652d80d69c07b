// Prints graph IR as stable text, one node per line, for `fogc compile`, golden tests and
// humans: `%7 = matmul(%5, %6) [64,192] f32 {transB} "b0.attn.qkv"  @ fog 23:5`.
import { basename } from "node:path";
import type { Graph, Init, Node, Scaling, ScaleSlot } from "./ir.js";

function fmtNum(x: number): string {
  if (Number.isInteger(x)) return String(x);
  const s = x.toPrecision(6);
  return String(Number(s));
}

function fmtInit(init: Init): string {
  switch (init.kind) {
    case "normal":
      return `normal(${fmtNum(init.std)})`;
    case "const":
      return `const(${fmtNum(init.value)})`;
    case "softplus_inv":
      return `softplus_inv(${fmtNum(init.value)})`;
  }
}

export function fmtScaling(s: Scaling): string {
  switch (s.kind) {
    case "delayed":
      return `delayed(history=${s.history}, margin=${fmtNum(s.margin)}, amax=${s.amax}${s.pow2 ? ", pow2" : ""})`;
    case "current":
      return `current(margin=${fmtNum(s.margin)}${s.pow2 ? ", pow2" : ""})`;
    case "blockwise":
      return `blockwise(activations=${s.activationBlock.join("x")}, weights=${s.weightBlock.join("x")}${s.pow2 ? ", pow2" : ""})`;
  }
}

function fmtValue(v: unknown): string {
  if (typeof v === "number") return fmtNum(v);
  if (Array.isArray(v)) return `[${v.map(fmtValue).join(",")}]`;
  if (v && typeof v === "object") {
    if ("kind" in v && (v as Init).kind in { normal: 1, const: 1, softplus_inv: 1 }) return fmtInit(v as Init);
    return `{${Object.entries(v).map(([k, x]) => `${k}=${fmtValue(x)}`).join(", ")}}`;
  }
  return String(v);
}

function fmtAttrs(n: Node): string {
  const parts: string[] = [];
  for (const [k, v] of Object.entries(n.attrs)) {
    if (v === undefined || v === false) continue;
    parts.push(v === true ? k : `${k}=${fmtValue(v)}`);
  }
  return parts.length ? ` {${parts.join(", ")}}` : "";
}

export function printNode(n: Node): string {
  const args = n.inputs.length ? `(${n.inputs.map((i) => `%${i}`).join(", ")})` : "";
  const where = n.span ? `  @ ${basename(n.span.file)}:${n.span.line}:${n.span.col}` : "";
  return `%${n.id} = ${n.op}${args} [${n.shape.join(",")}] ${n.dtype}${fmtAttrs(n)} "${n.name}"${where}`;
}

function printSlot(s: ScaleSlot): string {
  return `#${s.id} ${s.name} ${s.role} ${s.format} ${fmtScaling(s.scaling)}${s.saturate ? "" : " nosat"}`;
}

/** The whole graph as text; `roles` filters which nodes are printed (all by default). */
export function printGraph(g: Graph, roles?: readonly Node["role"][]): string {
  const lines = [`graph batch=${g.batch} seq=${g.seqLen} nodes=${g.nodes.length}`];
  let role: Node["role"] | undefined;
  for (const n of g.nodes) {
    if (roles && !roles.includes(n.role)) continue;
    if (n.role !== role) {
      role = n.role;
      lines.push(`// ${role}`);
    }
    lines.push(`  ${printNode(n)}`);
  }
  const outs = Object.entries(g.outputs).map(([k, v]) => `${k}=%${v}`);
  if (outs.length) lines.push(`outputs ${outs.join(" ")}`);
  if (g.scaleSlots.length) {
    lines.push("scale slots");
    for (const s of g.scaleSlots) lines.push(`  ${printSlot(s)}`);
  }
  return lines.join("\n") + "\n";
}
