// Decodes precision recipes (top-level `precision NAME { }`, a model's `precision = NAME` and its
// inline `precision { }`) and answers, per GEMM, which rule applies: the most specific override
// wins (op over component over layers over the model), so inner annotations override outer ones.
import type { Attribute, Section } from "../grammar/ast.js";
import { type Diagnostic, type Span, error } from "../grammar/diagnostics.js";
import { Fields, type Entry } from "./fields.js";
import { ATTENTION_GEMMS, type GemmName, type Scaling } from "./ir.js";
import type { Component, PrecisionMode, PrecisionOverride, PrecisionRule, Recipe } from "./model.js";
import { hint } from "./resolve.js";
import { type Scope, type Value, describe, evaluate } from "./values.js";

export interface RecipeSource {
  recipes: Map<string, Section>;
  scope: Scope;
  components: Component[];
  layers: number;
  diags: Diagnostic[];
}

const MODES = ["bf16", "fp8", "fp8dpa"] as const;
const FORMATS = ["e4m3", "e5m2"] as const;
const GEMMS_OF: Record<"attention" | "mlp" | "head", GemmName[]> = {
  attention: ["qkv", "qk", "pv", "out"],
  mlp: ["fc1", "fc2"],
  head: [],
};

export const DEFAULT_RULE: PrecisionRule = {
  mode: "bf16",
  activations: "e4m3",
  weights: "e4m3",
  gradients: "e5m2",
  scaling: { kind: "delayed", history: 1024, margin: 0, amax: "max", pow2: false },
  saturate: true,
};

export function checkRecipe(attr: Attribute | undefined, inline: Section | undefined, src: RecipeSource, modeOverride?: PrecisionMode): Recipe {
  const { diags } = src;
  let recipe: Recipe = { name: "bf16", base: { ...DEFAULT_RULE }, overrides: [], span: attr?.span ?? inline?.span ?? zeroSpan() };
  if (attr) {
    const v = evaluate(attr.value, src.scope, diags);
    if (v?.kind === "sym" && (MODES as readonly string[]).includes(v.name)) {
      recipe = { ...recipe, name: v.name, base: { ...DEFAULT_RULE, mode: v.name as PrecisionMode } };
    } else if (v?.kind === "sym" && src.recipes.has(v.name)) {
      const s = src.recipes.get(v.name)!;
      recipe = readRecipe(s, { ...recipe, name: v.name, span: s.span }, src);
    } else if (v) {
      const name = v.kind === "sym" ? v.name : undefined;
      diags.push(error(v.span, `'precision' must name a recipe or a mode (${MODES.join(", ")}); found ${describe(v)}`, name ? hint(name, [...MODES, ...src.recipes.keys()]) : undefined));
    }
  }
  if (inline) recipe = readRecipe(inline, recipe, src);
  if (modeOverride) {
    recipe = {
      ...recipe,
      name: `${recipe.name} (--precision ${modeOverride})`,
      base: { ...recipe.base, mode: modeOverride },
      overrides: recipe.overrides.map((o) => ({ ...o, rule: withoutMode(o.rule) })),
    };
  }
  validate(recipe, src);
  return recipe;
}

function withoutMode(rule: Partial<PrecisionRule>): Partial<PrecisionRule> {
  const { mode: _drop, ...rest } = rule;
  return rest;
}

function readRecipe(s: Section, start: Recipe, src: RecipeSource): Recipe {
  const rule = readRule(s, src, `precision recipe`);
  const overrides = [...start.overrides];
  for (const m of s.members) {
    if (m.kind !== "section") continue;
    if (m.type !== "override") {
      src.diags.push(error(m.typeSpan, `unexpected section '${m.type}' in a precision recipe (only 'override SELECTOR { ... }')`, hint(m.type, ["override"])));
      continue;
    }
    const sel = readSelector(m, src);
    if (sel) overrides.push({ ...sel, rule: readRule(m, src, "override"), span: m.span });
  }
  return { ...start, base: { ...start.base, ...rule }, overrides };
}

function readRule(s: Section, src: RecipeSource, what: string): Partial<PrecisionRule> {
  const entries = new Map<string, Entry>();
  for (const m of s.members) {
    if (m.kind !== "attribute") continue;
    const v = evaluate(m.value, src.scope, src.diags);
    if (v) entries.set(m.key, { value: v, keySpan: m.keySpan });
  }
  const f = new Fields(what, entries, src.diags, s.typeSpan);
  const rule: Partial<PrecisionRule> = {};
  if (f.has("mode")) rule.mode = f.sym("mode", MODES, "bf16");
  if (f.has("activations")) rule.activations = f.sym("activations", FORMATS, "e4m3");
  if (f.has("weights")) rule.weights = f.sym("weights", FORMATS, "e4m3");
  if (f.has("gradients")) rule.gradients = f.sym("gradients", FORMATS, "e5m2");
  if (f.has("saturate")) rule.saturate = f.bool("saturate", true);
  const sc = f.value("scaling");
  if (sc) {
    const scaling = readScaling(sc, src.diags);
    if (scaling) rule.scaling = scaling;
  }
  f.done();
  return rule;
}

function readScaling(v: Value, diags: Diagnostic[]): Scaling | undefined {
  const kind = v.kind === "call" || v.kind === "sym" ? v.name : "";
  const f = v.kind === "call" ? Fields.ofCall(v, diags) : new Fields(kind, new Map(), diags, v.span);
  let out: Scaling | undefined;
  if (kind === "delayed") {
    out = {
      kind,
      history: f.num("history", 1024, { int: true, min: 1 }),
      margin: f.num("margin", 0, { min: 0 }),
      amax: f.sym("amax", ["max", "most_recent"] as const, "max"),
      pow2: f.bool("pow2", false),
    };
  } else if (kind === "current") {
    out = { kind, margin: f.num("margin", 0, { min: 0 }), pow2: f.bool("pow2", false) };
  } else if (kind === "blockwise") {
    out = { kind, activationBlock: block(f, "activations", [1, 128], diags), weightBlock: block(f, "weights", [128, 128], diags), pow2: f.bool("pow2", true) };
  } else {
    diags.push(error(v.span, `'scaling' must be delayed(...), current(...) or blockwise(...); found ${describe(v)}`, kind ? hint(kind, ["delayed", "current", "blockwise"]) : undefined));
    return undefined; // its arguments cannot be judged against an unknown recipe
  }
  f.done();
  return out;
}

function block(f: Fields, key: string, fallback: [number, number], diags: Diagnostic[]): [number, number] {
  const v = f.value(key);
  if (!v) return fallback;
  if (v.kind === "list" && v.items.length === 2 && v.items.every((i) => i.kind === "num" && Number.isInteger(i.value) && i.value >= 1))
    return v.items.map((i) => (i as { value: number }).value) as [number, number];
  diags.push(error(v.span, `'${key}' must be a block shape [rows, cols] of positive whole numbers, e.g. [${fallback.join(", ")}]`));
  return fallback;
}

type Selector = Pick<PrecisionOverride, "layers" | "component" | "gemm">;

/** `override [layers I, J..K] [component[.gemm] | head] { ... }` */
function readSelector(s: Section, src: RecipeSource): Selector | undefined {
  const { diags } = src;
  const sel: Selector = {};
  const labels = [...s.labels];
  if (!labels.length) {
    diags.push(error(s.typeSpan, "override needs a selector: `override layers 0, 3 { ... }`, `override attn.qk { ... }` or `override head { ... }`"));
    return undefined;
  }
  const first = labels[0];
  if (first.kind === "path" && first.parts.length === 1 && first.parts[0] === "layers") {
    labels.shift();
    const idx = labels.shift();
    if (!idx || idx.kind !== "indices") {
      diags.push(error(first.span, "'layers' must be followed by layer indices, e.g. `layers 0, 2..3`"));
      return undefined;
    }
    const layers = new Set<number>();
    for (const r of idx.ranges) {
      if (r.to < r.from) diags.push(error(r.span, `empty range ${r.from}..${r.to}`));
      if (r.to >= src.layers) diags.push(error(r.span, `layer ${r.to} does not exist (the model has layers 0..${src.layers - 1})`));
      for (let i = r.from; i <= Math.min(r.to, src.layers - 1); i++) layers.add(i);
    }
    sel.layers = [...layers].sort((a, b) => a - b);
  }
  const path = labels.shift();
  if (path) {
    if (path.kind !== "path" || path.parts.length > 2) {
      diags.push(error(path.span, "expected a component or component.gemm after the layers, e.g. `attn.qk`"));
      return undefined;
    }
    const [comp, gemm] = path.parts;
    const component = comp === "head" ? undefined : src.components.find((c) => c.name === comp);
    if (comp !== "head" && !component) {
      diags.push(error(path.span, `unknown component '${comp}'`, hint(comp, [...src.components.map((c) => c.name), "head"])));
      return undefined;
    }
    sel.component = comp;
    if (gemm !== undefined) {
      const allowed = GEMMS_OF[component ? component.kind : "head"];
      if (!allowed.includes(gemm as GemmName)) {
        diags.push(error(path.span, `'${comp}' has no GEMM '${gemm}'${allowed.length ? ` (its GEMMs: ${allowed.join(", ")})` : ""}`, hint(gemm, allowed)));
        return undefined;
      }
      sel.gemm = gemm as GemmName;
    }
    if (comp === "head" && sel.layers) diags.push(error(path.span, "the LM head is not in a layer: write `override head { ... }` on its own"));
  }
  if (labels.length) diags.push(error(labels[0].span, "unexpected label after the selector"));
  return sel;
}

function rank(o: Selector): number {
  return (o.gemm ? 4 : 0) + (o.component ? 2 : 0) + (o.layers ? 1 : 0);
}

function matches(o: Selector, layer: number | undefined, component: string, gemm: GemmName): boolean {
  if (o.layers && (layer === undefined || !o.layers.includes(layer))) return false;
  if (o.component && o.component !== component) return false;
  if (o.gemm && o.gemm !== gemm) return false;
  // The head is never touched by model-wide or layer overrides (papers.md §3.3: LM head stays BF16).
  if (component === "head" && o.component !== "head") return false;
  return true;
}

/** The rule in force for one GEMM: `layer` is undefined for the LM head. */
export function ruleFor(recipe: Recipe, layer: number | undefined, component: string, gemm: GemmName): PrecisionRule {
  let rule: PrecisionRule = component === "head" ? { ...recipe.base, mode: "bf16" } : { ...recipe.base };
  const applicable = recipe.overrides.filter((o) => matches(o, layer, component, gemm)).sort((a, b) => rank(a) - rank(b));
  for (const o of applicable) rule = { ...rule, ...o.rule };
  return rule;
}

/** Whether a GEMM runs in FP8 under its rule: linear GEMMs in fp8 and fp8dpa, attention GEMMs in fp8dpa only. */
export function isFp8(rule: PrecisionRule, gemm: GemmName): boolean {
  return ATTENTION_GEMMS.includes(gemm) ? rule.mode === "fp8dpa" : rule.mode !== "bf16";
}

function validate(recipe: Recipe, src: RecipeSource): void {
  const { diags } = src;
  const rules = [{ rule: recipe.base as Partial<PrecisionRule>, span: recipe.span }, ...recipe.overrides.map((o) => ({ rule: { ...recipe.base, ...o.rule }, span: o.span }))];
  for (const { rule, span } of rules) {
    if (rule.scaling?.kind === "blockwise" && rule.mode === "fp8dpa")
      diags.push(error(span, "blockwise scaling cannot be combined with fp8dpa: FP8 attention needs one scale per tensor (use delayed or current scaling, or mode = fp8)"));
  }
  // The fused attention runs Q·Kᵀ and P·V in one kernel: both GEMMs must agree on FP8 or not.
  for (const c of src.components) {
    if (c.kind !== "attention") continue;
    for (let l = 0; l < src.layers; l++) {
      const qk = ruleFor(recipe, l, c.name, "qk");
      const pv = ruleFor(recipe, l, c.name, "pv");
      if (isFp8(qk, "qk") !== isFp8(pv, "pv")) {
        const o = recipe.overrides.find((x) => x.component === c.name && (x.gemm === "qk" || x.gemm === "pv"));
        diags.push(error(o?.span ?? recipe.span, `${c.name}.qk and ${c.name}.pv must both be FP8 or both not (layer ${l}): the fused attention computes them in one kernel`));
        break;
      }
    }
  }
  // Two overrides of the same specificity that overlap must not disagree on a key.
  const os = recipe.overrides;
  for (let i = 0; i < os.length; i++)
    for (let j = i + 1; j < os.length; j++) {
      const a = os[i];
      const b = os[j];
      if (rank(a) !== rank(b) || a.component !== b.component || a.gemm !== b.gemm) continue;
      if (a.layers && b.layers && !a.layers.some((l) => b.layers!.includes(l))) continue;
      for (const k of Object.keys(a.rule) as (keyof PrecisionRule)[]) {
        if (k in b.rule && JSON.stringify(a.rule[k]) !== JSON.stringify(b.rule[k]))
          diags.push(error(b.span, `conflicting precision overrides: '${k}' is set differently by the override at ${a.span.file}:${a.span.line}:${a.span.col} for the same GEMMs`));
      }
    }
}

function zeroSpan(): Span {
  return { file: "", line: 1, col: 1, endLine: 1, endCol: 1, offset: 0, endOffset: 0 };
}
