// The math behind the CPU reference (runtime/reference.ts): activations, norms, RoPE, attention,
// xIELU, GLU, cross-entropy and kurtosis, forward and backward, in f64 on flat row-major arrays.
// Kept apart from the op table so each formula is written once and can be unit-tested alone.
import type { OpAttrs, RopeScaling } from "../compiler/ir.js";

type F64 = Float64Array;
type Arr = ArrayLike<number>;

// ---- scalar activations -------------------------------------------------------------------

/** erf to ~1e-15 relative: 2/√π·e^{−x²}·Σ 2ⁿx^{2n+1}/(2n+1)!! has only positive terms (no cancellation). */
export function erf(x: number): number {
  const a = Math.abs(x);
  if (a > 6) return Math.sign(x); // erfc(6) ≈ 2e-17
  let term = a;
  let sum = a;
  for (let n = 1; term > sum * 1e-17; n++) {
    term *= (2 * a * a) / (2 * n + 1);
    sum += term;
  }
  return ((Math.sign(x) * 2) / Math.sqrt(Math.PI)) * Math.exp(-a * a) * sum;
}

export const sigmoid = (x: number): number => (x >= 0 ? 1 / (1 + Math.exp(-x)) : Math.exp(x) / (1 + Math.exp(x)));
export const softplus = (x: number): number => Math.max(x, 0) + Math.log1p(Math.exp(-Math.abs(x)));

/** Each activation with its derivative: exact-erf GeLU (papers.md §5.6) and SiLU = x·σ(x). */
export const ACTIVATIONS = {
  gelu: {
    f: (x: number): number => 0.5 * x * (1 + erf(x * Math.SQRT1_2)),
    // Φ(x) + x·φ(x)
    df: (x: number): number =>
      0.5 * (1 + erf(x * Math.SQRT1_2)) + (x * Math.exp(-0.5 * x * x)) / Math.sqrt(2 * Math.PI),
  },
  silu: {
    f: (x: number): number => x * sigmoid(x),
    df: (x: number): number => {
      const s = sigmoid(x);
      return s * (1 + x * (1 - s));
    },
  },
} satisfies Record<OpAttrs["glu"]["act"], { f: (x: number) => number; df: (x: number) => number }>;

// ---- norms over contiguous groups of the last dimension --------------------------------------

/** y = x / sqrt(mean(x²) + eps) · gain, per chunk of `group` elements. */
export function rmsnorm(x: Arr, gain: Arr | undefined, eps: number, group: number): F64 {
  const y = new Float64Array(x.length);
  for (let o = 0; o < x.length; o += group) {
    let ss = 0;
    for (let j = 0; j < group; j++) ss += x[o + j] * x[o + j];
    const r = 1 / Math.sqrt(ss / group + eps);
    for (let j = 0; j < group; j++) y[o + j] = x[o + j] * r * (gain ? gain[j] : 1);
  }
  return y;
}

/** dx = r·(g⊙dy − x̂·mean(g⊙dy⊙x̂)) with x̂ = x·r; dgain = Σ_chunks dy⊙x̂. */
export function rmsnormGrad(
  x: Arr,
  dy: Arr,
  gain: Arr | undefined,
  eps: number,
  group: number,
  wrt: "x" | "gain",
): F64 {
  const out = new Float64Array(wrt === "x" ? x.length : group);
  for (let o = 0; o < x.length; o += group) {
    let ss = 0;
    for (let j = 0; j < group; j++) ss += x[o + j] * x[o + j];
    const r = 1 / Math.sqrt(ss / group + eps);
    if (wrt === "gain") {
      for (let j = 0; j < group; j++) out[j] += dy[o + j] * x[o + j] * r;
      continue;
    }
    let c = 0;
    for (let j = 0; j < group; j++) c += dy[o + j] * (gain ? gain[j] : 1) * x[o + j] * r;
    c /= group;
    for (let j = 0; j < group; j++) out[o + j] = r * (dy[o + j] * (gain ? gain[j] : 1) - x[o + j] * r * c);
  }
  return out;
}

function moments(x: Arr, o: number, group: number, eps: number): [mu: number, r: number] {
  let mu = 0;
  for (let j = 0; j < group; j++) mu += x[o + j];
  mu /= group;
  let v = 0;
  for (let j = 0; j < group; j++) v += (x[o + j] - mu) ** 2;
  return [mu, 1 / Math.sqrt(v / group + eps)];
}

/** y = (x − mean) / sqrt(var + eps) · gain + bias, per chunk of `group` elements. */
export function layernorm(x: Arr, gain: Arr | undefined, bias: Arr | undefined, eps: number, group: number): F64 {
  const y = new Float64Array(x.length);
  for (let o = 0; o < x.length; o += group) {
    const [mu, r] = moments(x, o, group, eps);
    for (let j = 0; j < group; j++) y[o + j] = (x[o + j] - mu) * r * (gain ? gain[j] : 1) + (bias ? bias[j] : 0);
  }
  return y;
}

/** dx = r·(gy − mean(gy) − x̂·mean(gy⊙x̂)) with gy = g⊙dy; dgain = Σ dy⊙x̂; dbias = Σ dy. */
export function layernormGrad(
  x: Arr,
  dy: Arr,
  gain: Arr | undefined,
  eps: number,
  group: number,
  wrt: "x" | "gain" | "bias",
): F64 {
  const out = new Float64Array(wrt === "x" ? x.length : group);
  for (let o = 0; o < x.length; o += group) {
    const [mu, r] = moments(x, o, group, eps);
    const xh = (j: number): number => (x[o + j] - mu) * r;
    if (wrt !== "x") {
      for (let j = 0; j < group; j++) out[j] += dy[o + j] * (wrt === "gain" ? xh(j) : 1);
      continue;
    }
    let m1 = 0;
    let m2 = 0;
    for (let j = 0; j < group; j++) {
      const gy = dy[o + j] * (gain ? gain[j] : 1);
      m1 += gy;
      m2 += gy * xh(j);
    }
    m1 /= group;
    m2 /= group;
    for (let j = 0; j < group; j++) out[o + j] = r * (dy[o + j] * (gain ? gain[j] : 1) - m1 - xh(j) * m2);
  }
  return out;
}

// ---- RoPE ------------------------------------------------------------------------------------

/**
 * Inverse frequencies f_i = base^(−2i/headDim), i < headDim/2, with Llama-3.1 rescaling (papers.md
 * §4): wavelength λ = 2π/f; λ < original/highFreq keeps f; λ > original/lowFreq gives f/factor;
 * between, (1−a)·f/factor + a·f with a = (original/λ − lowFreq)/(highFreq − lowFreq).
 */
export function ropeFrequencies(headDim: number, base: number, scaling?: RopeScaling): F64 {
  const f = new Float64Array(headDim / 2).map((_, i) => base ** ((-2 * i) / headDim));
  if (!scaling) return f;
  const { factor, lowFreq, highFreq, original } = scaling;
  return f.map((fi) => {
    const lambda = (2 * Math.PI) / fi;
    if (lambda < original / highFreq) return fi;
    if (lambda > original / lowFreq) return fi / factor;
    const a = (original / lambda - lowFreq) / (highFreq - lowFreq);
    return ((1 - a) * fi) / factor + a * fi;
  });
}

/** Rotate-half RoPE on rows of `width` = heads·headDim; position = row % seqLen; −θ when inverse. */
export function rope(x: Arr, width: number, a: OpAttrs["rope"]): F64 {
  const f = ropeFrequencies(a.headDim, a.base, a.scaling);
  const half = a.headDim / 2;
  const y = new Float64Array(x.length);
  for (let row = 0; row * width < x.length; row++) {
    const pos = row % a.seqLen;
    for (let i = 0; i < half; i++) {
      const theta = (a.inverse ? -pos : pos) * f[i];
      const c = Math.cos(theta);
      const s = Math.sin(theta);
      for (let o = row * width; o < (row + 1) * width; o += a.headDim) {
        const x1 = x[o + i];
        const x2 = x[o + i + half];
        y[o + i] = x1 * c - x2 * s;
        y[o + i + half] = x2 * c + x1 * s;
      }
    }
  }
  return y;
}

// ---- attention -------------------------------------------------------------------------------

type AttnAttrs = OpAttrs["attention"];

/** Visits every (sequence, head, query) softmax row p over its visible keys j < p.length. */
function forEachSoftmaxRow(
  q: Arr,
  k: Arr,
  a: AttnAttrs,
  visit: (qo: number, ko: (j: number) => number, p: F64) => void,
): void {
  const { heads, kvHeads, headDim: hd, seqLen, scale } = a;
  const qW = heads * hd;
  const kW = kvHeads * hd;
  const rows = q.length / qW;
  if (rows % seqLen !== 0) throw new Error(`attention: ${rows} rows is not a multiple of seq_len ${seqLen}`);
  for (let row0 = 0; row0 < rows; row0 += seqLen) {
    for (let h = 0; h < heads; h++) {
      const g = Math.floor(h / (heads / kvHeads));
      const ko = (j: number): number => (row0 + j) * kW + g * hd;
      for (let i = 0; i < seqLen; i++) {
        const qo = (row0 + i) * qW + h * hd;
        const p = new Float64Array(a.causal ? i + 1 : seqLen);
        let max = -Infinity;
        for (let j = 0; j < p.length; j++) {
          let s = 0;
          for (let d = 0; d < hd; d++) s += q[qo + d] * k[ko(j) + d];
          p[j] = scale * s;
          max = Math.max(max, p[j]);
        }
        let z = 0;
        for (let j = 0; j < p.length; j++) z += p[j] = Math.exp(p[j] - max);
        for (let j = 0; j < p.length; j++) p[j] /= z;
        visit(qo, ko, p);
      }
    }
  }
}

/** Fake quantisation of P and dS in FP8DPA (identity otherwise). */
export interface AttnQuant {
  p: (x: number) => number;
  ds: (x: number) => number;
}

const NO_QUANT: AttnQuant = { p: (x) => x, ds: (x) => x };

/** O = softmax(scale·q·kᵀ + causal mask)·fq(P)·v per (sequence, head); GQA head h reads kv head ⌊h/(H/KV)⌋. */
export function attention(q: Arr, k: Arr, v: Arr, a: AttnAttrs, fq: AttnQuant = NO_QUANT): F64 {
  const o = new Float64Array(q.length);
  forEachSoftmaxRow(q, k, a, (qo, ko, p) => {
    for (let j = 0; j < p.length; j++) {
      const pj = fq.p(p[j]);
      for (let d = 0; d < a.headDim; d++) o[qo + d] += pj * v[ko(j) + d];
    }
  });
  return o;
}

/** For one softmax row: dP_j = dO·v_j, D = Σ fq(P)_j·dP_j (= rowsum(dO⊙O)), dS_j = P_j·(dP_j − D). */
function rowDs(p: F64, qo: number, ko: (j: number) => number, v: Arr, dO: Arr, hd: number, fq: AttnQuant): F64 {
  const dS = p.map((_, j) => {
    let dp = 0;
    for (let d = 0; d < hd; d++) dp += dO[qo + d] * v[ko(j) + d];
    return dp;
  });
  let D = 0;
  for (let j = 0; j < p.length; j++) D += fq.p(p[j]) * dS[j];
  for (let j = 0; j < p.length; j++) dS[j] = p[j] * (dS[j] - D);
  return dS;
}

/**
 * max P and max |dS| over the whole attention, for the FP8DPA scale slots of P and dS. dS is the
 * tensor the backward casts (papers.md §2.1: amax is recorded on what is cast): D = rowsum(dO⊙O) with
 * the forward's O = fq(P)·V, so pass the P quantiser `fqP` the forward used (identity without FP8DPA).
 */
export function attentionAmax(q: Arr, k: Arr, v: Arr, dO: Arr | undefined, a: AttnAttrs, fqP: (x: number) => number = NO_QUANT.p): { p: number; ds: number } {
  let p = 0;
  let ds = 0;
  const fq = { p: fqP, ds: NO_QUANT.ds };
  forEachSoftmaxRow(q, k, a, (qo, ko, row) => {
    for (const x of row) p = Math.max(p, x);
    if (dO) for (const x of rowDs(row, qo, ko, v, dO, a.headDim, fq)) ds = Math.max(ds, Math.abs(x));
  });
  return { p, ds };
}

/** papers.md §3.2: dV = fq(P)ᵀ·dO; dP = dO·Vᵀ; D = rowsum(dO⊙O); dS = P⊙(dP − D); dQ = τ·fq(dS)·K; dK = τ·fq(dS)ᵀ·Q. */
export function attentionGrad(q: Arr, k: Arr, v: Arr, dO: Arr, a: AttnAttrs & { wrt: "q" | "k" | "v" }, fq: AttnQuant = NO_QUANT): F64 {
  const hd = a.headDim;
  const out = new Float64Array(a.wrt === "q" ? q.length : k.length);
  forEachSoftmaxRow(q, k, a, (qo, ko, p) => {
    if (a.wrt === "v") {
      for (let j = 0; j < p.length; j++) {
        const pj = fq.p(p[j]);
        for (let d = 0; d < hd; d++) out[ko(j) + d] += pj * dO[qo + d];
      }
      return;
    }
    const dS = rowDs(p, qo, ko, v, dO, hd, fq);
    for (let j = 0; j < p.length; j++) {
      const g = a.scale * fq.ds(dS[j]);
      for (let d = 0; d < hd; d++) {
        if (a.wrt === "q") out[qo + d] += g * k[ko(j) + d];
        else out[ko(j) + d] += g * q[qo + d];
      }
    }
  });
  return out;
}

// ---- xIELU (papers.md §5.6) --------------------------------------------------------------------

/** α_p = softplus(ρ_p); α_n = β + softplus(ρ_n). */
function xieluAlphas(rhoP: number, rhoN: number, beta: number): [number, number] {
  return [softplus(rhoP), beta + softplus(rhoN)];
}

/** x > 0: α_p·x² + β·x;  x ≤ 0: α_n·(e^{min(x,ε)} − 1) − α_n·x + β·x. */
export function xielu(x: Arr, rhoP: number, rhoN: number, beta: number, eps: number): F64 {
  const [ap, an] = xieluAlphas(rhoP, rhoN, beta);
  return Float64Array.from(x, (v) =>
    v > 0 ? ap * v * v + beta * v : an * Math.expm1(Math.min(v, eps)) - an * v + beta * v,
  );
}

/**
 * ∂/∂x = 2α_p·x + β (x > 0), α_n·e^x·[x < ε] − α_n + β (x ≤ 0); ∂/∂ρ_p = Σ_{x>0} dy·x²·σ(ρ_p);
 * ∂/∂ρ_n = Σ_{x≤0} dy·(e^{min(x,ε)} − 1 − x)·σ(ρ_n)  (softplus' = σ).
 */
export function xieluGrad(x: Arr, rhoP: number, rhoN: number, dy: Arr, a: OpAttrs["xielu_grad"]): F64 {
  const { beta, eps } = a;
  const [ap, an] = xieluAlphas(rhoP, rhoN, beta);
  if (a.wrt === "x") {
    return Float64Array.from(x, (v, i) =>
      dy[i] * (v > 0 ? 2 * ap * v + beta : (v < eps ? an * Math.exp(v) : 0) - an + beta),
    );
  }
  let s = 0;
  for (let i = 0; i < x.length; i++) {
    const v = x[i];
    if (a.wrt === "rho_p" && v > 0) s += dy[i] * v * v;
    if (a.wrt === "rho_n" && v <= 0) s += dy[i] * (Math.expm1(Math.min(v, eps)) - v);
  }
  return Float64Array.of(s * sigmoid(a.wrt === "rho_p" ? rhoP : rhoN));
}

// ---- GLU, cross-entropy, kurtosis ------------------------------------------------------------------

/** y = act(x[:, :F]) ⊙ x[:, F:] on rows of width 2F. */
export function glu(x: Arr, width: number, act: OpAttrs["glu"]["act"]): F64 {
  const F = width / 2;
  const { f } = ACTIVATIONS[act];
  const y = new Float64Array(x.length / 2);
  for (let r = 0; r * width < x.length; r++) {
    for (let j = 0; j < F; j++) y[r * F + j] = f(x[r * width + j]) * x[r * width + F + j];
  }
  return y;
}

/** d gate = dy·up·act'(gate); d up = dy·act(gate), laid out like x. */
export function gluGrad(x: Arr, dy: Arr, width: number, act: OpAttrs["glu"]["act"]): F64 {
  const F = width / 2;
  const { f, df } = ACTIVATIONS[act];
  const dx = new Float64Array(x.length);
  for (let r = 0; r * width < x.length; r++) {
    for (let j = 0; j < F; j++) {
      const a = x[r * width + j];
      const g = dy[r * F + j];
      dx[r * width + j] = g * x[r * width + F + j] * df(a);
      dx[r * width + F + j] = g * f(a);
    }
  }
  return dx;
}

function softmaxRow(logits: Arr, o: number, V: number): F64 {
  let max = -Infinity;
  for (let j = 0; j < V; j++) max = Math.max(max, logits[o + j]);
  const p = new Float64Array(V);
  let z = 0;
  for (let j = 0; j < V; j++) z += p[j] = Math.exp(logits[o + j] - max);
  return p.map((e) => e / z);
}

function checkTarget(t: number, V: number): number {
  if (!Number.isInteger(t) || t < 0 || t >= V) throw new Error(`cross_entropy: target ${t} outside [0, ${V})`);
  return t;
}

/** mean over rows of −log softmax(logits)[target]. */
export function crossEntropy(logits: Arr, targets: Arr, V: number): number {
  let loss = 0;
  for (let r = 0; r < targets.length; r++) loss -= Math.log(softmaxRow(logits, r * V, V)[checkTarget(targets[r], V)]);
  return loss / targets.length;
}

/** dlogits = dloss·(softmax(logits) − onehot(target)) / rows. */
export function crossEntropyGrad(logits: Arr, targets: Arr, dloss: number, V: number): F64 {
  const out = new Float64Array(logits.length);
  const M = targets.length;
  for (let r = 0; r < M; r++) {
    const p = softmaxRow(logits, r * V, V);
    p[checkTarget(targets[r], V)] -= 1;
    for (let j = 0; j < V; j++) out[r * V + j] = (dloss * p[j]) / M;
  }
  return out;
}

/**
 * papers.md §7.1: mean over vectors of mean(x⁴)/mean(x²)² (uncentred). per_token: each row of the
 * last dimension is a vector; per_sequence: each run of seqLen rows, flattened. An all-zero vector gives NaN.
 */
export function kurtosis(x: Arr, width: number, mode: OpAttrs["kurtosis"]["mode"], seqLen: number): number {
  return kurtosisOfRows([x], [width], mode, seqLen);
}

/**
 * The kurtosis of several tensors measured together: row r of the combined tensor is the
 * concatenation of row r of every part (parts[i] has rows of widths[i]; all have the same number
 * of rows). This is how a multi-node tap (the q, k and v GEMM outputs of `qkv`) is one vector per
 * token. Only Σx² and Σx⁴ per vector enter the ratio, so the order of the parts does not matter.
 */
export function kurtosisOfRows(parts: readonly Arr[], widths: readonly number[], mode: OpAttrs["kurtosis"]["mode"], seqLen: number): number {
  if (parts.length === 0 || parts.length !== widths.length) throw new Error(`kurtosis: ${parts.length} inputs, ${widths.length} widths`);
  const rows = parts[0].length / widths[0];
  parts.forEach((p, i) => {
    if (p.length !== rows * widths[i]) throw new Error(`kurtosis: input ${i} has ${p.length} elements, not ${rows} rows of ${widths[i]}`);
  });
  const rowsPerVector = mode === "per_token" ? 1 : seqLen;
  if (!Number.isInteger(rows) || rows % rowsPerVector !== 0) throw new Error(`kurtosis: ${rows} rows is not a multiple of ${rowsPerVector}`);
  const len = rowsPerVector * widths.reduce((a, b) => a + b, 0);
  let total = 0;
  for (let r0 = 0; r0 < rows; r0 += rowsPerVector) {
    let m2 = 0;
    let m4 = 0;
    parts.forEach((p, i) => {
      const w = widths[i];
      for (let j = r0 * w; j < (r0 + rowsPerVector) * w; j++) {
        const v2 = p[j] * p[j];
        m2 += v2;
        m4 += v2 * v2;
      }
    });
    total += m4 / len / (m2 / len) ** 2;
  }
  return total / (rows / rowsPerVector);
}
