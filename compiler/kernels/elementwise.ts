// Elementwise kernels (a fused expression tree over same-shape or broadcast inputs, RoPE, GLU,
// embedding gather/scatter) and the pieces every non-GEMM generator shares: the KernelSource
// shape, a 2-D grid for large dispatches, workgroup reductions, and the FP8/bf16 cast epilogue.
import type { Fp8Format } from "../ir.js";
import { type BindingSpec, WgslBuilder } from "../wgsl.js";
import { fp8DecodeName, fp8EncodeName, wgslBf16Encode, wgslFp8Decode, wgslFp8Encode, wgslFp8Pack } from "./fp8.js";

/** What every generator returns: WGSL, its bindings (in @binding order) and the dispatch size. */
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
 * A segmented tree reduction over `wg` invocations in segments of `seg` consecutive ones (seg = wg:
 * the whole workgroup; seg = lanes: the lanes sharing one attention row). Every invocation of a
 * segment gets the same result, in a fixed order (deterministic). Must be called in uniform
 * control flow; returns the helper's name `seg_<op>_<seg>(v, lidx)`.
 */
export function segReduce(b: WgslBuilder, wg: number, seg: number, op: ReduceOp): string {
  check(isPow2(wg) && isPow2(seg) && seg <= wg, `segReduce: sizes ${wg}/${seg} must be powers of two`);
  const arr = shared(b, "red_f32", "f32", wg);
  const name = `seg_${op}_${seg}`;
  b.helper(
    name,
    [
      `fn ${name}(v: f32, li: u32) -> f32 {`,
      `  ${arr}[li] = v;`,
      `  workgroupBarrier();`,
      `  for (var s = ${seg / 2}u; s > 0u; s = s / 2u) {`,
      `    if (li % ${seg}u < s) { ${arr}[li] = ${COMBINE[op](`${arr}[li]`, `${arr}[li + s]`)}; }`,
      `    workgroupBarrier();`,
      `  }`,
      `  let r = ${arr}[li - li % ${seg}u];`,
      `  workgroupBarrier();`,
      `  return r;`,
      `}`,
    ].join("\n"),
  );
  return name;
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
export type OutCast =
  | { dtype: "f32"; amax?: number }
  | { dtype: "bf16"; amax?: number }
  | { dtype: Fp8Format; scale: number; amax?: number; saturate?: boolean };

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
    if (this.cast.amax !== undefined) out.push(`${v}_amax = max(${v}_amax, select(0.0, ${names.map((n) => `abs(${n})`).reduce((a, c) => `max(${a}, ${c})`)}, ${valid}));`);
    let word32: string;
    if (this.codec) word32 = `fp8_pack4(${names.map((n) => this.codec!.enc(`${n} * ${v}_scale`)).join(", ")})`;
    else if (this.width === 2) word32 = `bf16_pack2(bf16_encode(${names[0]}), bf16_encode(${names[1]}))`;
    else word32 = names[0];
    out.push(`if (${valid}) { ${this.name}[${word}] = ${word32}; }`);
    return out;
  }

  /** Workgroup max of the captured |x| and one atomicMax (uniform control flow). */
  epilogue(): string[] {
    if (this.cast.amax === undefined) return [];
    const red = segReduce(this.b, this.wg, this.wg, "max");
    return [
      `let ${this.v}_wmax = ${red}(${this.v}_amax, lidx);`,
      `if (lidx == 0u) { atomicMax(&amax[${this.cast.amax}], bitcast<u32>(${this.v}_wmax)); }`,
    ];
  }
}
