// CPU reference interpreter of the graph IR: runs a graph's nodes in order, one kernel per op kind
// (an exhaustive table), in f64 or rounding each result to f32. It is the oracle that every GPU
// kernel and whole training steps are tested against, and the ground truth for autodiff tests.
import type { Graph, NodeOf, OpAttrs, OpKind } from "../compiler/ir.js";
import { numel } from "../compiler/ir.js";
import { decodeOne, encodeOne, FP8_FORMATS, roundToBF16 } from "./fp8.js";
import * as ops from "./reference-ops.js";
import { cachedAttention, kvWrite, positionOf, ropeAt } from "./reference-decode.js";
import { ScaleState, scaleAt } from "./scale-state.js";

export interface ReferenceFeeds {
  /** Parameter values by node id (row-major, numel of the param's shape). */
  params: Map<number, Float64Array | Float32Array>;
  tokens?: Int32Array;
  targets?: Int32Array;
  /** Decode graphs: [1], the position of the first new token. */
  position?: Int32Array;
  /** Decode graphs: each `kv_cache` node's current value, by node id. */
  caches?: Map<number, Float64Array | Float32Array>;
}

export interface ReferenceOptions {
  /** "f32" rounds every op result with Math.fround, to compare with GPU f32 tightly. */
  precision?: "f64" | "f32";
  /** Scales and amax histories of quantize nodes (a fresh one — step 0, s = 1 — if absent). */
  scaleState?: ScaleState;
}

/** Every node's value by node id (integer tensors too, as exact doubles). */
export type ReferenceValues = Map<number, Float64Array>;

interface Tensor {
  data: Float64Array;
  shape: readonly number[];
}

interface Context {
  feeds: ReferenceFeeds;
  graph: Graph;
  scales: ScaleState;
}

type Kernel<K extends OpKind> = (ins: Tensor[], node: NodeOf<K>, ctx: Context) => Float64Array;

const last = (shape: readonly number[]): number => (shape.length ? shape[shape.length - 1] : 1);

/** For each flat index of shape `a`, the flat index of `b` broadcast numpy-style onto `a`. */
function broadcastIndex(a: readonly number[], b: readonly number[]): Int32Array {
  const n = numel(a);
  const out = new Int32Array(n);
  const off = a.length - b.length;
  const strides = new Array<number>(a.length).fill(0);
  for (let i = b.length - 1, s = 1; i >= 0; s *= b[i], i--) strides[i + off] = b[i] === 1 ? 0 : s;
  const idx = new Array<number>(a.length).fill(0);
  for (let i = 0, j = 0; i < n; i++) {
    out[i] = j;
    for (let d = a.length - 1; d >= 0; d--) {
      j += strides[d];
      if (++idx[d] < a[d]) break;
      j -= strides[d] * a[d];
      idx[d] = 0;
    }
  }
  return out;
}

function binary(f: (a: number, b: number) => number): Kernel<"add" | "sub" | "mul" | "div"> {
  return ([a, b]) => {
    const map = broadcastIndex(a.shape, b.shape);
    return a.data.map((x, i) => f(x, b.data[map[i]]));
  };
}

function unary(f: (x: number) => number): Kernel<"gelu" | "silu" | "tanh"> {
  return ([x]) => x.data.map(f);
}

function pointwiseGrad(df: (x: number) => number): Kernel<"gelu_grad" | "silu_grad" | "tanh_grad"> {
  return ([x, dy]) => x.data.map((v, i) => dy.data[i] * df(v));
}

function fill(n: number, value: number): Float64Array {
  return new Float64Array(n).fill(value);
}

function fromFeed(what: string, data: ArrayLike<number> | undefined, shape: readonly number[]): Float64Array {
  if (!data) throw new Error(`reference: no value fed for ${what}`);
  if (data.length !== numel(shape)) {
    throw new Error(`reference: ${what} has ${data.length} values, shape [${shape}] needs ${numel(shape)}`);
  }
  return Float64Array.from(data);
}

/** Fake quantisation through a slot: y = decode(encode(x·s)) / s (the codec rounds x·s to f32 first). */
const quantize: Kernel<"quantize"> = ([x], n, ctx) => {
  const slot = ctx.graph.scaleSlots[n.attrs.slot];
  const spec = FP8_FORMATS[slot.format];
  const cast = ctx.scales.cast(slot.id, x.data, x.shape);
  return x.data.map((v, i) => {
    const s = scaleAt(cast, i);
    return decodeOne(encodeOne(v * s, spec, slot.saturate), spec) / s;
  });
};

/** The fake FP8 cast of a value through a slot whose tensor has amax `m` (recorded; current scaling uses it). */
function quantThrough(ctx: Context, slotId: number, m: number): (x: number) => number {
  const slot = ctx.graph.scaleSlots[slotId];
  const spec = FP8_FORMATS[slot.format];
  const s = scaleAt(ctx.scales.cast(slot.id, Float64Array.of(m), [1]), 0);
  return (x) => decodeOne(encodeOne(x * s, spec, slot.saturate), spec) / s;
}

/**
 * FP8DPA: P and dS are fake-quantised through their slots. Their amax is measured over the whole
 * attention first (a current-scaling slot needs it before the cast; a delayed one records it).
 */
function attentionQuant(q: Tensor, k: Tensor, v: Tensor, dO: Tensor | undefined, a: OpAttrs["attention"], ctx: Context): ops.AttnQuant | undefined {
  if (!a.fp8) return undefined;
  const through = (slotId: number, m: number) => quantThrough(ctx, slotId, m);
  // amax(dS) is of the dS that is cast, whose D = rowsum(dO⊙O) uses the forward's quantised P.
  const p = through(a.fp8.p, ops.attentionAmax(q.data, k.data, v.data, undefined, a).p);
  return { p, ds: dO ? through(a.fp8.ds, ops.attentionAmax(q.data, k.data, v.data, dO.data, a, p).ds) : (x) => x };
}

/** One kernel per op kind; the key set doubles as the runtime list of op kinds the reference runs. */
export const REFERENCE_KERNELS = {
  param: (_, n, ctx) => fromFeed(`param %${n.id} "${n.name}"`, ctx.feeds.params.get(n.id), n.shape),
  input: (_, n, ctx) => fromFeed(`input ${n.attrs.input}`, ctx.feeds[n.attrs.input], n.shape),
  const: (_, n) => fill(numel(n.shape), n.attrs.value),
  embed: ([table, ids], n) => {
    const D = last(table.shape);
    const V = table.shape[0];
    const out = new Float64Array(ids.data.length * D);
    ids.data.forEach((id, r) => {
      if (!Number.isInteger(id) || id < 0 || id >= V) throw new Error(`embed "${n.name}": id ${id} outside [0, ${V})`);
      out.set(table.data.subarray(id * D, (id + 1) * D), r * D);
    });
    return out;
  },
  matmul: ([a, b], n) => {
    const { transA, transB } = n.attrs;
    const [M, N] = n.shape;
    const K = transA ? a.shape[0] : a.shape[1];
    const [ca, cb] = [a.shape[1], b.shape[1]];
    // op(a)[m,k] = a[m·sam + k·sak]; op(b)[k,j] = b[k·sbk + j·sbn]
    const [sam, sak] = transA ? [1, ca] : [ca, 1];
    const [sbk, sbn] = transB ? [1, cb] : [cb, 1];
    const out = new Float64Array(M * N);
    for (let m = 0; m < M; m++) {
      for (let j = 0; j < N; j++) {
        let s = 0;
        for (let k = 0; k < K; k++) s += a.data[m * sam + k * sak] * b.data[k * sbk + j * sbn];
        out[m * N + j] = s;
      }
    }
    return out;
  },
  add: binary((a, b) => a + b),
  sub: binary((a, b) => a - b),
  mul: binary((a, b) => a * b),
  div: binary((a, b) => a / b),
  scale: ([x], n) => x.data.map((v) => v * n.attrs.factor),
  gelu: unary(ops.ACTIVATIONS.gelu.f),
  silu: unary(ops.ACTIVATIONS.silu.f),
  tanh: unary(Math.tanh),
  rmsnorm: ([x, gain], n) => ops.rmsnorm(x.data, gain?.data, n.attrs.eps, n.attrs.group),
  layernorm: ([x, gain, bias], n) => ops.layernorm(x.data, gain?.data, bias?.data, n.attrs.eps, n.attrs.group),
  rope: ([x, position], n) =>
    position
      ? ropeAt(x.data, last(x.shape), n.attrs, positionOf(`rope "${n.name}"`, position.data, n.attrs.seqLen, Infinity))
      : ops.rope(x.data, last(x.shape), n.attrs),
  attention: ([q, k, v, position], n, ctx) => {
    const a = n.attrs;
    if (!a.cached) return ops.attention(q.data, k.data, v.data, a, attentionQuant(q, k, v, undefined, a, ctx));
    const pos = positionOf(`attention "${n.name}"`, position.data, a.seqLen, a.cached.context);
    const fp8 = a.fp8;
    return cachedAttention(q.data, k.data, v.data, a, pos, fp8 && ((amax) => quantThrough(ctx, fp8.p, amax)));
  },
  xielu: ([x, rp, rn], n) => ops.xielu(x.data, rp.data[0], rn.data[0], n.attrs.beta, n.attrs.eps),
  glu: ([x], n) => ops.glu(x.data, last(x.shape), n.attrs.act),
  row_absmax: ([x], n) => {
    const W = last(x.shape);
    return new Float64Array(x.data.length / W).map((_, r) => {
      let m = 0;
      for (let j = 0; j < n.attrs.cols; j++) m = Math.max(m, Math.abs(x.data[r * W + j]));
      return m;
    });
  },
  cross_entropy: ([logits, targets]) => Float64Array.of(ops.crossEntropy(logits.data, targets.data, last(logits.shape))),
  quantize,
  cast: ([x], n) => x.data.map(n.attrs.to === "bf16" ? roundToBF16 : Math.fround),
  kurtosis: (xs, n) => Float64Array.of(ops.kurtosisOfRows(xs.map((x) => x.data), xs.map((x) => last(x.shape)), n.attrs.mode, n.attrs.seqLen)),
  kv_cache: (_, n, ctx) => fromFeed(`kv_cache %${n.id} "${n.name}"`, ctx.feeds.caches?.get(n.id), n.shape),
  kv_write: ([cache, x, position], n) =>
    kvWrite(cache.data, cache.shape, x.data, n.attrs.rows, positionOf(`kv_write "${n.name}"`, position.data, n.attrs.rows, cache.shape[2])),
  sum_to: ([x], n) => {
    const out = new Float64Array(numel(n.attrs.shape));
    const map = broadcastIndex(x.shape, n.attrs.shape);
    x.data.forEach((v, i) => (out[map[i]] += v));
    return out;
  },
  gelu_grad: pointwiseGrad(ops.ACTIVATIONS.gelu.df),
  silu_grad: pointwiseGrad(ops.ACTIVATIONS.silu.df),
  tanh_grad: pointwiseGrad((y) => 1 - y * y),
  rmsnorm_grad: ([x, dy, gain], n) => ops.rmsnormGrad(x.data, dy.data, gain?.data, n.attrs.eps, n.attrs.group, n.attrs.wrt),
  layernorm_grad: ([x, dy, gain], n) =>
    ops.layernormGrad(x.data, dy.data, gain?.data, n.attrs.eps, n.attrs.group, n.attrs.wrt),
  attention_grad: ([q, k, v, dO], n, ctx) =>
    ops.attentionGrad(q.data, k.data, v.data, dO.data, n.attrs, attentionQuant(q, k, v, dO, n.attrs, ctx)),
  xielu_grad: ([x, rp, rn, dy], n) => ops.xieluGrad(x.data, rp.data[0], rn.data[0], dy.data, n.attrs),
  glu_grad: ([x, dy], n) => ops.gluGrad(x.data, dy.data, last(x.shape), n.attrs.act),
  embed_grad: ([ids, dy], n) => {
    const D = last(dy.shape);
    const out = new Float64Array(n.attrs.vocab * D);
    ids.data.forEach((id, r) => {
      for (let d = 0; d < D; d++) out[id * D + d] += dy.data[r * D + d];
    });
    return out;
  },
  cross_entropy_grad: ([logits, targets, dloss]) =>
    ops.crossEntropyGrad(logits.data, targets.data, dloss.data[0], last(logits.shape)),
} satisfies { [K in OpKind]: Kernel<K> };

/**
 * Runs every node of `g` in order and returns all values by node id. Parameters come from
 * `feeds.params` (by node id), `input` nodes from `feeds.tokens` / `feeds.targets`.
 */
export function runReference(g: Graph, feeds: ReferenceFeeds, options: ReferenceOptions = {}): ReferenceValues {
  const f32 = options.precision === "f32";
  const ctx: Context = {
    feeds,
    graph: g,
    scales: options.scaleState ?? new ScaleState(g.scaleSlots),
  };
  const values: ReferenceValues = new Map();
  for (const n of g.nodes) {
    const ins = n.inputs.map((i) => ({ data: values.get(i) as Float64Array, shape: g.nodes[i].shape }));
    const kernel = REFERENCE_KERNELS[n.op] as Kernel<OpKind>;
    const out = kernel(ins, n, ctx);
    if (out.length !== numel(n.shape)) {
      throw new Error(`reference: ${n.op} "${n.name}" made ${out.length} values for shape [${n.shape}]`);
    }
    if (f32 && n.dtype !== "i32") for (let i = 0; i < out.length; i++) out[i] = Math.fround(out[i]);
    values.set(n.id, out);
  }
  return values;
}

/** The value of a named graph output (`loss`, `grad:<param>`, ...). */
export function outputValue(g: Graph, values: ReferenceValues, name: string): Float64Array {
  const id = g.outputs[name];
  const v = id === undefined ? undefined : values.get(id);
  if (!v) throw new Error(`reference: graph has no output "${name}"`);
  return v;
}
