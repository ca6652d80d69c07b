// AdamW with decoupled weight decay and global-norm clipping, and the learning-rate schedules of a
// train section (constant, cosine, WSD with the 1-sqrt decay of papers.md §6). Pure functions over
// typed arrays: f32 master weights and moments, f64 arithmetic inside, the same result everywhere.
import type { TrainSpec } from "../compiler/model.js";

/** The hyperparameters of one update (the `.fog` optimizer's, at this step's learning rate); `step` is
 *  t ≥ 1, the number of updates including this one; `clip` 0 disables gradient-norm clipping. */
export type AdamWStep = Omit<TrainSpec["optimizer"], "kind"> & { step: number };

/** Per-parameter options from its `param` node: decay mask and learning-rate multiplier. */
export interface ParamGroup {
  decay: boolean;
  lrScale: number;
}

/** √(Σ g²) over every gradient tensor, accumulated in f64 in the given order. */
export function globalNorm(grads: Iterable<ArrayLike<number>>): number {
  let s = 0;
  for (const g of grads) for (let i = 0; i < g.length; i++) s += g[i] * g[i];
  return Math.sqrt(s);
}

/**
 * The factor gradients are multiplied by for global-norm clipping (PyTorch `clip_grad_norm_`,
 * Megatron): clip / (norm + 1e-6) when the norm exceeds `clip`, else 1. A non-finite norm gives 1
 * (the update then carries the NaN/inf, and the training loop reports it).
 */
export function clipFactor(norm: number, clip: number): number {
  if (!(clip > 0) || !Number.isFinite(norm) || norm <= clip) return 1;
  return clip / (norm + 1e-6);
}

/**
 * One AdamW update of a parameter in place (Loshchilov & Hutter, as torch.optim.AdamW):
 *   g ← gradScale·g;  m ← β₁m + (1−β₁)g;  v ← β₂v + (1−β₂)g²
 *   p ← p·(1 − lr·wd) − lr · (m / (1−β₁ᵗ)) / (√(v / (1−β₂ᵗ)) + ε)
 * with lr = hyper.lr·group.lrScale and wd = hyper.weightDecay when the group decays, else 0.
 */
export function adamwUpdate(
  param: Float32Array,
  grad: ArrayLike<number>,
  m: Float32Array,
  v: Float32Array,
  hyper: AdamWStep,
  group: ParamGroup,
  gradScale = 1,
): void {
  const n = param.length;
  if (grad.length !== n || m.length !== n || v.length !== n) {
    throw new Error(`adamwUpdate: sizes differ (param ${n}, grad ${grad.length}, m ${m.length}, v ${v.length})`);
  }
  if (!(hyper.step >= 1)) throw new Error(`adamwUpdate: step must be ≥ 1, got ${hyper.step}`);
  const { beta1: b1, beta2: b2, eps } = hyper;
  const lr = hyper.lr * group.lrScale;
  const decay = group.decay ? 1 - lr * hyper.weightDecay : 1;
  const c1 = 1 - b1 ** hyper.step;
  const c2 = 1 - b2 ** hyper.step;
  for (let i = 0; i < n; i++) {
    const g = grad[i] * gradScale;
    const mi = b1 * m[i] + (1 - b1) * g;
    const vi = b2 * v[i] + (1 - b2) * g * g;
    m[i] = mi;
    v[i] = vi;
    param[i] = param[i] * decay - (lr * (m[i] / c1)) / (Math.sqrt(v[i] / c2) + eps);
  }
}

export type Schedule = TrainSpec["schedule"];

/**
 * The learning rate of the update that follows `step` completed updates (0-based: the first update
 * is step 0) in a run of `total` updates:
 * - warmup: linear from 0, lr = peak·step/warmup for step < warmup (the first update has lr 0);
 * - constant: peak after warmup;
 * - cosine: min + (peak − min)·½(1 + cos πp), p = (step − warmup)/(total − 1 − warmup), from peak at
 *   the first step after warmup to min at the last step;
 * - wsd: peak until the decay phase, the last D = round(decay·total) updates (starting no earlier
 *   than the end of warmup), then min + (peak − min)(1 − √r), r = (step − start + 1)/D, so the last
 *   update runs at min (papers.md §6: 1-sqrt decay over the last 20 %).
 * Steps at or beyond `total` get min (cosine, wsd) or peak (constant).
 */
export function learningRate(schedule: Schedule, peak: number, step: number, total: number): number {
  const { warmup } = schedule;
  if (step < warmup) return (peak * step) / warmup;
  switch (schedule.kind) {
    case "constant":
      return peak;
    case "cosine": {
      if (step >= total) return schedule.minLr;
      const span = total - 1 - warmup;
      const p = span > 0 ? Math.min(1, (step - warmup) / span) : 1;
      return schedule.minLr + (peak - schedule.minLr) * 0.5 * (1 + Math.cos(Math.PI * p));
    }
    case "wsd": {
      if (step >= total) return schedule.minLr;
      const d = Math.round(schedule.decay * total);
      const start = Math.max(warmup, total - d);
      const len = total - start;
      if (len <= 0 || step < start) return peak;
      const r = Math.min(1, (step - start + 1) / len);
      return schedule.minLr + (peak - schedule.minLr) * (1 - Math.sqrt(r));
    }
  }
}
