// The FP8 codec test inputs, shared by the TS, WGSL and reference-table tests and reproduced
// bit for bit by scripts/fp8-tables.py: all 65,536 binary16 values as f32, and 1,000,000 seeded
// f32 values from xorshift32 (ties, subnormals, ±0, ±inf, NaN, values around the formats' max).

/** Seed and count of the random inputs; scripts/fp8-tables.py uses the same constants. */
export const FP8_RANDOM_SEED = 0x2545f491;
export const FP8_RANDOM_COUNT = 1_000_000;

/** f32 bit patterns near the top of E4M3/E5M2: 448, 464 (tie), 480, 416, 57344, 61440 (tie), 65536, 53248. */
const NEAR_MAX = [0x43e00000, 0x43e80000, 0x43f00000, 0x43d00000, 0x47600000, 0x47700000, 0x47800000, 0x47500000];

/** ±0, ±inf, quiet/signalling NaN of both signs, ±min f32 subnormal, ±max f32, and exact ties. */
const SPECIALS = [
  0x00000000, 0x80000000, 0x7f800000, 0xff800000, 0x7fc00000, 0xffc00000, 0x7f800001, 0x00000001, 0x80000001,
  0x7f7fffff, 0xff7fffff,
  0x3a800000, // 2^-10: half the E4M3 min subnormal, ties to 0
  0x37000000, // 2^-17: half the E5M2 min subnormal, ties to 0
  0x3ac00000, // 1.5·2^-10: rounds up to the E4M3 min subnormal
  0x43e80000, // 464: E4M3 tie between 448 and "480", → 448
  0xc7700000, // −61440: E5M2 tie between 57344 and 65536, → overflow
];

/**
 * The random inputs as f32 bit patterns. xorshift32 state s (u32, starts at FP8_RANDOM_SEED):
 * next() { s ^= s << 13; s ^= s >>> 17; s ^= s << 5; return s }  (all mod 2^32).
 * For each input draw u = next() then v = next(); kind = u & 7:
 *   0, 1  raw bits: v
 *   2, 3  wide range: (v & 0x807fffff) | ((103 + ((u >>> 3) & 63)) << 23)        (2^-24 ... 2^39)
 *   4     near ties: b = (v & 0x80000000) | ((103 + ((u >>> 3) & 63)) << 23) | (v & 0x00780000),
 *         plus [0, +1, −1, 0][(u >>> 9) & 3] (one f32 ulp either side of a 4-bit mantissa)
 *   5     near max: (v & 0x80000000) | (NEAR_MAX[(u >>> 3) & 7] + ((u >>> 6) & 7) − 3)
 *   6     scaled Irwin–Hall "normal": t = (v & 0xfff) + ((v >>> 12) & 0xfff) + ((u >>> 3) & 0xfff) − 6142,
 *         value t · 2^(((u >>> 15) & 31) − 24), exact in f32 (t = 0 gives +0)
 *   7     SPECIALS[v & 15]
 */
export function fp8RandomInputBits(count = FP8_RANDOM_COUNT, seed = FP8_RANDOM_SEED): Uint32Array {
  const out = new Uint32Array(count);
  const f = new Float32Array(1);
  const fb = new Uint32Array(f.buffer);
  let s = seed >>> 0;
  const next = (): number => {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    return (s >>>= 0);
  };
  for (let i = 0; i < count; i++) {
    const u = next();
    const v = next();
    const exp = (103 + ((u >>> 3) & 63)) << 23;
    let bits: number;
    switch (u & 7) {
      case 0:
      case 1:
        bits = v;
        break;
      case 2:
      case 3:
        bits = (v & 0x807fffff) | exp;
        break;
      case 4:
        bits = ((v & 0x80000000) | exp | (v & 0x00780000)) + [0, 1, -1, 0][(u >>> 9) & 3];
        break;
      case 5:
        bits = (v & 0x80000000) | (NEAR_MAX[(u >>> 3) & 7] + ((u >>> 6) & 7) - 3);
        break;
      case 6: {
        const t = (v & 0xfff) + ((v >>> 12) & 0xfff) + ((u >>> 3) & 0xfff) - 6142;
        f[0] = t * 2 ** (((u >>> 15) & 31) - 24);
        bits = fb[0];
        break;
      }
      default:
        bits = SPECIALS[v & 15];
    }
    out[i] = bits >>> 0;
  }
  return out;
}

/** Input i is the binary16 with bits i widened exactly to f32 (NaN payload shifted up 13, sign kept). */
export function f16InputBits(): Uint32Array {
  const out = new Uint32Array(65536);
  const f = new Float32Array(1);
  const fb = new Uint32Array(f.buffer);
  for (let h = 0; h < 65536; h++) {
    const sign = (h & 0x8000) << 16;
    const e = (h >>> 10) & 31;
    const m = h & 0x3ff;
    if (e === 31) out[h] = (sign | 0x7f800000 | (m << 13)) >>> 0;
    else if (e > 0) out[h] = (sign | ((e + 112) << 23) | (m << 13)) >>> 0;
    else {
      f[0] = m * 2 ** -24; // f16 subnormal: a normal f32
      out[h] = (fb[0] | sign) >>> 0;
    }
  }
  return out;
}
