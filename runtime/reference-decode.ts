// CPU reference of the decode ops (docs/ir.md, Decode): RoPE at a position offset, the KV-cache
// write, and attention over a cache. Same formulas as the training ops in reference-ops.ts; only the
// positions and the K/V layout ([batch, kvHeads, context, headDim]) differ.
import type { OpAttrs } from "../compiler/ir.js";
import { rope } from "./reference-ops.js";

type Arr = ArrayLike<number>;

/** The position input's value, checked: an integer in [0, context − rows]. */
export function positionOf(what: string, position: Arr, rows: number, context: number): number {
  const p = position[0];
  if (!Number.isInteger(p) || p < 0 || p + rows > context) {
    throw new Error(`${what}: position ${p} with ${rows} new rows does not fit a cache of ${context} positions`);
  }
  return p;
}

/**
 * RoPE of rows of `width` = heads·headDim where row r of a sequence (seqLen new rows) sits at
 * position + r: the training op's own formula (reference-ops.ts rope) run on the sequence padded
 * in front to position + seqLen rows, keeping the last seqLen, so both share one definition.
 */
export function ropeAt(x: Arr, width: number, a: OpAttrs["rope"], position: number): Float64Array {
  const rows = a.seqLen;
  const full = position + rows;
  const y = new Float64Array(x.length);
  const padded = new Float64Array(full * width);
  for (let s = 0; s * rows * width < x.length; s++) {
    const block = Array.prototype.slice.call(x, s * rows * width, (s + 1) * rows * width) as number[];
    padded.fill(0);
    padded.set(block, position * width);
    y.set(rope(padded, width, { ...a, seqLen: full }).subarray(position * width), s * rows * width);
  }
  return y;
}

/** The cache [B, H, C, Dh] with positions position…position+rows−1 of each sequence set from x [B·rows, H·Dh]. */
export function kvWrite(cache: Arr, shape: readonly number[], x: Arr, rows: number, position: number): Float64Array {
  const [B, H, C, Dh] = shape;
  const out = Float64Array.from(cache);
  for (let b = 0; b < B; b++) {
    for (let r = 0; r < rows; r++) {
      const src = (b * rows + r) * H * Dh;
      for (let h = 0; h < H; h++) {
        const dst = ((b * H + h) * C + position + r) * Dh;
        for (let d = 0; d < Dh; d++) out[dst + d] = x[src + h * Dh + d];
      }
    }
  }
  return out;
}

/**
 * softmax(scale·q·kᵀ)·fq(P)·v over the cache: query row i of sequence b (seqLen = new rows per
 * sequence) sees cache positions ≤ position + i (causal) or < position + seqLen. `quantP` gets the
 * amax of P over the whole call (FP8DPA) and returns the fake cast applied to P before P·V.
 */
export function cachedAttention(
  q: Arr,
  kc: Arr,
  vc: Arr,
  a: OpAttrs["attention"],
  position: number,
  quantP?: (amax: number) => (p: number) => number,
): Float64Array {
  const { heads, kvHeads, headDim: Dh, seqLen: rows, scale } = a;
  const C = a.cached!.context;
  const qW = heads * Dh;
  const B = q.length / qW / rows;
  const rowsP: { qo: number; ko: number; p: Float64Array }[] = [];
  let amax = 0;
  for (let b = 0; b < B; b++) {
    for (let h = 0; h < heads; h++) {
      const ko = (b * kvHeads + Math.floor(h / (heads / kvHeads))) * C * Dh;
      for (let i = 0; i < rows; i++) {
        const qo = (b * rows + i) * qW + h * Dh;
        const p = new Float64Array(position + (a.causal ? i + 1 : rows));
        let max = -Infinity;
        for (let j = 0; j < p.length; j++) {
          let s = 0;
          for (let d = 0; d < Dh; d++) s += q[qo + d] * kc[ko + j * Dh + d];
          p[j] = scale * s;
          max = Math.max(max, p[j]);
        }
        let z = 0;
        for (let j = 0; j < p.length; j++) z += p[j] = Math.exp(p[j] - max);
        for (let j = 0; j < p.length; j++) amax = Math.max(amax, (p[j] /= z));
        rowsP.push({ qo, ko, p });
      }
    }
  }
  const fq = quantP ? quantP(amax) : (x: number) => x;
  const o = new Float64Array(q.length);
  for (const { qo, ko, p } of rowsP) {
    for (let j = 0; j < p.length; j++) {
      const pj = fq(p[j]);
      for (let d = 0; d < Dh; d++) o[qo + d] += pj * vc[ko + j * Dh + d];
    }
  }
  return o;
}
