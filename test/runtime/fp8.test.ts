// The TypeScript FP8/bf16 codecs (runtime/fp8.ts) against independent oracles written here: the
// papers.md §1 value formula for decode, and nearest-value search over the decoded table (ties to the
// even code, then the saturation/NaN rules) for encode, on every binary16 and 1M seeded f32 inputs.
import { describe, expect, it } from "vitest";
import {
  FP8_FORMATS,
  decodeBF16,
  decodeFP8,
  decodeOne,
  encodeBF16,
  encodeFP8,
  encodeOne,
  packFP8,
  roundToBF16,
  unpackFP8,
  type Fp8Format,
} from "../../runtime/fp8.js";
import { FP8_RANDOM_COUNT, f16InputBits, fp8RandomInputBits } from "../helpers/fp8-inputs.js";

// papers.md §1, written out again here (not read from FP8_FORMATS).
const PAPER = {
  e4m3: { E: 4, M: 3, bias: 7, max: 448, maxCode: 0x7e, ieeeSpecials: false },
  e5m2: { E: 5, M: 2, bias: 15, max: 57344, maxCode: 0x7b, ieeeSpecials: true },
} as const;
const FORMATS: Fp8Format[] = ["e4m3", "e5m2"];

/** (−1)^s·2^(e−bias)·(1+m/2^M), subnormal (−1)^s·2^(1−bias)·(m/2^M); specials per papers.md. */
function formulaValue(code: number, f: Fp8Format, ignoreSpecials = false): number {
  const p = PAPER[f];
  const s = code >> 7;
  const e = (code >> p.M) & ((1 << p.E) - 1);
  const m = code & ((1 << p.M) - 1);
  if (!ignoreSpecials) {
    if (p.ieeeSpecials && e === (1 << p.E) - 1) return m === 0 ? (s ? -Infinity : Infinity) : NaN;
    if (!p.ieeeSpecials && (code & 0x7f) === 0x7f) return NaN;
  }
  const mag = e === 0 ? Math.pow(2, 1 - p.bias) * (m / Math.pow(2, p.M)) : Math.pow(2, e - p.bias) * (1 + m / Math.pow(2, p.M));
  return s ? -mag : mag;
}

const bitsToF32 = (bits: Uint32Array): Float32Array => new Float32Array(bits.buffer, bits.byteOffset, bits.length);

/**
 * Slow oracle: |x| against the ascending finite magnitudes (codes 0..maxCode) plus one virtual step
 * above max (code maxCode+1: 480 for E4M3, 65536 for E5M2); nearest wins, an exact midpoint goes to
 * the even code; a result above maxCode is overflow: ±max when saturating, else E4M3 NaN / E5M2 ±inf.
 */
function makeOracle(f: Fp8Format): (bits: number, saturate: boolean) => number {
  const p = PAPER[f];
  const vals: number[] = [];
  for (let c = 0; c <= p.maxCode + 1; c++) vals.push(formulaValue(c, f, true));
  const f32 = new Float32Array(1);
  const u32 = new Uint32Array(f32.buffer);
  return (bits, saturate) => {
    u32[0] = bits;
    const x = f32[0];
    const sign = bits >>> 31 ? 0x80 : 0;
    if (Number.isNaN(x)) return sign | 0x7f;
    const a = Math.abs(x);
    let code: number;
    if (a >= vals[vals.length - 1]) code = p.maxCode + 1; // includes ±inf
    else {
      let lo = 0;
      let hi = vals.length - 1; // vals[lo] <= a < vals[hi]
      while (hi - lo > 1) {
        const mid = (lo + hi) >> 1;
        if (vals[mid] <= a) lo = mid;
        else hi = mid;
      }
      const midpoint = (vals[lo] + vals[hi]) / 2; // exact in double
      code = a < midpoint ? lo : a > midpoint ? hi : lo % 2 === 0 ? lo : hi;
    }
    if (code > p.maxCode) code = saturate ? p.maxCode : p.ieeeSpecials ? 0x7c : 0x7f;
    return sign | code;
  };
}

function sameValue(a: number, b: number): boolean {
  return Number.isNaN(a) ? Number.isNaN(b) : Object.is(a, b);
}

function mismatches(inputs: Uint32Array, got: Uint8Array, want: (bits: number) => number, limit = 5): string[] {
  const out: string[] = [];
  for (let i = 0; i < inputs.length && out.length < limit; i++) {
    const w = want(inputs[i]);
    if (got[i] !== w) {
      const x = bitsToF32(new Uint32Array([inputs[i]]))[0];
      out.push(`#${i} bits 0x${inputs[i].toString(16)} (${x}): got 0x${got[i].toString(16)}, want 0x${w.toString(16)}`);
    }
  }
  return out;
}

describe("FP8 format table", () => {
  it("matches papers.md §1", () => {
    for (const f of FORMATS) {
      const s = FP8_FORMATS[f];
      const p = PAPER[f];
      expect([s.expBits, s.manBits, s.bias, s.maxFinite, s.maxCode, s.hasInf]).toEqual([p.E, p.M, p.bias, p.max, p.maxCode, p.ieeeSpecials]);
      expect(decodeOne(s.maxCode, s)).toBe(p.max);
    }
    expect(FP8_FORMATS.e5m2.infCode).toBe(0x7c);
    expect(FP8_FORMATS.e4m3.nanCode).toBe(0x7f);
  });
});

describe("FP8 decode: all 256 codes", () => {
  for (const f of FORMATS) {
    it(`${f} equals the value formula (NaN/inf per papers.md)`, () => {
      const codes = Uint8Array.from({ length: 256 }, (_, i) => i);
      const got = decodeFP8(codes, f);
      const bad: string[] = [];
      for (let c = 0; c < 256; c++) {
        const want = formulaValue(c, f);
        if (!sameValue(got[c], want) || !sameValue(decodeOne(c, FP8_FORMATS[f]), want)) bad.push(`0x${c.toString(16)}: ${got[c]} vs ${want}`);
      }
      expect(bad).toEqual([]);
      // Value counts from papers.md: 126 (E4M3) / 123 (E5M2) positive finite nonzero values.
      const positive = Array.from(got.slice(1, 128)).filter((v) => Number.isFinite(v) && v > 0).length;
      expect(positive).toBe(f === "e4m3" ? 126 : 123);
      expect(Object.is(got[0x80], -0)).toBe(true);
    });
  }
  it("known values", () => {
    const e4 = FP8_FORMATS.e4m3;
    const e5 = FP8_FORMATS.e5m2;
    expect([decodeOne(0x01, e4), decodeOne(0x07, e4), decodeOne(0x08, e4), decodeOne(0x38, e4), decodeOne(0xfe, e4)]).toEqual([
      2 ** -9, 0.013671875, 2 ** -6, 1, -448,
    ]);
    expect([decodeOne(0x01, e5), decodeOne(0x03, e5), decodeOne(0x04, e5), decodeOne(0x3c, e5), decodeOne(0x7c, e5), decodeOne(0xfc, e5)]).toEqual([
      2 ** -16, 0.75 * 2 ** -14, 2 ** -14, 1, Infinity, -Infinity,
    ]);
    for (const c of [0x7d, 0x7e, 0x7f, 0xfd, 0xfe, 0xff]) expect(decodeOne(c, e5)).toBeNaN();
    for (const c of [0x7f, 0xff]) expect(decodeOne(c, e4)).toBeNaN();
  });
});

describe("FP8 encode", () => {
  const f16 = f16InputBits();
  const random = fp8RandomInputBits();
  for (const f of FORMATS) {
    const oracle = makeOracle(f);
    for (const saturate of [true, false]) {
      const mode = saturate ? "saturating" : "non-saturating";
      it(`${f} ${mode}: all 65,536 binary16 inputs`, () => {
        const got = encodeFP8(bitsToF32(f16), f, { saturate });
        expect(mismatches(f16, got, (b) => oracle(b, saturate))).toEqual([]);
      });
      it(`${f} ${mode}: ${FP8_RANDOM_COUNT.toLocaleString("en")} seeded random f32`, () => {
        const got = encodeFP8(bitsToF32(random), f, { saturate });
        expect(mismatches(random, got, (b) => oracle(b, saturate))).toEqual([]);
      });
    }
    it(`${f}: encodeOne agrees with encodeFP8 and round-trips every finite code`, () => {
      const spec = FP8_FORMATS[f];
      const some = random.subarray(0, 20000);
      const arr = encodeFP8(bitsToF32(some), f, { saturate: false });
      const xs = bitsToF32(some);
      for (let i = 0; i < some.length; i++) if (encodeOne(xs[i], spec, false) !== arr[i]) expect.fail(`encodeOne #${i}`);
      for (let c = 0; c < 256; c++) {
        const v = decodeOne(c, spec);
        if (Number.isFinite(v)) expect(encodeOne(v, spec, true)).toBe(c);
      }
    });
  }

  it("the rules that differ by stack", () => {
    const e4 = FP8_FORMATS.e4m3;
    const e5 = FP8_FORMATS.e5m2;
    const enc = (x: number, s: typeof e4, sat: boolean): number => encodeOne(x, s, sat);
    // E4M3: 464 is the tie 448 ↔ 480 and goes to 448 (even mantissa); above it overflows.
    expect([enc(464, e4, false), enc(464.1, e4, false), enc(-464.1, e4, false), enc(1e9, e4, true), enc(-Infinity, e4, true)]).toEqual([
      0x7e, 0x7f, 0xff, 0x7e, 0xfe,
    ]);
    expect([enc(Infinity, e4, false), enc(NaN, e4, true)]).toEqual([0x7f, 0x7f]);
    // E5M2: 61440 is the tie 57344 ↔ 65536 and goes to the even code 0x7C: inf (or max when saturating).
    expect([enc(61439, e5, false), enc(61440, e5, false), enc(61440, e5, true), enc(-Infinity, e5, false), enc(NaN, e5, false)]).toEqual([
      0x7b, 0x7c, 0x7b, 0xfc, 0x7f,
    ]);
    expect([enc(-0, e4, true), enc(-1e-30, e5, true), enc(2 ** -10, e4, true), enc(1.5 * 2 ** -10, e4, true)]).toEqual([0x80, 0x80, 0x00, 0x01]);
  });
});

describe("FP8 pack/unpack", () => {
  it("four codes per u32, element i in byte i % 4, tail zero", () => {
    const codes = Uint8Array.from({ length: 4099 }, (_, i) => (i * 37 + 11) & 0xff);
    const words = packFP8(codes);
    expect(words.length).toBe(1025);
    for (let w = 0; w < words.length; w++) {
      const c = (k: number): number => codes[4 * w + k] ?? 0;
      if (words[w] !== c(0) + c(1) * 256 + c(2) * 65536 + c(3) * 16777216) expect.fail(`word ${w}`);
    }
    expect(Array.from(unpackFP8(words, codes.length))).toEqual(Array.from(codes));
    expect(() => unpackFP8(words, 4 * words.length + 1)).toThrow(RangeError);
  });
});

describe("bf16", () => {
  /** Independent RNE: nearest of the two bf16 neighbours (inf counts as 2^128), ties to even. */
  function bf16Oracle(bits: number): number {
    const f = new Float32Array(1);
    const u = new Uint32Array(f.buffer);
    u[0] = bits;
    if (Number.isNaN(f[0])) return -1; // checked separately
    if (!Number.isFinite(f[0])) return bits >>> 16; // ±inf stays ±inf
    const sign = bits & 0x80000000;
    const t = (bits & 0x7fff0000) >>> 0;
    const val = (b: number): number => {
      if (b >= 0x7f800000) return 2 ** 128;
      u[0] = b;
      return f[0];
    };
    u[0] = bits & 0x7fffffff;
    const a = f[0];
    const lo = val(t);
    const hi = val(t + 0x10000);
    const mid = (lo + hi) / 2;
    const pick = a < mid ? t : a > mid ? t + 0x10000 : (t >>> 16) % 2 === 0 ? t : t + 0x10000;
    return ((sign | pick) >>> 16) & 0xffff;
  }

  it("encodeBF16 is RNE on every bf16 neighbourhood and 1M random f32; NaN stays NaN", () => {
    const inputs = new Uint32Array(65536 * 4 + 1_000_000);
    for (let h = 0; h < 65536; h++) {
      const b = h << 16;
      inputs.set([b >>> 0, (b | 0x8000) >>> 0, (b | 0x7fff) >>> 0, (b | 0x8001) >>> 0], 4 * h);
    }
    inputs.set(fp8RandomInputBits(1_000_000, 0x1234567), 65536 * 4);
    const got = encodeBF16(bitsToF32(inputs));
    const back = decodeBF16(got);
    const xs = bitsToF32(inputs);
    for (let i = 0; i < inputs.length; i++) {
      const want = bf16Oracle(inputs[i]);
      if (want < 0) {
        if (!Number.isNaN(back[i]) || (got[i] & 0x8000) !== (inputs[i] >>> 16 & 0x8000)) expect.fail(`NaN #${i} 0x${inputs[i].toString(16)}`);
      } else if (got[i] !== want) expect.fail(`#${i} 0x${inputs[i].toString(16)}: got 0x${got[i].toString(16)} want 0x${want.toString(16)}`);
      if (!sameValue(roundToBF16(xs[i]), back[i])) expect.fail(`roundToBF16 #${i}`);
    }
  });
});
