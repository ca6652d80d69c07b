// The checked model: what a `.fog` file means once names are resolved, defaults applied and
// values validated. It is the input of lower-model.ts and of the precision/probe passes.
import type { Span } from "../grammar/diagnostics.js";
import type { Fp8Format, GemmName, KurtosisMode, RopeScaling, Scaling } from "./ir.js";

export interface Gain {
  /** Frozen gains are constants (papers.md §5.5: FOG's QK-norm has gain ≡ 1). */
  trainable: boolean;
  init: number;
}

export interface NormSpec {
  kind: "rmsnorm" | "layernorm";
  eps: number;
  /** null: no gain at all (≡ 1). */
  gain: Gain | null;
  /** LayerNorm only. */
  bias: boolean;
  span: Span;
}

export type QkNorm =
  | { kind: "none" }
  | { kind: "norm"; norm: NormSpec }
  | { kind: "tanh"; alpha: number; trainable: boolean; span: Span };

export interface AttentionSpec {
  kind: "attention";
  name: string;
  qkNorm: QkNorm;
  rope: { base: number; scaling?: RopeScaling } | null;
  causal: boolean;
  softmaxScale: number;
  span: Span;
}

export type Activation =
  | { kind: "gelu" }
  | { kind: "silu" }
  | { kind: "swiglu" }
  | { kind: "geglu" }
  /** papers.md §5.2: per-token s = max|gate| (detached), z = SiLU(a)⊙b/s, y = s·(z·W₂ᵀ). */
  | { kind: "smooth_swiglu" }
  | { kind: "xielu"; alphaP: number; alphaN: number; beta: number; eps: number };

export interface MlpSpec {
  kind: "mlp";
  name: string;
  activation: Activation;
  /** Hidden width (the model's mlp_width unless the section overrides it). */
  width: number;
  span: Span;
}

export type Component = AttentionSpec | MlpSpec;

/** A block statement's right-hand side, as a typed tree over tensors. */
export type BlockExpr =
  | { kind: "var"; name: string; span: Span }
  | { kind: "add"; left: BlockExpr; right: BlockExpr; span: Span }
  | { kind: "norm"; norm: NormSpec; input: BlockExpr; span: Span }
  | { kind: "call"; component: Component; input: BlockExpr; span: Span }
  | { kind: "layerscale"; init: number; input: BlockExpr; span: Span }
  | { kind: "scale"; factor: number; input: BlockExpr; span: Span };

export interface BlockStatement {
  target: string;
  expr: BlockExpr;
  /** `probe a = ...`: the tensor gets a kurtosis probe of its own. */
  probe: boolean;
  span: Span;
}

export type PrecisionMode = "bf16" | "fp8" | "fp8dpa";

export interface PrecisionRule {
  mode: PrecisionMode;
  activations: Fp8Format;
  weights: Fp8Format;
  gradients: Fp8Format;
  scaling: Scaling;
  saturate: boolean;
}

export interface PrecisionOverride {
  /** Layer indices the override applies to; undefined = all layers. */
  layers?: number[];
  /** Component name (`attn`, `ffn`) or `head`; undefined = every component. */
  component?: string;
  gemm?: GemmName;
  rule: Partial<PrecisionRule>;
  span: Span;
}

export interface Recipe {
  name: string;
  base: PrecisionRule;
  overrides: PrecisionOverride[];
  span: Span;
}

/** Probe names of papers.md §7.2; the compiler inserts them on every layer by default. */
export const PROBE_TENSORS = [
  "activation",
  "qkv_input",
  "qkv",
  "q",
  "k",
  "mlp_intermediate",
  "mlp_post_act",
  "mlp_out",
] as const;
export type ProbeTensor = (typeof PROBE_TENSORS)[number];

export interface ProbeSpec {
  enabled: boolean;
  every: number;
  tensors: ProbeTensor[];
  mode: KurtosisMode;
}

export interface TrainSpec {
  data: { kind: "brown" } | { kind: "path"; path: string };
  tokenizer: "bytes" | "gpt2";
  batch: number;
  seqLen: number;
  steps: number;
  seed: number;
  optimizer: {
    kind: "adamw";
    lr: number;
    beta1: number;
    beta2: number;
    eps: number;
    weightDecay: number;
    clip: number;
  };
  schedule:
    | { kind: "constant"; warmup: number }
    | { kind: "cosine"; warmup: number; minLr: number }
    | { kind: "wsd"; warmup: number; decay: number; minLr: number };
  evalEvery: number;
  evalBatches: number;
  logEvery: number;
  valFraction: number;
}

export interface CheckedModel {
  name: string;
  file: string;
  span: Span;
  vocab: number;
  context: number;
  width: number;
  layers: number;
  heads: number;
  kvHeads: number;
  headDim: number;
  mlpWidth: number;
  initStd: number;
  embedding: { multiplier: number; std: number };
  head: { tied: boolean; norm: NormSpec | null; std: number };
  components: Component[];
  block: BlockStatement[];
  precision: Recipe;
  probes: ProbeSpec;
  train: TrainSpec;
}
