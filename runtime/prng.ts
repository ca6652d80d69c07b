// A small seeded PRNG (xoshiro128**, seeded through splitmix32) for everything random in training:
// init, batch sampling, generation. Its whole state is four u32s, so checkpoints can store it.
// fogc never uses Math.random: the same seed gives the same run on every machine.

/** splitmix32: turns any 32-bit seed into well-mixed words (used to fill xoshiro's state). */
function splitmix32(state: { s: number }): number {
  state.s = (state.s + 0x9e3779b9) >>> 0;
  let z = state.s;
  z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0;
  z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0;
  return (z ^ (z >>> 16)) >>> 0;
}

/** FNV-1a over a string's UTF-16 code units: a stable 32-bit hash for deriving streams by name. */
export function hashString(text: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) h = Math.imul(h ^ text.charCodeAt(i), 0x01000193) >>> 0;
  return h >>> 0;
}

const rotl = (x: number, k: number): number => ((x << k) | (x >>> (32 - k))) >>> 0;

export type PrngState = [number, number, number, number];

export class Prng {
  private readonly s = new Uint32Array(4);

  private constructor(state: ArrayLike<number>) {
    this.s.set(state);
    if (this.s.every((w) => w === 0)) this.s[0] = 1; // the all-zero state is a fixed point
  }

  /** A generator for `seed`, on an independent `stream` (e.g. a hash of a parameter name). */
  static fromSeed(seed: number, stream = 0): Prng {
    const st = { s: (seed >>> 0) ^ Math.imul(stream >>> 0, 0x9e3779b1) };
    // Mix the seed's high bits too, so seeds that differ above 2^32 still differ.
    st.s = (st.s ^ Math.floor(seed / 4294967296)) >>> 0;
    return new Prng([splitmix32(st), splitmix32(st), splitmix32(st), splitmix32(st)]);
  }

  static fromState(state: readonly number[]): Prng {
    if (state.length !== 4 || !state.every((w) => Number.isInteger(w) && w >= 0 && w <= 0xffffffff)) {
      throw new Error(`PRNG state must be four unsigned 32-bit integers, got ${JSON.stringify(state)}`);
    }
    return new Prng(state);
  }

  state(): PrngState {
    return [this.s[0], this.s[1], this.s[2], this.s[3]];
  }

  /** The next u32 (xoshiro128**). */
  nextU32(): number {
    const s = this.s;
    const result = Math.imul(rotl(Math.imul(s[1], 5) >>> 0, 7), 9) >>> 0;
    const t = (s[1] << 9) >>> 0;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 11);
    return result;
  }

  /** Uniform in [0, 1) with 53 random bits. */
  nextFloat(): number {
    const hi = this.nextU32() >>> 5; // 27 bits
    const lo = this.nextU32() >>> 6; // 26 bits
    return (hi * 67108864 + lo) / 9007199254740992;
  }

  /** Uniform integer in [0, n) without modulo bias (n ≤ 2^32). */
  nextInt(n: number): number {
    if (!(n >= 1 && n <= 4294967296 && Number.isInteger(n))) throw new Error(`nextInt: bad range ${n}`);
    const limit = 4294967296 - (4294967296 % n);
    for (;;) {
      const x = this.nextU32();
      if (x < limit) return x % n;
    }
  }

  /** Two independent N(0, 1) samples by Box–Muller. */
  normalPair(): [number, number] {
    let u1 = this.nextFloat();
    while (u1 === 0) u1 = this.nextFloat(); // log(0)
    const u2 = this.nextFloat();
    const r = Math.sqrt(-2 * Math.log(u1));
    return [r * Math.cos(2 * Math.PI * u2), r * Math.sin(2 * Math.PI * u2)];
  }
}
