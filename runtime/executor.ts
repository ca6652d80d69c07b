// The backend interface the training loop drives: one training step (forward, backward, clip, AdamW
// where the weights live), evaluation, last-position logits for sampling, and the whole training
// state in and out for checkpoints. The CPU executor implements it on the reference; the GPU one plugs in.
import type { Graph } from "../compiler/ir.js";
import type { CheckedModel } from "../compiler/model.js";
import type { Batch } from "./data.js";
import type { AdamWStep } from "./optimizer.js";
import type { ScaleSlotSnapshot } from "./scale-state.js";

export type { Batch } from "./data.js";
export type { AdamWStep } from "./optimizer.js";

export interface StepStats {
  /** Mean cross-entropy of the batch, before the update. */
  loss: number;
  /** Global L2 norm of the gradients, before clipping. */
  gradNorm: number;
  /**
   * Only from `trainStepWithProbes`: every `kurtosis:<key>` output of the train graph, by key
   * (`qkv_layer02`), measured on this step's forward pass (the weights before its update).
   */
  kurtosis?: Record<string, number>;
}

/** Everything a training run needs to continue exactly: f32 master weights, AdamW moments, FP8 scales. */
export interface TrainState {
  params: Map<string, Float32Array>;
  m: Map<string, Float32Array>;
  v: Map<string, Float32Array>;
  /** Per FP8 scale slot, in slot-id order; loading an empty list starts every slot fresh (step 0). */
  scales: ScaleSlotSnapshot[];
  /** Optimizer updates done so far. */
  step: number;
}

export interface Executor {
  readonly backend: "cpu" | "webgpu";
  /**
   * Forward + backward + clip + AdamW update for one batch; the optimizer runs where the weights live.
   * It does not compute the train graph's probe nodes (role "probe"): `stripProbes(train)` from
   * compiler/probes.ts is the graph it runs.
   */
  trainStep(batch: Batch, hyper: AdamWStep): Promise<StepStats>;
  /**
   * Optional (docs/probes.md): the same step as `trainStep` that also computes the kurtosis probes and
   * returns them in `StepStats.kurtosis`. The loop calls it instead of `trainStep` on its probe steps
   * (every `probes.every` steps) and only then. The probe nodes read forward tensors and feed
   * nothing, so loss, gradients, update and FP8 scale state must equal `trainStep`'s. A backend
   * without it trains the same; the loop says once that it logs no kurtosis.
   */
  trainStepWithProbes?(batch: Batch, hyper: AdamWStep): Promise<StepStats>;
  /** Mean loss of a batch with the current weights; changes no state (FP8 scales are not updated). */
  evalLoss(batch: Batch): Promise<number>;
  /**
   * Logits of the last position for each sequence, for sampling: `tokens` holds `batch` rows of the
   * graph's seqLen (padded past each row's length), row b's last position is `lengths[b] − 1`.
   * Returns [batch, vocab], row-major. Needs causal attention (padding must not leak backwards).
   */
  lastLogits(tokens: Int32Array, lengths: readonly number[]): Promise<Float32Array>;
  /** A copy of params, m, v (name → Float32Array), scale state and optimizer step. */
  readState(): Promise<TrainState>;
  loadState(s: TrainState): Promise<void>;
  dispose(): void;
}

/** What a backend is built from: the compiled program's graphs (lowered for the run's batch shape). */
export interface ExecutorInit {
  forward: Graph;
  /** One training step: forward, backward (`grad:<param>` outputs) and the precision pass's casts. */
  train: Graph;
  model: CheckedModel;
}

/**
 * The contract of `runtime/gpu-executor.ts` (written separately): the training loop imports it
 * dynamically and uses WebGPU when `hasAdapter()` resolves true.
 */
export interface GpuExecutorModule {
  hasAdapter(): Promise<boolean>;
  createGpuExecutor(init: ExecutorInit): Promise<Executor>;
}

/** Zero AdamW moments shaped like `params`. */
export function zeroMoments(params: ReadonlyMap<string, Float32Array>): Map<string, Float32Array> {
  return new Map([...params].map(([k, p]) => [k, new Float32Array(p.length)]));
}

/** A deep copy of a training state. */
export function cloneState(s: TrainState): TrainState {
  const copy = (m: ReadonlyMap<string, Float32Array>): Map<string, Float32Array> => new Map([...m].map(([k, a]) => [k, a.slice()]));
  return {
    params: copy(s.params),
    m: copy(s.m),
    v: copy(s.v),
    scales: s.scales.map((x) => ({ scale: x.scale, history: x.history.slice(), head: x.head })),
    step: s.step,
  };
}
