// Reverse-mode autodiff on the graph IR: takes a forward graph and appends its backward graph
// (role "bwd") for one scalar output, with one VJP rule per op kind in an exhaustive table.
// Parameter gradients become outputs `grad:<param name>`; backward GEMMs are tagged dgrad/wgrad.
import { GraphBuilder } from "./graph-builder.js";
import type { GemmPass, Graph, Node, NodeOf, OpAttrs, OpKind } from "./ir.js";
import { numel } from "./ir.js";

/** Emits the backward nodes of one forward node, named `<forward name>.<suffix>`. */
class Emitter {
  constructor(
    private readonly b: GraphBuilder,
    readonly node: Node,
  ) {}

  op<K extends OpKind>(op: K, inputs: number[], attrs: OpAttrs[K], suffix: string): number {
    return this.b.add(op, inputs, attrs, `${this.node.name}.${suffix}`);
  }

  shape(id: number): number[] {
    return this.b.shape(id);
  }

  /** The gradient of a broadcast operand: `g` summed down to `shape` (no node when it already fits). */
  sumTo(g: number, shape: number[], suffix: string): number {
    const s = this.shape(g);
    if (s.length === shape.length && s.every((d, i) => d === shape[i])) return g;
    return this.op("sum_to", [g], { shape: [...shape] }, suffix);
  }
}

/** Per input: a thunk that emits that input's gradient contribution, or undefined (no gradient). */
type Grads = ((() => number) | undefined)[];
type Vjp<K extends OpKind> = (n: NodeOf<K>, dy: number, e: Emitter) => Grads;

/**
 * Ops through which no gradient flows: `leaf` (params collect theirs as `grad:` outputs; inputs and
 * consts have none), `no_gradient` (integer-valued or detached results: row_absmax, kurtosis), and
 * `backward_only` (ops autodiff itself emits; a gradient reaching one is an error), and
 * `forward_only` (decode ops: KV caches; a decode graph is for sampling, never differentiated).
 */
type NoVjp = "leaf" | "no_gradient" | "backward_only" | "forward_only";

function forwardOnly(n: Node): never {
  throw new Error(`autodiff: ${n.op} "${n.name}" belongs to a decode graph (KV cache), which is forward-only and cannot be differentiated`);
}

const identity = <K extends OpKind>(): Vjp<K> => (_, dy) => [() => dy];
const pointwise =
  (grad: "gelu_grad" | "silu_grad"): Vjp<"gelu" | "silu"> =>
  (n, dy, e) => [() => e.op(grad, [n.inputs[0], dy], {}, "grad_x")];

export const VJP_RULES = {
  param: "leaf",
  input: "leaf",
  const: "leaf",
  embed: (n, dy, e) => {
    const [table, ids] = n.inputs;
    return [() => e.op("embed_grad", [ids, dy], { vocab: e.shape(table)[0] }, "grad_table"), undefined];
  },
  // C = op(A)·op(B): d op(A) = dC·op(B)ᵀ, d op(B) = op(A)ᵀ·dC, transposed back when the forward transposed.
  // Forward NT (X·Wᵀ): dX = dY·W (NN), dW = dYᵀ·X (TN).
  matmul: (n, dy, e) => {
    const [a, b] = n.inputs;
    const { transA, transB, gemm } = n.attrs;
    // Backward GEMMs keep the forward's `gemm` name so the precision pass can pick their operands' formats.
    const mm = (x: number, y: number, tA: boolean, tB: boolean, pass: GemmPass, suffix: string): number =>
      e.op("matmul", [x, y], { transA: tA, transB: tB, ...(gemm ? { gemm } : {}), pass, ...(n.attrs.site ? { site: n.attrs.site } : {}) }, suffix);
    return [
      () => (transA ? mm(b, dy, transB, true, "dgrad", "grad_a") : mm(dy, b, false, !transB, "dgrad", "grad_a")),
      () => (transB ? mm(dy, a, true, transA, "wgrad", "grad_b") : mm(a, dy, !transA, false, "wgrad", "grad_b")),
    ];
  },
  add: (n, dy, e) => [() => dy, () => e.sumTo(dy, e.shape(n.inputs[1]), "grad_b")],
  sub: (n, dy, e) => [
    () => dy,
    () => e.op("scale", [e.sumTo(dy, e.shape(n.inputs[1]), "grad_b.sum")], { factor: -1 }, "grad_b"),
  ],
  mul: (n, dy, e) => {
    const [a, b] = n.inputs;
    return [
      () => e.op("mul", [dy, b], {}, "grad_a"),
      () => e.sumTo(e.op("mul", [dy, a], {}, "grad_b.full"), e.shape(b), "grad_b"),
    ];
  },
  // y = a / b: da = dy / b; db = −Σ dy·y / b.
  div: (n, dy, e) => {
    const b = n.inputs[1];
    const db = (): number => {
      const full = e.op("div", [e.op("mul", [dy, n.id], {}, "grad_b.dy_y"), b], {}, "grad_b.full");
      return e.op("scale", [e.sumTo(full, e.shape(b), "grad_b.sum")], { factor: -1 }, "grad_b");
    };
    return [() => e.op("div", [dy, b], {}, "grad_a"), db];
  },
  scale: (n, dy, e) => [() => e.op("scale", [dy], { factor: n.attrs.factor }, "grad_x")],
  gelu: pointwise("gelu_grad"),
  silu: pointwise("silu_grad"),
  tanh: (n, dy, e) => [() => e.op("tanh_grad", [n.id, dy], {}, "grad_x")],
  rmsnorm: (n, dy, e) => {
    const [x, gain] = n.inputs;
    const { eps, group } = n.attrs;
    return [
      () => e.op("rmsnorm_grad", gain === undefined ? [x, dy] : [x, dy, gain], { eps, group, wrt: "x" }, "grad_x"),
      () => e.op("rmsnorm_grad", [x, dy], { eps, group, wrt: "gain" }, "grad_gain"),
    ];
  },
  layernorm: (n, dy, e) => {
    const [x, gain] = n.inputs;
    const { eps, group } = n.attrs;
    return [
      () => e.op("layernorm_grad", gain === undefined ? [x, dy] : [x, dy, gain], { eps, group, wrt: "x" }, "grad_x"),
      () => e.op("layernorm_grad", [x, dy], { eps, group, wrt: "gain" }, "grad_gain"),
      () => e.op("layernorm_grad", [x, dy], { eps, group, wrt: "bias" }, "grad_bias"),
    ];
  },
  // A rotation: its VJP is the inverse rotation.
  rope: (n, dy, e) => (n.attrs.offset ? forwardOnly(n) : [() => e.op("rope", [dy], { ...n.attrs, inverse: !n.attrs.inverse }, "grad_x")]),
  attention: (n, dy, e) =>
    n.attrs.cached ? forwardOnly(n) : (["q", "k", "v"] as const).map(
      (wrt) => () => e.op("attention_grad", [...n.inputs, dy], { ...n.attrs, wrt }, `grad_${wrt}`),
    ),
  xielu: (n, dy, e) =>
    (["x", "rho_p", "rho_n"] as const).map(
      (wrt) => () => e.op("xielu_grad", [...n.inputs, dy], { beta: n.attrs.beta, eps: n.attrs.eps, wrt }, `grad_${wrt}`),
    ),
  glu: (n, dy, e) => [() => e.op("glu_grad", [n.inputs[0], dy], { act: n.attrs.act }, "grad_x")],
  row_absmax: "no_gradient",
  cross_entropy: (n, dy, e) => [() => e.op("cross_entropy_grad", [...n.inputs, dy], {}, "grad_logits"), undefined],
  // Straight-through: backward GEMM operands get quantize nodes of their own from the precision pass.
  quantize: identity<"quantize">(),
  cast: identity<"cast">(),
  kurtosis: "no_gradient",
  kv_cache: "forward_only",
  kv_write: "forward_only",
  sum_to: "backward_only",
  gelu_grad: "backward_only",
  silu_grad: "backward_only",
  tanh_grad: "backward_only",
  rmsnorm_grad: "backward_only",
  layernorm_grad: "backward_only",
  attention_grad: "backward_only",
  xielu_grad: "backward_only",
  glu_grad: "backward_only",
  embed_grad: "backward_only",
  cross_entropy_grad: "backward_only",
} satisfies { [K in OpKind]: Vjp<K> | NoVjp };

/** Whether a gradient can reach each node from some parameter (what autodiff must differentiate). */
function requiresGrad(nodes: readonly Node[]): boolean[] {
  const req: boolean[] = [];
  for (const n of nodes) {
    const rule: Vjp<OpKind> | NoVjp = VJP_RULES[n.op] as Vjp<OpKind> | NoVjp;
    req[n.id] = rule === "leaf" ? n.op === "param" : rule !== "no_gradient" && n.inputs.some((i) => req[i]);
  }
  return req;
}

/** Sums a node's gradient contributions (in arrival order) into one tensor named `<name>.grad`. */
function accumulate(b: GraphBuilder, n: Node, parts: number[]): number {
  let acc = parts[0];
  for (let i = 1; i < parts.length; i++) {
    acc = b.add("add", [acc, parts[i]], {}, i === parts.length - 1 ? `${n.name}.grad` : `${n.name}.grad.sum${i}`);
  }
  return acc;
}

/**
 * Appends the backward graph of `outputs[options.loss ?? "loss"]` (one element) to a copy of
 * `forward`, walking nodes in reverse order. Every parameter gets `outputs["grad:" + name]`; a
 * parameter the loss does not depend on gets a zero constant, so the optimizer sees every one.
 */
export function autodiff(forward: Graph, options: { loss?: string } = {}): Graph {
  const lossName = options.loss ?? "loss";
  const lossId = forward.outputs[lossName];
  if (lossId === undefined) throw new Error(`autodiff: the graph has no output "${lossName}"`);
  const loss = forward.nodes[lossId];
  if (numel(loss.shape) !== 1) throw new Error(`autodiff: "${lossName}" has shape [${loss.shape}], not one element`);

  const b = GraphBuilder.from(forward);
  b.role = "bwd";
  const req = requiresGrad(forward.nodes);
  const pending = new Map<number, number[]>();
  if (req[lossId]) pending.set(lossId, [b.add("const", [], { value: 1 }, `${loss.name}.grad_seed`, [...loss.shape])]);

  for (let id = lossId; id >= 0; id--) {
    const parts = pending.get(id);
    if (!parts) continue;
    const n = forward.nodes[id];
    b.span = n.span;
    const dy = accumulate(b, n, parts);
    const rule = VJP_RULES[n.op] as Vjp<OpKind> | NoVjp;
    if (rule === "leaf" || rule === "no_gradient") {
      if (n.op === "param") b.outputs[`grad:${n.name}`] = dy;
      continue;
    }
    if (rule === "forward_only") forwardOnly(n);
    if (rule === "backward_only") throw new Error(`autodiff: no gradient rule for ${n.op} "${n.name}" (backward-only op)`);
    const grads = rule(n, dy, new Emitter(b, n));
    n.inputs.forEach((input, i) => {
      // Undefined thunks are non-differentiable inputs (token ids, targets).
      const grad = req[input] ? grads[i] : undefined;
      if (grad) pending.set(input, [...(pending.get(input) ?? []), grad()]);
    });
  }
  for (const n of forward.nodes) {
    if (n.op === "param" && b.outputs[`grad:${n.name}`] === undefined) {
      b.span = n.span;
      b.outputs[`grad:${n.name}`] = b.add("const", [], { value: 0 }, `${n.name}.grad`, [...n.shape]);
    }
  }
  b.span = undefined;
  return b.build();
}
