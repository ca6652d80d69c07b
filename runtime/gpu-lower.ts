// The lowering: each kernel group of the fusion pass (compiler/fuse.ts) → the generated kernel(s)
// that compute it and the buffers they bind, through the planner's context (runtime/gpu-plan.ts).
// A group of one node goes through LOWERING, one entry per op kind (exhaustive, `satisfies`); fused
// groups (elementwise chains, reductions of chains, GEMM epilogues, scaled embeddings, FP8 casts
// fused into their producer) through lowerGroup. An op or shape a kernel cannot take fails here, at
// plan time, naming the node.
import type { Graph, Node, NodeOf, OpKind, ScaleSlot } from "../compiler/ir.js";
import { numel } from "../compiler/ir.js";
import type { KernelGroup, Storage } from "../compiler/fuse.js";
import { attention, type AttentionConfig, type AttentionFp8, type AttentionPass } from "../compiler/kernels/attention.js";
import { attentionRows } from "../compiler/kernels/attention-rows.js";
import { attentionSgmm, attentionSgmmShape, attentionSgmmSupported } from "../compiler/kernels/attention-sgmm.js";
import { cachedTile, type TileCache } from "./gemm-autotune.js";
import * as decode from "../compiler/kernels/decode.js";
import * as ew from "../compiler/kernels/elementwise.js";
import { type GemmCaps, type GemmEpilogue, type GemmTileCaps, gemmPathsFor, generateGemm } from "../compiler/kernels/gemm.js";
import { type Broadcast, type Ew, type KernelSource, type OutCast, kurtosis, nextPow2, reduce, sumToShape } from "../compiler/kernels/reduce.js";
import * as row from "../compiler/kernels/rowwise.js";
import { FP8_FORMATS } from "./fp8.js";
import * as rk from "./gpu-kernels.js";

/** A binding's view of a logical buffer (an offset view needs minStorageBufferOffsetAlignment). */
export interface BufferView {
  buffer: number;
  offset: number;
  /** Bytes bound; undefined: the whole logical buffer (sized when planning ends). */
  bytes?: number;
}

/** The device limits planning depends on. */
export interface PlanOptions {
  /** The device's maxComputeWorkgroupStorageSize (attention tiles). */
  maxSharedBytes: number;
  /** The device's maxStorageBufferBindingSize. */
  maxBindingBytes: number;
  /** The device's minStorageBufferOffsetAlignment. */
  offsetAlign: number;
  /** The adapter's capabilities (runtime/device.ts GpuCaps): GEMM paths and tiles. Absent: FMA GEMMs with default tiles. */
  caps?: GemmCaps & GemmTileCaps;
  /**
   * GEMM tiles tuned on this adapter (runtime/gemm-autotune.ts: `adapter` its name, `entries` the
   * cache file's): a GEMM whose shape was tuned runs with the winner. Absent: the default tiles.
   */
  tunedTiles?: { adapter: string; entries: TileCache };
}

/** External buffer keys the executor provides. */
export const KEYS = {
  param: (name: string) => `param:${name}`,
  m: (name: string) => `m:${name}`,
  v: (name: string) => `v:${name}`,
  tokens: "input:tokens",
  targets: "input:targets",
  /** The tokens grouped by id (ew.tokenIndex), uploaded with each batch when a plan asks for it (embedding gradients). */
  tokenIndex: "input:token_index",
  /** Decode graphs: the position of the first new token (one i32). */
  position: "input:position",
  /** Decode graphs: a K or V cache, by its kv_cache node's name (kept across calls, written in place). */
  cache: (name: string) => `kv:${name}`,
  scales: "state:scales",
  heads: "state:heads",
  hist: "state:hist",
  hyper: "step:hyper",
  /** Per-step amax scratch (made by the plan, pinned and zeroed each step). */
  atomics: "step:atomics",
} as const;

/** A plan-time failure: names the node, its op and the reason. */
export class PlanError extends Error {
  override readonly name = "PlanError";
}

/** A kernel's work, for achieved-throughput figures (runtime/profile.ts). */
export interface KernelCost {
  flops: number;
  /** Bytes read + written: what its bindings span. */
  bytes: number;
}

/** An output cast a kernel applies (a fused quantize) and the buffers it binds; empty for f32 output. */
export interface CastBinding {
  out?: OutCast;
  bind: Record<string, number | BufferView>;
}

/** What a lowering rule sees: the node, its inputs' buffers, and the planner's allocators. */
export interface Ctx {
  node: Node;
  graph: Graph;
  opts: PlanOptions;
  /** Buffer holding input i's value (f32; `packed` admits an FP8/bf16 one: GEMM operands only). */
  in(i: number, packed?: boolean): number;
  shape(i: number): number[];
  /** Storage of input i's value. */
  storage(i: number): Storage;
  /** Storage of the group's value. */
  outStorage: Storage;
  /** Buffer holding node `id`'s value (a fused group's inputs), f32. */
  value(id: number): number;
  /** A new transient buffer for the group's value (sized by its storage). */
  out(): number;
  /** The output cast of the group (a quantize fused into this producer), or none. */
  cast(): CastBinding;
  /** A packed FP8 cast through `slot` (its scale read from the aligned copy); `record`: amax recorded for the slot's history. */
  castTo(slot: ScaleSlot, record: boolean): CastBinding;
  /** One slot's scale (`scale`) or 1/scale (`inv`) as a one-word view at index 0 (gpu-kernels.ts alignedScales). */
  aligned(slot: number, which: "scale" | "inv"): BufferView;
  /** The node's value is an existing buffer. */
  alias(buffer: number): void;
  scratch(bytes: number, what: string): number;
  /** A buffer uploaded once (per-use slot words). */
  constant(data: Uint32Array, what: string): number;
  external(key: string, bytes: number): number;
  /** Appends a kernel; `bind` maps each binding name of `src` to a buffer (or a view of one); `flops` its arithmetic (bytes come from the bindings). */
  kernel(what: string, src: KernelSource, bind: Record<string, number | BufferView>, flops?: number): void;
  memo<T>(key: string, make: () => T): T;
  ring(slot: number): rk.SlotRing;
  /** `count` u32 words of the per-step atomic amax scratch (zeroed each step), starting on a binding-offset boundary when `aligned`. */
  atomics(count: number, aligned: boolean): number;
  fail(msg: string): never;
}

export type Lower<K extends OpKind> = (n: NodeOf<K>, cx: Ctx) => void;

const last = (s: readonly number[]): number => (s.length ? s[s.length - 1] : 1);
const kname = (n: { name: string }): string => n.name.replace(/[^A-Za-z0-9]/g, "_");

/** How `b` broadcasts onto `a` viewed as [rows, last dim]. */
function broadcastOf(a: readonly number[], b: readonly number[], cx: Ctx): Broadcast {
  const n = numel(a);
  const cols = last(a);
  const nb = numel(b);
  const core = b.slice(b.findIndex((d) => d !== 1));
  if (nb === n && b.length <= a.length && b.every((d, i) => d === a[a.length - b.length + i])) return "none";
  if (nb === 1) return "scalar";
  if (core.length === 1 && core[0] === cols && last(b) === cols) return "row";
  if (last(b) === 1 && nb === n / cols && b.length === a.length && b.slice(0, -1).every((d, i) => d === a[i])) return "col";
  return cx.fail(`cannot broadcast [${b}] onto [${a}] (supported: same shape, [last dim], [rows, 1], a scalar)`);
}

/** y = expr(inputs…) over `shape`, through the context's output cast: a fused chain, or one node. */
function lowerChain(cx: Ctx, shape: readonly number[], inputs: readonly number[], expr: Ew, what: string): void {
  const bcs = inputs.map((id) => broadcastOf(shape, cx.graph.nodes[id].shape, cx));
  const c = cx.cast();
  const y = cx.out();
  const src = ew.elementwise({ name: kname(cx.node), rows: numel(shape) / last(shape), cols: last(shape), inputs: bcs, expr, ...(c.out ? { out: c.out } : {}) });
  cx.kernel(what, src, { ...Object.fromEntries(inputs.map((id, i) => [`in${i}`, cx.value(id)])), y, ...c.bind });
}

/** One elementwise node: a chain of one. */
function ewNode(expr: Ew): Lower<OpKind> {
  return (n, cx) => lowerChain(cx, n.shape, n.inputs, expr, n.op);
}
const unaryEw = (op: "gelu" | "silu" | "tanh"): Lower<OpKind> => ewNode({ op, args: [{ in: 0 }] });
const binaryEw = (op: "add" | "sub" | "mul" | "div" | "gelu_grad" | "silu_grad" | "tanh_grad"): Lower<OpKind> => ewNode({ op, args: [{ in: 0 }, { in: 1 }] });

/** A generator's `out` option for the context's cast (absent: f32). */
const outOf = (c: CastBinding): { out?: OutCast } => (c.out ? { out: c.out } : {});

/** Partial results [parts, inner] written by `write(target)`, summed into `out` (deterministic). */
function withParts(cx: Ctx, what: string, parts: number, inner: number, out: number, write: (target: number) => void): void {
  if (parts <= 1) return write(out);
  const tmp = cx.scratch(parts * inner * 4, `${what} partials`);
  write(tmp);
  cx.kernel(`${what} sum`, reduce({ name: `${kname(cx.node)}_parts`, outer: 1, red: parts, inner, op: "sum" }), { in0: tmp, y: out });
}

/** Parts for a reduction of `red` values: about 1024 per workgroup, at most 64. */
export const partsFor = (red: number): number => Math.max(1, Math.min(64, Math.ceil(red / 1024)));

/** Row-wise kernels' workgroup size: a power of two up to 64, no wider than the row. */
/**
 * Row reductions by subgroup shuffles on GPUs (no barriers). Not on CPU adapters: there a row per
 * invocation with no reduction at all measured faster (docs/kernels.md, row-wise kernels).
 */
function rowSubgroup(cx: Ctx): { subgroupSize?: number } {
  const caps = cx.opts.caps;
  return caps && !caps.isCpu && caps.subgroups && (caps.subgroupMinSize ?? 0) > 0 ? { subgroupSize: caps.subgroupMinSize } : {};
}

function rowWg(width: number): number {
  let w = 8;
  while (w < 64 && w < width) w *= 2;
  return w;
}

function normConfig(n: NodeOf<"rmsnorm" | "layernorm" | "rmsnorm_grad" | "layernorm_grad">, cx: Ctx) {
  const { eps, group } = n.attrs;
  const kind = n.op === "rmsnorm" || n.op === "rmsnorm_grad" ? ("rms" as const) : ("layer" as const);
  return { name: kname(n), kind, rows: numel(cx.shape(0)) / group, width: group, eps, wg: rowWg(group), ...rowSubgroup(cx) };
}

/**
 * FP8DPA (attrs.fp8): P (E4M3) and dS (E5M2) are fake-quantised inside the attention kernels with
 * their slots' delayed scales, gathered into a small buffer so that one pipeline serves every
 * layer; the kernels record amax(P) / amax(dS) into an aligned pair of per-step scratch words, and a
 * record kernel moves each into its slot's history. The scales must be delayed (the kernels cast
 * with a stored scale; current/blockwise P/dS scaling would need a pass over the attention first).
 * Q, K, V and dO stored as FP8 codes (compiler/fuse.ts storageOf: all four or none) are decoded by
 * the kernels with their 1/s, gathered from the aligned copies into the same buffer, one pair per
 * binding-aligned region of A = offsetAlign/4 words: [s_P, s_dS] at 0, [1/s_Q, 1/s_K] at A,
 * [1/s_V, 1/s_V] at 2A (with the forward, after Q, K, V's casts), [1/s_dO, 1/s_dO] at 3A (with the
 * backward, after dO's cast). Otherwise they arrive as f32 fake-quantised values (`f32Inputs`).
 */
function attentionFp8(n: NodeOf<"attention" | "attention_grad">, cx: Ctx) {
  const f = n.attrs.fp8;
  if (!f) return undefined;
  const inputs = n.op === "attention" ? 3 : 4;
  const stored = Array.from({ length: inputs }, (_, i) => cx.storage(i));
  const packed = stored.every((s) => s !== "f32");
  if (!packed && stored.some((s) => s !== "f32")) cx.fail(`FP8DPA attention reads Q, K, V${inputs === 4 ? ", dO" : ""} stored as ${stored.join(", ")}: the kernels take all packed or all f32`);
  const A = cx.opts.offsetAlign / 4;
  /** Gathers the 1/s of the quantizes feeding inputs `ins` into the pair at word `at` of `y`. */
  const gatherInv = (y: number, at: number, ins: [number, number], what: string): void => {
    const views = ins.map((i) => {
      const q = cx.graph.nodes[n.inputs[i]];
      if (q.op !== "quantize") return cx.fail(`FP8DPA input ${i} (%${q.id}) is stored as ${stored[i]} but is not a quantize`);
      return cx.aligned(q.attrs.slot, "inv");
    });
    const slot_info = cx.constant(Uint32Array.from(views, (v) => v.offset / 4), what);
    cx.kernel(what, rk.gatherScales({ name: kname(n) }), { slot_info, scales: { buffer: views[0].buffer, offset: 0 }, y: { buffer: y, offset: at * 4, bytes: 8 } });
  };
  const fp8 = cx.memo(`attn_fp8:${f.p},${f.ds}`, () => {
    const slots = [cx.graph.scaleSlots[f.p], cx.graph.scaleSlots[f.ds]];
    slots.forEach((s, i) => {
      const want = i === 0 ? "e4m3" : "e5m2";
      if (!s) cx.fail(`no scale slot #${i === 0 ? f.p : f.ds}`);
      if (s.scaling.kind !== "delayed") cx.fail(`FP8DPA's ${i === 0 ? "P" : "dS"} slot "${s.name}" uses ${s.scaling.kind} scaling; the GPU attention kernels support delayed scaling of P and dS only (use the CPU backend)`);
      if (s.format !== want || !s.saturate) cx.fail(`FP8DPA's ${i === 0 ? "P" : "dS"} slot "${s.name}" is ${s.format}${s.saturate ? "" : " non-saturating"}; the GPU attention kernels cast P to saturating e4m3 and dS to saturating e5m2`);
    });
    const state = stateOf(cx);
    const pair = cx.scratch(packed ? 3 * A * 4 + 8 : 8, "P/dS scales");
    const idx = Uint32Array.of(f.p, f.ds);
    cx.kernel("P/dS scales", rk.gatherScales({ name: kname(n) }), { slot_info: cx.constant(idx, "P/dS slots"), scales: state.scales, y: packed ? { buffer: pair, offset: 0, bytes: 8 } : pair });
    if (packed) {
      gatherInv(pair, A, [0, 1], "Q/K 1/s");
      gatherInv(pair, 2 * A, [2, 2], "V 1/s");
    }
    const at = cx.atomics(2, true);
    const amax = cx.external(KEYS.atomics, 0);
    const record = (which: 0 | 1): void => {
      const info = rk.slotInfo(cx.ring(which === 0 ? f.p : f.ds), at + which);
      cx.kernel(`record amax ${which === 0 ? "P" : "dS"}`, rk.recordAmax({ name: kname(n) }), { slot_info: cx.constant(info, "slot"), amax, heads: state.heads, hist: state.hist });
    };
    const scaleInv = packed ? { q: A, k: A + 1, v: 2 * A, dO: 3 * A } : { q: 0, k: 0, v: 0, dO: 0 };
    return {
      cfg: { scaleInv, scale: { p: 0, dS: 1 }, amax: { p: 0, dS: 1 }, f32Inputs: !packed },
      bind: { scales: pair, amax: { buffer: amax, offset: at * 4, bytes: 8 } },
      record,
      pair,
    };
  });
  if (fp8.cfg.f32Inputs === packed) cx.fail("FP8DPA attention: the forward and backward read Q, K, V in different storage");
  if (packed && n.op === "attention_grad") cx.memo(`attn_fp8_do:${f.p},${f.ds}`, () => gatherInv(fp8.pair, 3 * A, [3, 3], "dO 1/s"));
  return fp8;
}

/**
 * One attention pass. CPU adapters: a row per invocation, no barriers (attention-rows.ts; 8× faster
 * than the tiles on lavapipe, docs/kernels.md). Adapters with f16 subgroup matrices and a fixed
 * subgroup size: the tensor-core kernels (attention-sgmm.ts). Else FMA tiles; for short sequences
 * tiles of the sequence's size (less work, faster compiles) when they fit. FOGC_ATTENTION=tiled
 * forces the FMA tiles anywhere (for comparisons).
 */
function attentionKernel(cfg: AttentionConfig, pass: AttentionPass, caps: PlanOptions["caps"]): KernelSource {
  const tiled = process.env.FOGC_ATTENTION === "tiled";
  if (caps?.isCpu && cfg.headDim % 4 === 0 && !tiled) return attentionRows(cfg, pass); // rows as vec4s
  const sg = caps && !tiled ? attentionSgmmShape(caps) : "FMA tiles asked for";
  if (caps && typeof sg !== "string" && attentionSgmmSupported(cfg, caps)) return attentionSgmm(cfg, pass, sg.mma, sg.subgroupSize);
  const p = Math.max(4, nextPow2(cfg.seqLen));
  const lanes = [8, 4].find((l) => l <= p && cfg.headDim % l === 0);
  if (p < 64 && lanes) {
    try {
      return attention({ ...cfg, tiles: { br: p, bc: p, lanes } }, pass);
    } catch {
      // the small tiles do not fit this head_dim's shared memory: the generator's own choice
    }
  }
  return attention(cfg, pass);
}

/** Attention forward (O, lse) for q, k, v, shared by the forward node and every backward node that needs it. */
function attentionFwd(cx: Ctx, n: NodeOf<"attention" | "attention_grad">): { o: number; lse: number } {
  const [q, k, v] = [0, 1, 2].map((i) => cx.in(i, !!n.attrs.fp8)); // FP8DPA: maybe codes (attentionFp8)
  // Keyed by the input nodes: the backward may read Q, K, V through its own copies (gpu-plan.ts recompute).
  return cx.memo(`attn:${n.inputs.slice(0, 3).join(",")}`, () => {
    const fp8 = attentionFp8(n, cx);
    const cfg = attnConfig(n, cx, fp8?.cfg);
    const o = cx.scratch(numel(cx.shape(0)) * 4, "attention output");
    const lse = cx.scratch(cfg.batch * cfg.heads * cfg.seqLen * 4, "attention lse");
    cx.kernel("attention fwd", attentionKernel(cfg, "fwd", cx.opts.caps), { q, k, v, o, lse, ...(fp8?.bind ?? {}) }, attentionFlops(cfg, "fwd"));
    fp8?.record(0);
    return { o, lse };
  });
}

/**
 * The GEMM FLOPs of an attention pass, 2·T·T·Dh per head and batch each: fwd S = QKᵀ and P·V (2);
 * bwd_dq recomputes S, dP = dO·Vᵀ, dQ = dS·K (3); bwd_dkv S, dP, dV = Pᵀ·dO, dK = dSᵀ·Q (4). Causal
 * masking skips about half.
 */
function attentionFlops(cfg: AttentionConfig, pass: AttentionPass): number {
  const gemms = { fwd: 2, bwd_dq: 3, bwd_dkv: 4 }[pass];
  return gemms * 2 * cfg.batch * cfg.heads * cfg.seqLen * cfg.seqLen * cfg.headDim * (cfg.causal ? 0.5 : 1);
}

function attnConfig(n: NodeOf<"attention" | "attention_grad">, cx: Ctx, fp8?: AttentionFp8): AttentionConfig {
  const a = n.attrs;
  const rows = cx.shape(0)[0];
  if (rows % a.seqLen !== 0) cx.fail(`${rows} rows is not a multiple of seq_len ${a.seqLen}`);
  return {
    name: kname(n),
    batch: rows / a.seqLen,
    seqLen: a.seqLen,
    heads: a.heads,
    kvHeads: a.kvHeads,
    headDim: a.headDim,
    scale: a.scale,
    causal: a.causal,
    maxSharedBytes: cx.opts.maxSharedBytes,
    ...rowSubgroup(cx),
    ...(cx.opts.caps?.subgroups ? { subgroups: true } : {}),
    ...(fp8 ? { fp8 } : {}),
  };
}

/** The scale-state buffers (the executor's, or an evaluation's private copy). */
function stateOf(cx: Ctx): { scales: number; heads: number; hist: number } {
  return { scales: cx.external(KEYS.scales, 0), heads: cx.external(KEYS.heads, 0), hist: cx.external(KEYS.hist, 0) };
}

/**
 * A quantize through its slot, by its recipe (papers.md §2). Read only by GEMMs (storage e4m3/e5m2)
 * it writes the packed codes, which the GEMMs decode and rescale by 1/s; otherwise (attention
 * inputs, blockwise scaling) the f32 fake cast decode(encode(x·s))/s. Delayed: the stored scale;
 * current: amax of x, then the scale, then the cast; blockwise: per-block amax and scale.
 */
const lowerQuantize: Lower<"quantize"> = (n, cx) => {
  const slot = cx.graph.scaleSlots[n.attrs.slot];
  if (!slot) cx.fail(`no scale slot #${n.attrs.slot}`);
  const ring = cx.ring(slot.id);
  const x = cx.in(0);
  const y = cx.out();
  const nel = numel(n.shape);
  const fmax = FP8_FORMATS[slot.format].maxFinite;
  const state = stateOf(cx);
  const sc = slot.scaling;
  const base = { name: kname(n), n: nel, format: slot.format, saturate: slot.saturate, subgroups: !!cx.opts.caps?.subgroups };
  const packed = cx.outStorage !== "f32";
  const packTo = (c: CastBinding): void =>
    cx.kernel("quantize", ew.elementwise({ name: kname(n), rows: 1, cols: nel, inputs: ["none"], expr: { in: 0 }, out: c.out }), { in0: x, y, ...c.bind });
  if (sc.kind === "delayed") {
    if (packed) return packTo(cx.castTo(slot, true));
    const slot_info = cx.constant(rk.slotInfo(ring), "slot");
    cx.kernel("quantize", rk.fakeQuant({ ...base, record: true }), { x, y, slot_info, ...state });
  } else if (sc.kind === "current") {
    const slot_info = cx.constant(rk.slotInfo(ring, cx.atomics(1, false)), "slot");
    const amax = cx.external(KEYS.atomics, 0);
    cx.kernel("amax", rk.absmaxBits({ name: kname(n), n: nel, subgroups: !!cx.opts.caps?.subgroups }), { x, slot_info, amax });
    const recipe = { fmax, margin: sc.margin, pow2: sc.pow2 };
    if (packed) {
      const aligned = cx.aligned(slot.id, "scale").buffer;
      const stride = cx.opts.offsetAlign / 4;
      cx.kernel("scale", rk.recordAmax({ name: kname(n), recipe, alignedStride: stride }), { slot_info, amax, ...state, aligned });
      return packTo(cx.castTo(slot, false));
    }
    cx.kernel("scale", rk.recordAmax({ name: kname(n), recipe }), { slot_info, amax, ...state });
    cx.kernel("quantize", rk.fakeQuant({ ...base, record: false }), { x, y, slot_info, scales: state.scales });
  } else {
    const s = n.shape;
    const rows = s.length ? numel(s) / last(s) : 1;
    const cols = s.length ? last(s) : 1;
    const [br, bc] = slot.role === "weight" ? sc.weightBlock : sc.activationBlock;
    const cfg = { ...base, rows, cols, blockRows: Math.min(br, rows), blockCols: Math.min(bc, cols), pow2: sc.pow2, fmax };
    const slot_info = cx.constant(rk.slotInfo(ring), "slot");
    cx.kernel("quantize", rk.blockQuant(cfg), { x, y, slot_info, heads: state.heads, hist: state.hist });
  }
};

/** A GEMM operand: its type as stored and, for FP8, the 1/s view it is rescaled by. */
function gemmOperand(cx: Ctx, i: 0 | 1): { type: Storage; buffer: number; scaleInv?: BufferView } {
  const type = cx.storage(i);
  const src = cx.graph.nodes[cx.node.inputs[i]];
  const buffer = cx.in(i, true);
  if ((type === "e4m3" || type === "e5m2") && src.op === "quantize") return { type, buffer, scaleInv: cx.aligned(src.attrs.slot, "inv") };
  return { type, buffer };
}

/**
 * The f32 bits of max |input i| (a bf16 operand) in a per-step atomic word of its own, as a one-word
 * view: one absmax pass per value and step, shared by every GEMM that reads it.
 */
function bf16Amax(cx: Ctx, i: 0 | 1): BufferView {
  const id = cx.node.inputs[i];
  return cx.memo(`bf16_amax:${id}`, () => {
    const at = cx.atomics(1, true);
    const amax = cx.external(KEYS.atomics, 0);
    const n = numel(cx.graph.nodes[id].shape);
    const slot_info = cx.constant(Uint32Array.of(0, 0, at), "amax word");
    cx.kernel("amax bf16", rk.absmaxBits({ name: `${kname(cx.graph.nodes[id])}_amax`, n, subgroups: !!cx.opts.caps?.subgroups, bf16: true }), { x: cx.in(i, true), slot_info, amax });
    return { buffer: amax, offset: at * 4, bytes: 4 };
  });
}

/**
 * matmul (with a fused epilogue: bias node, activation, residual node). FP8×FP8 takes the
 * subgroup-matrix path where the adapter has one, and so does bf16×bf16, each operand pre-scaled
 * into f16's range by a power of two from its amax (GemmConfig.preScale; FOGC_BF16_GEMM=fma keeps
 * them on the FMA path); everything else the FMA path.
 */
function lowerGemm(n: NodeOf<"matmul">, cx: Ctx, ep: { bias?: number; act?: GemmEpilogue["act"]; residual?: number }): void {
  const { transA, transB } = n.attrs;
  const [a, b] = [cx.shape(0), cx.shape(1)];
  if (a.length !== 2 || b.length !== 2) cx.fail(`operands must be 2-D, got [${a}] and [${b}]`);
  const [M, N] = n.shape;
  const K = transA ? a[0] : a[1];
  const [opA, opB] = [gemmOperand(cx, 0), gemmOperand(cx, 1)];
  const fp8 = (t: Storage) => t === "e4m3" || t === "e5m2";
  const caps = cx.opts.caps;
  const tensorCores = !!caps && gemmPathsFor(caps).includes("subgroup-matrix");
  const preScale = tensorCores && opA.type === "bf16" && opB.type === "bf16" && process.env.FOGC_BF16_GEMM !== "fma";
  const path = (fp8(opA.type) && fp8(opB.type) && tensorCores) || preScale ? "subgroup-matrix" : "fma";
  const epilogue: GemmEpilogue = { ...(ep.bias !== undefined ? { bias: true } : {}), ...(ep.act ? { act: ep.act } : {}), ...(ep.residual !== undefined ? { residual: true } : {}) };
  const shape = { M, N, K, transA, transB, a: opA.type, b: opB.type, path } as const;
  const tuned = cx.opts.tunedTiles && cachedTile(cx.opts.tunedTiles.entries, cx.opts.tunedTiles.adapter, shape);
  const cfg = { name: kname(n), ...shape, scaleA: !!opA.scaleInv, scaleB: !!opB.scaleInv, out: "f32" as const, epilogue, ...(preScale ? { preScale } : {}), ...(tuned ? { tile: tuned } : {}) } as const;
  const src = generateGemm(cfg, caps);
  const c = cx.out();
  const bind: Record<string, number | BufferView> = { a: opA.buffer, b: opB.buffer, c };
  if (opA.scaleInv) bind.scale_a = opA.scaleInv;
  if (opB.scaleInv) bind.scale_b = opB.scaleInv;
  if (preScale) Object.assign(bind, { amax_a: bf16Amax(cx, 0), amax_b: bf16Amax(cx, 1) });
  if (ep.bias !== undefined) bind.bias = cx.value(ep.bias);
  if (ep.residual !== undefined) bind.residual = cx.value(ep.residual);
  const what = ["gemm", ep.bias !== undefined ? "bias" : "", ep.act ?? "", ep.residual !== undefined ? "residual" : ""].filter(Boolean).join("+");
  cx.kernel(what, src, bind, 2 * M * N * K);
}

/** y = factor·table[ids] (a scale fused into the gather), through the context's output cast. */
function lowerEmbed(n: NodeOf<"embed">, cx: Ctx, factor: number): void {
  const [V, D] = cx.shape(0);
  const c = cx.cast();
  const y = cx.out();
  const src = ew.embed({ name: kname(n), tokens: numel(cx.shape(1)), dim: D, vocab: V, ...(factor !== 1 ? { scale: factor } : {}), ...(c.out ? { out: c.out } : {}) });
  cx.kernel(factor !== 1 ? "embed+scale" : "embed", src, { ids: cx.in(1), table: cx.in(0), y, ...c.bind });
}

/** sum_to(map(inputs…)): the inputs all have the shape being reduced (a fused chain, or the node's one input). */
function lowerSumTo(n: NodeOf<"sum_to">, cx: Ctx, inputs: readonly number[], map: Ew): void {
  const from = cx.shape(0);
  let view: { outer: number; red: number; inner: number };
  try {
    view = sumToShape(from, n.attrs.shape);
  } catch (e) {
    return cx.fail((e as Error).message);
  }
  const y = cx.out();
  const parts = view.outer * view.inner < 256 ? partsFor(view.red) : 1;
  const what = inputs.length === 1 && "in" in map ? "sum_to" : "elementwise+sum_to";
  const bind = Object.fromEntries(inputs.map((id, i) => [`in${i}`, cx.value(id)]));
  withParts(cx, what, parts, view.outer * view.inner, y, (target) =>
    cx.kernel(what, reduce({ name: kname(n), ...view, op: "sum", parts, inputs: inputs.length, map }), { ...bind, y: target }),
  );
}

/** Label of a chain: its ops in order, `+fp8` when it writes FP8. */
const chainLabel = (g: Graph, grp: KernelGroup): string => grp.nodes.map((id) => (g.nodes[id].op === "quantize" ? "fp8" : g.nodes[id].op)).join("+");

/** The node a group's context is built around (its inputs, shapes and name): see lowerGroup. */
export function groupNode(grp: KernelGroup): number {
  switch (grp.kind) {
    case "node":
      return grp.node;
    case "elementwise":
      return grp.root;
    case "reduce":
      return grp.sum;
    case "gemm":
      return grp.matmul;
    case "embed":
      return grp.embed;
  }
}

/** Lowers one kernel group; `cx` is built around groupNode(grp), its value being the group's output. */
export function lowerGroup(grp: KernelGroup, cx: Ctx): void {
  const g = cx.graph;
  switch (grp.kind) {
    case "node":
      return (LOWERING[cx.node.op] as Lower<OpKind>)(cx.node, cx);
    case "elementwise":
      return lowerChain(cx, cx.node.shape, grp.inputs, grp.expr, chainLabel(g, grp));
    case "reduce":
      return lowerSumTo(cx.node as NodeOf<"sum_to">, cx, grp.inputs, grp.map);
    case "gemm":
      return lowerGemm(cx.node as NodeOf<"matmul">, cx, { ...(grp.bias !== undefined ? { bias: grp.bias } : {}), ...(grp.act ? { act: grp.act } : {}), ...(grp.residual !== undefined ? { residual: grp.residual } : {}) });
    case "embed":
      return lowerEmbed(cx.node as NodeOf<"embed">, cx, grp.scale);
  }
}

/** One entry per op kind: how a node becomes kernels (an op that cannot be lowered fails here, at plan time). */
export const LOWERING = {
  param: (n, cx) => cx.alias(cx.external(KEYS.param(n.name), numel(n.shape) * 4)),
  input: (n, cx) => cx.alias(cx.external(KEYS[n.attrs.input], numel(n.shape) * 4)),
  const: () => {
    // Made by plan(): a const is an uploaded buffer, no kernel.
  },
  embed: (n, cx) => lowerEmbed(n, cx, 1),
  matmul: (n, cx) => lowerGemm(n, cx, {}),
  add: binaryEw("add"),
  sub: binaryEw("sub"),
  mul: binaryEw("mul"),
  div: binaryEw("div"),
  scale: (n, cx) => ewNode({ op: "scale", args: [{ in: 0 }], factor: n.attrs.factor })(n, cx),
  gelu: unaryEw("gelu"),
  silu: unaryEw("silu"),
  tanh: unaryEw("tanh"),
  rmsnorm: (n, cx) => lowerNorm(n, cx),
  layernorm: (n, cx) => lowerNorm(n, cx),
  rope: (n, cx) => {
    const width = last(n.shape);
    const { headDim, seqLen, base, scaling, inverse, offset } = n.attrs;
    if (width % headDim !== 0) cx.fail(`width ${width} is not a multiple of head_dim ${headDim}`);
    const c = cx.cast();
    const cfg = { name: kname(n), rows: numel(n.shape) / width, heads: width / headDim, headDim, seqLen, base, inverse, ...(offset ? { offset } : {}), ...(scaling ? { scaling } : {}), ...outOf(c) };
    const y = cx.out();
    cx.kernel("rope", ew.rope(cfg), { x: cx.in(0), ...(offset ? { position: cx.in(1) } : {}), y, ...c.bind });
  },
  attention: (n, cx) => (n.attrs.cached ? lowerCachedAttention(n, cx) : cx.alias(attentionFwd(cx, n).o)),
  xielu: (n, cx) => {
    const c = cx.cast();
    const y = cx.out();
    const cfg = { name: kname(n), n: numel(n.shape), beta: n.attrs.beta, eps: n.attrs.eps, ...outOf(c) };
    cx.kernel("xielu", ew.xielu(cfg), { x: cx.in(0), rho_p: cx.in(1), rho_n: cx.in(2), y, ...c.bind });
  },
  glu: (n, cx) => {
    const F = last(n.shape);
    const c = cx.cast();
    const y = cx.out();
    cx.kernel("glu", ew.glu({ name: kname(n), rows: numel(n.shape) / F, width: F, act: n.attrs.act, ...outOf(c) }), { x: cx.in(0), y, ...c.bind });
  },
  row_absmax: (n, cx) => {
    const width = last(cx.shape(0));
    const y = cx.out();
    const src = row.rowAbsmax({ name: kname(n), rows: numel(cx.shape(0)) / width, width, cols: n.attrs.cols, wg: rowWg(width), ...rowSubgroup(cx) });
    cx.kernel("row_absmax", src, { x: cx.in(0), y });
  },
  cross_entropy: (n, cx) => {
    const V = last(cx.shape(0));
    const M = numel(cx.shape(0)) / V;
    // A row per workgroup for vocabulary-wide rows (every row's 2 passes in flight at once: 16 rows a
    // workgroup took 11.3 ms of the GPT-2-small step on the H100); short rows share workgroups, ≤ 256 partials.
    const rpw = V >= 4096 ? 1 : Math.max(1, Math.ceil(M / 256));
    const parts = Math.ceil(M / rpw);
    const loss = cx.out();
    withParts(cx, "cross_entropy", parts, 1, loss, (target) =>
      cx.kernel("cross_entropy", row.crossEntropy({ name: kname(n), rows: M, width: V, rowsPerWorkgroup: rpw, ...rowSubgroup(cx) }), { logits: cx.in(0), targets: cx.in(1), loss: target }),
    );
  },
  quantize: lowerQuantize,
  cast: (n, cx) => {
    if (n.attrs.to === "f32") return cx.alias(cx.in(0));
    const y = cx.out();
    if (cx.outStorage === "bf16") {
      // Read only by GEMMs: stored as bf16 (two per u32), the GEMM decodes exactly.
      const src = ew.elementwise({ name: kname(n), rows: 1, cols: numel(n.shape), inputs: ["none"], expr: { in: 0 }, out: { dtype: "bf16" } });
      return cx.kernel("cast bf16", src, { in0: cx.in(0), y });
    }
    cx.kernel("cast bf16", rk.bf16Round({ name: kname(n), n: numel(n.shape) }), { x: cx.in(0), y });
  },
  kurtosis: (n, cx) => {
    // Several inputs are measured together (a token's vector is the concatenation of its rows):
    // placed side by side first. Only Σx² and Σx⁴ per vector matter, so the order is free.
    const widths = n.inputs.map((_, i) => last(cx.shape(i)));
    const tokens = numel(cx.shape(0)) / widths[0];
    widths.forEach((w, i) => numel(cx.shape(i)) === tokens * w || cx.fail(`input ${i} does not have ${tokens} rows`));
    const width = widths.reduce((a, b) => a + b, 0);
    let x = cx.in(0);
    if (n.inputs.length > 1) {
      x = cx.scratch(tokens * width * 4, "probe rows");
      let offset = 0;
      widths.forEach((w, i) => {
        cx.kernel("kurtosis rows", rk.placeColumns({ name: kname(n), rows: tokens, width: w, total: width, offset }), { x: cx.in(i), y: x });
        offset += w;
      });
    }
    const len = n.attrs.mode === "per_token" ? width : width * n.attrs.seqLen;
    const vectors = (tokens * width) / len;
    if (!Number.isInteger(vectors)) cx.fail(`${tokens} rows is not a whole number of sequences of ${n.attrs.seqLen}`);
    const vpw = Math.max(1, Math.ceil(vectors / 64));
    const y = cx.out();
    withParts(cx, "kurtosis", Math.ceil(vectors / vpw), 1, y, (target) =>
      cx.kernel("kurtosis", kurtosis({ name: kname(n), tokens, width, mode: n.attrs.mode, seqLen: n.attrs.seqLen, vectorsPerWorkgroup: vpw }), { x, y: target }),
    );
  },
  kv_cache: (n, cx) => cx.alias(cx.external(KEYS.cache(n.name), numel(n.shape) * 4)),
  kv_write: (n, cx) => {
    // In place: the cache buffer is written and becomes this node's value.
    const [B, kvHeads, context, headDim] = cx.shape(0);
    const cache = cx.in(0);
    cx.kernel("kv write", decode.kvWrite({ name: kname(n), batch: B, rows: n.attrs.rows, kvHeads, headDim, context }), { x: cx.in(1), position: cx.in(2), cache });
    cx.alias(cache);
  },
  sum_to: (n, cx) => lowerSumTo(n, cx, [n.inputs[0]], { in: 0 }),
  gelu_grad: binaryEw("gelu_grad"),
  silu_grad: binaryEw("silu_grad"),
  tanh_grad: binaryEw("tanh_grad"),
  rmsnorm_grad: (n, cx) => lowerNormGrad(n, cx),
  layernorm_grad: (n, cx) => lowerNormGrad(n, cx),
  attention_grad: (n, cx) => {
    const [q, k, v, dout] = [0, 1, 2, 3].map((i) => cx.in(i, !!n.attrs.fp8)); // FP8DPA: maybe codes (attentionFp8)
    const g = cx.memo(`attn_bwd:${q},${k},${v},${dout}`, () => {
      const fp8 = attentionFp8(n, cx);
      const cfg = attnConfig(n, cx, fp8?.cfg);
      const { o, lse } = attentionFwd(cx, n);
      const delta = cx.scratch(cfg.batch * cfg.heads * cfg.seqLen * 4, "attention delta");
      const dq = cx.scratch(numel(cx.shape(0)) * 4, "dq");
      const dk = cx.scratch(numel(cx.shape(1)) * 4, "dk");
      const dv = cx.scratch(numel(cx.shape(2)) * 4, "dv");
      const f: Record<string, number> = fp8 ? { scales: fp8.bind.scales } : {};
      cx.kernel("attention bwd_dq", attentionKernel(cfg, "bwd_dq", cx.opts.caps), { q, k, v, o, dout, lse, delta, dq, ...f }, attentionFlops(cfg, "bwd_dq"));
      cx.kernel("attention bwd_dkv", attentionKernel(cfg, "bwd_dkv", cx.opts.caps), { q, k, v, dout, lse, delta, dk, dv, ...(fp8?.bind ?? {}) }, attentionFlops(cfg, "bwd_dkv"));
      fp8?.record(1);
      return { q: dq, k: dk, v: dv };
    });
    cx.alias(g[n.attrs.wrt]);
  },
  xielu_grad: (n, cx) => {
    const { beta, eps, wrt } = n.attrs;
    const nel = numel(cx.shape(0));
    const [x, rho_p, rho_n, dy] = [0, 1, 2, 3].map((i) => cx.in(i));
    if (wrt === "x") {
      const c = cx.cast();
      const dx = cx.out();
      return cx.kernel("xielu grad", ew.xielu({ name: kname(n), n: nel, beta, eps, ...outOf(c) }, true), { x, rho_p, rho_n, dy, dx, ...c.bind });
    }
    const out = cx.out();
    const parts = partsFor(nel);
    const rho: Record<string, number> = wrt === "rho_p" ? { rho_p } : { rho_n };
    withParts(cx, `xielu grad ${wrt}`, parts, 1, out, (target) =>
      cx.kernel(`xielu grad ${wrt}`, ew.xieluParamGrad({ name: kname(n), n: nel, beta, eps, wrt, parts }), { x, ...rho, dy, y: target }),
    );
  },
  glu_grad: (n, cx) => {
    const F = last(n.shape) / 2;
    const c = cx.cast();
    const dx = cx.out();
    cx.kernel("glu grad", ew.gluGrad({ name: kname(n), rows: numel(n.shape) / (2 * F), width: F, act: n.attrs.act, ...outOf(c) }), { x: cx.in(0), dy: cx.in(1), dx, ...c.bind });
  },
  embed_grad: (n, cx) => {
    const D = last(cx.shape(1));
    const dtable = cx.out();
    const cfg = { name: kname(n), tokens: numel(cx.shape(0)), dim: D, vocab: n.attrs.vocab };
    const ids = cx.graph.nodes[n.inputs[0]];
    // The batch's tokens: the executor uploads their grouping by id with them (ew.tokenIndex), and the
    // gradient is a gather; other ids (none today) take the scan kernel.
    if (ids.op === "input" && ids.attrs.input === "tokens") {
      const index = cx.external(KEYS.tokenIndex, (cfg.vocab + 1 + cfg.tokens) * 4);
      cx.kernel("embed grad", ew.embedGradIndexed(cfg), { index, dy: cx.in(1), dtable });
    } else {
      cx.kernel("embed grad", ew.embedGrad(cfg), { ids: cx.in(0), dy: cx.in(1), dtable });
    }
  },
  cross_entropy_grad: (n, cx) => {
    const V = last(cx.shape(0));
    const c = cx.cast();
    const dlogits = cx.out();
    const src = row.crossEntropyGrad({ name: kname(n), rows: numel(cx.shape(0)) / V, width: V, wg: 64, ...rowSubgroup(cx), ...outOf(c) });
    cx.kernel("cross_entropy grad", src, { logits: cx.in(0), targets: cx.in(1), dloss: cx.in(2), dlogits, ...c.bind });
  },
} satisfies { [K in OpKind]: Lower<K> };

/** Attention of a decode graph's new rows over its KV caches; FP8DPA's P through its slot's stored (delayed) scale. */
function lowerCachedAttention(n: NodeOf<"attention">, cx: Ctx): void {
  const { heads, kvHeads, headDim, seqLen: rows, scale, causal, cached, fp8 } = n.attrs;
  const slot = fp8 && cx.graph.scaleSlots[fp8.p];
  if (slot && (slot.scaling.kind !== "delayed" || slot.format !== "e4m3")) {
    cx.fail(`FP8DPA's P slot "${slot.name}" is ${slot.format} with ${slot.scaling.kind} scaling; the GPU cached attention casts P to e4m3 with a delayed (stored) scale only (use --backend cpu)`);
  }
  const batch = cx.shape(1)[0];
  const cfg = { name: kname(n), batch, rows, heads, kvHeads, headDim, context: cached!.context, scale, causal, ...(slot ? { fp8P: { saturate: slot.saturate } } : {}) };
  const o = cx.out();
  const bind = { q: cx.in(0), k: cx.in(1), v: cx.in(2), position: cx.in(3), o, ...(slot ? { pscale: cx.aligned(slot.id, "scale") } : {}) };
  cx.kernel("cached attention", decode.cachedAttention(cfg), bind, 4 * batch * heads * rows * cached!.context * headDim);
}

function lowerNorm(n: NodeOf<"rmsnorm" | "layernorm">, cx: Ctx): void {
  const k = n.inputs.length;
  const c = cx.cast();
  const y = cx.out();
  const src = row.norm({ ...normConfig(n, cx), gain: k >= 2 ? "param" : "none", bias: k >= 3, ...outOf(c) });
  cx.kernel(n.op, src, { x: cx.in(0), ...(k >= 2 ? { gain: cx.in(1) } : {}), ...(k >= 3 ? { bias: cx.in(2) } : {}), y, ...c.bind });
}

function lowerNormGrad(n: NodeOf<"rmsnorm_grad" | "layernorm_grad">, cx: Ctx): void {
  const base = normConfig(n, cx);
  const wrt = n.attrs.wrt;
  if (wrt === "x") {
    const gain = n.inputs.length >= 3;
    const c = cx.cast();
    const dx = cx.out();
    const src = row.normGrad({ ...base, gain: gain ? "param" : "none", wrt: { x: true, gain: false, bias: false }, ...outOf(c) });
    return cx.kernel(`${n.op} x`, src, { x: cx.in(0), dy: cx.in(1), ...(gain ? { gain: cx.in(2) } : {}), dx, ...c.bind });
  }
  const out = cx.out();
  // Column sums as partial rows, one per workgroup of `rpw` rows, then added.
  const parts = Math.min(base.rows, 64);
  const rpw = Math.ceil(base.rows / parts);
  const wgs = Math.ceil(base.rows / rpw);
  const name = wrt === "gain" ? "dgain" : "dbias";
  withParts(cx, `${n.op} ${wrt}`, wgs, base.width, out, (target) => {
    const src = row.normGrad({ ...base, rowsPerWorkgroup: rpw, gain: "param", bias: wrt === "bias", wrt: { x: false, gain: wrt === "gain", bias: wrt === "bias" } });
    cx.kernel(`${n.op} ${wrt}`, src, { x: cx.in(0), dy: cx.in(1), [name]: target });
  });
}
