// The fusion pass: groups the nodes of a (training) graph into kernels — the "kernel IR" the GPU
// lowering (runtime/gpu-lower.ts) turns into one dispatch or a few per group — and decides how each
// value is stored (f32, or packed FP8/bf16 where only GEMMs, or FP8DPA attention, read it). One job: grouping; it never
// changes what the graph computes.
//
// Fusions, and why each is legal:
// - Elementwise chains: an elementwise node whose value has exactly one reader, that reader being an
//   elementwise node of the same output shape, is inlined into the reader's expression
//   (compiler/kernels/elementwise.ts takes expression trees). The inlined value is then never
//   written; no one else needed it. Values read by several nodes are not recomputed per reader.
// - sum_to of a chain: a reduction whose input is such a chain reads the chain's inputs directly
//   (reduce.ts `map`), when every input has the reduced shape (the reduction indexes them alike).
// - GEMM epilogue: matmul → [+ bias row] → [gelu|silu|tanh] → [+ residual of the same shape], each
//   link the only reader of the previous value, in that order (GemmEpilogue's order).
// - embed → scale: the gather takes a constant factor (FOG's ×50 input upscale).
// - quantize into its producer: only for a quantize whose value is stored packed (only GEMMs read
//   it) with DELAYED scaling: the scale is the stored one, known before the step, so the producer
//   can encode as it writes and record amax on the way. Current scaling needs the whole tensor's
//   amax before the first code is written (a pass of its own), blockwise needs each block's amax
//   first, and a quantize read by a non-GEMM other than FP8DPA attention (which decodes the packed
//   Q, K, V and dO itself) keeps the f32 fake cast: neither fuses. The producer must be a kernel with
//   a cast epilogue (OUTPUT_CAST) and the quantize its only reader.
// - the logits' gradient's bf16 cast into the cross-entropy gradient: when the cast is its only
//   reader and is read only by GEMMs (stored bf16), the gradient kernel rounds and packs as it
//   writes (the cast kernel's rounding of the same f32 value), so the f32 gradient is never stored.
import type { Graph, Node, NodeOf, OpKind } from "./ir.js";
import type { Ew } from "./kernels/reduce.js";

/** How a value lives in memory: f32, or packed codes (4 FP8 / 2 bf16 per u32) read only by GEMMs (FP8: or by FP8DPA attention). */
export type Storage = "f32" | "bf16" | "e4m3" | "e5m2";

export type GemmAct = "gelu" | "silu" | "tanh";

interface GroupBase {
  /** The nodes the group computes, in graph order; only `output`'s value leaves the group. */
  nodes: number[];
  output: number;
  /** A quantize node (delayed, packed), or the logits' gradient's bf16 cast, fused as the output cast of the producer; then `output`. */
  quantize?: number;
}

export type KernelGroup =
  /** One node through its own lowering (LOWERING in runtime/gpu-lower.ts). */
  | (GroupBase & { kind: "node"; node: number })
  /** y = expr(inputs…) over `root`'s shape; `inputs` are node ids (leaves `{ in: i }` of expr). */
  | (GroupBase & { kind: "elementwise"; root: number; inputs: number[]; expr: Ew })
  /** sum_to(map(inputs…)). */
  | (GroupBase & { kind: "reduce"; sum: number; inputs: number[]; map: Ew })
  /** matmul with its epilogue: bias (node id of the [N] operand), act, residual (node id). */
  | (GroupBase & { kind: "gemm"; matmul: number; bias?: number; act?: GemmAct; residual?: number })
  /** embed · factor. */
  | (GroupBase & { kind: "embed"; embed: number; scale: number });

export interface KernelGraph {
  /** Groups in execution order (each at its output node's position in the graph). */
  groups: KernelGroup[];
  /** Storage of each node's value, by node id. */
  storage: Storage[];
}

/** Elementwise ops → their expression (expr.ts names), given the argument subtrees. */
const ELEMENTWISE: Partial<Record<OpKind, (n: Node, args: Ew[]) => Ew>> = {
  add: (_, args) => ({ op: "add", args }),
  sub: (_, args) => ({ op: "sub", args }),
  mul: (_, args) => ({ op: "mul", args }),
  div: (_, args) => ({ op: "div", args }),
  scale: (n, args) => ({ op: "scale", args, factor: (n as NodeOf<"scale">).attrs.factor }),
  gelu: (_, args) => ({ op: "gelu", args }),
  silu: (_, args) => ({ op: "silu", args }),
  tanh: (_, args) => ({ op: "tanh", args }),
  gelu_grad: (_, args) => ({ op: "gelu_grad", args }),
  silu_grad: (_, args) => ({ op: "silu_grad", args }),
  tanh_grad: (_, args) => ({ op: "tanh_grad", args }),
};

export const isElementwise = (op: OpKind): boolean => op in ELEMENTWISE;

/** Ops whose kernels write their result through a cast epilogue (OutCast), so a quantize can fuse. */
const OUTPUT_CAST = new Set<OpKind>(["embed", "glu", "xielu"]);

/**
 * Whether `n`'s kernel can write its result as packed FP8: it has a cast epilogue, and where it
 * stores whole words per row (or per half head for RoPE, per half row for GLU's gradient), those
 * rows hold a whole number of 4-code words.
 */
function castsOutput(n: Node): boolean {
  const width = n.shape.length ? n.shape[n.shape.length - 1] : 1;
  switch (n.op) {
    case "rope":
      return n.attrs.headDim % 8 === 0;
    case "glu_grad":
      return width % 8 === 0;
    case "rmsnorm":
    case "layernorm":
      return n.attrs.group % 4 === 0;
    case "rmsnorm_grad":
    case "layernorm_grad":
      return n.attrs.wrt === "x" && n.attrs.group % 4 === 0;
    case "cross_entropy_grad":
      return width % 4 === 0;
    case "xielu_grad":
      return n.attrs.wrt === "x";
    default:
      return OUTPUT_CAST.has(n.op);
  }
}

const sameShape = (a: readonly number[], b: readonly number[]): boolean => a.length === b.length && a.every((d, i) => d === b[i]);

/** Readers of each node (a node reading a value twice counts once), plus a marker for graph outputs. */
function readersOf(g: Graph): { readers: number[][]; isOutput: boolean[] } {
  const readers: number[][] = g.nodes.map(() => []);
  for (const n of g.nodes) for (const i of new Set(n.inputs)) readers[i].push(n.id);
  const isOutput = g.nodes.map(() => false);
  for (const id of Object.values(g.outputs)) isOutput[id] = true;
  return { readers, isOutput };
}

/**
 * Storage of every value: a quantize read only by GEMMs (not blockwise: the GEMM takes one scale
 * per tensor) stores FP8 codes; so does one read only by GEMMs and FP8DPA attention (Q, K, V as
 * E4M3 and dO as E5M2: the attention kernels decode the codes with 1/s, compiler/kernels/attention.ts
 * `f32Inputs: false`), when every FP8 input of each attention reading it is stored so too (the
 * kernels take all of Q, K, V, dO packed or all f32) and head_dim holds whole 4-code words. A bf16
 * cast read only by GEMMs stores bf16; everything else f32.
 */
export function storageOf(g: Graph, { readers, isOutput } = readersOf(g)): Storage[] {
  const onlyGemms = (id: number): boolean => !isOutput[id] && readers[id].length > 0 && readers[id].every((r) => g.nodes[r].op === "matmul");
  const packable = (id: number): boolean => {
    const n = g.nodes[id];
    if (n.op !== "quantize") return false;
    const slot = g.scaleSlots[n.attrs.slot];
    return !!slot && slot.scaling.kind !== "blockwise";
  };
  /** FP8DPA attention (training graphs: not the decode graph's cached attention, which takes f32). */
  const fp8Attention = (r: Node): r is NodeOf<"attention"> | NodeOf<"attention_grad"> =>
    (r.op === "attention" || r.op === "attention_grad") && !!r.attrs.fp8 && !r.attrs.cached;
  // Quantizes read by FP8DPA attention (and GEMMs): packed unless one of an attention's FP8 inputs
  // cannot be, in which case none of that attention's inputs are (to a fixed point: inputs are shared
  // by the forward and the three gradient nodes).
  const viaAttention = new Set<number>();
  for (const n of g.nodes) {
    if (!packable(n.id) || isOutput[n.id] || readers[n.id].length === 0) continue;
    const rs = readers[n.id].map((r) => g.nodes[r]);
    if (!rs.some(fp8Attention) || !rs.every((r) => r.op === "matmul" || fp8Attention(r))) continue;
    const format = g.scaleSlots[(n as NodeOf<"quantize">).attrs.slot].format;
    const fits = rs.every((r) => !fp8Attention(r) || (r.attrs.headDim % 4 === 0 && r.inputs.every((i, k) => i !== n.id || format === (k === 3 ? "e5m2" : "e4m3"))));
    if (fits) viaAttention.add(n.id);
  }
  for (let changed = true; changed; ) {
    changed = false;
    for (const r of g.nodes) {
      if (!fp8Attention(r)) continue;
      const ins = r.inputs.slice(0, r.op === "attention" ? 3 : 4);
      if (ins.some((i) => viaAttention.has(i)) && !ins.every((i) => viaAttention.has(i))) {
        for (const i of ins) changed = viaAttention.delete(i) || changed;
      }
    }
  }
  return g.nodes.map((n): Storage => {
    if (n.op === "quantize") {
      const slot = g.scaleSlots[n.attrs.slot];
      return slot && packable(n.id) && (onlyGemms(n.id) || viaAttention.has(n.id)) ? slot.format : "f32";
    }
    if (n.op === "cast" && n.attrs.to === "bf16" && onlyGemms(n.id)) return "bf16";
    return "f32";
  });
}

/** Groups `g`'s nodes into kernels (see the file comment for the rules). */
export function fuseGraph(g: Graph): KernelGraph {
  const r = readersOf(g);
  const { readers, isOutput } = r;
  const storage = storageOf(g, r);
  const groupOf: (KernelGroup | undefined)[] = g.nodes.map(() => undefined);
  /** The only reader of `id`'s value, when it has exactly one and is not a graph output. */
  const soleReader = (id: number): Node | undefined => (!isOutput[id] && readers[id].length === 1 ? g.nodes[readers[id][0]] : undefined);
  const free = (id: number): boolean => groupOf[id] === undefined;
  const claim = (grp: KernelGroup): void => {
    for (const id of grp.nodes) groupOf[id] = grp;
  };
  /** The packed, delayed-scaling quantize that is `id`'s only reader, if any (fusable as the output cast). */
  const fusableQuantize = (id: number): NodeOf<"quantize"> | undefined => {
    const r = soleReader(id);
    if (r?.op !== "quantize" || storage[r.id] === "f32" || !free(r.id)) return undefined;
    return g.scaleSlots[r.attrs.slot]?.scaling.kind === "delayed" ? r : undefined;
  };
  /**
   * The bf16 cast, stored bf16 (read only by GEMMs: the LM head's dgrad and wgrad), that is the
   * logits' gradient's only reader: the cross-entropy gradient kernel writes it through its cast
   * epilogue (the same bf16 rounding of the same f32 value), and the f32 gradient is never stored.
   */
  const fusableCast = (id: number): NodeOf<"cast"> | undefined => {
    const r = soleReader(id);
    if (g.nodes[id].op !== "cross_entropy_grad" || r?.op !== "cast" || r.attrs.to !== "bf16" || storage[r.id] !== "bf16" || !free(r.id)) return undefined;
    return r;
  };

  /** The expression of the chain rooted at `root`: single-reader elementwise inputs of the same shape inlined. */
  const chain = (root: Node): { nodes: number[]; inputs: number[]; expr: Ew } => {
    const nodes: number[] = [];
    const inputs: number[] = [];
    const leaf = (id: number): Ew => {
      const at = inputs.indexOf(id);
      return { in: at >= 0 ? at : inputs.push(id) - 1 };
    };
    const done = new Map<number, Ew>();
    const visit = (n: Node): Ew => {
      const hit = done.get(n.id);
      if (hit) return hit; // read twice by its reader (x·x): the subtree is written twice, computed once per use
      const args = n.inputs.map((id) => {
        const m = g.nodes[id];
        const inline = isElementwise(m.op) && free(id) && soleReader(id)?.id === n.id && sameShape(m.shape, root.shape);
        return inline ? visit(m) : leaf(id);
      });
      const e = ELEMENTWISE[n.op]!(n, args);
      nodes.push(n.id);
      done.set(n.id, e);
      return e;
    };
    const expr = visit(root);
    return { nodes: nodes.sort((a, b) => a - b), inputs, expr };
  };

  // 1. GEMM epilogues, walking forward from each matmul.
  for (const n of g.nodes) {
    if (n.op !== "matmul" || !free(n.id)) continue;
    const grp: KernelGroup & { kind: "gemm" } = { kind: "gemm", nodes: [n.id], output: n.id, matmul: n.id };
    const other = (r: Node, id: number): number => r.inputs[r.inputs[0] === id ? 1 : 0];
    let r = soleReader(grp.output);
    if (r?.op === "add" && free(r.id) && r.inputs[0] !== r.inputs[1]) {
      const b = g.nodes[other(r, grp.output)];
      if (b.shape.length === 1 && b.shape[0] === n.shape[1] && sameShape(r.shape, n.shape)) {
        grp.bias = b.id;
        grp.nodes.push(r.id);
        grp.output = r.id;
        r = soleReader(r.id);
      }
    }
    if ((r?.op === "gelu" || r?.op === "silu" || r?.op === "tanh") && free(r.id)) {
      grp.act = r.op;
      grp.nodes.push(r.id);
      grp.output = r.id;
      r = soleReader(r.id);
    }
    if (r?.op === "add" && free(r.id) && r.inputs[0] !== r.inputs[1]) {
      const res = g.nodes[other(r, grp.output)];
      if (sameShape(res.shape, n.shape) && sameShape(r.shape, n.shape)) {
        grp.residual = res.id;
        grp.nodes.push(r.id);
        grp.output = r.id;
      }
    }
    claim(grp);
  }

  // 2. Reductions of chains, elementwise chains and cast-epilogue producers, from the end back.
  for (let id = g.nodes.length - 1; id >= 0; id--) {
    const n = g.nodes[id];
    if (!free(id)) continue;
    if (n.op === "sum_to") {
      const m = g.nodes[n.inputs[0]];
      if (isElementwise(m.op) && free(m.id) && soleReader(m.id)?.id === id) {
        const c = chain(m);
        if (c.inputs.every((i) => sameShape(g.nodes[i].shape, m.shape))) {
          claim({ kind: "reduce", nodes: [...c.nodes, id], output: id, sum: id, inputs: c.inputs, map: c.expr });
          continue;
        }
      }
    }
    if (n.op === "quantize" || n.op === "cast") {
      // Claimed together with its producer (which comes first in the graph, so is still free).
      const p = g.nodes[n.inputs[0]];
      if ((fusableQuantize(p.id) ?? fusableCast(p.id))?.id === id && free(p.id)) {
        const grp = producerGroup(p, id);
        if (grp) {
          claim(grp);
          continue;
        }
      }
    }
    if (isElementwise(n.op)) claim(producerGroup(n)!);
  }

  /** The group computing `p` (an elementwise chain, a scaled embed, or a cast-epilogue kernel), cast by quantize `q`. */
  function producerGroup(p: Node, q?: number): KernelGroup | undefined {
    const cast = q === undefined ? {} : { quantize: q };
    const tail = q === undefined ? [] : [q];
    const output = q ?? p.id;
    const e = g.nodes[p.inputs[0]];
    if (p.op === "scale" && e?.op === "embed" && free(e.id) && soleReader(e.id)?.id === p.id) {
      return { kind: "embed", nodes: [e.id, p.id, ...tail], output, embed: e.id, scale: (p as NodeOf<"scale">).attrs.factor, ...cast };
    }
    if (isElementwise(p.op)) {
      const c = chain(p);
      return { kind: "elementwise", nodes: [...c.nodes, ...tail], output, root: p.id, inputs: c.inputs, expr: c.expr, ...cast };
    }
    return castsOutput(p) ? { kind: "node", nodes: [p.id, ...tail], output, node: p.id, ...cast } : undefined;
  }

  // 3. Everything else on its own.
  for (const n of g.nodes) if (free(n.id)) claim({ kind: "node", nodes: [n.id], output: n.id, node: n.id });

  const groups = [...new Set(groupOf as KernelGroup[])].sort((a, b) => a.output - b.output);
  return { groups, storage };
}

/** Groups by kind and the number of nodes they absorb (for reports and tests). */
export function fusionSummary(k: KernelGraph): Record<KernelGroup["kind"], number> & { fusedNodes: number } {
  const out = { node: 0, elementwise: 0, reduce: 0, gemm: 0, embed: 0, fusedNodes: 0 };
  for (const grp of k.groups) {
    out[grp.kind]++;
    out.fusedNodes += grp.nodes.length - 1;
  }
  return out;
}
