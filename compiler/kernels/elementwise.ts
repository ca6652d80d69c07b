// Elementwise kernels: a fused expression tree over same-shape or broadcast inputs, RoPE, GLU,
// xIELU (papers.md §5.6) and the embedding gather and its deterministic scatter-add backward, each
// with the shared cast epilogue (f32, bf16, or FP8 with a scale from a buffer and amax captured).
import { type EwOp, ewExpr, ewHelpers } from "../expr.js";
import type { RopeScaling } from "../ir.js";
import { WgslBuilder, fmtF32 } from "../wgsl.js";
import {
  type Broadcast,
  CastWriter,
  type Ew,
  F32_OUT,
  FLAT_WG,
  type KernelSource,
  type OutCast,
  broadcastIndex,
  check,
  finish,
  grid,
  reduceWith,
  renderEw,
  shared,
} from "./reduce.js";

/** Map kernels: invocation t computes the `width` elements of output word t (one per invocation). */
function wordKernel(
  b: WgslBuilder,
  n: number,
  out: CastWriter,
  wg: number,
  value: (e: string) => { lets: string[]; value: string },
): KernelSource {
  const V = out.width;
  const words = Math.ceil(n / V);
  const { lets, value: v } = value("ee");
  const body = [
    `let t = ${FLAT_WG} * ${wg}u + lidx;`,
    ...out.prologue(),
    `var vals: array<f32, ${V}>;`,
    `for (var u = 0u; u < ${V}u; u = u + 1u) {`,
    `  let e = t * ${V}u + u; let ee = min(e, ${n - 1}u);`,
    ...lets.map((l) => `  ${l}`),
    `  vals[u] = select(0.0, ${v}, e < ${n}u);`,
    `}`,
    ...out.store(Array.from({ length: V }, (_, u) => `vals[${u}]`), "t", `t < ${words}u`),
    ...out.epilogue(),
  ];
  return finish(b, wg, body, grid(Math.ceil(words / wg)));
}

export interface ElementwiseConfig {
  name: string;
  rows: number;
  cols: number;
  inputs: Broadcast[];
  expr: Ew;
  out?: OutCast;
  wg?: number;
}

/** A fused chain y = expr(in0, in1, …) over [rows, cols]. Bindings: in0…in{n−1} (f32), y, [scales], [amax]. */
export function elementwise(cfg: ElementwiseConfig): KernelSource {
  const wg = cfg.wg ?? 256;
  const b = new WgslBuilder(cfg.name, `elementwise ${cfg.rows}×${cfg.cols}`);
  cfg.inputs.forEach((_, i) => b.bind(`in${i}`, "f32"));
  const out = new CastWriter(b, "y", cfg.out ?? F32_OUT, wg);
  return wordKernel(b, cfg.rows * cfg.cols, out, wg, (e) => ({
    lets: cfg.inputs.map((bc, i) => `let x${i} = in${i}[${broadcastIndex(bc, e, cfg.cols)}];`),
    value: renderEw(b, cfg.expr, (i) => `x${i}`),
  }));
}

// ---- RoPE ----------------------------------------------------------------------------------

export interface RopeConfig {
  name: string;
  rows: number;
  heads: number;
  headDim: number;
  seqLen: number;
  base: number;
  scaling?: RopeScaling;
  /** Rotate by −θ: the backward (RoPE is orthogonal, so its VJP is the inverse rotation). */
  inverse: boolean;
  /** Decode graphs: positions start at the `position` binding's value (one i32) instead of 0. */
  offset?: boolean;
  out?: OutCast;
  wg?: number;
}

/** f_i = base^(−2i/d), with Llama-3.1 rescaling between the low/high-frequency wavelengths. */
export function ropeFrequencies(headDim: number, base: number, s?: RopeScaling): number[] {
  return Array.from({ length: headDim / 2 }, (_, i) => {
    const f = base ** ((-2 * i) / headDim);
    if (!s) return f;
    const lambda = (2 * Math.PI) / f;
    if (lambda < s.original / s.highFreq) return f;
    if (lambda > s.original / s.lowFreq) return f / s.factor;
    const a = (s.original / lambda - s.lowFreq) / (s.highFreq - s.lowFreq);
    return ((1 - a) * f) / s.factor + a * f;
  });
}

/**
 * Rotate-half RoPE on x [rows, heads·headDim], position = row % seqLen: (x₁, x₂) → (x₁c − x₂s,
 * x₂c + x₁s) for pairs (i, i + d/2). Invocation t rotates `width` consecutive pairs of one head and
 * stores one output word in each half. Bindings: x, y, [scales], [amax].
 */
export function rope(cfg: RopeConfig): KernelSource {
  const wg = cfg.wg ?? 128;
  const half = cfg.headDim / 2;
  const b = new WgslBuilder(cfg.name, `rope ${cfg.rows}×${cfg.heads}×${cfg.headDim}${cfg.inverse ? " inverse" : ""}`);
  b.bind("x", "f32");
  if (cfg.offset) b.bind("position", "i32");
  const out = new CastWriter(b, "y", cfg.out ?? F32_OUT, wg);
  const V = out.width;
  check(half % V === 0, `${cfg.name}: half head_dim ${half} is not a multiple of ${V}`);
  const freqs = ropeFrequencies(cfg.headDim, cfg.base, cfg.scaling).map(fmtF32);
  b.helper("rope_freq", `const ROPE_FREQ = array<f32, ${half}>(${freqs.join(", ")});`);
  // θ mod 2π in two steps (Cody–Waite): k·6.28125 is exact in f32 for k < 2^16, so large
  // positions keep their accuracy before sin/cos (whose error bounds hold on [−π, π] only).
  const reduceSrc = [
    "fn rope_reduce(a: f32) -> f32 {",
    `  let k = round(a * ${fmtF32(1 / (2 * Math.PI))});`,
    `  return (a - k * 6.28125) - k * ${fmtF32(2 * Math.PI - 6.28125)};`,
    "}",
  ];
  b.helper("rope_reduce", reduceSrc.join("\n"));
  const groups = (cfg.rows * cfg.heads * half) / V;
  const sign = cfg.inverse ? "-" : "";
  const body = [
    `let t = ${FLAT_WG} * ${wg}u + lidx; let ok = t < ${groups}u; let tt = min(t, ${groups - 1}u);`,
    `let rh = tt / ${half / V}u; let i0 = (tt % ${half / V}u) * ${V}u; let pos = ${cfg.offset ? "u32(position[0]) + " : ""}(rh / ${cfg.heads}u) % ${cfg.seqLen}u;`,
    `let o = rh * ${cfg.headDim}u;`,
    ...out.prologue(),
    `var y1: array<f32, ${V}>; var y2: array<f32, ${V}>;`,
    `for (var u = 0u; u < ${V}u; u = u + 1u) {`,
    `  let ang = rope_reduce(f32(pos) * ROPE_FREQ[i0 + u]);`,
    `  let c = cos(ang); let s = ${sign}sin(ang);`,
    `  let x1 = x[o + i0 + u]; let x2 = x[o + i0 + u + ${half}u];`,
    `  y1[u] = x1 * c - x2 * s; y2[u] = x2 * c + x1 * s;`,
    `}`,
    ...out.store(Array.from({ length: V }, (_, u) => `y1[${u}]`), `(o + i0) / ${V}u`, "ok"),
    ...out.store(Array.from({ length: V }, (_, u) => `y2[${u}]`), `(o + i0 + ${half}u) / ${V}u`, "ok"),
    ...out.epilogue(),
  ];
  return finish(b, wg, body, grid(Math.ceil(groups / wg)));
}

// ---- GLU, xIELU, embedding gather ----------------------------------------------------------

export interface GluConfig {
  name: string;
  rows: number;
  /** F: the output width; the input has 2F columns, gate first (Megatron's chunk order). */
  width: number;
  act: "silu" | "gelu";
  out?: OutCast;
  wg?: number;
}

function gluBuilder(cfg: GluConfig, grad: boolean): { b: WgslBuilder; act: (x: string) => string } {
  const b = new WgslBuilder(cfg.name, `glu(${cfg.act})${grad ? " grad" : ""} ${cfg.rows}×${cfg.width}`);
  const op: EwOp = grad ? `${cfg.act}_grad` : cfg.act;
  for (const h of [...ewHelpers(op), ...ewHelpers(cfg.act)]) b.helper(h.name, h.source);
  return { b, act: (x) => ewExpr(cfg.act, [x]) };
}

/** y = act(x[:, :F]) ⊙ x[:, F:]. Bindings: x, y, [scales], [amax]. */
export function glu(cfg: GluConfig): KernelSource {
  const wg = cfg.wg ?? 256;
  const F = cfg.width;
  const { b, act } = gluBuilder(cfg, false);
  b.bind("x", "f32");
  const out = new CastWriter(b, "y", cfg.out ?? F32_OUT, wg);
  return wordKernel(b, cfg.rows * F, out, wg, (e) => ({
    lets: [`let xo = (${e} / ${F}u) * ${2 * F}u + ${e} % ${F}u;`],
    value: ewExpr("mul", [act("x[xo]"), `x[xo + ${F}u]`]),
  }));
}

/**
 * d gate = act_grad(gate, dy·up), d up = dy·act(gate), laid out like x [rows, 2F]. Invocation t
 * handles `width` columns and stores one word in each half. Bindings: x, dy, dx, [scales], [amax].
 */
export function gluGrad(cfg: GluConfig): KernelSource {
  const wg = cfg.wg ?? 256;
  const F = cfg.width;
  const { b, act } = gluBuilder(cfg, true);
  b.bind("x", "f32");
  b.bind("dy", "f32");
  const out = new CastWriter(b, "dx", cfg.out ?? F32_OUT, wg);
  const V = out.width;
  check(F % V === 0, `${cfg.name}: width ${F} is not a multiple of ${V}`);
  const groups = (cfg.rows * F) / V;
  const body = [
    `let t = ${FLAT_WG} * ${wg}u + lidx; let ok = t < ${groups}u; let e0 = min(t, ${groups - 1}u) * ${V}u;`,
    `let xo = (e0 / ${F}u) * ${2 * F}u + e0 % ${F}u;`,
    ...out.prologue(),
    `var da: array<f32, ${V}>; var db: array<f32, ${V}>;`,
    `for (var u = 0u; u < ${V}u; u = u + 1u) {`,
    `  let a = x[xo + u]; let g = dy[e0 + u];`,
    `  da[u] = ${ewExpr(`${cfg.act}_grad`, ["a", `g * x[xo + u + ${F}u]`])};`,
    `  db[u] = g * ${act("a")};`,
    `}`,
    ...out.store(Array.from({ length: V }, (_, u) => `da[${u}]`), `xo / ${V}u`, "ok"),
    ...out.store(Array.from({ length: V }, (_, u) => `db[${u}]`), `(xo + ${F}u) / ${V}u`, "ok"),
    ...out.epilogue(),
  ];
  return finish(b, wg, body, grid(Math.ceil(groups / wg)));
}

/**
 * xIELU (papers.md §5.6) with α_p = softplus(ρ_p), α_n = β + softplus(ρ_n), written with
 * g(x) = e^{min(x,ε)} − 1 − x = (e^m − 1 − m) + (m − x), m = min(x, ε), where e^m − 1 − m is a
 * series near 0 (exp(m) − 1 would cancel to ~1e-4 relative error for |x| ~ 1e-3).
 */
export function xieluHelpers(b: WgslBuilder): void {
  b.helper("xielu_softplus", "fn xielu_softplus(x: f32) -> f32 {\n  return max(x, 0.0) + log(1.0 + exp(-abs(x)));\n}");
  b.helper(
    "xielu_g",
    [
      "fn xielu_g(x: f32, eps: f32) -> f32 {",
      "  let m = min(x, eps);",
      "  var e: f32;",
      "  if (m > -0.5) {",
      "    var term = m * m * 0.5; e = term;",
      "    for (var n = 3.0; n < 11.0; n = n + 1.0) { term = term * m / n; e = e + term; }",
      "  } else { e = exp(m) - 1.0 - m; }",
      "  return e + (m - x);",
      "}",
    ].join("\n"),
  );
  b.helper(
    "xielu_f",
    "fn xielu_f(x: f32, ap: f32, an: f32, beta: f32, eps: f32) -> f32 {\n  return select(an * xielu_g(x, eps) + beta * x, ap * x * x + beta * x, x > 0.0);\n}",
  );
  b.helper(
    "xielu_dx",
    "fn xielu_dx(x: f32, ap: f32, an: f32, beta: f32, eps: f32) -> f32 {\n  return select(an * (select(0.0, exp(x), x < eps) - 1.0) + beta, 2.0 * ap * x + beta, x > 0.0);\n}",
  );
}

export interface XieluConfig {
  name: string;
  n: number;
  beta: number;
  eps: number;
  out?: OutCast;
  wg?: number;
}

/** The alphas from the ρ buffers (one f32 each), as WGSL lets. */
export function xieluAlphas(beta: number): string[] {
  return [`let ap = xielu_softplus(rho_p[0]);`, `let an = ${fmtF32(beta)} + xielu_softplus(rho_n[0]);`];
}

/** y = xIELU(x) (grad = false) or dx = dy·xIELU'(x). Bindings: x, rho_p, rho_n, [dy], y|dx, [scales], [amax]. */
export function xielu(cfg: XieluConfig, grad = false): KernelSource {
  const wg = cfg.wg ?? 256;
  const b = new WgslBuilder(cfg.name, `xielu${grad ? " grad" : ""} ${cfg.n}`);
  xieluHelpers(b);
  for (const n of ["x", "rho_p", "rho_n", ...(grad ? ["dy"] : [])]) b.bind(n, "f32");
  const out = new CastWriter(b, grad ? "dx" : "y", cfg.out ?? F32_OUT, wg);
  const args = `x[ee], ap, an, ${fmtF32(cfg.beta)}, ${fmtF32(cfg.eps)}`;
  return wordKernel(b, cfg.n, out, wg, () => ({
    lets: xieluAlphas(cfg.beta),
    value: grad ? `dy[ee] * xielu_dx(${args})` : `xielu_f(${args})`,
  }));
}

/**
 * ∂L/∂ρ_p = σ(ρ_p)·Σ_{x>0} dy·x², ∂L/∂ρ_n = σ(ρ_n)·Σ_{x≤0} dy·g(x): a sum over all elements,
 * written as `parts` partials (see ReduceShape). Bindings: x, rho_p | rho_n, dy, y.
 */
export function xieluParamGrad(cfg: XieluConfig & { wrt: "rho_p" | "rho_n"; parts?: number }): KernelSource {
  const b = new WgslBuilder(cfg.name, `xielu grad ${cfg.wrt} ${cfg.n}`);
  xieluHelpers(b);
  for (const n of ["x", cfg.wrt, "dy"]) b.bind(n, "f32");
  const term = (i: string): string =>
    cfg.wrt === "rho_p"
      ? `select(0.0, dy[${i}] * x[${i}] * x[${i}], x[${i}] > 0.0)`
      : `select(dy[${i}] * xielu_g(x[${i}], ${fmtF32(cfg.eps)}), 0.0, x[${i}] > 0.0)`;
  const shape = { name: cfg.name, outer: 1, red: cfg.n, inner: 1, op: "sum", parts: cfg.parts, wg: cfg.wg } as const;
  return reduceWith(b, shape, (i) => `${term(i)} * sig`, [`let sig = 1.0 / (1.0 + exp(-${cfg.wrt}[0]));`]);
}

export interface EmbedConfig {
  name: string;
  tokens: number;
  dim: number;
  vocab: number;
  /** A constant factor fused into the gather (FOG's input upscale ×50). */
  scale?: number;
  out?: OutCast;
  wg?: number;
}

/** y[t, :] = scale·table[ids[t], :] (ids clamped into the vocabulary). Bindings: ids (i32), table, y, [scales], [amax]. */
export function embed(cfg: EmbedConfig): KernelSource {
  const wg = cfg.wg ?? 256;
  const b = new WgslBuilder(cfg.name, `embed ${cfg.tokens}×${cfg.dim} of ${cfg.vocab}`);
  b.bind("ids", "i32");
  b.bind("table", "f32");
  const out = new CastWriter(b, "y", cfg.out ?? F32_OUT, wg);
  const D = cfg.dim;
  return wordKernel(b, cfg.tokens * D, out, wg, (e) => ({
    lets: [`let id = u32(clamp(ids[${e} / ${D}u], 0i, ${cfg.vocab - 1}i));`],
    value: `table[id * ${D}u + ${e} % ${D}u] * ${fmtF32(cfg.scale ?? 1)}`,
  }));
}

/**
 * The token index embedGradIndexed reads: vocab + 1 offsets, then the token positions grouped by id
 * in token order (a stable counting sort; ids clamped into the vocabulary as the lookup does). Made on
 * the host with each batch, O(tokens + vocab).
 */
export function tokenIndex(ids: Int32Array, vocab: number): Uint32Array {
  const out = new Uint32Array(vocab + 1 + ids.length);
  const clampId = (t: number): number => Math.min(Math.max(t, 0), vocab - 1);
  for (const t of ids) out[clampId(t) + 1]++;
  for (let v = 0; v < vocab; v++) out[v + 1] += out[v];
  const next = out.slice(0, vocab);
  ids.forEach((t, pos) => (out[vocab + 1 + next[clampId(t)]++] = pos));
  return out;
}

/**
 * dtable[v, :] = Σ_{t: ids[t] = v} dy[t, :] in token order (deterministic, no float atomics), from
 * tokenIndex's grouping: an invocation per (v, column) adds its id's rows, O(tokens·dim) in all.
 * Bindings: index (u32, tokenIndex layout), dy, dtable.
 */
export function embedGradIndexed(cfg: EmbedConfig): KernelSource {
  const wg = 64;
  const { tokens: M, dim: D, vocab } = cfg;
  const b = new WgslBuilder(cfg.name, `embed grad ${M}×${D} into ${vocab} (token index)`);
  b.bind("index", "u32");
  b.bind("dy", "f32");
  b.bind("dtable", "f32", "read_write");
  const body = [
    `let e = ${FLAT_WG} * ${wg}u + lidx;`,
    `if (e >= ${vocab * D}u) { return; }`,
    `let v = e / ${D}u; let d = e % ${D}u;`,
    `var acc = 0.0;`,
    `for (var p = index[v]; p < index[v + 1u]; p = p + 1u) { acc = acc + dy[index[${vocab + 1}u + p] * ${D}u + d]; }`,
    `dtable[e] = acc;`,
  ];
  return finish(b, wg, body, grid(Math.ceil((vocab * D) / wg)));
}

/**
 * dtable[v, :] = Σ_{t: ids[t] = v} dy[t, :] in token order (deterministic, no float atomics): one
 * workgroup per vocabulary row scans the ids a chunk at a time, compacts the matching token indices
 * with a workgroup prefix sum, then adds their dy rows. Costs O(vocab·tokens) id reads (coalesced,
 * cached) plus one read of dy. Bindings: ids (i32), dy, dtable.
 */
export function embedGrad(cfg: EmbedConfig): KernelSource {
  const wg = cfg.wg ?? 128;
  const { tokens: M, dim: D, vocab } = cfg;
  const KD = Math.ceil(D / wg);
  const b = new WgslBuilder(cfg.name, `embed grad ${M}×${D} into ${vocab}`);
  b.bind("ids", "i32");
  b.bind("dy", "f32");
  b.bind("dtable", "f32", "read_write");
  shared(b, "scan", "u32", wg);
  shared(b, "hits", "u32", wg);
  const body = [
    `let v = ${FLAT_WG};`,
    `if (v >= ${vocab}u) { return; }`,
    `var acc: array<f32, ${KD}>;`,
    `for (var c0 = 0u; c0 < ${M}u; c0 = c0 + ${wg}u) {`,
    `  let m = c0 + lidx;`,
    `  let hit = select(0u, 1u, m < ${M}u && ids[min(m, ${M - 1}u)] == i32(v));`,
    `  scan[lidx] = hit;`,
    `  workgroupBarrier();`,
    `  for (var s = 1u; s < ${wg}u; s = s * 2u) {`, // Hillis–Steele inclusive scan
    `    let add = select(0u, scan[max(lidx, s) - s], lidx >= s);`,
    `    workgroupBarrier();`,
    `    scan[lidx] = scan[lidx] + add;`,
    `    workgroupBarrier();`,
    `  }`,
    `  let count = scan[${wg - 1}u];`,
    `  if (hit == 1u) { hits[scan[lidx] - 1u] = m; }`,
    `  workgroupBarrier();`,
    `  for (var q = 0u; q < count; q = q + 1u) {`,
    `    let t = hits[q];`,
    `    for (var k = 0u; k < ${KD}u; k = k + 1u) { let d = k * ${wg}u + lidx; if (d < ${D}u) { acc[k] = acc[k] + dy[t * ${D}u + d]; } }`,
    `  }`,
    `  workgroupBarrier();`,
    `}`,
    `for (var k = 0u; k < ${KD}u; k = k + 1u) { let d = k * ${wg}u + lidx; if (d < ${D}u) { dtable[v * ${D}u + d] = acc[k]; } }`,
  ];
  return finish(b, wg, body, grid(vocab));
}
