// The graph IR: a flat, topologically ordered list of typed tensor ops with shapes, dtypes,
// precision and the `.fog` span each came from. Every pass after the front end reads and writes
// this; `ir-text.ts` prints it. Op kinds are a closed union so per-op tables are exhaustive.
import type { Span } from "../grammar/diagnostics.js";

export type DType = "f32" | "bf16" | "e4m3" | "e5m2" | "i32";
export type Fp8Format = "e4m3" | "e5m2";

/** Which part of a training step a node belongs to. */
export type Role = "fwd" | "bwd" | "update" | "probe";

/** The GEMMs precision recipes talk about (papers.md §3): linear layers and attention. */
export type GemmName = "qkv" | "out" | "fc1" | "fc2" | "head" | "qk" | "pv";
export const LINEAR_GEMMS: readonly GemmName[] = ["qkv", "out", "fc1", "fc2", "head"];
export const ATTENTION_GEMMS: readonly GemmName[] = ["qk", "pv"];
/** fprop Y = op(A)·op(B); dgrad = the gradient w.r.t. A (activations); wgrad = w.r.t. B (weights). */
export type GemmPass = "fprop" | "dgrad" | "wgrad";

/** Where a GEMM sits in the model, for precision rules: its layer (absent for the LM head) and component. */
export interface GemmSite {
  layer?: number;
  component: string;
}

export type Init =
  | { kind: "normal"; std: number }
  | { kind: "const"; value: number }
  /** softplus⁻¹(value): xIELU's reparameterised alphas are stored as ρ with softplus(ρ) = value. */
  | { kind: "softplus_inv"; value: number };

/** One FP8 operand's scaling recipe (papers.md §2). */
export type Scaling =
  | { kind: "delayed"; history: number; margin: number; amax: "max" | "most_recent"; pow2: boolean }
  | { kind: "current"; margin: number; pow2: boolean }
  | { kind: "blockwise"; activationBlock: [number, number]; weightBlock: [number, number]; pow2: boolean };

/** A quantised operand slot: the state (scale, amax history) one FP8 cast keeps across steps. */
export interface ScaleSlot {
  id: number;
  name: string;
  format: Fp8Format;
  scaling: Scaling;
  saturate: boolean;
  role: "activation" | "weight" | "gradient";
}

export type RopeScaling = { factor: number; lowFreq: number; highFreq: number; original: number };
export type KurtosisMode = "per_token" | "per_sequence";

/** Attributes per op kind. Adding a kind here makes every exhaustive table point at itself. */
export interface OpAttrs {
  // leaves
  param: { init: Init; decay: boolean; lrScale: number };
  /** `position` (decode graphs): [1], the absolute position of the first new token (the cache fill). */
  input: { input: "tokens" | "targets" | "position" };
  const: { value: number };
  // forward
  embed: Record<string, never>;
  /** `pass`: which GEMM of a linear layer this is (autodiff sets dgrad/wgrad; absent = fprop). */
  matmul: { transA: boolean; transB: boolean; gemm?: GemmName; pass?: GemmPass; site?: GemmSite };
  add: Record<string, never>;
  sub: Record<string, never>;
  mul: Record<string, never>;
  div: Record<string, never>;
  scale: { factor: number };
  gelu: Record<string, never>;
  silu: Record<string, never>;
  tanh: Record<string, never>;
  rmsnorm: { eps: number; group: number };
  layernorm: { eps: number; group: number };
  /** `offset` (decode graphs): a second input, the `position` [1], is added to every row's position. */
  rope: { headDim: number; seqLen: number; base: number; scaling?: RopeScaling; inverse: boolean; offset?: true };
  /** `fp8` (FP8DPA): scale slots through which P (E4M3) and dS = P⊙(dP − D) (E5M2) are fake-quantised
   *  inside the fused attention, before P·V, Pᵀ·dO and dS·K, dSᵀ·Q (papers.md §3.2). */
  attention: {
    heads: number;
    kvHeads: number;
    headDim: number;
    seqLen: number;
    scale: number;
    causal: boolean;
    site?: GemmSite;
    fp8?: { p: number; ds: number };
    /** Decode graphs: k and v are KV caches [batch, kvHeads, context, headDim] (kv_write results) and a
     *  4th input is the `position` [1]; query row i of a sequence sits at position + i and sees cache
     *  positions ≤ position + i. */
    cached?: { context: number };
  };
  xielu: { beta: number; eps: number };
  glu: { act: "silu" | "gelu" };
  row_absmax: { cols: number };
  cross_entropy: Record<string, never>;
  // precision
  quantize: { slot: number };
  cast: { to: "bf16" | "f32" };
  // probes
  /** papers.md §7.1 of one or more inputs with the same number of rows, measured together: a
   *  token's vector is the concatenation of its row in every input (the `qkv` tap's q, k and v). */
  kurtosis: { mode: KurtosisMode; seqLen: number; probe: string; layer: number };
  // decode (forward-only, made by lowerModel's `decode` option)
  /** A K or V cache [batch, kvHeads, context, headDim]: state the executor keeps between calls, fed by id. */
  kv_cache: { which: "k" | "v"; layer: number };
  /** cache, x [batch·rows, kvHeads·headDim], position [1] → the cache with positions position…position+rows−1
   *  of each sequence replaced by x's rows (in place on the GPU). */
  kv_write: { rows: number };
  // backward (made by autodiff.ts)
  sum_to: { shape: number[] };
  gelu_grad: Record<string, never>;
  silu_grad: Record<string, never>;
  tanh_grad: Record<string, never>;
  rmsnorm_grad: { eps: number; group: number; wrt: "x" | "gain" };
  layernorm_grad: { eps: number; group: number; wrt: "x" | "gain" | "bias" };
  attention_grad: OpAttrs["attention"] & { wrt: "q" | "k" | "v" };
  xielu_grad: { beta: number; eps: number; wrt: "x" | "rho_p" | "rho_n" };
  glu_grad: { act: "silu" | "gelu" };
  embed_grad: { vocab: number };
  cross_entropy_grad: Record<string, never>;
}

export type OpKind = keyof OpAttrs;

/** Ops that are buffers (parameters, inputs, constants), not computations. */
export const LEAF_OPS: ReadonlySet<OpKind> = new Set<OpKind>(["param", "input", "const"]);

export interface NodeOf<K extends OpKind> {
  id: number;
  op: K;
  inputs: number[];
  shape: number[];
  dtype: DType;
  attrs: OpAttrs[K];
  /** Hierarchical name from the model: `b3.attn.qkv`, `b3.attn.qkv.grad_x`. */
  name: string;
  role: Role;
  span?: Span;
}

/** A node; narrow on `op` to get its typed attrs. */
export type Node = { [K in OpKind]: NodeOf<K> }[OpKind];

export interface Tap {
  /** Probe name (`qkv_input`, `mlp_out`, or a `probe` local's name). */
  probe: string;
  layer: number;
  /** The tensors measured together (the q, k and v GEMM outputs form one `qkv` probe). */
  nodes: number[];
}

export interface Graph {
  nodes: Node[];
  /** Named results: `loss`, `logits`, parameter gradients `grad:<param name>`, probes; in decode
   *  graphs `kv:<cache name>`, each cache's new value (the executor keeps it for the next call). */
  outputs: Record<string, number>;
  scaleSlots: ScaleSlot[];
  /** Tensors the probe pass may measure: papers.md §7.2 names per layer, plus `probe` locals. */
  taps: Tap[];
  /** Batch and sequence length the graph was lowered for. */
  batch: number;
  seqLen: number;
}

export function numel(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

/** Nodes that are trainable parameters, in declaration order. */
export function paramNodes(g: Graph): NodeOf<"param">[] {
  return g.nodes.filter((n): n is NodeOf<"param"> => n.op === "param");
}
