// The attention oracle both attention test files check against: naive f64 attention with the full
// T×T softmax and its analytic backward, P and dS optionally fake-quantised (FP8DPA).
import type { AttentionConfig } from "../../compiler/kernels/attention.js";
import { fakeQuant, quantize } from "./harness.js";

type Fq = (x: number) => number;
const id: Fq = (x) => x;
type Arr = ArrayLike<number>;

/** Naive attention and its analytic backward in f64, P and dS fake-quantised by fqP / fqDs. */
export function oracle(q: Arr, k: Arr, v: Arr, dO: Arr, c: AttentionConfig, fqP: Fq = id, fqDs: Fq = id) {
  const { batch: B, seqLen: T, heads: H, kvHeads: KV, headDim: DH, scale } = c;
  const r = {
    o: new Float64Array(B * T * H * DH),
    lse: new Float64Array(B * H * T),
    delta: new Float64Array(B * H * T),
    dq: new Float64Array(B * T * H * DH),
    dk: new Float64Array(B * T * KV * DH),
    dv: new Float64Array(B * T * KV * DH),
    amaxP: 0,
    amaxDs: 0,
  };
  for (let b = 0; b < B; b++)
    for (let h = 0; h < H; h++) {
      const g = Math.floor(h / (H / KV));
      const qi = (t: number, d: number): number => (b * T + t) * H * DH + h * DH + d;
      const ki = (t: number, d: number): number => (b * T + t) * KV * DH + g * DH + d;
      // The full T×T score matrix for this head.
      const S = Array.from({ length: T }, (_, i) =>
        Array.from({ length: T }, (_, j) => {
          if (c.causal && j > i) return -Infinity;
          let s = 0;
          for (let d = 0; d < DH; d++) s += q[qi(i, d)] * k[ki(j, d)];
          return s * scale;
        }),
      );
      for (let i = 0; i < T; i++) {
        const m = Math.max(...S[i]);
        const z = S[i].reduce((a, s) => a + Math.exp(s - m), 0);
        const P = S[i].map((s) => Math.exp(s - m) / z);
        r.lse[(b * H + h) * T + i] = m + Math.log(z);
        for (let j = 0; j < T; j++) {
          r.amaxP = Math.max(r.amaxP, P[j]);
          for (let d = 0; d < DH; d++) r.o[qi(i, d)] += fqP(P[j]) * v[ki(j, d)];
        }
        let D = 0;
        for (let d = 0; d < DH; d++) D += dO[qi(i, d)] * r.o[qi(i, d)];
        r.delta[(b * H + h) * T + i] = D;
        for (let j = 0; j < T; j++) {
          let dp = 0;
          for (let d = 0; d < DH; d++) dp += dO[qi(i, d)] * v[ki(j, d)];
          const ds = P[j] * (dp - D);
          r.amaxDs = Math.max(r.amaxDs, Math.abs(ds));
          for (let d = 0; d < DH; d++) {
            r.dq[qi(i, d)] += scale * fqDs(ds) * k[ki(j, d)];
            r.dk[ki(j, d)] += scale * fqDs(ds) * q[qi(i, d)];
            r.dv[ki(j, d)] += fqP(P[j]) * dO[qi(i, d)];
          }
        }
      }
    }
  return r;
}

/**
 * The FP8DPA scales the attention tests use, as the kernels' `scales` binding holds them: scale_inv
 * of Q, K, V, dO (powers of two, as current scaling with pow2 gives), then the quantisation scales
 * of P (448 = E4M3 max / amax(P) ≤ 1) and dS (not a power of two); FP8_SLOTS indexes it.
 */
const [S_IN, S_P, S_DS] = [[64, 32, 128, 4096], 448, 3000.5] as const;
export const FP8_SCALES = Float32Array.from([...S_IN.map((s) => 1 / s), S_P, S_DS]);
export const FP8_SLOTS = { scaleInv: { q: 0, k: 1, v: 2, dO: 3 }, scale: { p: 4, dS: 5 }, amax: { p: 0, dS: 1 } };

/**
 * FP8DPA inputs of `c`'s shape drawn from `rand` (in the order Q, K, V, dO): Q/K/V quantised to
 * E4M3 and dO (~±0.01) to E5M2 with FP8_SCALES, and the oracle of their exact values with P and dS
 * fake-quantised at their scales.
 */
export function fp8Case(rand: (n: number, lo?: number, hi?: number) => Float32Array, c: AttentionConfig) {
  const { batch: B, seqLen: T, heads: H, kvHeads: KV, headDim: DH } = c;
  const q = quantize(rand(B * T * H * DH), "e4m3", S_IN[0]);
  const k = quantize(rand(B * T * KV * DH), "e4m3", S_IN[1]);
  const v = quantize(rand(B * T * KV * DH), "e4m3", S_IN[2]);
  const dO = quantize(rand(B * T * H * DH, -0.01, 0.01), "e5m2", S_IN[3]);
  return { q, k, v, dO, want: oracle(q.deq, k.deq, v.deq, dO.deq, c, fakeQuant("e4m3", S_P), fakeQuant("e5m2", S_DS)) };
}
