// AST → CheckedModel: resolves imports and `extends`, evaluates property expressions, applies
// defaults and validates every value, collecting all errors of a file as positioned diagnostics.
import type { Attribute, Expr, Member, Section } from "../grammar/ast.js";
import { type Diagnostic, type Span, error, sortDiagnostics, warning } from "../grammar/diagnostics.js";
import { Fields, checkNum, checkSym, type Entry } from "./fields.js";
import type { GemmName } from "./ir.js";
import type {
  Activation,
  AttentionSpec,
  BlockExpr,
  BlockStatement,
  CheckedModel,
  Component,
  Gain,
  MlpSpec,
  NormSpec,
  ProbeSpec,
  QkNorm,
  TrainSpec,
} from "./model.js";
import { PROBE_TENSORS } from "./model.js";
import { checkRecipe, type RecipeSource } from "./check-precision.js";
import { type ResolveOptions, type SourceFile, hint, resolve } from "./resolve.js";
import { type Scope, type Value, evaluate, describe } from "./values.js";

export interface CheckOptions extends ResolveOptions {
  /** Replaces the mode of the model's recipe (`fogc run --precision`). */
  precision?: "bf16" | "fp8" | "fp8dpa";
}

export interface CheckResult {
  model?: CheckedModel;
  diagnostics: Diagnostic[];
  files: Map<string, SourceFile>;
}

const SIZE_KEYS = ["vocab", "context", "width", "layers", "heads", "kv_heads", "head_dim", "mlp_width", "init_std", "precision"];
const MODEL_SECTIONS = ["embedding", "head", "attention", "mlp", "block", "precision", "probes", "train"];

export function check(entry: string, options: CheckOptions = {}): CheckResult {
  const resolved = resolve(entry, options);
  const diags = [...resolved.diagnostics];
  const done = (model?: CheckedModel): CheckResult => ({ model, diagnostics: sortDiagnostics(diags), files: resolved.files });
  if (!resolved.model || diags.some((d) => d.severity === "error")) return done();
  const { decl, members } = resolved.model;

  const attrs = members.filter((m): m is Attribute => m.kind === "attribute");
  const sections = members.filter((m): m is Section => m.kind === "section");
  const scope = modelScope(attrs, diags);

  for (const a of attrs) {
    if (a.modifier !== undefined && a.modifier !== "let")
      diags.push(error(a.modifierSpan ?? a.keySpan, `unknown modifier '${a.modifier}' (only 'let' defines a model-level constant)`));
    else if (a.modifier === undefined && !SIZE_KEYS.includes(a.key))
      diags.push(error(a.keySpan, `unknown model property '${a.key}'`, hint(a.key, SIZE_KEYS) ?? ["write `let " + a.key + " = ...` to define a constant of your own"]));
  }
  for (const s of sections) {
    if (!MODEL_SECTIONS.includes(s.type)) diags.push(error(s.typeSpan, `unknown section '${s.type}' in model '${decl.name}'`, hint(s.type, MODEL_SECTIONS)));
  }

  const size = (key: string, fallback: number | undefined, opts: { min?: number } = { min: 1 }): number => {
    const a = attrs.find((x) => x.key === key && x.modifier === undefined);
    if (!a) {
      if (fallback === undefined) diags.push(error(decl.nameSpan, `model '${decl.name}' needs '${key}'`));
      return fallback ?? NaN;
    }
    const v = scope.lookup(key, a.keySpan);
    if (v === undefined || Number.isNaN(v)) return NaN; // its error is already reported
    return checkNum({ kind: "num", value: v, span: a.value.span }, key, { int: key !== "init_std", ...opts }, diags) ?? NaN;
  };
  const vocab = size("vocab", undefined, { min: 2 });
  const context = size("context", undefined);
  const width = size("width", undefined);
  const layers = size("layers", undefined);
  const heads = size("heads", undefined);
  const kvHeads = size("kv_heads", heads);
  let headDim = NaN;
  const headDimAttr = attrs.find((x) => x.key === "head_dim");
  if (headDimAttr) headDim = size("head_dim", undefined);
  else if (Number.isNaN(width) || Number.isNaN(heads)) headDim = NaN;
  else if (width % heads !== 0) {
    const a = attrs.find((x) => x.key === "heads");
    diags.push(error(a?.value.span ?? decl.nameSpan, `width ${width} is not divisible by heads ${heads}`, ["set head_dim explicitly, or choose heads dividing width"]));
  } else headDim = width / heads;
  if (!Number.isNaN(heads) && !Number.isNaN(kvHeads) && heads % kvHeads !== 0) {
    const a = attrs.find((x) => x.key === "kv_heads");
    diags.push(error(a?.value.span ?? decl.nameSpan, `heads ${heads} is not a multiple of kv_heads ${kvHeads}`));
  }
  const mlpWidth = size("mlp_width", 4 * width);
  const initStd = size("init_std", 0.02, {});
  if (diags.some((d) => d.severity === "error")) return done();

  const sectionOf = (type: string): Section | undefined => sections.find((s) => s.type === type);
  const fieldsOf = (s: Section | undefined, what: string): Fields => {
    const entries = new Map<string, Entry>();
    for (const m of s?.members ?? []) {
      if (m.kind === "section") {
        diags.push(error(m.typeSpan, `unexpected section '${m.type}' inside ${what}`));
        continue;
      }
      if (m.modifier !== undefined) diags.push(error(m.modifierSpan ?? m.keySpan, `unexpected '${m.modifier}' inside ${what}`));
      const v = evaluate(m.value, scope, diags);
      if (v) entries.set(m.key, { value: v, keySpan: m.keySpan });
    }
    return new Fields(what, entries, diags, s?.typeSpan ?? decl.nameSpan);
  };

  // embedding and head
  const emb = fieldsOf(sectionOf("embedding"), "embedding");
  const embedding = { multiplier: emb.num("multiplier", 1, { above: 0 }), std: emb.num("std", initStd, { above: 0 }) };
  emb.done();
  const headF = fieldsOf(sectionOf("head"), "head");
  const headNormV = headF.value("norm");
  const head = {
    tied: headF.bool("tied", true),
    norm: headNormV ? decodeNorm(headNormV, "norm", diags, { allowNone: true }) : null,
    std: headF.num("std", initStd, { above: 0 }),
  };
  headF.done();

  // components
  const components: Component[] = [];
  for (const s of sections.filter((x) => x.type === "attention" || x.type === "mlp")) {
    const name = s.labels.length === 1 && s.labels[0].kind === "path" && s.labels[0].parts.length === 1 ? s.labels[0].parts[0] : undefined;
    if (!name) {
      diags.push(error(s.typeSpan, `${s.type} needs a name: \`${s.type} NAME { ... }\``));
      continue;
    }
    if (components.some((c) => c.name === name)) {
      diags.push(error(s.labels[0].span, `component '${name}' is defined twice`));
      continue;
    }
    const f = fieldsOf(s, `${s.type} '${name}'`);
    components.push(s.type === "attention" ? decodeAttention(f, name, s.span, headDim, diags) : decodeMlp(f, name, s.span, mlpWidth, diags));
    f.done();
  }

  const blockSection = sectionOf("block");
  const block = blockSection ? decodeBlock(blockSection, components, scope, diags) : [];
  if (!blockSection) diags.push(error(decl.nameSpan, `model '${decl.name}' has no 'block { ... }' section`));

  // precision: `precision = NAME | MODE` names the base recipe; a `precision { }` section refines it.
  const precAttr = attrs.find((a) => a.key === "precision");
  const src: RecipeSource = { recipes: resolved.recipes, scope, components, layers, diags };
  const precision = checkRecipe(precAttr, sectionOf("precision"), src, options.precision);

  const probes = decodeProbes(fieldsOf(sectionOf("probes"), "probes"), diags);
  const train = decodeTrain(fieldsOf(sectionOf("train"), "train"), context, vocab, diags);

  if (precision.base.mode === "fp8dpa") {
    for (const c of components)
      if (c.kind === "mlp" && c.activation.kind === "smooth_swiglu")
        diags.push(warning(c.span, "Smooth-SwiGLU models diverged under FP8DPA in the FOG study (papers.md §9.1); consider mode = fp8"));
  }
  if (diags.some((d) => d.severity === "error")) return done();
  return done({
    name: decl.name,
    file: entry,
    span: decl.span,
    vocab,
    context,
    width,
    layers,
    heads,
    kvHeads,
    headDim,
    mlpWidth,
    initStd,
    embedding,
    head,
    components,
    block,
    precision,
    probes,
    train,
  });
}

/** Model-level properties as a lazily evaluated scope (so `head_dim = width / heads` follows overrides). */
function modelScope(attrs: Attribute[], diags: Diagnostic[]): Scope {
  const byKey = new Map(attrs.filter((a) => a.key !== "precision").map((a) => [a.key, a]));
  const cache = new Map<string, number | undefined>();
  const active = new Set<string>();
  const scope: Scope = {
    names: () => byKey.keys(),
    lookup(name, span) {
      if (cache.has(name)) return cache.get(name);
      const a = byKey.get(name);
      if (!a) return undefined;
      if (active.has(name)) {
        diags.push(error(span, `'${name}' is defined in terms of itself`));
        return NaN;
      }
      active.add(name);
      const v = evaluate(a.value, scope, diags);
      active.delete(name);
      let x: number | undefined;
      if (v?.kind === "num") x = v.value;
      else if (v) diags.push(error(v.span, `'${name}' must be a number, found ${describe(v)}`));
      cache.set(name, x ?? NaN);
      return x ?? NaN;
    },
  };
  return scope;
}

function decodeGain(v: Value, key: string, diags: Diagnostic[]): Gain | null | undefined {
  if (v.kind === "sym" && v.name === "none") return null;
  if (v.kind === "num") return { trainable: true, init: v.value };
  if (v.kind === "call" && v.name === "frozen") {
    const x = v.args.length === 1 && v.named.size === 0 ? checkNum(v.args[0], key, {}, diags) : undefined;
    if (v.args.length !== 1 || v.named.size) diags.push(error(v.span, "frozen(...) takes one number: frozen(1)"));
    return x === undefined ? undefined : { trainable: false, init: x };
  }
  diags.push(error(v.span, `'${key}' must be a number (trainable, initial value), frozen(value) or none; found ${describe(v)}`));
  return undefined;
}

/** rmsnorm | layernorm | rmsnorm(eps = 1e-5, gain = 1) | none (when allowed). */
export function decodeNorm(v: Value, key: string, diags: Diagnostic[], opts: { allowNone?: boolean; defaultGain?: Gain | null } = {}): NormSpec | null {
  if (opts.allowNone && v.kind === "sym" && v.name === "none") return null;
  const kind = v.kind === "sym" || v.kind === "call" ? v.name : undefined;
  if (kind !== "rmsnorm" && kind !== "layernorm") {
    const allowed = opts.allowNone ? ["rmsnorm", "layernorm", "none"] : ["rmsnorm", "layernorm"];
    diags.push(error(v.span, `'${key}' must be ${allowed.join(", ")}; found ${describe(v)}`, kind ? hint(kind, allowed) : undefined));
    return null;
  }
  let eps = 1e-5;
  let gain: Gain | null = opts.defaultGain === undefined ? { trainable: true, init: 1 } : opts.defaultGain;
  let bias = kind === "layernorm";
  if (v.kind === "call") {
    const f = Fields.ofCall(v, diags);
    eps = f.num("eps", eps, { above: 0 });
    const g = f.value("gain");
    if (g) gain = decodeGain(g, "gain", diags) ?? gain;
    if (kind === "layernorm") bias = f.bool("bias", true);
    f.done();
  }
  return { kind, eps, gain, bias, span: v.span };
}

function decodeAttention(f: Fields, name: string, span: Span, headDim: number, diags: Diagnostic[]): AttentionSpec {
  let qkNorm: QkNorm = { kind: "none" };
  const q = f.value("qk_norm");
  if (q && !(q.kind === "sym" && q.name === "none")) {
    if ((q.kind === "call" || q.kind === "sym") && q.name === "tanh") {
      let alpha = 1;
      let trainable = true;
      if (q.kind === "call") {
        const t = Fields.ofCall(q, diags);
        alpha = t.num("alpha", 1, { above: 0 });
        trainable = t.bool("trainable", true);
        t.done();
      }
      qkNorm = { kind: "tanh", alpha, trainable, span: q.span };
    } else {
      const norm = decodeNorm(q, "qk_norm", diags);
      if (norm) qkNorm = { kind: "norm", norm };
    }
  }
  let rope: AttentionSpec["rope"] = null;
  const r = f.value("rope");
  if (r && !(r.kind === "sym" && r.name === "none")) {
    if ((r.kind === "call" || r.kind === "sym") && r.name === "rope") {
      let base = 10000;
      let scaling: NonNullable<AttentionSpec["rope"]>["scaling"];
      if (r.kind === "call") {
        const rf = Fields.ofCall(r, diags);
        base = rf.num("base", base, { above: 1 });
        const sc = rf.value("scaling");
        if (sc && !(sc.kind === "sym" && sc.name === "none")) {
          if (sc.kind === "call" && sc.name === "llama3") {
            const lf = Fields.ofCall(sc, diags);
            scaling = {
              factor: lf.num("factor", 8, { above: 0 }),
              lowFreq: lf.num("low_freq", 1, { above: 0 }),
              highFreq: lf.num("high_freq", 4, { above: 0 }),
              original: lf.num("original", 8192, { int: true, min: 1 }),
            };
            if (scaling.highFreq <= scaling.lowFreq) diags.push(error(sc.span, "llama3 scaling needs high_freq > low_freq"));
            lf.done();
          } else diags.push(error(sc.span, `'scaling' must be llama3(...) or none; found ${describe(sc)}`));
        }
        rf.done();
      }
      if (headDim % 2 !== 0) diags.push(error(r.span, `rope needs an even head_dim, found ${headDim}`));
      rope = scaling ? { base, scaling } : { base };
    } else diags.push(error(r.span, `'rope' must be rope(...) or none; found ${describe(r)}`));
  }
  const causal = f.bool("causal", true);
  const softmaxScale = f.num("softmax_scale", 1 / Math.sqrt(headDim), { above: 0 });
  return { kind: "attention", name, qkNorm, rope, causal, softmaxScale, span };
}

const ACTIVATIONS = ["gelu", "silu", "swiglu", "geglu", "smooth_swiglu", "xielu"] as const;

function decodeMlp(f: Fields, name: string, span: Span, mlpWidth: number, diags: Diagnostic[]): MlpSpec {
  const v = f.value("activation");
  let activation: Activation = { kind: "swiglu" };
  if (!v) diags.push(error(span, `mlp '${name}' needs 'activation' (one of ${ACTIVATIONS.join(", ")})`));
  else if (v.kind === "call" && v.name === "xielu") {
    const x = Fields.ofCall(v, diags);
    activation = {
      kind: "xielu",
      alphaP: x.num("alpha_p", 0.8, { above: 0 }),
      alphaN: x.num("alpha_n", 0.8, { above: 0 }),
      beta: x.num("beta", 0.5, { min: 0 }),
      eps: x.num("eps", -1e-6, { max: 0 }),
    };
    if (activation.alphaN <= activation.beta) diags.push(error(v.span, `xielu needs alpha_n > beta (α_n = β + softplus(ρ_n)); found alpha_n ${activation.alphaN}, beta ${activation.beta}`));
    x.done();
  } else {
    const k = checkSym(v, "activation", ACTIVATIONS, diags);
    if (k === "xielu") activation = { kind: "xielu", alphaP: 0.8, alphaN: 0.8, beta: 0.5, eps: -1e-6 };
    else if (k) activation = { kind: k };
  }
  const width = f.num("width", mlpWidth, { int: true, min: 1 });
  return { kind: "mlp", name, activation, width, span };
}

function decodeBlock(s: Section, components: Component[], scope: Scope, diags: Diagnostic[]): BlockStatement[] {
  const out: BlockStatement[] = [];
  const locals = new Set<string>(["h"]);
  const names = () => [...locals, ...components.map((c) => c.name), "rmsnorm", "layernorm", "layerscale"];
  const tensor = (e: Expr): BlockExpr | undefined => {
    switch (e.kind) {
      case "ref":
        if (locals.has(e.name)) return { kind: "var", name: e.name, span: e.span };
        diags.push(error(e.span, `unknown tensor '${e.name}'`, hint(e.name, names()) ?? [`the block's input and output is 'h'`]));
        return undefined;
      case "binary": {
        if (e.op === "+") {
          const l = tensor(e.left);
          const r = tensor(e.right);
          return l && r ? { kind: "add", left: l, right: r, span: e.span } : undefined;
        }
        if (e.op === "*") {
          const [numE, tE] = isTensorExpr(e.left, locals) ? [e.right, e.left] : [e.left, e.right];
          const v = evaluate(numE, scope, diags);
          const input = tensor(tE);
          if (v && v.kind !== "num") diags.push(error(v.span, `expected a number, found ${describe(v)}`));
          return v?.kind === "num" && input ? { kind: "scale", factor: v.value, input, span: e.span } : undefined;
        }
        diags.push(error(e.span, `'${e.op}' is not defined on tensors (use '+' for a residual add, or 'number * x')`));
        return undefined;
      }
      case "call": {
        const [first, ...rest] = e.args;
        if (!first || first.name !== undefined) {
          diags.push(error(e.span, `${e.callee}(...) needs a tensor as its first argument, e.g. ${e.callee}(h)`));
          return undefined;
        }
        if (rest.some((a) => a.name === undefined)) diags.push(error(rest.find((a) => a.name === undefined)!.span, `${e.callee}(...) takes one tensor; further arguments must be named`));
        const input = tensor(first.value);
        if (!input) return undefined;
        const named = new Map<string, Entry>();
        for (const a of rest) {
          const v = a.name !== undefined ? evaluate(a.value, scope, diags) : undefined;
          if (v && a.name !== undefined) named.set(a.name, { value: v, keySpan: a.nameSpan ?? a.span });
        }
        const comp = components.find((c) => c.name === e.callee);
        if (comp) {
          if (named.size) new Fields(`call of '${comp.name}'`, named, diags, e.calleeSpan).done();
          return { kind: "call", component: comp, input, span: e.span };
        }
        if (e.callee === "rmsnorm" || e.callee === "layernorm") {
          const call: Value = { kind: "call", name: e.callee, calleeSpan: e.calleeSpan, args: [], named: new Map([...named].map(([k, v]) => [k, { value: v.value, nameSpan: v.keySpan }])), span: e.span };
          const norm = decodeNorm(call, e.callee, diags);
          return norm ? { kind: "norm", norm, input, span: e.span } : undefined;
        }
        if (e.callee === "layerscale") {
          const f = new Fields("layerscale(...)", named, diags, e.calleeSpan);
          const init = f.num("init", undefined);
          f.done();
          return { kind: "layerscale", init, input, span: e.span };
        }
        diags.push(error(e.calleeSpan, `unknown component or op '${e.callee}'`, hint(e.callee, names())));
        return undefined;
      }
      default:
        diags.push(error(e.span, "expected a tensor expression (a name, a call, or a sum)"));
        return undefined;
    }
  };
  for (const m of s.members) {
    if (m.kind === "section") {
      diags.push(error(m.typeSpan, `unexpected section '${m.type}' inside block (statements look like 'h = h + attn(h)')`));
      continue;
    }
    if (m.modifier !== undefined && m.modifier !== "probe") diags.push(error(m.modifierSpan ?? m.keySpan, `unknown modifier '${m.modifier}' (only 'probe' is allowed in a block)`));
    const expr = tensor(m.value);
    locals.add(m.key);
    if (expr) out.push({ target: m.key, expr, probe: m.modifier === "probe", span: m.span });
  }
  if (!s.members.some((m) => m.kind === "attribute" && m.key === "h"))
    diags.push(error(s.typeSpan, "the block never assigns 'h', its output (e.g. 'h = h + attn(h)')"));
  return out;
}

function isTensorExpr(e: Expr, locals: Set<string>): boolean {
  return (e.kind === "ref" && locals.has(e.name)) || e.kind === "call";
}

function decodeProbes(f: Fields, diags: Diagnostic[]): ProbeSpec {
  const enabled = f.bool("enabled", true);
  const every = f.num("every", 10, { int: true, min: 1 });
  const mode = f.sym("mode", ["per_token", "per_sequence"] as const, "per_token");
  let tensors = [...PROBE_TENSORS];
  const t = f.value("tensors");
  if (t) {
    if (t.kind !== "list") diags.push(error(t.span, `'tensors' must be a list, e.g. [${PROBE_TENSORS.slice(0, 2).join(", ")}]`));
    else tensors = t.items.map((it) => checkSym(it, "tensors", PROBE_TENSORS, diags)).filter((x): x is (typeof PROBE_TENSORS)[number] => x !== undefined);
  }
  f.done();
  return { enabled, every, tensors, mode };
}

/** Token ids each tokenizer produces; the model's vocab must cover them. */
const TOKENIZER_VOCAB = { bytes: 256, gpt2: 50257 } as const;

function decodeTrain(f: Fields, context: number, vocab: number, diags: Diagnostic[]): TrainSpec {
  let data: TrainSpec["data"] = { kind: "brown" };
  const d = f.value("data");
  if (d) {
    if (d.kind === "str") data = { kind: "path", path: d.value };
    else if (checkSym(d, "data", ["brown"] as const, diags)) data = { kind: "brown" };
  }
  const tokenizer = f.sym("tokenizer", ["bytes", "gpt2"] as const, "bytes");
  if (vocab < TOKENIZER_VOCAB[tokenizer])
    diags.push(error(f.entries.get("tokenizer")?.value.span ?? f.span, `the ${tokenizer} tokenizer produces ${TOKENIZER_VOCAB[tokenizer]} token ids, more than the model's vocab ${vocab}`));
  const batch = f.num("batch", 8, { int: true, min: 1 });
  const seqLen = f.num("seq_len", Math.min(context, 256), { int: true, min: 1 });
  if (seqLen > context) diags.push(error(f.entries.get("seq_len")?.keySpan ?? f.span, `seq_len ${seqLen} exceeds the model's context ${context}`));
  const steps = f.num("steps", 1000, { int: true, min: 1 });
  const seed = f.num("seed", 0, { int: true, min: 0 });
  let optimizer: TrainSpec["optimizer"] = { kind: "adamw", lr: 1e-3, beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0.1, clip: 1 };
  const o = f.value("optimizer");
  if (o) {
    if ((o.kind === "call" || o.kind === "sym") && o.name === "adamw") {
      if (o.kind === "call") {
        const of = Fields.ofCall(o, diags);
        optimizer = {
          kind: "adamw",
          lr: of.num("lr", optimizer.lr, { above: 0 }),
          beta1: of.num("beta1", optimizer.beta1, { min: 0, max: 0.999999 }),
          beta2: of.num("beta2", optimizer.beta2, { min: 0, max: 0.999999 }),
          eps: of.num("eps", optimizer.eps, { above: 0 }),
          weightDecay: of.num("weight_decay", optimizer.weightDecay, { min: 0 }),
          clip: of.num("clip", optimizer.clip, { min: 0 }),
        };
        of.done();
      }
    } else diags.push(error(o.span, `'optimizer' must be adamw(...); found ${describe(o)}`, o.kind === "sym" || o.kind === "call" ? hint(o.name, ["adamw"]) : undefined));
  }
  let schedule: TrainSpec["schedule"] = { kind: "constant", warmup: 0 };
  const s = f.value("schedule");
  if (s) {
    const kind = s.kind === "call" || s.kind === "sym" ? s.name : "";
    const sf = s.kind === "call" ? Fields.ofCall(s, diags) : new Fields(kind, new Map(), diags, s.span);
    const warmup = sf.num("warmup", 0, { int: true, min: 0 });
    if (kind === "constant") schedule = { kind, warmup };
    else if (kind === "cosine") schedule = { kind, warmup, minLr: sf.num("min_lr", 0, { min: 0 }) };
    else if (kind === "wsd") schedule = { kind, warmup, decay: sf.num("decay", 0.2, { min: 0, max: 1 }), minLr: sf.num("min_lr", 1e-8, { min: 0 }) };
    else diags.push(error(s.span, `'schedule' must be constant(...), cosine(...) or wsd(...); found ${describe(s)}`, hint(kind, ["constant", "cosine", "wsd"])));
    sf.done();
    if (schedule.warmup >= steps) diags.push(error(s.span, `warmup (${schedule.warmup} steps) must be shorter than the run (${steps} steps)`));
  }
  const evalEvery = f.num("eval_every", Math.max(1, Math.floor(steps / 10)), { int: true, min: 1 });
  const evalBatches = f.num("eval_batches", 4, { int: true, min: 1 });
  const logEvery = f.num("log_every", 10, { int: true, min: 1 });
  const valFraction = f.num("val_fraction", 0.05, { above: 0, max: 0.5 });
  f.done();
  return { data, tokenizer, batch, seqLen, steps, seed, optimizer, schedule, evalEvery, evalBatches, logEvery, valFraction };
}

export type { GemmName };
