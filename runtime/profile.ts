// One training step of the GPU executor with a timestamp pair around every dispatch (each kernel in
// its own compute pass, so launch gaps are excluded): per-kernel GPU time, share of the step, and
// achieved TFLOP/s or GB/s from the plan's cost model where the lowering supplies one. Behind
// `fogc run --profile` and `train({ profile: true })`; formatted by `formatProfile`.
import { readBuffer } from "./device.js";
import type { Batch, StepStats } from "./executor.js";
import type { GpuExecutor } from "./gpu-executor.js";
import type { KernelCost } from "./gpu-plan.js";

export type { KernelCost } from "./gpu-plan.js";
import type { AdamWStep } from "./optimizer.js";

export interface ProfileRow {
  /** The dispatch's label: `<graph node> (<what>)`, or a step-level name ("scale update"). */
  label: string;
  /** What the label's last parenthesised part names (gemm, adamw, quantize, …), else the label. */
  kind: string;
  /** GPU time of the dispatch, from its compute pass's timestamps. */
  ms: number;
  /** ms over the sum of every dispatch's ms (0 for all when nothing measurable was timed). */
  share: number;
  flops?: number;
  bytes?: number;
  /** Achieved TFLOP/s (flops over ms), when the kernel has a FLOP cost and a non-zero time. */
  tflops?: number;
  /** Achieved GB/s (bytes over ms), when the kernel has a byte cost and a non-zero time. */
  gbps?: number;
}

export interface StepProfile {
  adapter: string;
  /** One row per dispatch of the training step, in dispatch order. */
  rows: ProfileRow[];
  /** Sum of every dispatch's GPU time. */
  gpuMs: number;
  /** Wall time of the profiled step (submit to readback), with one pass per kernel. */
  wallMs: number;
  /** True when every timestamp was a multiple of 2^16 ns: Dawn's timestamp quantisation was on. */
  quantised: boolean;
  /** Tokens in the step's batch (for tokens/s of GPU time). */
  tokens: number;
  /** The step's loss and gradient norm: the profiled step is a real training step. */
  stats: StepStats;
}

/** Dawn rounds timestamps down to 2^16 ns unless its timestamp_quantization toggle is off. */
const QUANTUM_NS = 65536n;

/** The label's trailing `(…)` (what the kernel computes for its node), else the whole label. */
export function kernelKind(label: string): string {
  return /\(([^()]*)\)$/.exec(label)?.[1] ?? label;
}

/** The cost the lowering attached to each dispatch of the training step (undefined where it attached none). */
function plannedCosts(exec: GpuExecutor, labels: readonly string[]): (KernelCost | undefined)[] {
  const kernels = exec.trainKernels;
  if (kernels.length !== labels.length || kernels.some((k, i) => k.label !== labels[i])) {
    throw new Error(`profile: the train plan's ${kernels.length} kernels do not match the step's ${labels.length} dispatches`);
  }
  return kernels.map((k) => k.cost);
}

/** Builds the rows from per-dispatch times (ms) and optional costs; shares sum to 1 when any time is non-zero. */
export function profileRows(times: readonly { label: string; ms: number }[], costs: readonly (KernelCost | undefined)[] = []): ProfileRow[] {
  const total = times.reduce((a, t) => a + t.ms, 0);
  return times.map((t, i): ProfileRow => {
    const cost = costs[i];
    const row: ProfileRow = { label: t.label, kind: kernelKind(t.label), ms: t.ms, share: total > 0 ? t.ms / total : 0 };
    if (cost) {
      row.flops = cost.flops;
      row.bytes = cost.bytes;
      if (t.ms > 0 && cost.flops > 0) row.tflops = cost.flops / (t.ms * 1e-3) / 1e12;
      if (t.ms > 0 && cost.bytes > 0) row.gbps = cost.bytes / (t.ms * 1e-3) / 1e9;
    }
    return row;
  });
}

/**
 * Runs ONE training step of `exec` (a real update, as `trainStep`) with a timestamp pair around each
 * dispatch and returns the per-dispatch rows. Throws when the adapter has no timestamp queries.
 */
export async function profileStep(exec: GpuExecutor, batch: Batch, hyper: AdamWStep): Promise<StepProfile> {
  const { gpu } = exec;
  if (!gpu.caps.timestamps) throw new Error(`profile: adapter '${gpu.caps.adapterName}' has no timestamp queries (WebGPU feature 'timestamp-query')`);
  const dispatches = exec.plans.train.dispatches;
  const labels = dispatches.map((d) => d.label);
  const costs = plannedCosts(exec, labels);
  const querySet = gpu.device.createQuerySet({ type: "timestamp", count: 2 * dispatches.length, label: "profile timestamps" });
  const resolve = gpu.device.createBuffer({ size: 16 * dispatches.length, usage: GPUBufferUsage.QUERY_RESOLVE | GPUBufferUsage.COPY_SRC, label: "profile timestamps" });
  try {
    const t0 = performance.now();
    const stats = await exec.trainStep(batch, hyper, { querySet, perKernel: true, resolve });
    const wallMs = performance.now() - t0;
    const t = new BigUint64Array(await readBuffer(gpu, resolve, resolve.size));
    const times = labels.map((label, i) => {
      // A pass whose end reads before its begin (clock domains on some drivers) counts as 0.
      const ns = t[2 * i + 1] > t[2 * i] ? t[2 * i + 1] - t[2 * i] : 0n;
      return { label, ms: Number(ns) / 1e6 };
    });
    const rows = profileRows(times, costs);
    return {
      adapter: gpu.caps.adapterName,
      rows,
      gpuMs: rows.reduce((a, r) => a + r.ms, 0),
      wallMs,
      quantised: t.length > 0 && t.every((x) => x % QUANTUM_NS === 0n),
      tokens: batch.batch * batch.seqLen,
      stats,
    };
  } finally {
    querySet.destroy();
    resolve.destroy();
  }
}

/** A kind's totals: its dispatches' summed time, share and cost. */
export interface KindRow extends ProfileRow {
  dispatches: number;
}

/** Per-kind totals of a profile, slowest kind first. */
export function profileByKind(rows: readonly ProfileRow[]): KindRow[] {
  const byKind = new Map<string, { ms: number; share: number; flops?: number; bytes?: number; n: number }>();
  for (const r of rows) {
    const e = byKind.get(r.kind) ?? { ms: 0, share: 0, n: 0 };
    e.ms += r.ms;
    e.share += r.share;
    e.n += 1;
    if (r.flops !== undefined) e.flops = (e.flops ?? 0) + r.flops;
    if (r.bytes !== undefined) e.bytes = (e.bytes ?? 0) + r.bytes;
    byKind.set(r.kind, e);
  }
  return [...byKind]
    .map(([kind, e]): KindRow => {
      const [row] = profileRows([{ label: kind, ms: e.ms }], [e.flops !== undefined || e.bytes !== undefined ? { flops: e.flops ?? 0, bytes: e.bytes ?? 0 } : undefined]);
      return { ...row, kind, share: e.share, dispatches: e.n };
    })
    .sort((a, b) => b.ms - a.ms);
}

/** A rate with `digits` decimals, or two significant digits below 0.1 (CPU adapters reach GFLOP/s, not TFLOP/s). */
const fmtRate = (x: number | undefined, digits: number): string => (x === undefined ? "–" : x >= 100 ? x.toFixed(0) : x >= 0.1 || x === 0 ? x.toFixed(digits) : x.toPrecision(2));

/** The profile as a text table: totals, GPU time per kernel kind, then the `top` slowest dispatches. */
export function formatProfile(p: StepProfile, options: { top?: number } = {}): string {
  const top = options.top ?? (Number(process.env.FOGC_PROFILE_TOP) || 15);
  const lines: string[] = [];
  const flops = p.rows.reduce((a, r) => a + (r.flops ?? 0), 0);
  const costed = p.rows.filter((r) => r.flops !== undefined || r.bytes !== undefined).length;
  lines.push(
    `profile of one training step on ${p.adapter}: ${p.rows.length} dispatches, GPU time ${p.gpuMs.toFixed(3)} ms ` +
      `(one compute pass per kernel; launch gaps excluded), wall ${p.wallMs.toFixed(1)} ms, loss ${p.stats.loss.toFixed(4)}`,
  );
  lines.push(
    `  ${p.gpuMs > 0 ? `${((p.tokens / p.gpuMs) * 1000).toFixed(0)} tokens/s of GPU time` : "no measurable GPU time"}` +
      (flops > 0 && p.gpuMs > 0 ? `; ${(flops / (p.gpuMs * 1e-3) / 1e12).toFixed(2)} TFLOP/s over the step (${(flops / 1e9).toFixed(2)} GFLOP)` : "") +
      `; cost model on ${costed} of ${p.rows.length} kernels`,
  );
  const header = (first: string, width: number, extra = ""): string =>
    `  ${first.padEnd(width)} ${extra}${"ms".padStart(10)} ${"share".padStart(7)} ${"TFLOP/s".padStart(8)} ${"GB/s".padStart(8)}`;
  const line = (name: string, width: number, r: ProfileRow, extra = ""): string =>
    `  ${name.length > width ? `${name.slice(0, width - 1)}…` : name.padEnd(width)} ${extra}${r.ms.toFixed(3).padStart(10)} ${`${(100 * r.share).toFixed(1)}%`.padStart(7)} ${fmtRate(r.tflops, 2).padStart(8)} ${fmtRate(r.gbps, 1).padStart(8)}`;
  lines.push("", "by kind:", header("kind", 28, "dispatches ".padStart(11)));
  for (const k of profileByKind(p.rows)) lines.push(line(k.kind, 28, k, `${String(k.dispatches).padStart(10)} `));
  const slowest = [...p.rows].sort((a, b) => b.ms - a.ms).slice(0, top);
  lines.push("", `top ${slowest.length} dispatches:`, header("kernel", 48));
  for (const r of slowest) lines.push(line(r.label, 48, r));
  lines.push(`  ${"total".padEnd(48)} ${p.gpuMs.toFixed(3).padStart(10)} ${"100.0%".padStart(7)}`);
  if (p.quantised) {
    lines.push("", "note: every timestamp is a multiple of 65.536 µs (Dawn's timestamp quantisation): a kernel shorter than that reads as 0 or 65.5 µs; trust totals and long kernels only.");
  }
  return lines.join("\n");
}
