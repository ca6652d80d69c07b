// Shape and dtype inference: one rule per op kind (exhaustive), used by the graph builder and by
// verify.ts. Throws ShapeError with a readable message; callers attach the `.fog` span.
import type { DType, Node, OpAttrs, OpKind } from "./ir.js";

export class ShapeError extends Error {}

type Rule<K extends OpKind> = (inputs: number[][], attrs: OpAttrs[K], dtypes: DType[]) => number[];

function fail(msg: string): never {
  throw new ShapeError(msg);
}

function same(op: string, a: number[], b: number[]): void {
  if (a.length !== b.length || a.some((d, i) => d !== b[i])) fail(`${op}: shapes [${a}] and [${b}] differ`);
}

/** numpy broadcasting of b onto a (b may be smaller); the result has a's shape. */
function broadcastTo(op: string, a: number[], b: number[]): number[] {
  if (b.length > a.length) fail(`${op}: cannot broadcast [${b}] onto [${a}]`);
  for (let i = 1; i <= b.length; i++) {
    const da = a[a.length - i];
    const db = b[b.length - i];
    if (db !== da && db !== 1) fail(`${op}: cannot broadcast [${b}] onto [${a}]`);
  }
  return a;
}

const last = (s: number[]): number => s[s.length - 1];
const unary: Rule<OpKind> = ([x]) => x;
const binary = (op: string): Rule<OpKind> => ([a, b]) => broadcastTo(op, a, b);

function grouped(op: string, x: number[], group: number): void {
  if (last(x) % group !== 0) fail(`${op}: last dimension ${last(x)} is not a multiple of group ${group}`);
}

function positionInput(op: string, position: number[] | undefined): void {
  if (!position || position.length !== 1 || position[0] !== 1) fail(`${op}: needs the position input [1], got ${position ? `[${position}]` : "none"}`);
}

export const SHAPE_RULES: { [K in OpKind]: Rule<K> } = {
  param: () => fail("param shapes are given, not inferred"),
  input: () => fail("input shapes are given, not inferred"),
  const: () => [],
  embed: ([table, ids]) => [...ids, last(table)],
  matmul: ([a, b], { transA, transB }) => {
    if (a.length !== 2 || b.length !== 2) fail(`matmul: operands must be 2-D, got [${a}] and [${b}]`);
    const [m, k1] = transA ? [a[1], a[0]] : a;
    const [k2, n] = transB ? [b[1], b[0]] : b;
    if (k1 !== k2) fail(`matmul: inner dimensions differ (${k1} vs ${k2})`);
    return [m, n];
  },
  add: binary("add"),
  sub: binary("sub"),
  mul: binary("mul"),
  div: binary("div"),
  scale: unary,
  gelu: unary,
  silu: unary,
  tanh: unary,
  rmsnorm: ([x, gain], { group }) => {
    grouped("rmsnorm", x, group);
    if (gain) same("rmsnorm gain", gain, [group]);
    return x;
  },
  layernorm: ([x, gain, bias], { group }) => {
    grouped("layernorm", x, group);
    if (gain) same("layernorm gain", gain, [group]);
    if (bias) same("layernorm bias", bias, [group]);
    return x;
  },
  rope: ([x, position], { headDim, offset }) => {
    grouped("rope", x, headDim);
    if (headDim % 2 !== 0) fail(`rope: head dimension ${headDim} is odd`);
    if (offset) positionInput("rope", position);
    else if (position) fail("rope: a position input needs the `offset` attribute");
    return x;
  },
  attention: ([q, k, v, position], { heads, kvHeads, headDim, cached, seqLen }) => {
    if (last(q) !== heads * headDim) fail(`attention: q width ${last(q)} != heads*head_dim ${heads * headDim}`);
    if (cached) {
      for (const [what, c] of [["k", k], ["v", v]] as const) {
        if (c.length !== 4 || c[1] !== kvHeads || c[2] !== cached.context || c[3] !== headDim)
          fail(`attention: cached ${what} must be [batch, ${kvHeads}, ${cached.context}, ${headDim}], got [${c}]`);
      }
      if (q[0] !== k[0] * seqLen) fail(`attention: ${q[0]} query rows for ${k[0]} cached sequences of ${seqLen} new rows`);
      positionInput("attention", position);
      if (heads % kvHeads !== 0) fail(`attention: heads ${heads} not a multiple of kv_heads ${kvHeads}`);
      return q;
    }
    if (last(k) !== kvHeads * headDim || last(v) !== kvHeads * headDim)
      fail(`attention: k/v width must be kv_heads*head_dim = ${kvHeads * headDim}`);
    if (heads % kvHeads !== 0) fail(`attention: heads ${heads} not a multiple of kv_heads ${kvHeads}`);
    return q;
  },
  xielu: ([x]) => x,
  glu: ([x]) => {
    if (last(x) % 2 !== 0) fail(`glu: width ${last(x)} is odd`);
    return [...x.slice(0, -1), last(x) / 2];
  },
  row_absmax: ([x]) => [...x.slice(0, -1), 1],
  cross_entropy: ([logits, targets]) => {
    if (logits[0] !== targets[0]) fail(`cross_entropy: ${logits[0]} rows of logits, ${targets[0]} targets`);
    return [];
  },
  quantize: unary,
  cast: unary,
  kurtosis: (xs, { mode, seqLen }) => {
    if (!xs.length) fail("kurtosis: needs at least one input");
    const rows = (s: number[]): number => (s.length ? s.slice(0, -1).reduce((a, b) => a * b, 1) : 1);
    for (const x of xs.slice(1)) if (rows(x) !== rows(xs[0])) fail(`kurtosis: inputs [${xs[0]}] and [${x}] have different numbers of rows`);
    if (mode === "per_sequence" && rows(xs[0]) % seqLen !== 0) fail(`kurtosis: ${rows(xs[0])} rows is not a whole number of sequences of ${seqLen}`);
    return [];
  },
  kv_cache: () => fail("kv_cache shapes are given, not inferred"),
  kv_write: ([cache, x, position], { rows }) => {
    if (cache.length !== 4) fail(`kv_write: the cache must be [batch, kv_heads, context, head_dim], got [${cache}]`);
    const [B, H, , Dh] = cache;
    if (x.length !== 2 || x[0] !== B * rows || x[1] !== H * Dh) fail(`kv_write: new rows must be [${B * rows}, ${H * Dh}], got [${x}]`);
    positionInput("kv_write", position);
    return cache;
  },
  sum_to: (_, { shape }) => shape,
  gelu_grad: ([x, dy]) => (same("gelu_grad", x, dy), x),
  silu_grad: ([x, dy]) => (same("silu_grad", x, dy), x),
  tanh_grad: ([y, dy]) => (same("tanh_grad", y, dy), y),
  rmsnorm_grad: ([x], { wrt, group }) => (wrt === "x" ? x : [group]),
  layernorm_grad: ([x], { wrt, group }) => (wrt === "x" ? x : [group]),
  attention_grad: ([q, k, v], { wrt }) => (wrt === "q" ? q : wrt === "k" ? k : v),
  xielu_grad: ([x], { wrt }) => (wrt === "x" ? x : [1]),
  glu_grad: ([x]) => x,
  embed_grad: ([, dy], { vocab }) => [vocab, last(dy)],
  cross_entropy_grad: ([logits]) => logits,
};

/** dtype of a node's result: FP8 for quantize, i32 for inputs, f32 otherwise. */
export function inferDtype(op: OpKind, attrs: OpAttrs[OpKind], slotFormat?: DType): DType {
  if (op === "input") return "i32";
  if (op === "quantize") return slotFormat ?? "e4m3";
  if (op === "cast") return (attrs as OpAttrs["cast"]).to;
  return "f32";
}

export function inferShape(node: Pick<Node, "op" | "attrs">, inputs: number[][], dtypes: DType[]): number[] {
  const rule = SHAPE_RULES[node.op] as Rule<OpKind>;
  return rule(inputs, node.attrs, dtypes);
}
