// WGSL source for the FP8 (E4M3, E5M2) and bf16 codecs, generated from runtime/fp8.ts's FP8_FORMATS
// table so the shader and TypeScript codecs cannot drift: each generator takes a format and returns
// the text of one helper fn (add it with WgslBuilder.helper(name, text)). WGSL has no u8: FP8 tensors
// are arrays of u32 words of four codes, element i in byte i % 4 (the packFP8 layout).
import { FP8_FORMATS, type Fp8Format, type Fp8Spec } from "../../runtime/fp8.js";

const hex = (n: number): string => `0x${(n >>> 0).toString(16)}u`;

/** Name of the decode fn: `fp8_decode_e4m3` (→ f32) or `fp8_decode_e4m3_h` (→ f16). */
export function fp8DecodeName(format: Fp8Format, precision: "f32" | "f16" = "f32"): string {
  return `fp8_decode_${format}${precision === "f16" ? "_h" : ""}`;
}

/** Name of the encode fn: `fp8_encode_e4m3` (saturating) or `fp8_encode_e4m3_nosat`. */
export function fp8EncodeName(format: Fp8Format, saturate = true): string {
  return `fp8_encode_${format}${saturate ? "" : "_nosat"}`;
}

/** An exact power of two as a WGSL abstract-float literal (String() of 2^k is exact in decimal). */
function pow2Literal(k: number): string {
  const s = String(2 ** k);
  return /[.e]/.test(s) ? s : `${s}.0`;
}

/**
 * `fn fp8_decode_<fmt>(code: u32) -> f32` (exact; code in the low 8 bits), or with precision "f16"
 * `fn fp8_decode_<fmt>_h(code: u32) -> f16` (needs `enable f16;`; every FP8 value is exact in f16).
 */
export function wgslFp8Decode(format: Fp8Format, precision: "f32" | "f16" = "f32"): string {
  const spec = FP8_FORMATS[format];
  return precision === "f16" ? decodeF16(spec) : decodeF32(spec);
}

function specialTest(spec: Fp8Spec): string {
  // E5M2: exponent all-ones is inf (mantissa 0) or NaN; E4M3: only the all-ones code is NaN.
  return spec.hasInf ? `mag >= ${hex(spec.infCode)}` : `mag == ${hex(spec.nanCode)}`;
}

function specialValue(spec: Fp8Spec, sign: string, bitsOf: (b: string) => string, inf: string, nan: string): string {
  return spec.hasInf
    ? bitsOf(`${sign} | select(${nan}, ${inf}, mag == ${hex(spec.infCode)})`)
    : bitsOf(`${sign} | ${nan}`);
}

function decodeF32(spec: Fp8Spec): string {
  const M = spec.manBits;
  const name = fp8DecodeName(spec.name);
  return `// ${spec.name.toUpperCase()} (bias ${spec.bias}, ${M} mantissa bits, max ${spec.maxFinite}) code → f32, exact.
// Normal codes: rebias the exponent in the integer bits; subnormals m·2^${1 - spec.bias - M} (a normal f32).
fn ${name}(code: u32) -> f32 {
  let sign = (code & 0x80u) << 24u;
  let mag = code & 0x7fu;
  if (mag < ${hex(1 << M)}) {
    let v = f32(mag) * ${pow2Literal(1 - spec.bias - M)};
    return select(v, -v, sign != 0u);
  }
  if (${specialTest(spec)}) {
    return ${specialValue(spec, "sign", (b) => `bitcast<f32>(${b})`, "0x7f800000u", "0x7fc00000u")};
  }
  return bitcast<f32>(sign | ((mag << ${23 - M}u) + ${hex((127 - spec.bias) << 23)}));
}`;
}

function decodeF16(spec: Fp8Spec): string {
  const M = spec.manBits;
  const name = fp8DecodeName(spec.name, "f16");
  const h = (bits: string): string => `bitcast<vec2<f16>>(${bits}).x`;
  if (spec.expBits === 5 && spec.bias === 15 && spec.hasInf) {
    // Same exponent field and bias as binary16: the code is the top byte of an f16 (inf/NaN included).
    return `// ${spec.name.toUpperCase()} code → f16, exact: the code is the top byte of an IEEE binary16.
fn ${name}(code: u32) -> f16 {
  return ${h("(code & 0xffu) << 8u")};
}`;
  }
  if (spec.expBits > 5) throw new Error(`${name}: ${spec.name} has a wider exponent than f16`);
  // Normal codes: shift the magnitude under f16's exponent field and add the bias difference to the
  // exponent (the "×2^8" of the bit-move done exactly in the bits); subnormal codes go through a
  // normal f16 product so no f16 subnormal (which a device may flush) is ever formed.
  return `// ${spec.name.toUpperCase()} code → f16, exact (needs enable f16). Normal codes: magnitude bits up by ${10 - M},
// exponent rebiased ${spec.bias} → 15 in the bits; subnormals m·2^${1 - spec.bias - M} (a normal f16); NaN stays NaN.
fn ${name}(code: u32) -> f16 {
  let sign = (code & 0x80u) << 8u;
  let mag = code & 0x7fu;
  if (mag < ${hex(1 << M)}) {
    let v = f16(mag) * ${pow2Literal(1 - spec.bias - M)}h;
    return select(v, -v, sign != 0u);
  }
  if (${specialTest(spec)}) {
    return ${specialValue(spec, "sign", h, "0x7c00u", "0x7e00u")};
  }
  return ${h(`sign | ((mag << ${10 - M}u) + ${hex((15 - spec.bias) << 10)})`)};
}`;
}

/**
 * `fn fp8_encode_<fmt>[_nosat](x: f32) -> u32`: the code in the low 8 bits. Integer ops on the f32
 * bits only (WGSL leaves float rounding and subnormals to the device), bit-exact with encodeFP8:
 * RNE after subnormal alignment; saturating → ±max on overflow and ±inf, else E4M3 → NaN, E5M2 → ±inf;
 * NaN → NaN (sign kept).
 */
export function wgslFp8Encode(format: Fp8Format, saturate = true): string {
  const spec = FP8_FORMATS[format];
  const M = spec.manBits;
  const shift = 23 - M;
  const overflow = saturate ? spec.maxCode : spec.hasInf ? spec.infCode : spec.nanCode;
  const rule = saturate
    ? `saturating: overflow and ±inf → ±${spec.maxFinite} (${hex(spec.maxCode)})`
    : spec.hasInf
      ? `non-saturating: overflow → ±inf (${hex(spec.infCode)})`
      : `non-saturating: no inf, so overflow and ±inf → NaN (${hex(spec.nanCode)})`;
  return `// f32 → ${spec.name.toUpperCase()} (bias ${spec.bias}, ${M} mantissa bits), round to nearest even on the f32 bits;
// ${rule}; NaN → ${hex(spec.nanCode)} with the sign kept.
fn ${fp8EncodeName(format, saturate)}(x: f32) -> u32 {
  let bits = bitcast<u32>(x);
  let sign = (bits >> 24u) & 0x80u;
  let a = bits & 0x7fffffffu;
  if (a > 0x7f800000u) { return sign | ${hex(spec.nanCode)}; }
  var mag: u32;
  if (a >= ${hex((128 - spec.bias) << 23)}) {
    // normal (±inf lands here and overflows): rebias the exponent, RNE on the ${shift} dropped bits
    let q = a - ${hex((127 - spec.bias) << 23)};
    mag = (q + ${hex((1 << (shift - 1)) - 1)} + ((q >> ${shift}u) & 1u)) >> ${shift}u;
  } else {
    // subnormal or zero: align the significand to units of 2^${1 - spec.bias - M}; shifts ≥ 25 give 0
    let e = a >> 23u;
    let sig = select((a & 0x7fffffu) | 0x800000u, a, e == 0u);
    let s = min(${shift + 128 - spec.bias}u - max(e, 1u), 31u);
    mag = (sig + (1u << (s - 1u)) - 1u + ((sig >> s) & 1u)) >> s;
  }
  return sign | select(mag, ${hex(overflow)}, mag > ${hex(spec.maxCode)});
}`;
}

/**
 * Pack helpers: `fp8_unpack(word, lane) -> u32` (code of lane 0..3), `fp8_unpack4(word) -> vec4<u32>`,
 * `fp8_pack4(c0, c1, c2, c3) -> u32` (codes must be ≤ 0xff; c0 lands in the low byte).
 */
export function wgslFp8Pack(): string {
  return `// Four FP8 codes per u32, little-endian: element i is byte i % 4 of word i / 4.
fn fp8_unpack(word: u32, lane: u32) -> u32 {
  return (word >> (lane * 8u)) & 0xffu;
}

fn fp8_unpack4(word: u32) -> vec4<u32> {
  return (vec4<u32>(word) >> vec4<u32>(0u, 8u, 16u, 24u)) & vec4<u32>(0xffu);
}

fn fp8_pack4(c0: u32, c1: u32, c2: u32, c3: u32) -> u32 {
  return c0 | (c1 << 8u) | (c2 << 16u) | (c3 << 24u);
}`;
}

/** `fn bf16_encode(x: f32) -> u32` (top 16 bits of x, RNE; NaN stays NaN) and `bf16_pack2(lo, hi) -> u32`. */
export function wgslBf16Encode(): string {
  return `// f32 → bf16 (low 16 bits of the result): RNE on the 16 dropped bits (overflow rounds to ±inf,
// as IEEE does); NaN keeps its top bits with the quiet bit set so it cannot truncate to inf.
fn bf16_encode(x: f32) -> u32 {
  let bits = bitcast<u32>(x);
  if ((bits & 0x7fffffffu) > 0x7f800000u) { return (bits >> 16u) | 0x40u; }
  return (bits + 0x7fffu + ((bits >> 16u) & 1u)) >> 16u;
}

fn bf16_pack2(lo: u32, hi: u32) -> u32 {
  return lo | (hi << 16u);
}`;
}

/** `fn bf16_decode(code: u32) -> f32` (exact: shift into the top half) and `bf16_unpack(word, lane)`. */
export function wgslBf16Decode(): string {
  return `// bf16 (low 16 bits of code) → f32, exact. Two bf16 per u32 word, element i in half i % 2.
fn bf16_decode(code: u32) -> f32 {
  return bitcast<f32>(code << 16u);
}

fn bf16_unpack(word: u32, lane: u32) -> u32 {
  return (word >> (lane * 16u)) & 0xffffu;
}`;
}
