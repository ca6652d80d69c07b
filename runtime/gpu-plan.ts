// Graph IR → GPU plan: the fusion pass (compiler/fuse.ts) groups the nodes into kernels, each group
// goes through the lowering (runtime/gpu-lower.ts) into generated kernels over logical buffers (f32,
// or packed FP8/bf16 where only GEMMs, or FP8DPA attention, read a value), plus the rest of a training
// step (grad norm, clip + AdamW, FP8 scale update). FP8 casts saved for the backward that it can
// compute again are computed again there (recomputed). runtime/gpu-build.ts turns a plan into
// device objects once.
import { fuseGraph, type KernelGraph, type KernelGroup, type Storage } from "../compiler/fuse.js";
import type { Graph, ScaleSlot } from "../compiler/ir.js";
import { LEAF_OPS, numel, paramNodes } from "../compiler/ir.js";
import { elementwise } from "../compiler/kernels/elementwise.js";
import { type KernelSource, reduce } from "../compiler/kernels/reduce.js";
import { pruneGraph } from "./cpu-executor.js";
import { FP8_FORMATS } from "./fp8.js";
import * as rk from "./gpu-kernels.js";
import { type BufferView, type CastBinding, type Ctx, groupNode, type KernelCost, KEYS, lowerGroup, partsFor, PlanError, type PlanOptions } from "./gpu-lower.js";

export { type BufferView, type KernelCost, KEYS, LOWERING, PlanError, type PlanOptions } from "./gpu-lower.js";

/** Bytes a value of `n` elements takes in `storage`: packed words of 4 FP8 or 2 bf16 codes. */
export function storageBytes(n: number, storage: Storage): number {
  if (storage === "f32") return n * 4;
  return Math.ceil(n / (storage === "bf16" ? 2 : 4)) * 4;
}

/**
 * A logical buffer. `transient` buffers share physical memory by lifetime; `const` ones are uploaded
 * once; `external` ones (parameters, moments, inputs, scale state) are owned by the executor and
 * found by `key`; `pinned` ones live for the whole plan (outputs read back, per-step scratch).
 */
export interface PlanBuffer {
  id: number;
  bytes: number;
  label: string;
  kind: "transient" | "const" | "external" | "pinned";
  key?: string;
  init?: Float32Array | Uint32Array;
  /** Zeroed at the start of every command buffer (atomic amax scratch). */
  clear?: boolean;
  /** The graph node whose kernel group made it (the group's output node; absent: step-level buffers). */
  node?: number;
}

export interface PlanKernel {
  label: string;
  source: KernelSource;
  /** One view per binding of `source`, in @binding order. */
  bindings: BufferView[];
  /** FLOPs (GEMM 2MNK, attention its GEMMs' FLOPs, else 0) and bytes its bindings span, for achieved TFLOP/s and GB/s. */
  cost?: KernelCost;
  /** The graph node whose kernel group it computes (the group's output node; absent: step-level kernels). */
  node?: number;
}

export interface GraphPlan {
  buffers: PlanBuffer[];
  kernels: PlanKernel[];
  /** Buffer of each named graph output that was asked for (pinned). */
  outputs: Record<string, number>;
  /** The amax-history layout of the graph's scale slots. */
  rings: rk.SlotRing[];
  histWords: number;
  /** The kernel groups the graph was lowered from. */
  fused?: KernelGraph;
}

/** Where each slot's amax ring lives in the concatenated history buffer. */
export function slotRings(slots: readonly ScaleSlot[]): { rings: rk.SlotRing[]; words: number } {
  let words = 0;
  const rings = slots.map((s) => {
    const length = s.scaling.kind === "delayed" ? Math.max(1, s.scaling.history) : 1;
    const r = { slot: s.id, offset: words, length };
    words += length;
    return r;
  });
  return { rings, words };
}

/** The graph outputs made by probe nodes (the kurtosis measurements), in output order. */
export function probeOutputNames(g: Graph): string[] {
  return Object.keys(g.outputs).filter((k) => g.nodes[g.outputs[k]].role === "probe");
}

/**
 * Packed FP8 casts saved for the backward (read by forward and backward nodes) that the backward
 * computes again instead, at its first reader, so that the forward's codes are freed after the
 * forward's last reader rather than living through the step: those whose inputs are parameters,
 * inputs or constants (a weight's codes: fprop, then dgrad) or values the backward reads anyway,
 * after that point (the GELU output's codes, fc2's wgrad operand, from fc1's output, which the GELU
 * gradient reads; Q and K after RoPE from the tanh outputs; the attention output's codes from O).
 * Delayed or current scaling: the cast uses the scale the forward cast with (nothing changes it
 * before the step's scale update), so the codes are the same. Maps each to its kernel group. BF16
 * casts are left alone (BF16 steps plan as before).
 */
function recomputed(g: Graph, fused: KernelGraph): Map<number, KernelGroup> {
  const readers: number[][] = g.nodes.map(() => []);
  for (const n of g.nodes) for (const i of new Set(n.inputs)) readers[i].push(n.id);
  const isOutput = new Set(Object.values(g.outputs));
  const groupOf = new Map<number, KernelGroup>();
  for (const grp of fused.groups) groupOf.set(grp.output, grp);
  // An attention's output O is also read by its gradient nodes' kernels (D = rowsum(dO⊙O), gpu-lower.ts).
  const savedO = new Map<number, number[]>();
  const attn = new Map<string, number>();
  for (const n of g.nodes) {
    if (n.op !== "attention" && n.op !== "attention_grad") continue;
    const key = n.inputs.slice(0, 3).join(",");
    if (n.op === "attention" && !n.attrs.cached) attn.set(key, n.id);
    const a = attn.get(key);
    if (n.op === "attention_grad" && a !== undefined) savedO.set(a, [...(savedO.get(a) ?? []), n.id]);
  }
  const out = new Map<number, KernelGroup>();
  for (const q of g.nodes) {
    const st = fused.storage[q.id];
    if (q.op !== "quantize" || (st !== "e4m3" && st !== "e5m2") || isOutput.has(q.id)) continue;
    const kind = g.scaleSlots[q.attrs.slot]?.scaling.kind;
    const grp = groupOf.get(q.id);
    if ((kind !== "delayed" && kind !== "current") || !grp) continue;
    const bwd = readers[q.id].filter((r) => g.nodes[r].role === "bwd");
    if (bwd.length === 0 || !readers[q.id].some((r) => g.nodes[r].role === "fwd")) continue;
    const at = Math.min(...bwd);
    // The group's inputs: external, or f32 values a backward node at or after `at` reads anyway.
    const ins = grp.kind === "elementwise" ? grp.inputs : grp.kind === "node" ? g.nodes[grp.node].inputs : grp.kind === "embed" ? g.nodes[grp.embed].inputs : undefined;
    const alive = (i: number): boolean =>
      LEAF_OPS.has(g.nodes[i].op) || (fused.storage[i] === "f32" && [...readers[i], ...(savedO.get(i) ?? [])].some((r) => r >= at && g.nodes[r].role === "bwd"));
    if (ins && ins.length > 0 && ins.every(alive)) out.set(q.id, grp);
  }
  return out;
}

/** Builds plans: kernel groups → kernels and logical buffers. */
class Planner {
  readonly buffers: PlanBuffer[] = [];
  readonly kernels: PlanKernel[] = [];
  private readonly externals = new Map<string, number>();
  private readonly memos = new Map<string, unknown>();
  private atomics = 0;
  readonly values: number[] = [];
  /** Per-slot binding-aligned copies of scale and 1/scale (gpu-kernels.ts alignedScales), made on first use. */
  private alignedBuffer: number | undefined;
  /** Amaxes fused FP8 casts capture in the per-step scratch, recorded into the slots' histories at the end. */
  private readonly amaxRecords: { slot: number; atomic: number }[] = [];
  /** The output node of the group being lowered (tags the buffers and kernels it makes). */
  private current: number | undefined;
  /** Packed FP8 casts the backward computes again rather than keep from the forward (see recomputed), and their backward copies. */
  private readonly again: Map<number, KernelGroup>;
  private readonly againValues = new Map<number, number>();

  constructor(
    readonly graph: Graph,
    readonly opts: PlanOptions,
    readonly rings: rk.SlotRing[],
    readonly fused: KernelGraph,
  ) {
    this.again = recomputed(graph, fused);
  }

  /**
   * The backward's copy of the packed FP8 cast `id` (see recomputed): its kernel group lowered again
   * into a new buffer, the same kernels as the forward's (the cast's amax is recorded again: the same
   * value), so the same codes. A lone current-scaling cast only packs again with the scale the
   * forward's amax set (compiler/kernels/elementwise.ts, as lowerQuantize's packed cast).
   */
  private recompute(id: number): number {
    const hit = this.againValues.get(id);
    if (hit !== undefined) return hit;
    const grp = this.again.get(id)!;
    const q = this.graph.nodes[id];
    if (q.op !== "quantize") throw new PlanError(`recompute: %${id} is not a quantize`);
    const slot = this.graph.scaleSlots[q.attrs.slot];
    if (grp.kind === "node" && grp.node === id && slot.scaling.kind === "current") {
      const nel = numel(q.shape);
      const y = this.buffer(storageBytes(nel, this.fused.storage[id]), `${q.name} (backward copy)`, "transient", { node: id });
      const c = this.castTo(slot, false);
      const src = elementwise({ name: q.name.replace(/[^A-Za-z0-9]/g, "_"), rows: 1, cols: nel, inputs: ["none"], expr: { in: 0 }, out: c.out });
      this.kernel(`${q.name} (quantize, again for the backward)`, src, { in0: this.values[q.inputs[0]], y, ...c.bind });
      this.againValues.set(id, y);
    } else this.lowerGroup(grp, true);
    return this.againValues.get(id)!;
  }

  buffer(bytes: number, label: string, kind: PlanBuffer["kind"], extra: Partial<PlanBuffer> = {}): number {
    if (bytes > this.opts.maxBindingBytes) {
      throw new PlanError(`buffer '${label}' needs ${bytes} bytes, over the device's max storage binding of ${this.opts.maxBindingBytes}: use a smaller batch or model`);
    }
    const id = this.buffers.length;
    const node = this.current !== undefined && kind !== "external" ? { node: this.current } : {};
    this.buffers.push({ id, bytes: Math.max(4, Math.ceil(bytes / 4) * 4), label, kind, ...node, ...extra });
    return id;
  }

  external(key: string, bytes: number): number {
    const hit = this.externals.get(key);
    if (hit !== undefined) return hit;
    const id = this.buffer(bytes, key, "external", { key });
    this.externals.set(key, id);
    return id;
  }

  kernel(label: string, src: KernelSource, bind: Record<string, number | BufferView>, flops = 0): void {
    const names = new Set(src.bindings.map((b) => b.name));
    for (const k of Object.keys(bind)) if (!names.has(k)) throw new PlanError(`kernel '${label}': no binding '${k}' (has ${[...names].join(", ")})`);
    const bindings = src.bindings.map((b) => {
      const v = bind[b.name];
      if (v === undefined) throw new PlanError(`kernel '${label}': nothing bound to '${b.name}'`);
      return typeof v === "number" ? { buffer: v, offset: 0 } : v;
    });
    this.kernels.push({ label, source: src, bindings, cost: { flops, bytes: 0 }, ...(this.current !== undefined ? { node: this.current } : {}) });
  }

  private atomic(count: number, aligned: boolean): number {
    const align = this.opts.offsetAlign / 4;
    if (aligned) this.atomics = Math.ceil(this.atomics / align) * align;
    const at = this.atomics;
    this.atomics += count;
    return at;
  }

  aligned(slot: number, which: "scale" | "inv"): BufferView {
    const region = this.opts.offsetAlign;
    this.alignedBuffer ??= this.buffer(2 * this.graph.scaleSlots.length * region, "aligned scales", "pinned");
    return { buffer: this.alignedBuffer, offset: (2 * slot + (which === "inv" ? 1 : 0)) * region, bytes: 4 };
  }

  /** A packed FP8 cast through `slot` (see Ctx.castTo). */
  castTo(slot: ScaleSlot, record: boolean): CastBinding {
    const base = { dtype: slot.format, scale: 0, saturate: slot.saturate, ...(this.opts.caps?.subgroups ? { subgroups: true } : {}) } as const;
    const bind: CastBinding["bind"] = { scales: this.aligned(slot.id, "scale") };
    if (!record) return { out: base, bind };
    const at = this.atomic(1, true);
    this.amaxRecords.push({ slot: slot.id, atomic: at });
    bind.amax = { buffer: this.external(KEYS.atomics, 0), offset: at * 4, bytes: 4 };
    return { out: { ...base, amax: 0 }, bind };
  }

  /** Lowers one kernel group; `again`: its backward copy (see recompute), into a new buffer. */
  lowerGroup(grp: KernelGroup, again = false): void {
    const g = this.graph;
    const n = g.nodes[groupNode(grp)];
    const out = g.nodes[grp.output];
    const storage = this.fused.storage;
    const fail = (msg: string): never => {
      const also = grp.nodes.length > 1 ? ` (fused with ${grp.nodes.filter((id) => id !== n.id).map((id) => `%${id}`).join(", ")})` : "";
      throw new PlanError(`cannot lower ${n.op} %${n.id} "${n.name}"${also}${n.span ? ` (${n.span.file}:${n.span.line}:${n.span.col})` : ""}: ${msg}`);
    };
    if (n.op === "const") {
      const data = new Float32Array(numel(n.shape)).fill(n.attrs.value);
      this.values[n.id] = this.buffer(data.byteLength, n.name, "const", { init: data });
      return;
    }
    const value = (id: number, packed = false): number => {
      const v = this.values[id];
      if (v === undefined) fail(`%${id} has no value`);
      if (!packed && storage[id] !== "f32") fail(`%${id} is stored as ${storage[id]}, which only a GEMM reads`);
      return n.role === "bwd" && this.again.has(id) ? this.recompute(id) : v;
    };
    const quantize = grp.quantize !== undefined ? g.nodes[grp.quantize] : undefined;
    let cast: CastBinding | undefined;
    const cx: Ctx = {
      node: n,
      graph: g,
      opts: this.opts,
      in: (i, packed) => value(n.inputs[i], packed),
      shape: (i) => g.nodes[n.inputs[i]].shape,
      storage: (i) => storage[n.inputs[i]],
      outStorage: storage[out.id],
      value: (id) => value(id),
      out: () => {
        const b = this.buffer(storageBytes(numel(out.shape), storage[out.id]), again ? `${out.name} (backward copy)` : out.name, "transient", again ? { node: out.id } : {});
        if (again) this.againValues.set(out.id, b);
        else this.values[out.id] = b;
        return b;
      },
      cast: () => {
        // A fused bf16 cast (compiler/fuse.ts: the logits' gradient's): the producer writes bf16.
        if (quantize?.op === "cast" && quantize.attrs.to === "bf16") return (cast ??= { out: { dtype: "bf16" }, bind: {} });
        if (!quantize || quantize.op !== "quantize") return { bind: {} };
        return (cast ??= this.castTo(g.scaleSlots[quantize.attrs.slot], true));
      },
      castTo: (slot, record) => this.castTo(slot, record),
      aligned: (slot, which) => this.aligned(slot, which),
      alias: (b) => {
        if (again) fail("a backward copy cannot alias");
        this.values[out.id] = b;
      },
      scratch: (bytes, what) => this.buffer(bytes, `${n.name} ${what}`, "transient"),
      constant: (data, what) => this.buffer(data.byteLength, `${n.name} ${what}`, "const", { init: data }),
      external: (key, bytes) => this.external(key, bytes),
      kernel: (what, src, bind, flops) => this.kernel(`${out.name} (${what}${again ? ", again for the backward" : ""})`, src, bind, flops),
      memo: <T>(key: string, make: () => T): T => {
        if (!this.memos.has(key)) this.memos.set(key, make());
        return this.memos.get(key) as T;
      },
      ring: (slot) => this.rings[slot],
      atomics: (count, aligned) => this.atomic(count, aligned),
      fail,
    };
    const outer = this.current; // a backward copy is lowered inside the (backward) group that reads it, and tagged so
    this.current = again ? outer : out.id;
    try {
      lowerGroup(grp, cx);
    } catch (e) {
      if (e instanceof PlanError) throw e;
      fail((e as Error).message);
    } finally {
      this.current = outer;
    }
    if ((again ? this.againValues.get(out.id) : this.values[out.id]) === undefined) fail("the lowering made no value");
    if (quantize && !cast) fail(`the lowering of ${n.op} wrote no ${quantize.op === "cast" ? "bf16" : "FP8"} cast for the fused ${quantize.op} %${quantize.id}`);
  }

  /** The kernels every graph plan ends and starts with: fused casts' amax records; the aligned scale copies (first). */
  finishGraph(): void {
    if (this.amaxRecords.length) {
      const info = Uint32Array.from(this.amaxRecords.flatMap((r) => [r.slot, this.rings[r.slot].offset, r.atomic]));
      const slot_info = this.buffer(info.byteLength, "fused amax records", "const", { init: info });
      const state = { heads: this.external(KEYS.heads, 0), hist: this.external(KEYS.hist, 0) };
      this.kernel("fused FP8 casts (record amax)", rk.recordAmaxes({ name: "record_amaxes", count: this.amaxRecords.length }), { slot_info, amax: this.external(KEYS.atomics, 0), ...state });
    }
    if (this.alignedBuffer !== undefined) {
      const slots = this.graph.scaleSlots.length;
      this.kernel("scales (aligned copies)", rk.alignedScales({ name: "aligned_scales", slots, stride: this.opts.offsetAlign / 4 }), { scales: this.external(KEYS.scales, 0), aligned: this.alignedBuffer });
      this.kernels.unshift(this.kernels.pop()!);
    }
  }

  /** Fills each kernel's bytes: what its bindings span (after the externals are sized). */
  finishCosts(): void {
    for (const k of this.kernels) k.cost = { flops: k.cost?.flops ?? 0, bytes: k.bindings.reduce((a, v) => a + (v.bytes ?? this.buffers[v.buffer].bytes), 0) };
  }

  /** Sizes the buffers the lowering only referred to (state, atomic scratch). */
  finishExternals(): void {
    const size = (key: string, bytes: number): void => {
      const id = this.externals.get(key);
      if (id !== undefined) this.buffers[id].bytes = Math.max(4, bytes);
    };
    const nSlots = this.graph.scaleSlots.length;
    size(KEYS.scales, nSlots * 4);
    size(KEYS.heads, nSlots * 4);
    size(KEYS.hist, this.rings.reduce((a, r) => a + r.length, 0) * 4);
    const atomics = this.externals.get(KEYS.atomics);
    if (atomics !== undefined) Object.assign(this.buffers[atomics], { kind: "pinned", bytes: Math.max(4, this.atomics * 4), clear: true });
  }
}

/**
 * Plans `g`: every node, in order, through LOWERING; `outputs` name the graph outputs to keep
 * (pinned, for readback). Throws PlanError naming the node when an op cannot be lowered.
 */
export function planGraph(g: Graph, outputs: readonly string[], opts: PlanOptions): GraphPlan & { planner: Planner } {
  const { rings, words } = slotRings(g.scaleSlots);
  const fused = fuseGraph(g);
  const p = new Planner(g, opts, rings, fused);
  for (const grp of fused.groups) p.lowerGroup(grp);
  p.finishGraph();
  p.finishExternals();
  p.finishCosts();
  const outs: Record<string, number> = {};
  for (const name of outputs) {
    const id = g.outputs[name];
    if (id === undefined) throw new PlanError(`the graph has no output "${name}"`);
    const b = p.values[id];
    if (p.buffers[b].kind === "transient") p.buffers[b].kind = "pinned";
    outs[name] = b;
  }
  return { buffers: p.buffers, kernels: p.kernels, outputs: outs, rings, histWords: words, fused, planner: p };
}

/**
 * A whole training step: the graph (loss pinned), then Σg² of every parameter's gradient into
 * partials at aligned offsets and one total (`outputs.sumsq`), AdamW per parameter (clip factor
 * from the total), and the scale update of every FP8 slot.
 */
export function planTrainStep(full: Graph, opts: PlanOptions, options: { probes: boolean }): GraphPlan {
  // Probe nodes (role "probe") read forward tensors and feed nothing: without them the step is the same.
  const probes = probeOutputNames(full);
  const keep = Object.keys(full.outputs).filter((k) => options.probes || !probes.includes(k));
  const g = keep.length === Object.keys(full.outputs).length ? full : pruneGraph(full, keep);
  const plan = planGraph(g, ["loss", ...(options.probes ? probes : [])], opts);
  const p = plan.planner;
  // Every parameter of the full graph is updated (one the loss does not reach still decays).
  const params = paramNodes(full);
  // CPU adapters: one invocation per part, no workgroup tree (llvmpipe runs each barrier as a switch
  // through every SIMD chunk: a 256-wide tree took ~1 ms per parameter on lavapipe).
  const cpu = !!opts.caps?.isCpu;
  const cpuWg = cpu ? { wg: 1 } : {};
  // GPUs: a workgroup per 4096 elements, up to 1024 (a 4M-element gradient in 64 parts left most of
  // the H100 idle: ~67 µs per parameter at 390M, 10.9 ms a step).
  const region = Math.max(opts.offsetAlign, cpu ? 256 : 4096);
  const perRegion = region / 4;
  const partsOf = (n: number): number => Math.min(perRegion, cpu ? partsFor(n) : Math.ceil(n / 4096));
  // Each parameter's partials start a region at a binding-offset boundary; the unwritten rest of a
  // region stays zero, so the total can sum the whole buffer.
  const partials = p.buffer(params.length * region, "grad norm partials", "pinned", { init: new Float32Array((params.length * region) / 4) });
  params.forEach((prm, i) => {
    const gid = g.outputs[`grad:${prm.name}`];
    if (gid === undefined) throw new PlanError(`the train graph has no gradient output for parameter "${prm.name}"`);
    const n = numel(prm.shape);
    const parts = partsOf(n);
    const src = reduce({ name: "grad_sumsq", outer: 1, red: n, inner: 1, op: "sum", map: { op: "square", args: [{ in: 0 }] }, parts, ...cpuWg });
    p.kernel(`${prm.name} (grad Σg²)`, src, { in0: p.values[gid], y: { buffer: partials, offset: i * region, bytes: parts * 4 } });
  });
  const sumsq = p.buffer(4, "grad Σg²", "pinned");
  p.kernel("grad norm (Σ)", reduce({ name: "grad_sumsq_total", outer: 1, red: params.length * perRegion, inner: 1, op: "sum" }), { in0: partials, y: sumsq });
  const hyper = p.external(KEYS.hyper, rk.HYPER_WORDS * 4);
  for (const prm of params) {
    const n = numel(prm.shape);
    const src = rk.adamw({ name: "adamw", n, lrScale: prm.attrs.lrScale, decay: prm.attrs.decay });
    const bind = { p: p.external(KEYS.param(prm.name), n * 4), g: p.values[g.outputs[`grad:${prm.name}`]], m: p.external(KEYS.m(prm.name), n * 4), v: p.external(KEYS.v(prm.name), n * 4), hyper, sumsq };
    p.kernel(`${prm.name} (adamw)`, src, bind);
  }
  if (g.scaleSlots.length) {
    const meta = new Uint32Array(g.scaleSlots.length * rk.SLOT_META_WORDS);
    const f = new Float32Array(1);
    g.scaleSlots.forEach((s, i) => {
      const sc = s.scaling;
      const delayed = sc.kind === "delayed";
      const flags = (delayed ? rk.SLOT_DELAYED : 0) | (delayed && sc.amax === "most_recent" ? rk.SLOT_MOST_RECENT : 0) | (sc.pow2 ? rk.SLOT_POW2 : 0);
      f[0] = FP8_FORMATS[s.format].maxFinite;
      meta.set([plan.rings[i].offset, plan.rings[i].length, flags, (delayed ? sc.margin : 0) >>> 0, new Uint32Array(f.buffer)[0]], i * rk.SLOT_META_WORDS);
    });
    const metaBuf = p.buffer(meta.byteLength, "scale slot meta", "const", { init: meta });
    const state = { scales: p.external(KEYS.scales, 0), heads: p.external(KEYS.heads, 0), hist: p.external(KEYS.hist, 0) };
    p.finishExternals();
    p.kernel("scale update", rk.scaleUpdate({ name: "scale_update", slots: g.scaleSlots.length }), { slot_meta: metaBuf, ...state });
  }
  p.finishCosts();
  return { buffers: p.buffers, kernels: p.kernels, outputs: { ...plan.outputs, sumsq }, rings: plan.rings, histWords: plan.histWords, fused: plan.fused };
}

/** Where a transient buffer lives: at `offset` inside arena `arena`. */
export interface ArenaSlot {
  arena: number;
  offset: number;
}

/** Transient buffers placed at offsets inside a few large buffers (see arenaPlan). */
export interface ArenaPlan {
  /** Bytes of each arena (its high-water mark, a multiple of the alignment). */
  arenas: number[];
  /** Logical transient buffer → its place (buffers no kernel binds have none). */
  slots: Map<number, ArenaSlot>;
  /** First and last kernel binding each placed buffer (inclusive). */
  first: Map<number, number>;
  last: Map<number, number>;
  /** Σ arenas, and the transient buffers' bytes before sharing. */
  transient: number;
  unshared: number;
}

export interface ArenaLimits {
  /** The device's maxBufferSize: no arena is larger. */
  maxBufferBytes: number;
  /** minStorageBufferOffsetAlignment: every offset is a multiple of it. */
  offsetAlign: number;
}

/**
 * Places the plan's transient buffers at offsets inside a few large buffers ("arenas") by lifetime
 * (first to last kernel binding them): two buffers overlap in memory only if no kernel lies in both
 * lifetimes. Offsets are multiples of `offsetAlign` (a kernel's views add their own aligned offsets);
 * no arena exceeds `maxBufferBytes`. WebGPU forbids one buffer bound read-only and read-write by the
 * same dispatch (a usage-scope rule on the whole buffer, disjoint ranges included), so a buffer never
 * shares an arena with one that a kernel binds with the other access. Greedy placements (buffers by
 * first use, and by size, largest first; each at the lowest offset that fits among the buffers
 * already placed whose lifetimes overlap, in the allowed arena that grows least), the smallest kept.
 */
export function arenaPlan(plan: GraphPlan, limits: ArenaLimits): ArenaPlan {
  const align = Math.max(4, limits.offsetAlign);
  const cap = Math.floor(limits.maxBufferBytes / align) * align;
  const first = new Map<number, number>();
  const last = new Map<number, number>();
  const conflicts = new Map<number, Set<number>>();
  const link = (a: number, b: number): void => {
    if (a === b) return;
    if (!conflicts.has(a)) conflicts.set(a, new Set());
    conflicts.get(a)!.add(b);
  };
  plan.kernels.forEach((k, i) => {
    const reads: number[] = [];
    const writes: number[] = [];
    k.bindings.forEach((v, j) => {
      if (plan.buffers[v.buffer].kind !== "transient") return;
      if (!first.has(v.buffer)) first.set(v.buffer, i);
      last.set(v.buffer, i);
      (k.source.bindings[j]?.access === "read" ? reads : writes).push(v.buffer);
    });
    for (const r of reads) for (const w of writes) link(r, w), link(w, r);
  });
  const ids = [...first.keys()];
  const size = (b: number): number => Math.ceil(plan.buffers[b].bytes / align) * align;
  for (const b of ids) {
    if (size(b) > cap) throw new PlanError(`buffer '${plan.buffers[b].label}' needs ${plan.buffers[b].bytes} bytes, over the device's max buffer size of ${limits.maxBufferBytes}`);
  }
  const place = (order: readonly number[]): { arenas: number[]; slots: Map<number, ArenaSlot> } => {
    const arenas: number[] = [];
    const members: number[][] = [];
    const slots = new Map<number, ArenaSlot>();
    for (const b of order) {
      const need = size(b);
      const [f, l] = [first.get(b)!, last.get(b)!];
      const forbidden = new Set<number>();
      for (const c of conflicts.get(b) ?? []) {
        const s = slots.get(c);
        if (s) forbidden.add(s.arena);
      }
      let best: { arena: number; offset: number; growth: number } | undefined;
      for (let a = 0; a < arenas.length; a++) {
        if (forbidden.has(a)) continue;
        // [start, end) of this arena's buffers live at some kernel of b's lifetime, by offset.
        const busy = members[a]
          .filter((o) => first.get(o)! <= l && last.get(o)! >= f)
          .map((o) => [slots.get(o)!.offset, slots.get(o)!.offset + size(o)])
          .sort((x, y) => x[0] - y[0]);
        let offset = 0;
        for (const [s, e] of busy) {
          if (s - offset >= need) break;
          offset = Math.max(offset, e);
        }
        if (offset + need > cap) continue;
        const growth = Math.max(0, offset + need - arenas[a]);
        if (!best || growth < best.growth) best = { arena: a, offset, growth };
        if (growth === 0) break;
      }
      if (!best) {
        arenas.push(0);
        members.push([]);
        best = { arena: arenas.length - 1, offset: 0, growth: need };
      }
      slots.set(b, { arena: best.arena, offset: best.offset });
      members[best.arena].push(b);
      arenas[best.arena] = Math.max(arenas[best.arena], best.offset + need);
    }
    return { arenas, slots };
  };
  const byFirst = [...ids].sort((a, b) => first.get(a)! - first.get(b)! || size(b) - size(a) || a - b);
  const bySize = [...ids].sort((a, b) => size(b) - size(a) || first.get(a)! - first.get(b)! || a - b);
  const total = (p: { arenas: number[] }): number => p.arenas.reduce((x, y) => x + y, 0);
  const tries = [place(byFirst), place(bySize)];
  const pick = tries.reduce((x, y) => (total(y) < total(x) ? y : x));
  const unshared = plan.buffers.filter((b) => b.kind === "transient").reduce((a, b) => a + b.bytes, 0);
  return { ...pick, first, last, transient: total(pick), unshared };
}
