// The TypeScript FP8 (E4M3 "fn", E5M2) and bf16 codecs: f32 → code and code → f32, bit-exact.
// They are the oracle the WGSL codecs (compiler/kernels/fp8.ts, generated from the same
// FP8_FORMATS table) and the CPU reference backend are checked against.
//
// Encoding works on the integer bits of the f32 (inputs are Math.fround-ed): round to nearest,
// ties to even on the kept mantissa bits after subnormal alignment. Overflow, ±inf and NaN:
//   saturating (default; NVIDIA satfinite, what TE does): |x| rounding above max and ±inf → ±max.
//   non-saturating (PyTorch `.to(float8_*)`, ml_dtypes):  E4M3 → NaN (no inf); E5M2 → ±inf.
//   NaN → NaN in both modes, sign kept: code s|0x7F for both formats. For E5M2 0x7F (not the
//   f16-like quiet NaN 0x7E) is what PyTorch's cast writes, so the reference tables match bit for
//   bit; decoding treats every E5M2 code 0x7D–0x7F / 0xFD–0xFF as NaN.

export type Fp8Format = "e4m3" | "e5m2";

export interface Fp8Spec {
  name: Fp8Format;
  expBits: number;
  manBits: number;
  bias: number;
  maxFinite: number;
  /** E5M2: exponent all-ones is IEEE inf/NaN. E4M3 ("fn"): no infinity; only 0x7F/0xFF are NaN. */
  hasInf: boolean;
  /** Magnitude code (sign bit clear) of maxFinite: E4M3 0x7E, E5M2 0x7B. */
  maxCode: number;
  /** Magnitude code written for NaN (the sign bit is kept): 0x7F for both formats. */
  nanCode: number;
  /** Magnitude code of +inf (E5M2 0x7C), or -1 when the format has none. */
  infCode: number;
}

function makeSpec(name: Fp8Format, expBits: number, manBits: number, hasInf: boolean): Fp8Spec {
  const bias = (1 << (expBits - 1)) - 1;
  const expMax = (1 << expBits) - 1;
  const manMax = (1 << manBits) - 1;
  // IEEE-like formats give the top exponent to inf/NaN; "fn" formats only take the all-ones code.
  const maxCode = hasInf ? ((expMax - 1) << manBits) | manMax : (expMax << manBits) | (manMax - 1);
  const e = (maxCode >> manBits) - bias;
  const maxFinite = 2 ** e * (1 + (maxCode & manMax) / 2 ** manBits);
  return { name, expBits, manBits, bias, maxFinite, hasInf, maxCode, nanCode: 0x7f, infCode: hasInf ? expMax << manBits : -1 };
}

/** The one format table: the TS codec, the WGSL generator and the scale recipes all read it. */
export const FP8_FORMATS: Record<Fp8Format, Fp8Spec> = {
  e4m3: makeSpec("e4m3", 4, 3, false), // max 448 = 1.75·2^8, min subnormal 2^-9
  e5m2: makeSpec("e5m2", 5, 2, true), // max 57344 = 1.75·2^15, min subnormal 2^-16
};

export interface EncodeOptions {
  /** Default true: |x| beyond max and ±inf → ±max finite; NaN stays NaN. */
  saturate?: boolean;
}

// Scratch views for reading/writing the bits of one f32.
const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/**
 * Encodes the f32 bit pattern `bits` (as an unsigned 32-bit integer). Shared by the scalar and
 * array encoders; the WGSL encoder (compiler/kernels/fp8.ts) is the same algorithm.
 */
function encodeBits(bits: number, spec: Fp8Spec, saturate: boolean): number {
  const sign = (bits >>> 24) & 0x80;
  const a = bits & 0x7fffffff;
  if (a > 0x7f800000) return sign | spec.nanCode; // NaN stays NaN
  // Overflow (and ±inf, which the normal path below sends past maxCode): E4M3 has no inf → NaN.
  const overflow = saturate ? spec.maxCode : spec.hasInf ? spec.infCode : spec.nanCode;
  const shift = 23 - spec.manBits; // f32 mantissa bits dropped
  const minNormal = (128 - spec.bias) << 23; // f32 bits of 2^(1-bias), the smallest normal
  let mag: number;
  if (a >= minNormal) {
    // Normal: rebias the exponent in place, then RNE on the dropped bits; a carry out of the
    // mantissa correctly bumps the exponent.
    const q = a - ((127 - spec.bias) << 23);
    mag = (q + (1 << (shift - 1)) - 1 + ((q >>> shift) & 1)) >>> shift;
  } else {
    // Subnormal in FP8 (or zero): align the significand (implicit 1 unless the f32 is itself
    // subnormal) to units of 2^(1-bias-manBits). Shifts past 25 always round to 0, so clamp to 31.
    const e = a >>> 23;
    const sig = e === 0 ? a : (a & 0x7fffff) | 0x800000;
    const s = Math.min(shift + ((128 - spec.bias) - Math.max(e, 1)), 31);
    mag = (sig + (1 << (s - 1)) - 1 + ((sig >>> s) & 1)) >>> s; // may round up to the min normal: correct
  }
  return sign | (mag > spec.maxCode ? overflow : mag);
}

/** Encodes one number (Math.fround-ed first) to an FP8 code 0..255. */
export function encodeOne(x: number, spec: Fp8Spec, saturate: boolean): number {
  f32[0] = x;
  return encodeBits(u32[0], spec, saturate);
}

/** Decodes one FP8 code to its exact value (NaN for NaN codes, ±Infinity for E5M2 inf). */
export function decodeOne(code: number, spec: Fp8Spec): number {
  const M = spec.manBits;
  const negative = (code & 0x80) !== 0;
  const mag = code & 0x7f;
  const e = mag >> M;
  const m = mag & ((1 << M) - 1);
  let v: number;
  if (spec.hasInf ? e === (1 << spec.expBits) - 1 : mag === 0x7f) {
    v = spec.hasInf && m === 0 ? Infinity : NaN;
  } else if (e === 0) {
    v = m * 2 ** (1 - spec.bias - M); // subnormal, exact
  } else {
    v = 2 ** (e - spec.bias) * (1 + m / (1 << M));
  }
  return negative ? -v : v;
}

/** Encodes every value; output[i] is the code of values[i]. */
export function encodeFP8(values: Float32Array, format: Fp8Format, options: EncodeOptions = {}): Uint8Array {
  const spec = FP8_FORMATS[format];
  const saturate = options.saturate ?? true;
  const bits = new Uint32Array(values.buffer, values.byteOffset, values.length);
  const out = new Uint8Array(values.length);
  for (let i = 0; i < bits.length; i++) out[i] = encodeBits(bits[i], spec, saturate);
  return out;
}

/** Decodes every code through a 256-entry table. */
export function decodeFP8(codes: Uint8Array, format: Fp8Format): Float32Array {
  const table = decodeTable(format);
  const out = new Float32Array(codes.length);
  for (let i = 0; i < codes.length; i++) out[i] = table[codes[i]];
  return out;
}

const tables = new Map<Fp8Format, Float32Array>();
function decodeTable(format: Fp8Format): Float32Array {
  let t = tables.get(format);
  if (!t) {
    t = new Float32Array(256);
    for (let c = 0; c < 256; c++) t[c] = decodeOne(c, FP8_FORMATS[format]);
    tables.set(format, t);
  }
  return t;
}

/** Four codes per u32, little-endian: element i is byte (i % 4) of word i/4; the tail is zero. */
export function packFP8(codes: Uint8Array): Uint32Array {
  const words = new Uint32Array(Math.ceil(codes.length / 4));
  for (let i = 0; i < codes.length; i++) words[i >> 2] |= codes[i] << ((i & 3) * 8);
  return words;
}

/** The first `count` codes of packed words. */
export function unpackFP8(words: Uint32Array, count: number): Uint8Array {
  if (count > words.length * 4) throw new RangeError(`unpackFP8: ${count} codes need ${Math.ceil(count / 4)} words, got ${words.length}`);
  const codes = new Uint8Array(count);
  for (let i = 0; i < count; i++) codes[i] = (words[i >> 2] >>> ((i & 3) * 8)) & 0xff;
  return codes;
}

// bf16 is the top 16 bits of an f32: round to nearest even on the dropped 16 bits (overflow rounds
// to ±inf, as IEEE RNE does); NaN keeps its top bits with the quiet bit forced so it cannot
// truncate into an infinity.
function bf16Bits(bits: number): number {
  if ((bits & 0x7fffffff) > 0x7f800000) return (bits >>> 16) | 0x40;
  return ((bits + 0x7fff + ((bits >>> 16) & 1)) >>> 16) & 0xffff;
}

/** The f32 value nearest to x (RNE) among bf16 values. */
export function roundToBF16(x: number): number {
  f32[0] = x;
  u32[0] = bf16Bits(u32[0]) << 16;
  return f32[0];
}

export function encodeBF16(values: Float32Array): Uint16Array {
  const bits = new Uint32Array(values.buffer, values.byteOffset, values.length);
  const out = new Uint16Array(values.length);
  for (let i = 0; i < bits.length; i++) out[i] = bf16Bits(bits[i]);
  return out;
}

export function decodeBF16(codes: Uint16Array): Float32Array {
  const out = new Uint32Array(codes.length);
  for (let i = 0; i < codes.length; i++) out[i] = codes[i] << 16;
  return new Float32Array(out.buffer);
}
