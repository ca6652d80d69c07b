// `fogc export --to pytorch`: a CheckedModel → a self-contained Python package (torch only) whose module
// has fogc's parameter names and layouts, so fogc checkpoints load as is. Small typed emitters turn each
// part of the checked model into Python; the generic layer code lives in export-pytorch-py.ts.
import { existsSync, mkdirSync, readdirSync, renameSync, rmSync, statSync, writeFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { CHECKPOINT_FORMAT, paramShapesHash } from "../runtime/checkpoint.js";
import { isFp8, ruleFor } from "./check-precision.js";
import type { GemmName, Init, Scaling } from "./ir.js";
import { paramNodes } from "./ir.js";
import { lowerModel } from "./lower-model.js";
import type { Activation, AttentionSpec, BlockExpr, CheckedModel, Component, Gain, MlpSpec, NormSpec, PrecisionRule, QkNorm } from "./model.js";
import { PY_DATA, PY_FP8, PY_LAYERS, PY_SAFETENSORS, PY_SCHEDULE, PY_TRAIN } from "./export-pytorch-py.js";

export interface ExportOptions {
  /** The .fog path recorded in checkpoints the package writes (default: the model's file, absolute). */
  fogFile?: string;
}

/** One parameter of the exported module, in fogc's declaration order. */
export interface ExportedParam {
  name: string;
  shape: number[];
  init: Init;
  decay: boolean;
  lrScale: number;
}

export interface PytorchExport {
  /** File name (relative to the package directory) → contents. */
  files: Record<string, string>;
  params: ExportedParam[];
  shapesHash: string;
}

/** A model the exporter cannot express (e.g. a component name that is a PyTorch attribute). */
export class ExportError extends Error {
  override readonly name = "ExportError";
}

// ---- Python literals -------------------------------------------------------------------------

const pyFloat = (x: number): string => {
  if (Number.isNaN(x)) return 'float("nan")';
  if (!Number.isFinite(x)) return x > 0 ? 'float("inf")' : '-float("inf")';
  const s = String(x);
  return /[.eE]/.test(s) ? s : `${s}.0`;
};
const pyInt = (x: number): string => {
  if (!Number.isInteger(x)) throw new ExportError(`internal: ${x} is not an integer`);
  return String(x);
};
const pyStr = (s: string): string => JSON.stringify(s);
const pyBool = (b: boolean): string => (b ? "True" : "False");
const pyTuple = (items: string[]): string => (items.length === 1 ? `(${items[0]},)` : `(${items.join(", ")})`);
const pyInit = (init: Init): string => pyTuple([pyStr(init.kind), pyFloat(init.kind === "normal" ? init.std : init.value)]);

const PY_KEYWORDS = new Set(
  "False None True and as assert async await break class continue def del elif else except finally for from global if import in is lambda nonlocal not or pass raise return try while with yield match case".split(" "),
);
/** Attribute names a submodule must not take: nn.Module's own members and the Block's. */
const MODULE_RESERVED = new Set(
  "forward training to cuda cpu float half double bfloat16 type apply train eval state_dict load_state_dict parameters named_parameters modules named_modules children named_children buffers named_buffers zero_grad register_buffer register_parameter add_module get_submodule requires_grad_ extra_repr layer dump_patches call_super_init".split(" "),
);
const IDENT = /^[A-Za-z_][A-Za-z0-9_]*$/;

function checkAttr(name: string, what: string): string {
  if (!IDENT.test(name) || PY_KEYWORDS.has(name) || MODULE_RESERVED.has(name) || name.startsWith("_"))
    throw new ExportError(`${what} '${name}' cannot be a PyTorch module attribute; rename it in the .fog file`);
  return name;
}

/** A .fog block local as a Python variable (`h` stays `h`). */
function pyLocal(name: string): string {
  return IDENT.test(name) && !PY_KEYWORDS.has(name) && !["self", "torch", "F", "nn", "math", "layer"].includes(name) ? name : `v_${name.replace(/\W/g, "_")}`;
}

// ---- model parts → constructor expressions and parameter lists ---------------------------------

const gainPy = (g: Gain | null): string => (g === null ? "None" : `Gain(trainable=${pyBool(g.trainable)}, init=${pyFloat(g.init)})`);
const normSpecPy = (n: NormSpec): string =>
  `NormSpec(${pyStr(n.kind)}, eps=${pyFloat(n.eps)}, gain=${gainPy(n.gain)}, bias=${pyBool(n.kind === "layernorm" && n.bias)})`;

function qkNormPy(qk: QkNorm): string {
  switch (qk.kind) {
    case "none":
      return 'QkNorm("none")';
    case "norm":
      return `QkNorm("norm", norm=${normSpecPy(qk.norm)})`;
    case "tanh":
      return `QkNorm("tanh", alpha=${pyFloat(qk.alpha)}, trainable=${pyBool(qk.trainable)})`;
  }
}

function ropePy(rope: AttentionSpec["rope"]): string {
  if (!rope) return "None";
  const s = rope.scaling;
  const scaling = s ? `RopeScaling(factor=${pyFloat(s.factor)}, low_freq=${pyFloat(s.lowFreq)}, high_freq=${pyFloat(s.highFreq)}, original=${pyFloat(s.original)})` : "None";
  return `RopeSpec(base=${pyFloat(rope.base)}, scaling=${scaling})`;
}

function activationPy(a: Activation): string {
  if (a.kind !== "xielu") return `Activation(${pyStr(a.kind)})`;
  return `Activation("xielu", alpha_p=${pyFloat(a.alphaP)}, alpha_n=${pyFloat(a.alphaN)}, beta=${pyFloat(a.beta)}, eps=${pyFloat(a.eps)})`;
}

const isGated = (a: Activation): boolean => a.kind === "swiglu" || a.kind === "geglu" || a.kind === "smooth_swiglu";

/** `def make_NAME(layer)`: the component's module for one layer. */
function componentFactoryPy(c: Component, m: CheckedModel): string {
  const args =
    c.kind === "attention"
      ? [
          `layer=layer`,
          `component=${pyStr(c.name)}`,
          `width=${pyInt(m.width)}`,
          `heads=${pyInt(m.heads)}`,
          `kv_heads=${pyInt(m.kvHeads)}`,
          `head_dim=${pyInt(m.headDim)}`,
          `qk_norm=${qkNormPy(c.qkNorm)}`,
          `rope=${ropePy(c.rope)}`,
          `softmax_scale=${pyFloat(c.softmaxScale)}`,
          `causal=${pyBool(c.causal)}`,
        ]
      : [`layer=layer`, `component=${pyStr(c.name)}`, `width=${pyInt(m.width)}`, `hidden=${pyInt(c.width)}`, `activation=${activationPy(c.activation)}`];
  const cls = c.kind === "attention" ? "Attention" : "Mlp";
  return [`def make_${c.name}(layer):`, `    return ${cls}(`, ...args.map((a) => `        ${a},`), `    )`].join("\n");
}

const normal = (std: number): Init => ({ kind: "normal", std });
const constant = (value: number): Init => ({ kind: "const", value });

function normParams(prefix: string, n: NormSpec, group: number): ExportedParam[] {
  const out: ExportedParam[] = [];
  if (n.gain?.trainable) out.push({ name: `${prefix}.gain`, shape: [group], init: constant(n.gain.init), decay: false, lrScale: 1 });
  if (n.kind === "layernorm" && n.bias) {
    if (!n.gain?.trainable) throw new ExportError(`${prefix}: a layernorm with a bias needs a trainable gain (fogc's lowering requires it)`);
    out.push({ name: `${prefix}.bias`, shape: [group], init: constant(0), decay: false, lrScale: 1 });
  }
  return out;
}

function attentionParams(prefix: string, a: AttentionSpec, m: CheckedModel): ExportedParam[] {
  const outStd = m.initStd / Math.sqrt(2 * m.layers);
  const w = (name: string, rows: number, cols: number, std: number): ExportedParam => ({ name: `${prefix}.${name}.weight`, shape: [rows, cols], init: normal(std), decay: true, lrScale: 1 });
  const reg = (which: "q" | "k"): ExportedParam[] => {
    const qk = a.qkNorm;
    if (qk.kind === "norm") return normParams(`${prefix}.${which}_norm`, qk.norm, m.headDim);
    if (qk.kind === "tanh" && qk.trainable) return [{ name: `${prefix}.alpha_${which}`, shape: [1], init: constant(qk.alpha), decay: false, lrScale: 1 }];
    return [];
  };
  return [
    w("q", m.heads * m.headDim, m.width, m.initStd),
    w("k", m.kvHeads * m.headDim, m.width, m.initStd),
    w("v", m.kvHeads * m.headDim, m.width, m.initStd),
    ...reg("q"),
    ...reg("k"),
    w("o", m.width, m.heads * m.headDim, outStd),
  ];
}

function mlpParams(prefix: string, c: MlpSpec, m: CheckedModel): ExportedParam[] {
  const outStd = m.initStd / Math.sqrt(2 * m.layers);
  const act = c.activation;
  const out: ExportedParam[] = [{ name: `${prefix}.fc1.weight`, shape: [isGated(act) ? 2 * c.width : c.width, m.width], init: normal(m.initStd), decay: true, lrScale: 1 }];
  if (act.kind === "xielu") {
    out.push({ name: `${prefix}.rho_p`, shape: [1], init: { kind: "softplus_inv", value: act.alphaP }, decay: false, lrScale: 1 });
    out.push({ name: `${prefix}.rho_n`, shape: [1], init: { kind: "softplus_inv", value: act.alphaN - act.beta }, decay: false, lrScale: 1 });
  }
  out.push({ name: `${prefix}.fc2.weight`, shape: [m.width, c.width], init: normal(outStd), decay: true, lrScale: 1 });
  return out;
}

// ---- the block tree → a Block class ---------------------------------------------------------------

interface BlockCode {
  /** `self.ATTR = CTOR` lines of Block.__init__, in fogc's lowering order. */
  init: string[];
  /** Block.forward body. */
  body: string[];
  /** This layer's parameters in fogc's declaration order. */
  params: ExportedParam[];
}

/** Walks the block statements for one layer with lower-model.ts's naming (unique suffixes per occurrence). */
function walkBlock(m: CheckedModel, layer: number): BlockCode {
  const uses = new Map<string, number>();
  const unique = (base: string): string => {
    const n = uses.get(base) ?? 0;
    uses.set(base, n + 1);
    return n === 0 ? base : `${base}${n}`;
  };
  const prefix = `b${layer}.`;
  const attrOf = (full: string, what: string): string => checkAttr(full.slice(prefix.length), what);
  const code: BlockCode = { init: [], body: [], params: [] };
  const expr = (e: BlockExpr): string => {
    switch (e.kind) {
      case "var":
        return pyLocal(e.name);
      case "add": {
        const l = expr(e.left);
        const r = expr(e.right);
        unique(`${prefix}residual`);
        return `(${l} + ${r})`;
      }
      case "scale": {
        const x = expr(e.input);
        unique(`${prefix}scale`);
        return `(${pyFloat(e.factor)} * ${x})`;
      }
      case "norm": {
        const x = expr(e.input);
        const name = unique(`${prefix}norm`);
        const attr = attrOf(name, "norm");
        code.init.push(`self.${attr} = ${normSpecPy(e.norm)}.make(${pyInt(m.width)})`);
        code.params.push(...normParams(name, e.norm, m.width));
        return `self.${attr}(${x})`;
      }
      case "layerscale": {
        const x = expr(e.input);
        const name = unique(`${prefix}layerscale`);
        const attr = attrOf(name, "layerscale");
        code.init.push(`self.${attr} = LayerScale(${pyInt(m.width)}, ${pyFloat(e.init)})`);
        code.params.push({ name: `${name}.gamma`, shape: [m.width], init: constant(e.init), decay: false, lrScale: 1 });
        return `self.${attr}(${x})`;
      }
      case "call": {
        const x = expr(e.input);
        const c = e.component;
        const name = unique(`${prefix}${c.name}`);
        const attr = attrOf(name, `component`);
        code.init.push(`self.${attr} = make_${c.name}(layer)`);
        code.params.push(...(c.kind === "attention" ? attentionParams(name, c, m) : mlpParams(name, c, m)));
        return `self.${attr}(${x})`;
      }
    }
  };
  for (const st of m.block) {
    const v = expr(st.expr);
    code.body.push(`${pyLocal(st.target)} = ${v.startsWith("(") && v.endsWith(")") && balanced(v.slice(1, -1)) ? v.slice(1, -1) : v}`);
  }
  code.body.push("return h");
  return code;
}

/** Whether parentheses in `s` never close below depth 0 (so the outer pair of `(s)` may be dropped). */
function balanced(s: string): boolean {
  let d = 0;
  for (const ch of s) {
    d += ch === "(" ? 1 : ch === ")" ? -1 : 0;
    if (d < 0) return false;
  }
  return d === 0;
}

/** A block expression written back in .fog syntax (for docstrings and the README). */
export function fogExpr(e: BlockExpr): string {
  switch (e.kind) {
    case "var":
      return e.name;
    case "add":
      return `${fogExpr(e.left)} + ${fogExpr(e.right)}`;
    case "scale":
      return `${e.factor} * ${e.input.kind === "add" ? `(${fogExpr(e.input)})` : fogExpr(e.input)}`;
    case "norm": {
      const g = e.norm.gain;
      const gain = g === null ? "none" : g.trainable ? String(g.init) : `frozen(${g.init})`;
      return `${e.norm.kind}(${fogExpr(e.input)}, eps = ${e.norm.eps}, gain = ${gain})`;
    }
    case "layerscale":
      return `layerscale(${fogExpr(e.input)}, init = ${e.init})`;
    case "call":
      return `${e.component.name}(${fogExpr(e.input)})`;
  }
}

// ---- precision rules -----------------------------------------------------------------------------

const GEMMS_OF: Record<Component["kind"], GemmName[]> = { attention: ["qkv", "qk", "pv", "out"], mlp: ["fc1", "fc2"] };

function scalingPy(s: Scaling): string {
  switch (s.kind) {
    case "delayed":
      return `Scaling("delayed", history=${pyInt(s.history)}, margin=${pyFloat(s.margin)}, amax=${pyStr(s.amax)}, pow2=${pyBool(s.pow2)})`;
    case "current":
      return `Scaling("current", margin=${pyFloat(s.margin)}, pow2=${pyBool(s.pow2)})`;
    case "blockwise":
      return `Scaling("blockwise", activation_block=${pyTuple(s.activationBlock.map(pyInt))}, weight_block=${pyTuple(s.weightBlock.map(pyInt))}, pow2=${pyBool(s.pow2)})`;
  }
}

const rulePy = (r: PrecisionRule): string =>
  `Rule(mode=${pyStr(r.mode)}, activations=${pyStr(r.activations)}, weights=${pyStr(r.weights)}, gradients=${pyStr(r.gradients)}, scaling=${scalingPy(r.scaling)}, saturate=${pyBool(r.saturate)})`;

interface GemmRule {
  layer: number | undefined;
  component: string;
  gemm: GemmName;
  rule: number;
  fp8: boolean;
}

/** Every GEMM's resolved rule (fogc's ruleFor), deduplicated into a rule list. */
function resolveRules(m: CheckedModel): { rules: PrecisionRule[]; gemms: GemmRule[] } {
  const rules: PrecisionRule[] = [];
  const index = new Map<string, number>();
  const gemms: GemmRule[] = [];
  const add = (layer: number | undefined, component: string, gemm: GemmName): void => {
    const rule = ruleFor(m.precision, layer, component, gemm);
    const key = JSON.stringify(rule);
    let i = index.get(key);
    if (i === undefined) {
      i = rules.length;
      rules.push(rule);
      index.set(key, i);
    }
    gemms.push({ layer, component, gemm, rule: i, fp8: isFp8(rule, gemm) });
  };
  for (let l = 0; l < m.layers; l++) for (const c of m.components) for (const g of GEMMS_OF[c.kind]) add(l, c.name, g);
  add(undefined, "head", "head");
  return { rules, gemms };
}

/** What each FP8 target does with this model's rules: lines for fp8.py's docstring and the README. */
function fp8Honours(rules: PrecisionRule[], gemms: GemmRule[]): { te: string[]; torch: string[]; summary: string } {
  const used = [...new Set(gemms.filter((g) => g.fp8).map((g) => g.rule))].map((i) => rules[i]);
  const fp8Linear = gemms.filter((g) => g.fp8 && g.gemm !== "qk" && g.gemm !== "pv").length;
  const fp8Attn = gemms.filter((g) => g.fp8 && g.gemm === "pv").length;
  const summary = used.length
    ? `${fp8Linear} FP8 linear GEMMs, ${fp8Attn} FP8 attentions (of ${gemms.filter((g) => g.gemm !== "qk" && g.gemm !== "pv").length} linear GEMMs, ${gemms.filter((g) => g.gemm === "pv").length} attentions)`
    : "no FP8 GEMM: the recipe is BF16 everywhere (--precision recipe = bf16 autocast)";
  const te: string[] = [];
  const torch: string[] = [];
  if (!used.length) return { te, torch, summary };
  te.push("which GEMMs are FP8, per layer/component/GEMM as resolved by fogc (FP8 linears become te.Linear)");
  torch.push("which linear GEMMs are FP8, per layer/component/GEMM as resolved by fogc");
  torch.push("per-operand formats (activations, weights, gradients), saturating or not");
  const kinds = new Set(used.map((r) => r.scaling.kind));
  if (kinds.has("delayed")) {
    te.push("delayed scaling: amax history length, margin, amax algorithm (DelayedScaling)");
    torch.push("delayed scaling exactly as fogc's ScaleState: history, margin, amax max|most_recent, pow2, update once per step");
  }
  if (kinds.has("current")) {
    te.push("current scaling (Float8CurrentScaling, TE >= 2.2)");
    torch.push("current scaling from each tensor's own amax (margin, pow2)");
  }
  if (kinds.has("blockwise")) {
    te.push("blockwise scaling (Float8BlockScaling, TE >= 2.3; 1x128 / 128x128 blocks only)");
    torch.push("NOT blockwise scaling: it raises NotImplementedError (use Transformer Engine)");
  }
  if (fp8Attn) {
    te.push("FP8 attention (fp8dpa): te.DotProductAttention with fp8_dpa = True");
    torch.push("NOT FP8 attention: Q.K^T and P.V run in BF16 through SDPA");
  }
  const notTe: string[] = [];
  if (used.some((r) => r.scaling.kind === "delayed" && r.scaling.pow2)) notTe.push("pow2 delayed scales");
  if (used.some((r) => !r.saturate)) notTe.push("saturate = false");
  if (used.some((r) => r.activations !== r.weights)) notTe.push("different activation and weight formats");
  if (used.some((r) => r.activations === "e5m2" && r.gradients === "e4m3")) notTe.push("E5M2 forward with E4M3 backward");
  if (used.some((r) => r.scaling.kind === "delayed" && !Number.isInteger(r.scaling.margin))) notTe.push("fractional margins");
  if (notTe.length) te.push(`NOT ${notTe.join(", ")}: those GEMMs fall back to the plain PyTorch target (report line)`);
  te.push("amaxes are reduced over the data-parallel group by TE at each autocast exit (per micro-batch), not once per step as fogc");
  torch.push("amaxes all-reduced (MAX) over the process group once per optimizer step, as fogc updates once per step");
  return { te, torch, summary };
}

// ---- files ---------------------------------------------------------------------------------------

function header(m: CheckedModel, what: string): string {
  return `# Generated by 'fogc export --to pytorch' from ${m.file} (model ${m.name}); re-export instead of editing.\n# ${what}\n`;
}

function modelPy(m: CheckedModel, params: ExportedParam[], block: BlockCode, shapesHash: string, fogFile: string): string {
  const L = m.layers;
  const docBlock = m.block.map((s) => `        ${s.probe ? "probe " : ""}${s.target} = ${fogExpr(s.expr)}`).join("\n");
  const config = [
    ["name", pyStr(m.name)],
    ["vocab", pyInt(m.vocab)],
    ["context", pyInt(m.context)],
    ["width", pyInt(m.width)],
    ["layers", pyInt(L)],
    ["heads", pyInt(m.heads)],
    ["kv_heads", pyInt(m.kvHeads)],
    ["head_dim", pyInt(m.headDim)],
    ["mlp_width", pyInt(m.mlpWidth)],
    ["init_std", pyFloat(m.initStd)],
    ["embed_multiplier", pyFloat(m.embedding.multiplier)],
    ["tied_head", pyBool(m.head.tied)],
    ["final_norm", pyBool(m.head.norm !== null)],
  ];
  const lines: string[] = [
    header(m, "The model as a torch.nn.Module with fogc's parameter names and layouts (see README.md)."),
    `"""${m.name}: ${L} layers, width ${m.width}, ${m.heads} heads (${m.kvHeads} kv) of ${m.headDim}, vocab ${m.vocab}.`,
    ``,
    `Each layer runs the .fog block`,
    docBlock,
    `Embedding multiplier ${m.embedding.multiplier}; ${m.head.norm ? `final ${m.head.norm.kind}` : "no final norm"}; ${m.head.tied ? "LM head tied to embed.weight" : "untied LM head"}.`,
    `"""`,
    `from __future__ import annotations`,
    ``,
    `import contextlib`,
    `import json`,
    `import math`,
    ``,
    `import torch`,
    `import torch.nn as nn`,
    `import torch.nn.functional as F`,
    ``,
    `try:`,
    `    from . import data as _data`,
    `    from . import fp8 as _fp8`,
    `    from . import safetensors_lite as _st`,
    `except ImportError:  # run as a script from the package directory`,
    `    import data as _data`,
    `    import fp8 as _fp8`,
    `    import safetensors_lite as _st`,
    ``,
    `MODEL_NAME = ${pyStr(m.name)}`,
    `FOG_FILE = ${pyStr(fogFile)}`,
    `TOKENIZER = ${pyStr(m.train.tokenizer)}`,
    `CHECKPOINT_FORMAT = ${pyStr(CHECKPOINT_FORMAT)}`,
    `# fogc's paramShapesHash: sha256 of the [name, shape] list in declaration order, first 16 hex digits.`,
    `SHAPES_HASH = ${pyStr(shapesHash)}`,
    `CONFIG = {`,
    ...config.map(([k, v]) => `    ${pyStr(k)}: ${v},`),
    `}`,
    ``,
    `# (name, shape, init, weight decay, lr multiplier) of every parameter, in fogc's declaration order.`,
    `PARAMS = [`,
    ...params.map((p) => `    (${pyStr(p.name)}, ${pyTuple(p.shape.map(pyInt))}, ${pyInit(p.init)}, ${pyBool(p.decay)}, ${pyFloat(p.lrScale)}),`),
    `]`,
    PY_LAYERS,
    ``,
    `# ---- this model's components and block ----------------------------------------------------------`,
    ``,
    ...m.components.flatMap((c) => [componentFactoryPy(c, m), "", ""]),
    `class Block(nn.Module):`,
    `    """One layer: ${m.block.map((s) => `${s.target} = ${fogExpr(s.expr)}`).join("; ")}."""`,
    ``,
    `    def __init__(self, layer):`,
    `        super().__init__()`,
    ...block.init.map((l) => `        ${l}`),
    ``,
    `    def forward(self, h):`,
    ...block.body.map((l) => `        ${l}`),
    ``,
    ``,
    ...modelClassPy(m),
  ];
  return lines.join("\n") + "\n";
}

function modelClassPy(m: CheckedModel): string[] {
  const init = [
    `self.embed = nn.Embedding(${pyInt(m.vocab)}, ${pyInt(m.width)})`,
    `for layer in range(${pyInt(m.layers)}):`,
    `    self.add_module("b%d" % layer, Block(layer))`,
    m.head.norm ? `self.final_norm = ${normSpecPy(m.head.norm)}.make(${pyInt(m.width)})` : `self.final_norm = None`,
    ...(m.head.tied ? [] : [`self.head = Linear(${pyInt(m.width)}, ${pyInt(m.vocab)}, "head", None, "head")`]),
    `self.reset_parameters()`,
  ];
  const forward = [
    `with self.autocast_context(tokens.device):`,
    `    h = self.embed(tokens)`,
    ...(m.embedding.multiplier !== 1 ? [`    h = h * ${pyFloat(m.embedding.multiplier)}`] : []),
    `    with _fp8.region(self):`,
    `        for layer in range(${pyInt(m.layers)}):`,
    `            h = getattr(self, "b%d" % layer)(h)`,
    ...(m.head.norm ? [`    h = self.final_norm(h)`] : []),
    m.head.tied ? `    logits = linear(h, self.embed.weight, self.head_mode, self.head_fp8)` : `    logits = self.head(h)`,
    `if targets is None:`,
    `    return logits`,
    `return F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), targets.reshape(-1))`,
  ];
  return [
    `class Model(FogModelBase):`,
    `    """${m.name}: tokens [batch, seq] (int64) -> logits [batch, seq, vocab], or the mean cross-entropy`,
    `    against targets. set_precision() picks fp32, bf16_gemm_inputs (fogc --precision bf16), bf16 or recipe."""`,
    ``,
    `    def __init__(self):`,
    `        super().__init__()`,
    ...init.map((l) => `        ${l}`),
    ``,
    `    def forward(self, tokens, targets=None):`,
    ...forward.map((l) => `        ${l}`),
  ];
}

function fp8Py(m: CheckedModel, rules: PrecisionRule[], gemms: GemmRule[]): string {
  const honours = fp8Honours(rules, gemms);
  const recipe = m.precision;
  const byKey = new Map<string, string[]>();
  for (const g of gemms) {
    const k = g.layer === undefined ? "head" : `layer ${g.layer}`;
    const entry = `(${g.layer === undefined ? "None" : pyInt(g.layer)}, ${pyStr(g.component)}, ${pyStr(g.gemm)}): ${g.rule}`;
    byKey.set(k, [...(byKey.get(k) ?? []), entry]);
  }
  const doc = [
    `"""FP8 for the exported ${m.name}: the .fog precision recipe '${recipe.name}' (mode ${recipe.base.mode}, ${recipe.overrides.length} override${recipe.overrides.length === 1 ? "" : "s"}) on two targets.`,
    ``,
    `This model: ${honours.summary}. Embedding, norms, QK regulariser, RoPE, softmax, activations,`,
    `residual adds and the loss are never FP8 (papers.md section 3.3); the LM head only if an override says so.`,
    ...(honours.te.length
      ? [
          ``,
          `Transformer Engine target (used when transformer_engine imports; --fp8-backend te) honours:`,
          ...honours.te.map((l) => `  - ${l}`),
          ``,
          `Plain PyTorch target (torch._scaled_mm on sm89+, dequantised fp32 elsewhere; --fp8-backend torch) honours:`,
          ...honours.torch.map((l) => `  - ${l}`),
          ``,
          `Neither target transfers fogc's FP8 scale state from a checkpoint: an exported run starts its`,
          `slots fresh (scale 1, empty history), like a fresh 'fogc run'.`,
        ]
      : []),
    `"""`,
  ];
  return [
    header(m, "The .fog precision recipe as FP8 GEMMs: Transformer Engine when installed, else torch._scaled_mm."),
    ...doc,
    `from __future__ import annotations`,
    ``,
    `import contextlib`,
    `import warnings`,
    `from dataclasses import dataclass`,
    `from typing import Tuple`,
    ``,
    `import torch`,
    `import torch.distributed as dist`,
    ``,
    ``,
    `@dataclass(frozen=True)`,
    `class Scaling:`,
    `    kind: str`,
    `    history: int = 1`,
    `    margin: float = 0.0`,
    `    amax: str = "max"`,
    `    pow2: bool = False`,
    `    activation_block: Tuple[int, int] = (1, 128)`,
    `    weight_block: Tuple[int, int] = (128, 128)`,
    ``,
    ``,
    `@dataclass(frozen=True)`,
    `class Rule:`,
    `    mode: str`,
    `    activations: str`,
    `    weights: str`,
    `    gradients: str`,
    `    scaling: Scaling`,
    `    saturate: bool`,
    ``,
    ``,
    `RECIPE_NAME = ${pyStr(recipe.name)}`,
    `# The distinct rules of the recipe, and which one each GEMM follows: (layer, component, gemm) -> index;`,
    `# layer None is the LM head. Resolved by fogc's ruleFor (overrides included) at export time.`,
    `RULES = [`,
    ...rules.map((r) => `    ${rulePy(r)},`),
    `]`,
    `GEMM_RULES = {`,
    ...[...byKey.values()].map((entries) => `    ${entries.join(", ")},`),
    `}`,
    PY_FP8,
  ].join("\n");
}

function trainPy(m: CheckedModel): string {
  const t = m.train;
  const s = t.schedule;
  const sched = s.kind === "constant" ? `constant(warmup ${s.warmup})` : s.kind === "cosine" ? `cosine(warmup ${s.warmup}, min_lr ${s.minLr})` : `wsd(warmup ${s.warmup}, decay ${s.decay}, min_lr ${s.minLr})`;
  const o = t.optimizer;
  return [
    header(m, "Trains the exported model as 'fogc run' does; single process, or DDP / FSDP2 under torchrun."),
    `"""Training loop mirroring the .fog train section of ${m.name} (train_config.json holds it):`,
    `AdamW(lr ${o.lr}, betas (${o.beta1}, ${o.beta2}), eps ${o.eps}, weight decay ${o.weightDecay} on matrices only), clip ${o.clip},`,
    `schedule ${sched}, batch ${t.batch} x seq ${t.seqLen}, ${t.steps} steps, seed ${t.seed}, ${t.tokenizer} tokens.`,
    ``,
    `    python train.py [--steps N] [--precision recipe|bf16|bf16_gemm_inputs|fp32] [--data random|text:PATH|tokens:FILE]`,
    `    torchrun --nproc-per-node 8 train.py ...              # DDP (NCCL), one GPU per rank`,
    `    torchrun --nproc-per-node 2 train.py --dist-backend gloo   # ranks sharing one GPU`,
    `    torchrun --nproc-per-node 8 train.py --parallel fsdp2`,
    `"""`,
    `from __future__ import annotations`,
    PY_TRAIN,
  ].join("\n");
}

function readmeMd(m: CheckedModel, params: ExportedParam[], rules: PrecisionRule[], gemms: GemmRule[], shapesHash: string): string {
  const honours = fp8Honours(rules, gemms);
  const layer0 = params.filter((p) => p.name.startsWith("b0."));
  const top = params.filter((p) => !/^b\d+\./.test(p.name));
  const row = (p: ExportedParam): string => {
    const init = p.init.kind === "normal" ? `normal(0, ${p.init.std})` : p.init.kind === "const" ? `${p.init.value}` : `softplus⁻¹(${p.init.value})`;
    return `| \`${p.name}\` | [${p.shape.join(", ")}] | ${init} | ${p.decay ? "yes" : "no"} |`;
  };
  return [
    `# ${m.name} — PyTorch export`,
    ``,
    `Generated by \`fogc export --to pytorch\` from \`${m.file}\`. Needs only \`torch\` (Transformer Engine optional).`,
    `Re-export instead of editing: every file is a function of the \`.fog\` model.`,
    ``,
    `## Architecture`,
    ``,
    `${m.layers} layers, width ${m.width}, ${m.heads} query heads and ${m.kvHeads} kv heads of ${m.headDim}, vocabulary ${m.vocab}, embedding multiplier ${m.embedding.multiplier}, ${m.head.norm ? `final ${m.head.norm.kind}` : "no final norm"}, ${m.head.tied ? "LM head tied to the embedding" : "untied LM head"}. Each layer:`,
    ``,
    "```",
    ...m.block.map((s) => `${s.target} = ${fogExpr(s.expr)}`),
    "```",
    ``,
    `## Files`,
    ``,
    `| file | what |`,
    `|---|---|`,
    `| \`model.py\` | \`Model\` (nn.Module), \`PARAMS\` (manifest), \`load_fogc_checkpoint\`, \`load_fogc_moments\`, \`save_fogc_checkpoint\`, \`check_manifest\` |`,
    `| \`fp8.py\` | the precision recipe: per-GEMM rules, Transformer Engine recipe, plain \`torch._scaled_mm\` FP8 linear |`,
    `| \`train.py\` | the training loop of \`fogc run\` (AdamW groups, clip, schedule, sampler); DDP / FSDP2 under torchrun |`,
    `| \`launch_ddp.sh\` | \`torchrun --standalone --nproc-per-node N train.py ...\` |`,
    `| \`data.py\`, \`schedule.py\` | fogc's PRNG, init streams, batch sampler, schedules (plain Python) |`,
    `| \`safetensors_lite.py\` | reader/writer of fogc checkpoints (standard library; torch for tensors) |`,
    `| \`train_config.json\`, \`manifest.json\` | the train section and the parameter manifest as JSON |`,
    ``,
    `## Parameters (names and layouts = fogc's)`,
    ``,
    `fogc checkpoints (\`fogc run --checkpoint DIR\`) are safetensors files holding \`param.<name>\`, \`adam_m.<name>\`, \`adam_v.<name>\` (F32, the shapes below) plus FP8 scale state;`,
    `\`load_fogc_checkpoint(model, path[, optimizer])\` copies them into the module (shape hash \`${shapesHash}\` checked).`,
    `Linear weights are \`[out, in]\` (y = x·Wᵀ). Attention: separate q/k/v projections, query head *h* owns rows *h*·${m.headDim}…(*h*+1)·${m.headDim} of \`q.weight\` and reads kv head ⌊*h*/${m.heads / m.kvHeads}⌋. Gated MLPs: \`fc1.weight\` is \`[2F, D]\`, gate rows first, then up rows. QK-norm gains are \`[head_dim]\`, shared by the heads.`,
    ``,
    `| name | shape | init | weight decay |`,
    `|---|---|---|---|`,
    ...top.filter((p) => p.name === "embed.weight").map(row),
    ...layer0.map(row),
    ...(m.layers > 1 ? [`| \`b1.…\` … \`b${m.layers - 1}.…\` | as \`b0.…\` | | |`] : []),
    ...top.filter((p) => p.name !== "embed.weight").map(row),
    ``,
    `## Precision`,
    ``,
    `\`model.set_precision(mode)\`: \`fp32\`; \`bf16_gemm_inputs\` (fp32 compute, every GEMM operand — linear inputs and weights, attention q/k/v — rounded to bf16 in the forward and each GEMM's output gradient in the backward: the numerics of \`fogc run --precision bf16\`); \`bf16\` (autocast); \`recipe\` (bf16 autocast + the recipe's FP8 GEMMs, fp8.py).`,
    ``,
    `Recipe \`${m.precision.name}\`: ${honours.summary}.`,
    ...(honours.te.length
      ? [``, `Transformer Engine target:`, ...honours.te.map((l) => `- ${l}`), ``, `Plain PyTorch target:`, ...honours.torch.map((l) => `- ${l}`)]
      : []),
    ``,
    `## Use`,
    ``,
    "```python",
    `from model import Model, load_fogc_checkpoint   # from the package directory (or: from PACKAGE import ...)`,
    `model = Model().cuda()`,
    `model.set_precision("bf16_gemm_inputs")`,
    `load_fogc_checkpoint(model, "runs/ckpt/step-00000100.safetensors")`,
    `loss = model(tokens, targets)                    # tokens, targets: int64 [batch, seq]`,
    "```",
    ``,
    "```sh",
    `python train.py --steps 100 --precision recipe --data text:corpus.txt`,
    `python train.py --from-fogc runs/ckpt/step-00000100.safetensors --data tokens:train.bin   # continue a fogc run`,
    `NPROC=8 ./launch_ddp.sh --precision recipe                         # DDP over 8 GPUs (NCCL)`,
    `NPROC=2 ./launch_ddp.sh --dist-backend gloo --data random          # 2 ranks sharing one GPU`,
    "```",
    ``,
    `\`--data tokens:FILE\` takes the exact token stream fogc trains on (\`node --import tsx bench/export-batch.ts FILE.fog --stream FILE\` in the fogc repo); with it and the same seed, train.py draws the same batches as \`fogc run\`. \`--init fogc\` reproduces fogc's initial weights. Kurtosis probes are not exported.`,
    ``,
  ].join("\n");
}

const LAUNCH_DDP = `#!/usr/bin/env bash
# Data-parallel training of the exported model: torchrun with NPROC processes on this host
# (default: one per GPU). Extra arguments go to train.py, e.g. --dist-backend gloo --parallel fsdp2.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
nproc="\${NPROC:-$(python3 -c 'import torch; print(max(1, torch.cuda.device_count()))')}"
exec torchrun --standalone --nproc-per-node "$nproc" "$here/train.py" "$@"
`;

function initPy(m: CheckedModel): string {
  return [
    header(m, "Package entry: from PACKAGE import Model, load_fogc_checkpoint, ..."),
    `from .model import CONFIG, PARAMS, SHAPES_HASH, Model, check_manifest, load_fogc_checkpoint, load_fogc_moments, save_fogc_checkpoint  # noqa: F401`,
    ``,
  ].join("\n");
}

// ---- entry -----------------------------------------------------------------------------------------

/** The Python package for `model`: model.py, fp8.py, train.py and helpers, keyed by file name. */
export function exportPytorch(model: CheckedModel, options: ExportOptions = {}): PytorchExport {
  for (const c of model.components) checkAttr(c.name, `component`);
  const fogFile = options.fogFile ?? resolve(model.file);
  const blocks = Array.from({ length: model.layers }, (_, l) => walkBlock(model, l));
  const params: ExportedParam[] = [];
  params.push({ name: "embed.weight", shape: [model.vocab, model.width], init: normal(model.embedding.std), decay: true, lrScale: 1 });
  for (const b of blocks) params.push(...b.params);
  if (model.head.norm) params.push(...normParams("final_norm", model.head.norm, model.width));
  if (!model.head.tied) params.push({ name: "head.weight", shape: [model.vocab, model.width], init: normal(model.head.std), decay: true, lrScale: 1 });

  // The emitters name parameters themselves; fogc's own lowering must agree, or the export is wrong.
  const graph = lowerModel(model, { batch: 1, seqLen: 2 });
  const want = paramNodes(graph).map((p) => ({ name: p.name, shape: p.shape, init: p.attrs.init, decay: p.attrs.decay, lrScale: p.attrs.lrScale }));
  if (JSON.stringify(want) !== JSON.stringify(params)) {
    const got = new Map(params.map((p) => [p.name, JSON.stringify(p)]));
    const diff = want.find((p) => got.get(p.name) !== JSON.stringify(p)) ?? params.find((p) => !want.some((w) => w.name === p.name));
    throw new ExportError(`internal: the exported parameters differ from fogc's lowering (first difference: ${JSON.stringify(diff)})`);
  }
  const shapesHash = paramShapesHash(graph);
  const { rules, gemms } = resolveRules(model);
  const dataPath = model.train.data.kind === "path" ? resolve(resolve(model.file, ".."), model.train.data.path) : null;

  const trainConfig = {
    name: model.name,
    fog_file: fogFile,
    data_path: dataPath,
    shapes_hash: shapesHash,
    train: model.train,
    precision: { recipe: model.precision.name, mode: model.precision.base.mode, overrides: model.precision.overrides.length },
  };
  const manifest = {
    model: model.name,
    fog_file: fogFile,
    shapes_hash: shapesHash,
    checkpoint_format: CHECKPOINT_FORMAT,
    params: params.map((p) => ({ name: p.name, shape: p.shape, init: p.init, decay: p.decay, lr_scale: p.lrScale })),
  };
  const files: Record<string, string> = {
    "__init__.py": initPy(model),
    "model.py": modelPy(model, params, blocks[0], shapesHash, fogFile),
    "fp8.py": fp8Py(model, rules, gemms),
    "train.py": trainPy(model),
    "data.py": PY_DATA,
    "schedule.py": PY_SCHEDULE,
    "safetensors_lite.py": PY_SAFETENSORS,
    "train_config.json": JSON.stringify(trainConfig, null, 2) + "\n",
    "manifest.json": JSON.stringify(manifest, null, 2) + "\n",
    "launch_ddp.sh": LAUNCH_DDP,
    "README.md": readmeMd(model, params, rules, gemms, shapesHash),
  };
  return { files, params, shapesHash };
}

/**
 * Writes an export's files into `dir` atomically: a temp directory beside it, then a rename (an
 * earlier export in `dir` is moved aside and deleted after). Refuses a non-empty `dir` that holds no
 * manifest.json (not an earlier export). Returns the written paths.
 */
export function writePackage(dir: string, files: Record<string, string>): string[] {
  const target = resolve(dir);
  mkdirSync(dirname(target), { recursive: true });
  let old: string | undefined;
  if (existsSync(target)) {
    if (!statSync(target).isDirectory()) throw new ExportError(`${dir} exists and is not a directory`);
    const names = readdirSync(target);
    if (names.length && !names.includes("manifest.json")) throw new ExportError(`${dir} is not empty and holds no earlier export (no manifest.json); choose a new or empty directory`);
    old = `${target}.old-${process.pid}`;
  }
  const tmp = `${target}.tmp-${process.pid}`;
  rmSync(tmp, { recursive: true, force: true });
  mkdirSync(tmp);
  try {
    for (const [name, text] of Object.entries(files)) writeFileSync(join(tmp, name), text, { mode: name.endsWith(".sh") ? 0o755 : 0o644 });
    if (old) renameSync(target, old);
    try {
      renameSync(tmp, target);
    } catch (e) {
      if (old) renameSync(old, target);
      throw e;
    }
  } catch (e) {
    rmSync(tmp, { recursive: true, force: true });
    throw e;
  }
  if (old) rmSync(old, { recursive: true, force: true });
  return Object.keys(files).map((n) => join(dir, n));
}
