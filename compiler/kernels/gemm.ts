// The GEMM generator: one typed config → WGSL for C = op(A)·op(B) with FP8/bf16/f32 operands, an
// f32 accumulator and a fused epilogue (scales, bias, activation, residual, cast, amax). Two paths,
// a tiled FMA path every adapter runs and a subgroup-matrix (tensor-core) path, share all I/O code.
import { ewExpr, ewHelpers } from "../expr.js";
import { type BindingSpec, type ElemType, WgslBuilder } from "../wgsl.js";
import {
  fp8DecodeName,
  fp8EncodeName,
  wgslBf16Decode,
  wgslBf16Encode,
  wgslFp8Decode,
  wgslFp8Encode,
  wgslFp8Pack,
} from "./fp8.js";

/** bf16: top half of an f32, 2 per u32. FP8: 4 codes per u32, element i in byte i % 4 (flat index). */
export type GemmOperandType = "f32" | "bf16" | "e4m3" | "e5m2";
export type GemmOutType = GemmOperandType;
export type GemmPath = "fma" | "subgroup-matrix";

/** Applied in this order after the scales: bias[n] → act → + residual[m, n]. */
export interface GemmEpilogue {
  bias?: boolean;
  act?: "gelu" | "silu" | "tanh" | "relu";
  residual?: boolean;
}

/** A tensor-core shape M×N×K (f16 components, f32 result), as the adapter reports it. */
export interface MmaShape {
  M: number;
  N: number;
  K: number;
}

/**
 * Tile parameters. Both paths: a workgroup computes a bm×bn block of C, stepping K by bk.
 * FMA: each thread computes tm rows × 4 columns. Subgroup-matrix: sgRows×sgCols subgroups of
 * `subgroupSize` invocations, each computing a (bm/sgRows)×(bn/sgCols) block of mma-shaped results.
 */
export interface GemmTile {
  bm: number;
  bn: number;
  bk: number;
  tm: number;
  mma: MmaShape;
  sgRows: number;
  sgCols: number;
  subgroupSize: number;
  /** Workgroup-memory copy of the operand tiles: rows of k (default), or as stored (see SharedLayout). */
  sharedLayout: "k-major" | "storage";
}

export interface GemmConfig {
  name: string;
  M: number;
  N: number;
  K: number;
  /** A stored [K, M] instead of [M, K]. */
  transA: boolean;
  /** B stored [N, K] instead of [K, N] (NT: the forward linear X·Wᵀ). */
  transB: boolean;
  a: GemmOperandType;
  b: GemmOperandType;
  /** Multiply the accumulator by scale_a[0] (A's per-tensor scale_inv). */
  scaleA?: boolean;
  scaleB?: boolean;
  /** FP8 out: value·scale_out[0] encoded saturating RNE, whole u32 words; amax of the unscaled value. */
  out: GemmOutType;
  epilogue?: GemmEpilogue;
  /** C += result (f32 or bf16 output). */
  accumulate?: boolean;
  path: GemmPath;
  tile?: Partial<GemmTile>;
  /** One-line provenance printed at the top of the WGSL (e.g. the .fog line). */
  origin?: string;
}

/** Structurally the same as every generator's KernelSource. */
export interface GemmKernel {
  wgsl: string;
  bindings: BindingSpec[];
  workgroups: [number, number, number];
  entryPoint: "main";
}

/** The part of the device capabilities (runtime/device.ts GpuCaps) the path choice reads. */
export interface GemmCaps {
  f16: boolean;
  subgroups: boolean;
  subgroupMatrix: { componentType: string; resultComponentType: string; M: number; N: number; K: number }[];
}

const isFp8 = (t: GemmOperandType): t is "e4m3" | "e5m2" => t === "e4m3" || t === "e5m2";

/** The f16 → f32 tensor-core shapes an adapter offers, the preferred (16×16×16) first. */
export function mmaShapesFor(caps: GemmCaps): MmaShape[] {
  const shapes = caps.subgroupMatrix
    .filter((c) => c.componentType === "f16" && c.resultComponentType === "f32")
    .map(({ M, N, K }) => ({ M, N, K }));
  const score = (s: MmaShape) => (s.M === 16 && s.N === 16 && s.K === 16 ? 0 : 1);
  return shapes.sort((x, y) => score(x) - score(y));
}

/** Paths this adapter runs, fastest first. The FMA path runs everywhere. */
export function gemmPathsFor(caps: GemmCaps): GemmPath[] {
  return caps.f16 && caps.subgroups && mmaShapesFor(caps).length > 0 ? ["subgroup-matrix", "fma"] : ["fma"];
}

const FMA_TILE = { bm: 64, bn: 64, bk: 16, tm: 4, sharedLayout: "k-major" as const };
// 128×128 per workgroup, 2×2 subgroups of 64×64 (4×4 16×16 results): 12 KiB of workgroup memory,
// under WebGPU's default 16 KiB limit. The autotuner may go bigger where the adapter allows.
const SGMM_TILE = { bm: 128, bn: 128, bk: 16, mma: { M: 16, N: 16, K: 16 }, sgRows: 2, sgCols: 2, subgroupSize: 32, sharedLayout: "k-major" as const };

export function resolveTile(cfg: GemmConfig): GemmTile {
  const t = { ...FMA_TILE, ...SGMM_TILE, ...(cfg.path === "fma" ? FMA_TILE : {}), ...cfg.tile };
  const need = (ok: boolean, what: string) => {
    if (!ok) throw new Error(`gemm '${cfg.name}': tile ${JSON.stringify(cfg.tile ?? {})}: ${what}`);
  };
  need(t.bm % 4 === 0 && t.bn % 4 === 0 && t.bk % 4 === 0, "bm, bn, bk must be multiples of 4");
  if (cfg.path === "fma") {
    need(t.bm % t.tm === 0, "bm must be a multiple of tm");
  } else {
    need(t.bk % t.mma.K === 0, "bk must be a multiple of mma.K");
    need(t.bm % (t.sgRows * t.mma.M) === 0 && t.bn % (t.sgCols * t.mma.N) === 0, "bm/bn must split into sgRows/sgCols × mma tiles");
    need((t.mma.M * t.mma.N) % 4 === 0, "mma.M·mma.N must be a multiple of 4");
  }
  return t;
}

function validate(cfg: GemmConfig): void {
  const fail = (msg: string) => {
    throw new Error(`gemm '${cfg.name}': ${msg}`);
  };
  for (const d of [cfg.M, cfg.N, cfg.K]) if (!Number.isInteger(d) || d < 1) fail(`M, N, K must be positive integers`);
  if (cfg.path === "subgroup-matrix" && !(isFp8(cfg.a) && isFp8(cfg.b))) {
    // FP8 is exact in f16. bf16 is not (its exponent range is wider): it needs a power-of-two
    // pre-scale into f16's range before it can use this path; until then bf16/f32 use FMA.
    fail(`the subgroup-matrix path takes FP8 operands only (got ${cfg.a}×${cfg.b}); use path "fma"`);
  }
  // Packed outputs are written as whole u32 words by one thread, so a word must not straddle rows.
  if (isFp8(cfg.out) && cfg.N % 4 !== 0) fail(`FP8 output needs N % 4 == 0 (N = ${cfg.N})`);
  if (cfg.out === "bf16" && cfg.N % 2 !== 0) fail(`bf16 output needs an even N (N = ${cfg.N})`);
  if (cfg.accumulate && isFp8(cfg.out)) fail("accumulate needs an f32 or bf16 output");
}

/** One operand seen as its storage matrix [rows, cols] (cols contiguous) and its place in the tile. */
interface Operand {
  name: "a" | "b";
  type: GemmOperandType;
  rows: number;
  cols: number;
  /** Storage rows run along K (A transposed, B not). */
  kRows: boolean;
  /** The tile extent along M (for A) or N (for B): bm or bn. */
  span: number;
  /** WGSL expression of the tile's first row/column of C along M (A) or N (B). */
  base: string;
}

function operands(cfg: GemmConfig, t: GemmTile): [Operand, Operand] {
  const { M, N, K } = cfg;
  return [
    { name: "a", type: cfg.a, rows: cfg.transA ? K : M, cols: cfg.transA ? M : K, kRows: cfg.transA, span: t.bm, base: "tile_m" },
    { name: "b", type: cfg.b, rows: cfg.transB ? N : K, cols: cfg.transB ? K : N, kRows: !cfg.transB, span: t.bn, base: "tile_n" },
  ];
}

const storageElem = (t: GemmOperandType): ElemType => (t === "f32" ? "f32" : "u32");

/** Precision operands are decoded into: f16 on the subgroup-matrix path (FP8 is exact in f16). */
type Prec = "f32" | "f16";

// The element codecs, all from compiler/kernels/fp8.ts (the WGSL twins of runtime/fp8.ts).
/** Element `lane` (a u32 expression) of a packed word, decoded exactly. */
function decodeLane(b: WgslBuilder, type: "bf16" | "e4m3" | "e5m2", word: string, lane: string, prec: Prec = "f32"): string {
  if (type === "bf16") {
    b.helper("bf16_decode", wgslBf16Decode());
    return `bf16_decode(bf16_unpack(${word}, ${lane}))`;
  }
  b.helper("fp8_pack", wgslFp8Pack());
  b.helper(fp8DecodeName(type, prec), wgslFp8Decode(type, prec));
  return `${fp8DecodeName(type, prec)}(fp8_unpack(${word}, ${lane}))`;
}

/** Two f32 expressions → one word of two bf16 (RNE). */
function encodeBf16Pair(b: WgslBuilder, lo: string, hi: string): string {
  b.helper("bf16_encode", wgslBf16Encode());
  return `bf16_pack2(bf16_encode(${lo}), bf16_encode(${hi}))`;
}

/** The four lanes of the vec4<f32> variable `v` → one word of FP8 codes (saturating RNE). */
function encodeFp8Word(b: WgslBuilder, format: "e4m3" | "e5m2", v: string): string {
  b.helper("fp8_pack", wgslFp8Pack());
  const enc = fp8EncodeName(format, true);
  b.helper(enc, wgslFp8Encode(format, true));
  return `fp8_pack4(${["x", "y", "z", "w"].map((l) => `${enc}(${v}.${l})`).join(", ")})`;
}

/**
 * `load_<x>(r, c0) -> vec4<prec>`: storage elements (r, c0..c0+3) decoded exactly, zero outside the
 * matrix (M/N/K tails, and rows that are not word aligned when K % 4 != 0). c0 is a multiple of 4.
 */
function loaderHelper(b: WgslBuilder, op: Operand, prec: Prec): string {
  const { name, type, rows, cols } = op;
  const vec = `vec4<${prec}>`;
  const lines = [`fn load_${name}(r: u32, c0: u32) -> ${vec} {`, `  if (r >= ${rows}u || c0 >= ${cols}u) { return ${vec}(); }`];
  if (type === "f32") {
    // f32 operands only run on the FMA path (prec f32).
    if (cols % 4 === 0) {
      lines.push(`  let i = r * ${cols}u + c0;`, `  return ${vec}(${name}[i], ${name}[i + 1u], ${name}[i + 2u], ${name}[i + 3u]);`);
    } else {
      lines.push(`  var v = ${vec}();`, `  for (var q = 0u; q < min(4u, ${cols}u - c0); q++) { v[q] = ${name}[r * ${cols}u + c0 + q]; }`, "  return v;");
    }
  } else if (cols % 4 === 0) {
    // Rows start on word boundaries: the 4 elements are whole words.
    const perWord = type === "bf16" ? 2 : 4;
    lines.push(`  let w = (r * ${cols}u + c0) / ${perWord}u;`);
    const lane = (q: number) =>
      perWord === 2 ? decodeLane(b, type, `${name}[w + ${q >> 1}u]`, `${q & 1}u`, prec) : decodeLane(b, type, `${name}[w]`, `${q}u`, prec);
    lines.push(`  return ${vec}(${[0, 1, 2, 3].map(lane).join(", ")});`);
  } else {
    // Rows are not word aligned: element by element, zero past the row's end.
    const perWord = type === "bf16" ? 2 : 4;
    lines.push(
      `  var v = ${vec}();`,
      `  for (var q = 0u; q < min(4u, ${cols}u - c0); q++) {`,
      `    let f = r * ${cols}u + c0 + q;`,
      `    v[q] = ${decodeLane(b, type, `${name}[f / ${perWord}u]`, `f % ${perWord}u`, prec)};`,
      "  }",
      "  return v;",
    );
  }
  lines.push("}");
  return lines.join("\n");
}

/**
 * Where a K step's tile of an operand lives in workgroup memory: rows of k ([bk][span], "k-major",
 * the default) or, with tile.sharedLayout "storage", the tile as stored ([tr][tc], rows padded by
 * 8 elements = 16 bytes so that fragment loads' rows spread over the banks), which makes every
 * staging write contiguous.
 */
interface SharedLayout {
  /** Rows of the copy run along K: element (k, mn) at k·stride + mn, else at mn·stride + k. */
  kFirst: boolean;
  stride: number;
  rows: number;
}

function sharedLayout(op: Operand, t: GemmTile): SharedLayout {
  if (t.sharedLayout === "k-major") return { kFirst: true, stride: op.span, rows: t.bk };
  return { kFirst: op.kRows, stride: (op.kRows ? op.span : t.bk) + 8, rows: op.kRows ? t.bk : op.span };
}

/** The workgroup-memory element (k, mn) of `op`'s copy, as a WGSL expression. */
function sharedAt(op: Operand, lay: SharedLayout, k: string, mn: string): string {
  const p = (e: string) => (/^\w+$/.test(e) ? e : `(${e})`);
  return `sh_${op.name}[${lay.kFirst ? `${p(k)} * ${lay.stride}u + ${mn}` : `${p(mn)} * ${lay.stride}u + ${k}`}]`;
}

/** Lines that stage this K step's tile of `op` into sh_<x> (decoded by load_<x>). */
function stageTile(op: Operand, t: GemmTile, threads: number, lay: SharedLayout): string[] {
  // Tile in storage coordinates, read in groups of 4 along the contiguous storage dimension.
  const tr = op.kRows ? t.bk : op.span;
  const tc = op.kRows ? op.span : t.bk;
  const groups = (tr * tc) / 4;
  const iters = Math.ceil(groups / threads);
  const r0 = op.kRows ? "k0" : op.base;
  const c0 = op.kRows ? op.base : "k0";
  // Storage (row i, col j) of the tile is (k, mn) = kRows ? (i, j) : (j, i).
  const dst = (q: number) => (op.kRows ? sharedAt(op, lay, "ti", `tj + ${q}u`) : sharedAt(op, lay, `tj + ${q}u`, "ti"));
  const body = [
    `let ti = g / ${tc / 4}u;`,
    `let tj = (g % ${tc / 4}u) * 4u;`,
    `let v = load_${op.name}(${r0} + ti, ${c0} + tj);`,
    ...[0, 1, 2, 3].map((q) => `${dst(q)} = v[${q}];`),
  ];
  const guarded = groups % threads === 0 ? body : [`if (g < ${groups}u) {`, ...body.map((l) => `  ${l}`), "}"];
  return [`for (var it = 0u; it < ${iters}u; it++) {`, `  let g = lidx + it * ${threads}u;`, ...guarded.map((l) => `  ${l}`), "}"];
}

/**
 * `epilogue(m, n, acc) -> f32`: finishes C[m, n..n+3] from the f32 accumulators (n % 4 == 0) and
 * returns the max |value| it produced (before the output scale), for the amax of FP8 outputs.
 */
function epilogueHelper(b: WgslBuilder, cfg: GemmConfig): string {
  const { M, N } = cfg;
  const ep = cfg.epilogue ?? {};
  const scales = [cfg.scaleA ? " * scale_a[0]" : "", cfg.scaleB ? " * scale_b[0]" : ""].join("");
  const steps: string[] = [];
  if (ep.bias) steps.push("x = x + bias[n + q];");
  if (ep.act) {
    for (const h of ewHelpers(ep.act)) b.helper(h.name, h.source);
    steps.push(`x = ${ewExpr(ep.act, ["x"])};`);
  }
  if (ep.residual) steps.push("x = x + residual[row + n + q];");
  if (cfg.accumulate) {
    const old = cfg.out === "f32" ? "c[row + n + q]" : decodeLane(b, "bf16", "c[(row + n + q) / 2u]", "(row + n + q) % 2u");
    steps.push(`x = x + ${old};`);
  }
  const lines = [
    "fn epilogue(m: u32, n: u32, acc: vec4<f32>) -> f32 {",
    `  if (m >= ${M}u || n >= ${N}u) { return 0.0; }`,
    `  let row = m * ${N}u;`,
    `  var v = acc${scales};`,
  ];
  if (steps.length) {
    lines.push(`  for (var q = 0u; q < min(4u, ${N}u - n); q++) {`, "    var x = v[q];", ...steps.map((l) => `    ${l}`), "    v[q] = x;", "  }");
  }
  // Columns past N stay out of the stores and the amax.
  if (N % 4 !== 0) lines.push(`  v = select(vec4<f32>(), v, n + vec4<u32>(0u, 1u, 2u, 3u) < vec4<u32>(${N}u));`);
  // Stores: f32 per element; bf16 two per word; FP8 one word (validate() makes these whole words).
  if (cfg.out === "f32") {
    lines.push(`  for (var q = 0u; q < min(4u, ${N}u - n); q++) { c[row + n + q] = v[q]; }`);
  } else if (cfg.out === "bf16") {
    lines.push(`  c[(row + n) / 2u] = ${encodeBf16Pair(b, "v.x", "v.y")};`);
    lines.push(`  if (n + 2u < ${N}u) { c[(row + n) / 2u + 1u] = ${encodeBf16Pair(b, "v.z", "v.w")}; }`);
  } else {
    lines.push("  let sv = v * scale_out[0];", `  c[(row + n) / 4u] = ${encodeFp8Word(b, cfg.out, "sv")};`);
  }
  lines.push("  let av = abs(v);", "  return max(max(av.x, av.y), max(av.z, av.w));", "}");
  return lines.join("\n");
}

/** Declares bindings in a fixed order: a, b, c, then the optional ones in GemmConfig order. */
function declareBindings(b: WgslBuilder, cfg: GemmConfig): void {
  b.bind("a", storageElem(cfg.a));
  b.bind("b", storageElem(cfg.b));
  b.bind("c", storageElem(cfg.out), "read_write");
  if (cfg.scaleA) b.bind("scale_a", "f32");
  if (cfg.scaleB) b.bind("scale_b", "f32");
  if (cfg.epilogue?.bias) b.bind("bias", "f32");
  if (cfg.epilogue?.residual) b.bind("residual", "f32");
  if (isFp8(cfg.out)) {
    b.bind("scale_out", "f32");
    b.bind("amax", "atomic<u32>", "read_write");
  }
}

/** The workgroup's amax → one global atomicMax (|x| bits order like the floats for x ≥ 0). */
function amaxReduce(cfg: GemmConfig): string[] {
  if (!isFp8(cfg.out)) return [];
  return [
    "atomicMax(&wg_amax[0], bitcast<u32>(lmax));",
    "workgroupBarrier();",
    "if (lidx == 0u) { atomicMax(&amax[0], atomicLoad(&wg_amax[0])); }",
  ];
}

/** FMA path: thread (tx, ty) accumulates rows ty·tm.. × columns tx·4.. of the tile in registers. */
function fmaBody(cfg: GemmConfig, t: GemmTile, ops: [Operand, Operand], threads: number, la: SharedLayout, lb: SharedLayout): string[] {
  const cols = t.bn / 4;
  const acc = Array.from({ length: t.tm }, (_, i) => i);
  const bv = [0, 1, 2, 3].map((j) => sharedAt(ops[1], lb, "kk", `tx * 4u + ${j}u`)).join(", ");
  return [
    `let tile_m = wid.y * ${t.bm}u;`,
    `let tile_n = wid.x * ${t.bn}u;`,
    `let tx = lidx % ${cols}u;`,
    `let ty = lidx / ${cols}u;`,
    `var acc: array<vec4<f32>, ${t.tm}>;`,
    // nwg.z is always 1: the bound only hides K's trip count, because fully unrolling the few K
    // steps of a small GEMM costs lavapipe's LLVM seconds per kernel and gains a GPU nothing.
    `let k_end = select(${cfg.K}u, 0u, nwg.z == 0u);`,
    `for (var k0 = 0u; k0 < k_end; k0 += ${t.bk}u) {`,
    ...stageTile(ops[0], t, threads, la).map((l) => `  ${l}`),
    ...stageTile(ops[1], t, threads, lb).map((l) => `  ${l}`),
    "  workgroupBarrier();",
    `  for (var kk = 0u; kk < ${t.bk}u; kk++) {`,
    `    let bv = vec4<f32>(${bv});`,
    ...acc.map((i) => `    acc[${i}] = fma(vec4<f32>(${sharedAt(ops[0], la, "kk", `ty * ${t.tm}u + ${i}u`)}), bv, acc[${i}]);`),
    "  }",
    "  workgroupBarrier();",
    "}",
    "var lmax = 0.0;",
    ...acc.map((i) => `lmax = max(lmax, epilogue(tile_m + ty * ${t.tm}u + ${i}u, tile_n + tx * 4u, acc[${i}]));`),
    ...amaxReduce(cfg),
  ];
}

/**
 * subgroupMatrixLoad of the fragment at k = ks, m (left) or n (right) = `off` within the tile.
 * Left fragments are m×k and right ones k×n, so a copy with rows of k is column-major for a left
 * fragment and row-major for a right one; a copy with rows of m or n the reverse.
 */
function fragmentLoad(type: string, op: Operand, lay: SharedLayout, ks: number, off: string, left: boolean): string {
  const major = lay.kFirst === left ? "col_major" : "row_major";
  const offset = lay.kFirst ? `${ks * lay.stride}u + ${off}` : `(${off}) * ${lay.stride}u + ${ks}u`;
  return `subgroupMatrixLoad<${type}, ${major}>(&sh_${op.name}, ${offset}, ${lay.stride}u)`;
}

/**
 * Subgroup-matrix path, as a helper main calls. Subgroup sg owns fragM×fragN f32 results; each K
 * step stages both tiles as f16 and runs fragment loads + multiply-accumulates; the results then
 * pass one at a time through a per-subgroup f32 staging block into the shared epilogue. Offsets
 * depend on subgroup_id, which the uniformity analysis cannot prove uniform within a subgroup
 * (it is), hence the diagnostic filter: a function attribute, as the builder writes no directives.
 */
function sgmmHelper(cfg: GemmConfig, t: GemmTile, ops: [Operand, Operand], threads: number, la: SharedLayout, lb: SharedLayout): string {
  const { M: mm, N: mn, K: mk } = t.mma;
  const fragM = t.bm / (t.sgRows * mm);
  const fragN = t.bn / (t.sgCols * mn);
  const left = `subgroup_matrix_left<f16, ${mk}, ${mm}>`;
  const right = `subgroup_matrix_right<f16, ${mn}, ${mk}>`;
  const result = `subgroup_matrix_result<f32, ${mn}, ${mm}>`;
  const fi = Array.from({ length: fragM }, (_, i) => i);
  const fj = Array.from({ length: fragN }, (_, j) => j);
  const pairs = fi.flatMap((i) => fj.map((j) => [i, j] as const));
  const kSteps = Array.from({ length: t.bk / mk }, (_, s) => s * mk);
  const block = mm * mn;
  const inner: string[] = [];
  for (const ks of kSteps) {
    inner.push(`{`);
    for (const i of fi) inner.push(`  let l${i} = ${fragmentLoad(left, ops[0], la, ks, `row_base + ${i * mm}u`, true)};`);
    for (const j of fj) inner.push(`  let r${j} = ${fragmentLoad(right, ops[1], lb, ks, `col_base + ${j * mn}u`, false)};`);
    for (const [i, j] of pairs) inner.push(`  acc${i}_${j} = subgroupMatrixMultiplyAccumulate(l${i}, r${j}, acc${i}_${j});`);
    inner.push(`}`);
  }
  const groups = t.sgRows * t.sgCols * (block / 4);
  const epi = (i: number, j: number) => [
    `subgroupMatrixStore<row_major>(&sh_c, sg * ${block}u, acc${i}_${j}, ${mn}u);`,
    "workgroupBarrier();",
    `for (var g = lidx; g < ${groups}u; g += ${threads}u) {`,
    `  let s = g / ${block / 4}u;`,
    `  let e = (g % ${block / 4}u) * 4u;`,
    `  let m = tile_m + (s / ${t.sgCols}u) * ${fragM * mm}u + ${i * mm}u + e / ${mn}u;`,
    `  let n = tile_n + (s % ${t.sgCols}u) * ${fragN * mn}u + ${j * mn}u + e % ${mn}u;`,
    `  let o = s * ${block}u + e;`,
    `  lmax = max(lmax, epilogue(m, n, vec4<f32>(sh_c[o], sh_c[o + 1u], sh_c[o + 2u], sh_c[o + 3u])));`,
    "}",
    "workgroupBarrier();",
  ];
  const body = [
    `let tile_m = wid.y * ${t.bm}u;`,
    `let tile_n = wid.x * ${t.bn}u;`,
    `let row_base = (sg / ${t.sgCols}u) * ${fragM * mm}u;`,
    `let col_base = (sg % ${t.sgCols}u) * ${fragN * mn}u;`,
    ...pairs.map(([i, j]) => `var acc${i}_${j}: ${result};`),
    `for (var k0 = 0u; k0 < ${cfg.K}u; k0 += ${t.bk}u) {`,
    ...stageTile(ops[0], t, threads, la).map((l) => `  ${l}`),
    ...stageTile(ops[1], t, threads, lb).map((l) => `  ${l}`),
    "  workgroupBarrier();",
    ...inner.map((l) => `  ${l}`),
    "  workgroupBarrier();",
    "}",
    "var lmax = 0.0;",
    ...pairs.flatMap(([i, j]) => epi(i, j)),
    ...amaxReduce(cfg),
  ];
  return [
    "@diagnostic(off, chromium.subgroup_matrix_uniformity)",
    "fn gemm_sgmm(lidx: u32, sg: u32, wid: vec3<u32>) {",
    ...body.map((l) => `  ${l}`),
    "}",
  ].join("\n");
}

/** Generates the GEMM kernel for `cfg`: WGSL, bindings in @binding order, and the dispatch size. */
export function generateGemm(cfg: GemmConfig): GemmKernel {
  validate(cfg);
  const t = resolveTile(cfg);
  const ops = operands(cfg, t);
  const layout = `${cfg.transA ? "T" : "N"}${cfg.transB ? "T" : "N"}`;
  const b = new WgslBuilder(cfg.name, cfg.origin ?? `gemm ${layout} ${cfg.M}x${cfg.N}x${cfg.K} ${cfg.a}x${cfg.b}->${cfg.out} (${cfg.path})`);
  const prec: Prec = cfg.path === "fma" ? "f32" : "f16";
  if (prec === "f16") b.enable("f16");
  declareBindings(b, cfg);
  for (const op of ops) b.helper(`load_${op.name}`, loaderHelper(b, op, prec));
  b.helper("epilogue", epilogueHelper(b, cfg));
  if (isFp8(cfg.out)) b.workgroupArray("wg_amax", "atomic<u32>", 1);
  const workgroups: [number, number, number] = [Math.ceil(cfg.N / t.bn), Math.ceil(cfg.M / t.bm), 1];

  const [la, lb] = ops.map((op) => sharedLayout(op, t));
  b.workgroupArray("sh_a", prec, la.rows * la.stride).workgroupArray("sh_b", prec, lb.rows * lb.stride);
  if (cfg.path === "fma") {
    const threads = (t.bn / 4) * (t.bm / t.tm);
    return { wgsl: b.build([threads], fmaBody(cfg, t, ops, threads, la, lb)), bindings: [...b.bindings], workgroups, entryPoint: "main" };
  }
  const threads = t.sgRows * t.sgCols * t.subgroupSize;
  b.enable("subgroups").enable("chromium_experimental_subgroup_matrix");
  b.workgroupArray("sh_c", "f32", t.sgRows * t.sgCols * t.mma.M * t.mma.N);
  b.helper("gemm_sgmm", sgmmHelper(cfg, t, ops, threads, la, lb));
  const wgsl = b.build([threads], ["gemm_sgmm(lidx, sgid, wid);"], ["@builtin(subgroup_id) sgid: u32"]);
  return { wgsl, bindings: [...b.bindings], workgroups, entryPoint: "main" };
}
