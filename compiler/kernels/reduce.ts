// Reductions — amax (current scaling), sum-to-shape (broadcast gradients and scalar parameter
// gradients), kurtosis moments (papers.md §7.1) — and what every non-GEMM generator shares: the
// KernelSource shape, a 2-D grid, workgroup tree reductions, FP8/bf16 codecs and the cast epilogue.
import { type EwOp, ewExpr, ewHelpers } from "../expr.js";
import type { Fp8Format } from "../ir.js";
import { type BindingSpec, WgslBuilder, fmtF32 } from "../wgsl.js";
import { fp8DecodeName, fp8EncodeName, wgslBf16Encode, wgslFp8Decode, wgslFp8Encode, wgslFp8Pack } from "./fp8.js";

export interface KernelSource {
  wgsl: string;
  bindings: BindingSpec[];
  workgroups: [number, number, number];
  entryPoint: "main";
}

export function finish(b: WgslBuilder, wg: number, body: string[], workgroups: [number, number, number], extra: string[] = []): KernelSource {
  return { wgsl: b.build([wg], body, extra), bindings: [...b.bindings], workgroups, entryPoint: "main" };
}

const MAX_DIM = 65535;
/** n workgroups laid out in 2-D when n exceeds the per-dimension limit; read back with FLAT_WG. */
export function grid(n: number): [number, number, number] {
  if (n <= MAX_DIM) return [Math.max(1, n), 1, 1];
  const y = Math.ceil(n / MAX_DIM);
  return [Math.ceil(n / y), y, 1];
}
export const FLAT_WG = "(wid.y * nwg.x + wid.x)";

export function isPow2(n: number): boolean {
  return n > 0 && (n & (n - 1)) === 0;
}
export function nextPow2(n: number): number {
  let p = 1;
  while (p < n) p *= 2;
  return p;
}
export function check(cond: boolean, msg: string): void {
  if (!cond) throw new Error(msg);
}

const sharedDeclared = new WeakMap<WgslBuilder, Set<string>>();
/** Declares a workgroup array once per builder (several helpers may share it). */
export function shared(b: WgslBuilder, name: string, elem: string, length: number): string {
  const set = sharedDeclared.get(b) ?? new Set<string>();
  sharedDeclared.set(b, set);
  if (!set.has(name)) b.workgroupArray(name, elem, length);
  set.add(name);
  return name;
}

export type ReduceOp = "sum" | "max";
const COMBINE: Record<ReduceOp, (a: string, b: string) => string> = {
  sum: (a, b) => `${a} + ${b}`,
  max: (a, b) => `max(${a}, ${b})`,
};

/**
 * A segmented tree reduction over `wg` invocations: each segment is `seg` invocations `stride`
 * apart (stride 1, seg = wg: the whole workgroup; seg = lanes: the lanes of one attention row;
 * stride = columns: down the rows of a column tile). Every member gets the segment's result, summed
 * in a fixed order (deterministic). Call in uniform control flow; returns the helper's name.
 */
export function segReduce(b: WgslBuilder, wg: number, seg: number, op: ReduceOp, stride = 1): string {
  check(isPow2(wg) && isPow2(seg) && isPow2(stride) && seg * stride <= wg, `segReduce: sizes ${wg}/${seg}/${stride} must be powers of two`);
  const arr = shared(b, "red_f32", "f32", wg);
  const name = `seg_${op}_${seg}${stride > 1 ? `_by${stride}` : ""}`;
  const member = stride > 1 ? `(li / ${stride}u) % ${seg}u` : `li % ${seg}u`;
  b.helper(
    name,
    [
      `fn ${name}(v: f32, li: u32) -> f32 {`,
      `  ${arr}[li] = v;`,
      `  workgroupBarrier();`,
      `  for (var s = ${Math.floor(seg / 2)}u; s > 0u; s = s / 2u) {`,
      `    if (${member} < s) { ${arr}[li] = ${COMBINE[op](`${arr}[li]`, `${arr}[li + s${stride > 1 ? ` * ${stride}u` : ""}]`)}; }`,
      `    workgroupBarrier();`,
      `  }`,
      `  let r = ${arr}[li - ${stride > 1 ? `(${member}) * ${stride}u` : member}];`,
      `  workgroupBarrier();`,
      `  return r;`,
      `}`,
    ].join("\n"),
  );
  return name;
}

/**
 * A reduction over `lanes` consecutive invocations (one row's): none for one lane; subgroup shuffles
 * when lanes ≤ `subgroupSize` (the adapter's minimum; emits `enable subgroups`), no barriers; else
 * segReduce through workgroup memory. Returns a WGSL expression maker; call in uniform control flow.
 * The shuffle path assumes a 1-D workgroup's subgroups are aligned runs of local_invocation_index.
 */
export function laneReduce(b: WgslBuilder, wg: number, lanes: number, subgroupSize: number | undefined, op: "sum" | "max"): (v: string) => string {
  if (lanes === 1) return (v) => v;
  if (subgroupSize && lanes <= subgroupSize) {
    // Butterfly: every lane ends with the same value, summed in the same order (deterministic).
    b.enable("subgroups");
    const fn = `lanes_${op}_${lanes}`;
    const steps: string[] = [];
    for (let s = lanes / 2; s >= 1; s /= 2) steps.push(`  r = ${op === "sum" ? `r + subgroupShuffleXor(r, ${s}u)` : `max(r, subgroupShuffleXor(r, ${s}u))`};`);
    b.helper(fn, [`fn ${fn}(v: f32) -> f32 {`, `  var r = v;`, ...steps, `  return r;`, `}`].join("\n"));
    return (v) => `${fn}(${v})`;
  }
  const f = segReduce(b, wg, lanes, op);
  return (v) => `${f}(${v}, lidx)`;
}

/**
 * Lines that atomicMax the workgroup's largest `bits` (a u32: f32 bits of a value ≥ 0, which order
 * like the floats) into the atomic `target` (e.g. `amax[3]`). With subgroups: subgroupMax and one
 * atomic per subgroup, no barrier; else a workgroup atomic, one barrier, one global atomic. Either
 * way the result is exact (max does not depend on order). A barrier tree (segReduce) costs far more
 * on llvmpipe, which runs each barrier as a switch through every SIMD chunk of the workgroup: a
 * 256-wide cast kernel spent ~90 % of its time in its 9 barriers (docs/kernels.md). Uniform control flow.
 */
export function atomicMaxOf(b: WgslBuilder, bits: string, target: string, subgroups: boolean): string[] {
  if (subgroups) {
    b.enable("subgroups");
    return [`{`, `  let sg_max = subgroupMax(${bits});`, `  if (subgroupElect()) { atomicMax(&${target}, sg_max); }`, `}`];
  }
  const wgMax = shared(b, `wg_max_${target.replace(/[^a-z0-9]/gi, "_")}`, "atomic<u32>", 1); // one per target
  return [`atomicMax(&${wgMax}[0], ${bits});`, `workgroupBarrier();`, `if (lidx == 0u) { atomicMax(&${target}, atomicLoad(&${wgMax}[0])); }`];
}

// ---- FP8 / bf16 codecs ---------------------------------------------------------------------

export interface Codec {
  /** WGSL expression: the code (low 8 bits of a u32) of f32 `x`, already scaled. */
  enc(x: string): string;
  /** WGSL expression: the f32 value of code `c` (a u32 whose low 8 bits hold it). */
  dec(c: string): string;
}

/** The shared WGSL FP8 codec helpers (compiler/kernels/fp8.ts), added to `b`. */
export function fp8Codec(b: WgslBuilder, format: Fp8Format, saturate = true): Codec {
  const enc = fp8EncodeName(format, saturate);
  const dec = fp8DecodeName(format);
  b.helper(enc, wgslFp8Encode(format, saturate)).helper(dec, wgslFp8Decode(format)).helper("fp8_pack", wgslFp8Pack());
  return { enc: (x) => `${enc}(${x})`, dec: (c) => `${dec}(${c})` };
}

/** WGSL f32 values of the four FP8 codes packed in u32 `w` (element k in byte k). */
export function unpack4(c: Codec, w: string): string[] {
  return [0, 1, 2, 3].map((k) => c.dec(`fp8_unpack(${w}, ${k}u)`));
}

// ---- output cast epilogue ------------------------------------------------------------------

/**
 * How a kernel stores its f32 results: plain f32; bf16 packed two per u32 (round to nearest even);
 * or FP8 packed four per u32, q = encode(x · scales[scale]). `amax` (an index into the `amax`
 * binding) records max |x| of the unscaled values by atomicMax of the f32 bits (valid for x ≥ 0).
 */
export type OutCast = (
  | { dtype: "f32"; amax?: number }
  | { dtype: "bf16"; amax?: number }
  | { dtype: Fp8Format; scale: number; amax?: number; saturate?: boolean }
) & {
  /** The adapter has subgroups: the amax is reduced by subgroupMax instead of workgroup memory (see atomicMaxOf). */
  subgroups?: boolean;
};

export const F32_OUT: OutCast = { dtype: "f32" };

/** Elements per stored word: 1 (f32), 2 (bf16), 4 (FP8). */
export function packWidth(o: OutCast): 1 | 2 | 4 {
  return o.dtype === "f32" ? 1 : o.dtype === "bf16" ? 2 : 4;
}

/** Emits the stores of one output tensor; the kernel calls prologue, store (per word) and epilogue. */
export class CastWriter {
  readonly width: 1 | 2 | 4;
  private readonly codec?: Codec;

  constructor(
    private readonly b: WgslBuilder,
    readonly name: string,
    private readonly cast: OutCast,
    private readonly wg: number,
  ) {
    this.width = packWidth(cast);
    b.bind(name, cast.dtype === "f32" ? "f32" : "u32", "read_write");
    if (cast.dtype === "e4m3" || cast.dtype === "e5m2") {
      if (!b.bindings.some((x) => x.name === "scales")) b.bind("scales", "f32");
      this.codec = fp8Codec(b, cast.dtype, cast.saturate ?? true);
    }
    if (cast.amax !== undefined && !b.bindings.some((x) => x.name === "amax")) b.bind("amax", "atomic<u32>", "read_write");
    if (cast.dtype === "bf16") b.helper("bf16_encode", wgslBf16Encode());
  }

  private get v(): string {
    return this.name.replace(/[^a-z0-9]/gi, "_");
  }

  prologue(): string[] {
    const out: string[] = [];
    if ("scale" in this.cast) out.push(`let ${this.v}_scale = scales[${this.cast.scale}];`);
    if (this.cast.amax !== undefined) out.push(`var ${this.v}_amax = 0.0;`);
    return out;
  }

  /** Stores `vals` (width of them) as word `word` of the output; `valid` guards the store. */
  store(vals: string[], word: string, valid = "true"): string[] {
    check(vals.length === this.width, `CastWriter: ${vals.length} values for width ${this.width}`);
    const v = this.v;
    const out: string[] = [];
    const names = vals.map((x, k) => {
      out.push(`let ${v}_y${k} = ${x};`);
      return `${v}_y${k}`;
    });
    if (this.cast.amax !== undefined) {
      const absmax = names.map((n) => `abs(${n})`).reduce((a, c) => `max(${a}, ${c})`);
      out.push(`${v}_amax = max(${v}_amax, select(0.0, ${absmax}, ${valid}));`);
    }
    let word32: string;
    if (this.codec) word32 = `fp8_pack4(${names.map((n) => this.codec!.enc(`${n} * ${v}_scale`)).join(", ")})`;
    else if (this.width === 2) word32 = `bf16_pack2(bf16_encode(${names[0]}), bf16_encode(${names[1]}))`;
    else word32 = names[0];
    out.push(`if (${valid}) { ${this.name}[${word}] = ${word32}; }`);
    return ["{", ...out.map((l) => `  ${l}`), "}"];
  }

  /** The workgroup's max of the captured |x| into amax[index] (uniform control flow). */
  epilogue(): string[] {
    if (this.cast.amax === undefined) return [];
    return atomicMaxOf(this.b, `bitcast<u32>(${this.v}_amax)`, `amax[${this.cast.amax}]`, this.cast.subgroups ?? false);
  }
}

// ---- fused expression trees ----------------------------------------------------------------

/** An expression over the kernel's inputs: input i, a literal, or an expr.ts op applied to subtrees. */
export type Ew = { in: number } | { lit: number } | { op: EwOp; args: Ew[]; factor?: number };

/** WGSL for `e` (adding expr.ts helpers to `b`); `leaf(i)` is input i's value at the current element. */
export function renderEw(b: WgslBuilder, e: Ew, leaf: (i: number) => string): string {
  if ("in" in e) return leaf(e.in);
  if ("lit" in e) return fmtF32(e.lit);
  for (const h of ewHelpers(e.op)) b.helper(h.name, h.source);
  return ewExpr(e.op, e.args.map((a) => renderEw(b, a, leaf)), { factor: e.factor });
}

/** How an input maps onto the [rows, cols] output: same shape, one [cols] row for all rows, one value per row, or a scalar. */
export type Broadcast = "none" | "row" | "col" | "scalar";

export function broadcastIndex(bc: Broadcast, e: string, cols: number): string {
  return { none: e, row: `(${e}) % ${cols}u`, col: `(${e}) / ${cols}u`, scalar: "0u" }[bc];
}

// ---- reductions ----------------------------------------------------------------------------

/**
 * A reduction of a tensor viewed as [outer, red, inner] over its middle axis: column sums of
 * [rows, cols] are outer 1, red rows, inner cols; row sums are inner 1; a scalar is outer = inner = 1.
 * `parts` > 1 splits the reduced axis over workgroups and writes partials [parts, outer, inner]
 * (a second reduce with red = parts adds them: deterministic, no float atomics).
 */
export interface ReduceShape {
  name: string;
  outer: number;
  red: number;
  inner: number;
  /** sum, max, or max of |·| (the amax of current scaling). */
  op: "sum" | "max" | "absmax";
  /** Multiplies the result (e.g. 1/n for a mean). */
  scale?: number;
  parts?: number;
  /** absmax only: atomicMax the result's f32 bits into amax[index] instead of writing `y`. */
  atomicAmax?: number;
  wg?: number;
}

export interface ReduceConfig extends ReduceShape {
  /** Number of same-shape f32 inputs in0…; default 1. */
  inputs?: number;
  /** The reduced value per element (default in0): e.g. dy·x for a scalar gain's gradient. */
  map?: Ew;
}

/** [outer, red, inner] reducing `from` to `to` (numpy sum-to-shape; the reduced axes must be adjacent). */
export function sumToShape(from: readonly number[], to: readonly number[]): { outer: number; red: number; inner: number } {
  const t = [...Array(from.length - to.length).fill(1), ...to];
  const reduced = from.map((d, i) => d !== t[i]);
  from.forEach((d, i) => check(t[i] === d || t[i] === 1, `sumTo: cannot reduce [${from}] to [${to}]`));
  const first = reduced.indexOf(true);
  const last = reduced.lastIndexOf(true);
  if (first < 0) return { outer: from.reduce((a, d) => a * d, 1), red: 1, inner: 1 };
  check(reduced.slice(first, last + 1).every((r, k) => r || from[first + k] === 1), `sumTo: reduced axes of [${from}] → [${to}] are not adjacent`);
  const prod = (a: number, z: number): number => from.slice(a, z).reduce((x, d) => x * d, 1);
  return { outer: prod(0, first), red: prod(first, last + 1), inner: prod(last + 1, from.length) };
}

/**
 * The reduction skeleton, the per-element value given by `value(index)` (`pre`: lines before the
 * loop). A workgroup is TX columns of `inner` × TY invocations down `red`, reduced in workgroup
 * memory with stride TX. Bindings: whatever `b` holds, then y (or amax).
 */
export function reduceWith(b: WgslBuilder, cfg: ReduceShape, value: (i: string) => string, pre: string[] = []): KernelSource {
  const { outer, red, inner, op } = cfg;
  const wg = cfg.wg ?? 256;
  const parts = cfg.parts ?? 1;
  const TX = Math.min(wg, nextPow2(inner));
  const TY = wg / TX;
  const tiles = Math.ceil(inner / TX);
  const chunk = Math.ceil(red / parts);
  check(cfg.atomicAmax === undefined || op === "absmax", `${cfg.name}: atomicAmax needs op absmax`);
  if (cfg.atomicAmax !== undefined) b.bind("amax", "atomic<u32>", "read_write");
  else b.bind("y", "f32", "read_write");
  const combine = op === "sum" ? (a: string, v: string): string => `${a} + ${v}` : (a: string, v: string): string => `max(${a}, ${v})`;
  const identity = op === "max" ? fmtF32(-3.4e38) : "0.0";
  const result = segReduce(b, wg, TY, op === "sum" ? "sum" : "max", TX);
  const body = [
    `let wgi = ${FLAT_WG};`,
    `let part = wgi % ${parts}u; let tile = (wgi / ${parts}u) % ${tiles}u; let o = min(wgi / ${parts * tiles}u, ${outer - 1}u);`,
    `let tx = lidx % ${TX}u; let ty = lidx / ${TX}u; let i = tile * ${TX}u + tx;`,
    ...pre,
    `var acc = ${identity};`,
    `if (i < ${inner}u) {`,
    `  for (var r = part * ${chunk}u + ty; r < min(${red}u, part * ${chunk}u + ${chunk}u); r = r + ${TY}u) {`,
    `    let idx = (o * ${red}u + r) * ${inner}u + i;`,
    `    acc = ${combine("acc", op === "absmax" ? `abs(${value("idx")})` : value("idx"))};`,
    `  }`,
    `}`,
    `let total = ${result}(acc, lidx) * ${fmtF32(cfg.scale ?? 1)};`,
    cfg.atomicAmax !== undefined
      ? `if (lidx == 0u) { atomicMax(&amax[${cfg.atomicAmax}], bitcast<u32>(total)); }`
      : `if (ty == 0u && i < ${inner}u && wgi < ${outer * tiles * parts}u) { y[(part * ${outer}u + o) * ${inner}u + i] = total; }`,
  ];
  return finish(b, wg, body, grid(outer * tiles * parts));
}

/** Sum / max / absmax of map(in0, …) over the middle axis. Bindings: in0…, y (or amax). */
export function reduce(cfg: ReduceConfig): KernelSource {
  const b = new WgslBuilder(cfg.name, `reduce ${cfg.op} [${cfg.outer}, ${cfg.red}, ${cfg.inner}]`);
  const n = cfg.inputs ?? 1;
  for (let i = 0; i < n; i++) b.bind(`in${i}`, "f32");
  return reduceWith(b, cfg, (idx) => renderEw(b, cfg.map ?? { in: 0 }, (i) => `in${i}[${idx}]`));
}

export interface KurtosisConfig {
  name: string;
  /** x is [tokens, width] (tokens = batch·seqLen). */
  tokens: number;
  width: number;
  /** per_token: each row is a vector (the paper); per_sequence: seqLen rows flattened (the released code). */
  mode: "per_token" | "per_sequence";
  seqLen: number;
  vectorsPerWorkgroup?: number;
  wg?: number;
}

/**
 * papers.md §7.1: the mean over vectors of mean(x⁴)/mean(x²)² (uncentred; an all-zero vector gives
 * NaN, as in the reference). Workgroup w writes Σ over its vectors / (number of vectors) to y[w]:
 * with one workgroup that is the kurtosis, else partials for reduce(). Bindings: x, y.
 */
export function kurtosis(cfg: KurtosisConfig): KernelSource {
  const wg = cfg.wg ?? 256;
  const len = cfg.mode === "per_token" ? cfg.width : cfg.width * cfg.seqLen;
  const vectors = (cfg.tokens * cfg.width) / len;
  check(Number.isInteger(vectors), `${cfg.name}: ${cfg.tokens} tokens is not a whole number of sequences`);
  const vpw = cfg.vectorsPerWorkgroup ?? 1;
  const parts = Math.ceil(vectors / vpw);
  const b = new WgslBuilder(cfg.name, `kurtosis ${cfg.mode} of ${vectors} vectors of ${len}`);
  b.bind("x", "f32");
  b.bind("y", "f32", "read_write");
  const sum = segReduce(b, wg, wg, "sum");
  const body = [
    `let wgi = ${FLAT_WG};`,
    `if (wgi >= ${parts}u) { return; }`,
    `var acc = 0.0;`,
    `for (var vec = wgi * ${vpw}u; vec < min(wgi * ${vpw}u + ${vpw}u, ${vectors}u); vec = vec + 1u) {`,
    `  var m2 = 0.0; var m4 = 0.0;`,
    `  for (var j = lidx; j < ${len}u; j = j + ${wg}u) { let v = x[vec * ${len}u + j]; let v2 = v * v; m2 = m2 + v2; m4 = m4 + v2 * v2; }`,
    `  let s2 = ${sum}(m2, lidx) / ${fmtF32(len)}; let s4 = ${sum}(m4, lidx) / ${fmtF32(len)};`,
    `  acc = acc + s4 / (s2 * s2);`,
    `}`,
    `if (lidx == 0u) { y[wgi] = acc / ${fmtF32(vectors)}; }`,
  ];
  return finish(b, wg, body, grid(parts));
}
