// GEMM I/O shared by every path and variant: the operands seen as storage matrices, exact loaders
// (f32, bf16, FP8 decoded a word at a time), the workgroup-memory staging of operand tiles, the fused
// epilogue (scales, bias, activation, residual, accumulate, cast, amax) and the bindings.
import { FP8_FORMATS, type Fp8Spec } from "../../runtime/fp8.js";
import { ewExpr, ewHelpers } from "../expr.js";
import { type ElemType, WgslBuilder } from "../wgsl.js";
import { fp8EncodeName, wgslBf16Encode, wgslBf16Decode, wgslFp8Decode, fp8DecodeName, wgslFp8Encode, wgslFp8Pack } from "./fp8.js";
import type { GemmConfig, GemmOperandType, GemmTile } from "./gemm.js";

export const isFp8 = (t: GemmOperandType): t is "e4m3" | "e5m2" => t === "e4m3" || t === "e5m2";

/** Precision operands are decoded into: f16 on the subgroup-matrix path (FP8 is exact in f16). */
export type Prec = "f32" | "f16";

/** One operand seen as its storage matrix [rows, cols] (cols contiguous) and its place in the tile. */
export interface Operand {
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

export function operands(cfg: GemmConfig, t: GemmTile): [Operand, Operand] {
  const { M, N, K } = cfg;
  return [
    { name: "a", type: cfg.a, rows: cfg.transA ? K : M, cols: cfg.transA ? M : K, kRows: cfg.transA, span: t.bm, base: "tile_m" },
    { name: "b", type: cfg.b, rows: cfg.transB ? N : K, cols: cfg.transB ? K : N, kRows: !cfg.transB, span: t.bn, base: "tile_n" },
  ];
}

const storageElem = (t: GemmOperandType): ElemType => (t === "f32" ? "f32" : "u32");
const hex = (n: number): string => `0x${(n >>> 0).toString(16)}u`;
const u4 = (x: string | number): string => `vec4<u32>(${typeof x === "number" ? hex(x) : x})`;

/** Element `lane` (a u32 expression) of a packed word, decoded exactly (the scalar codecs of fp8.ts). */
export function decodeLane(b: WgslBuilder, type: "bf16" | "e4m3" | "e5m2", word: string, lane: string, prec: Prec = "f32"): string {
  if (type === "bf16") {
    b.helper("bf16_decode", wgslBf16Decode());
    return `bf16_decode(bf16_unpack(${word}, ${lane}))`;
  }
  b.helper("fp8_pack", wgslFp8Pack());
  b.helper(fp8DecodeName(type, prec), wgslFp8Decode(type, prec));
  return `${fp8DecodeName(type, prec)}(fp8_unpack(${word}, ${lane}))`;
}

/**
 * `fp8x4_decode_<fmt>[_h](word) -> vec4<prec>`: the four codes of a word decoded at once, branch-free
 * (vector selects), bit-identical to the scalar decoders of fp8.ts, which the tests hold to
 * runtime/fp8.ts. Normal codes: the magnitude moved under the exponent field and rebiased in the
 * integer bits; subnormals as m·2^(1−bias−M) (a normal f16/f32); inf/NaN from the format's table.
 */
export function fp8WordDecoder(b: WgslBuilder, spec: Fp8Spec, prec: Prec): string {
  const name = `fp8x4_decode_${spec.name}${prec === "f16" ? "_h" : ""}`;
  const M = spec.manBits;
  const [mantBits, bias, signShift] = prec === "f32" ? [23, 127, 24] : [10, 15, 8];
  const fromBits = (bits: string) =>
    prec === "f32"
      ? `bitcast<vec4<f32>>(${bits})`
      : `vec4<f16>(bitcast<vec2<f16>>(${bits}.x | (${bits}.y << 16u)), bitcast<vec2<f16>>(${bits}.z | (${bits}.w << 16u)))`;
  const lines = [`fn ${name}(word: u32) -> vec4<${prec}> {`];
  if (prec === "f16" && spec.expBits === 5 && spec.bias === 15 && spec.hasInf) {
    // E5M2 is the top byte of an IEEE binary16, inf and NaN included: two codes per f16 pair.
    lines.push(
      "  let lo = ((word & 0xffu) << 8u) | ((word & 0xff00u) << 16u);",
      "  let hi = ((word >> 8u) & 0xff00u) | (word & 0xff000000u);",
      "  return vec4<f16>(bitcast<vec2<f16>>(lo), bitcast<vec2<f16>>(hi));",
      "}",
    );
  } else if (prec === "f16" && spec.expBits === 4 && spec.manBits === 3 && !spec.hasInf) {
    // E4M3 (bias 7, no inf, NaN = S.1111.111) on the staging hot path, two codes per f16 pair with
    // integer ops: sign to bit 15, exponent+mantissa to bits 7..13 makes an f16 of value·2^-8 for
    // every finite code (subnormals become f16 subnormals with the same scaling), so one exact
    // multiply by 256 rebiases all of them. A magnitude of 0x7f gets an all-ones exponent (NaN).
    const nanBits = (f: string) => `((${f} & 0x80u) * 0xfcu) | ((${f} & 0x8000u) * 0xfc00u)`;
    lines.push(
      "  let nan = ((word & 0x7f7f7f7fu) + 0x01010101u) & 0x80808080u;",
      `  let lo = ((word & 0x7fu) << 7u) | ((word & 0x80u) << 8u) | ((word & 0x7f00u) << 15u) | ((word & 0x8000u) << 16u) | ${nanBits("nan")};`,
      `  let hi = ((word & 0x7f0000u) >> 9u) | ((word & 0x800000u) >> 8u) | ((word & 0x7f000000u) >> 1u) | (word & 0x80000000u) | ${nanBits("(nan >> 16u)")};`,
      "  return vec4<f16>(bitcast<vec2<f16>>(lo), bitcast<vec2<f16>>(hi)) * 256.0h;",
      "}",
    );
  } else {
    lines.push("  let c = fp8_unpack4(word);");
    const specialBits = (inf: number, nan: number) =>
      spec.hasInf ? `select(${u4(nan)}, ${u4(inf)}, mag == ${u4(spec.infCode)})` : u4(nan);
    const [inf, nan] = prec === "f32" ? [0x7f800000, 0x7fc00000] : [0x7c00, 0x7e00];
    const special = spec.hasInf ? `mag >= ${u4(spec.infCode)}` : `mag == ${u4(spec.nanCode)}`;
    lines.push(
      `  let sign = (c & ${u4(0x80)}) << ${u4(signShift)};`,
      `  let mag = c & ${u4(0x7f)};`,
      `  let normal = sign | ((mag << ${u4(mantBits - M)}) + ${u4((bias - spec.bias) << mantBits)});`,
      `  let bits = select(normal, sign | ${specialBits(inf, nan)}, ${special});`,
      `  let sub = vec4<${prec}>(mag) * ${2 ** (1 - spec.bias - M)};`,
      `  return select(${fromBits("bits")}, select(sub, -sub, sign != ${u4(0)}), mag < ${u4(1 << M)});`,
      "}",
    );
  }
  b.helper("fp8_pack", wgslFp8Pack());
  b.helper(name, lines.join("\n"));
  return name;
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
export function loaderHelper(b: WgslBuilder, op: Operand, prec: Prec, preScale = false): string {
  const { name, type, rows, cols } = op;
  const vec = `vec4<${prec}>`;
  // GemmConfig.preScale: the f32 value times 2^e (pre_<x>, set once by preScaleStart) before its rounding to f16.
  const pre = preScale ? ` * pre_${name}` : "";
  const lines = [`fn load_${name}(r: u32, c0: u32) -> ${vec} {`, `  if (r >= ${rows}u || c0 >= ${cols}u) { return ${vec}(); }`];
  if (type === "f32") {
    // f32 operands only run on the FMA path (prec f32).
    if (cols % 4 === 0) {
      lines.push(`  let i = r * ${cols}u + c0;`, `  return ${vec}(${name}[i], ${name}[i + 1u], ${name}[i + 2u], ${name}[i + 3u]);`);
    } else {
      lines.push(`  var v = ${vec}();`, `  for (var q = 0u; q < min(4u, ${cols}u - c0); q++) { v[q] = ${name}[r * ${cols}u + c0 + q]; }`, "  return v;");
    }
  } else if (cols % 4 === 0) {
    // Rows start on word boundaries: the 4 elements are whole words, decoded a word at a time.
    if (type === "bf16") {
      // bf16 is the top half of an f32: element 2i is the low half of word i.
      lines.push(
        `  let w = (r * ${cols}u + c0) / 2u;`,
        `  let lo = ${name}[w];`,
        `  let hi = ${name}[w + 1u];`,
        `  return ${vec}(bitcast<vec4<f32>>(vec4<u32>(lo << 16u, lo & 0xffff0000u, hi << 16u, hi & 0xffff0000u))${pre});`,
      );
    } else {
      lines.push(`  return ${fp8WordDecoder(b, FP8_FORMATS[type], prec)}(${name}[(r * ${cols}u + c0) / 4u]);`);
    }
  } else {
    // Rows are not word aligned: element by element, zero past the row's end.
    const perWord = type === "bf16" ? 2 : 4;
    lines.push(
      `  var v = ${vec}();`,
      `  for (var q = 0u; q < min(4u, ${cols}u - c0); q++) {`,
      `    let f = r * ${cols}u + c0 + q;`,
      `    v[q] = ${type === "bf16" && prec === "f16" ? `f16(${decodeLane(b, type, `${name}[f / ${perWord}u]`, `f % ${perWord}u`)}${pre})` : decodeLane(b, type, `${name}[f / ${perWord}u]`, `f % ${perWord}u`, prec)};`,
      "  }",
      "  return v;",
    );
  }
  lines.push("}");
  return lines.join("\n");
}

/**
 * An operand's four-element groups as fetched from storage (`fetch_<x>(r, c0)`, zero outside the
 * matrix) and turned into vec4<prec> later (`decode(raw)`), so that a kernel can issue the next K
 * step's loads early and decode after other work. Word-aligned FP8 rows fetch the raw u32 (decoded
 * then); every other operand fetches through load_<x>, already decoded.
 */
export interface RawFetch {
  type: string;
  decode: (raw: string) => string;
}

export function rawFetchHelper(b: WgslBuilder, op: Operand, prec: Prec): RawFetch {
  const { name, type, rows, cols } = op;
  if (isFp8(type) && cols % 4 === 0) {
    const decoder = fp8WordDecoder(b, FP8_FORMATS[type], prec);
    b.helper(
      `fetch_${name}`,
      [`fn fetch_${name}(r: u32, c0: u32) -> u32 {`, `  if (r >= ${rows}u || c0 >= ${cols}u) { return 0u; }`, `  return ${name}[(r * ${cols}u + c0) / 4u];`, "}"].join("\n"),
    );
    return { type: "u32", decode: (raw) => `${decoder}(${raw})` };
  }
  b.helper(`fetch_${name}`, `fn fetch_${name}(r: u32, c0: u32) -> vec4<${prec}> {\n  return load_${name}(r, c0);\n}`);
  return { type: `vec4<${prec}>`, decode: (raw) => raw };
}

/**
 * Where a K step's tile of an operand lives in workgroup memory: rows of k ([bk][span + pad],
 * "k-major") or the tile as stored ([tr][tc + pad], "storage"), which makes every staging write
 * contiguous. Padding rows by 8 f16 (16 bytes) spreads fragment loads' rows over the banks.
 */
export interface SharedLayout {
  /** Rows of the copy run along K: element (k, mn) at k·stride + mn, else at mn·stride + k. */
  kFirst: boolean;
  stride: number;
  rows: number;
}

export function sharedLayout(op: Pick<Operand, "kRows" | "span">, t: GemmTile): SharedLayout {
  if (t.sharedLayout === "k-major") return { kFirst: true, stride: op.span + t.pad, rows: t.bk };
  return { kFirst: op.kRows, stride: (op.kRows ? op.span : t.bk) + t.pad, rows: op.kRows ? t.bk : op.span };
}

/** The workgroup-memory element (k, mn) of `op`'s copy, as a WGSL expression; `base` selects a buffer of several. */
export function sharedAt(op: Operand, lay: SharedLayout, k: string, mn: string, base?: string): string {
  const p = (e: string) => (/^\w+$/.test(e) ? e : `(${e})`);
  return `sh_${op.name}[${base ? `${base} + ` : ""}${lay.kFirst ? `${p(k)} * ${lay.stride}u + ${mn}` : `${p(mn)} * ${lay.stride}u + ${k}`}]`;
}

/**
 * Lines that stage this K step's tile of `op` into workgroup memory (decoded by load_<x>), read in
 * groups of 4 along the contiguous storage dimension; `store(ti, tj, v)` writes the group at storage
 * (row ti, cols tj..tj+3) of the tile, i.e. (k, mn) = kRows ? (ti, tj..) : (tj.., ti).
 */
export function stageTile(op: Operand, t: GemmTile, threads: number, store: (ti: string, tj: string, v: string) => string[]): string[] {
  const tr = op.kRows ? t.bk : op.span;
  const tc = op.kRows ? op.span : t.bk;
  const groups = (tr * tc) / 4;
  const iters = Math.ceil(groups / threads);
  const r0 = op.kRows ? "k0" : op.base;
  const c0 = op.kRows ? op.base : "k0";
  const body = [`let ti = g / ${tc / 4}u;`, `let tj = (g % ${tc / 4}u) * 4u;`, `let v = load_${op.name}(${r0} + ti, ${c0} + tj);`, ...store("ti", "tj", "v")];
  const guarded = groups % threads === 0 ? body : [`if (g < ${groups}u) {`, ...body.map((l) => `  ${l}`), "}"];
  return [`for (var it = 0u; it < ${iters}u; it++) {`, `  let g = lidx + it * ${threads}u;`, ...guarded.map((l) => `  ${l}`), "}"];
}

/** stageTile's store for a scalar copy laid out by `lay` (into the buffer at `base`, if given). */
export function scalarStore(op: Operand, lay: SharedLayout, base?: string): (ti: string, tj: string, v: string) => string[] {
  return (ti, tj, v) =>
    [0, 1, 2, 3].map((q) => `${op.kRows ? sharedAt(op, lay, ti, `${tj} + ${q}u`, base) : sharedAt(op, lay, `${tj} + ${q}u`, ti, base)} = ${v}[${q}];`);
}

/**
 * `epilogue(m, n, acc) -> f32`: finishes C[m, n..n+3] from the f32 accumulators (n % 4 == 0) and
 * returns the max |value| it produced (before the output scale), for the amax of FP8 outputs.
 */
export function epilogueHelper(b: WgslBuilder, cfg: GemmConfig): string {
  const { M, N } = cfg;
  const ep = cfg.epilogue ?? {};
  const unPre = cfg.preScale ? " * unpre_a * unpre_b" : "";
  const scales = [cfg.scaleA ? " * scale_a[0]" : "", cfg.scaleB ? " * scale_b[0]" : "", unPre].join("");
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

/**
 * `pre_exp(amax_bits) -> i32`: the e of GemmConfig.preScale, max·2^e ∈ [2^14, 2^15) from the biased
 * exponent E of max |x| (2^(E−127) ≤ max < 2^(E−126)): e = 141 − E, within ldexp's range; 0 for a
 * zero or subnormal max (nothing to scale) and for inf/NaN (those propagate as they would in f32).
 */
export function preExpHelper(): string {
  return [
    "fn pre_exp(bits: u32) -> i32 {",
    "  let e = i32((bits >> 23u) & 0xffu);",
    "  return select(clamp(141 - e, -126, 126), 0, e == 0 || e == 255);",
    "}",
    // Each invocation's copies of 2^e and 2^-e per operand, set at its start: the loaders multiply
    // by the first, the epilogue by the second (two factors: their product may leave f32's range).
    "var<private> pre_a: f32;",
    "var<private> pre_b: f32;",
    "var<private> unpre_a: f32;",
    "var<private> unpre_b: f32;",
  ].join("\n");
}

/** The entry point's first statements under preScale: the factors of preExpHelper from the amax bindings. */
export function preScaleStart(cfg: GemmConfig): string[] {
  if (!cfg.preScale) return [];
  return ["a", "b"].flatMap((x) => [`let e_${x} = pre_exp(amax_${x}[0]);`, `pre_${x} = ldexp(1.0, e_${x});`, `unpre_${x} = ldexp(1.0, -e_${x});`]);
}

/** Declares bindings in a fixed order: a, b, c, then the optional ones in GemmConfig order. */
export function declareBindings(b: WgslBuilder, cfg: GemmConfig): void {
  b.bind("a", storageElem(cfg.a));
  b.bind("b", storageElem(cfg.b));
  b.bind("c", storageElem(cfg.out), "read_write");
  if (cfg.scaleA) b.bind("scale_a", "f32");
  if (cfg.scaleB) b.bind("scale_b", "f32");
  if (cfg.preScale) {
    b.bind("amax_a", "u32");
    b.bind("amax_b", "u32");
  }
  if (cfg.epilogue?.bias) b.bind("bias", "f32");
  if (cfg.epilogue?.residual) b.bind("residual", "f32");
  if (isFp8(cfg.out)) {
    b.bind("scale_out", "f32");
    b.bind("amax", "atomic<u32>", "read_write");
  }
}

/** The workgroup's amax → one global atomicMax (|x| bits order like the floats for x ≥ 0). */
export function amaxReduce(cfg: GemmConfig): string[] {
  if (!isFp8(cfg.out)) return [];
  return [
    "atomicMax(&wg_amax[0], bitcast<u32>(lmax));",
    "workgroupBarrier();",
    "if (lidx == 0u) { atomicMax(&amax[0], atomicLoad(&wg_amax[0])); }",
  ];
}
