// Activation (transient) memory of a .fog file's training step per precision mode, from the GPU
// plan alone: no GPU. Compiles the file per mode, plans the step (runtime/gpu-plan.ts planTrainStep)
// with H100-like device limits and caps, places the transient buffers in arenas by lifetime with
// runtime/gpu-plan.ts arenaPlan, the allocator runtime/gpu-build.ts builds with, and prints per mode
// the transient bytes (what bench/train.ts reports as transient_bytes), their ratio to BF16's, and
// the largest buffers live at the peak of the step with the node that made them, how they are
// stored, and whether they are saved for the backward.
//
// usage: node --import tsx bench/memory.ts FILE.fog [--batch B] [--seq T] [--modes bf16,fp8,fp8dpa] [--top N]
import { resolve } from "node:path";
import type { Graph } from "../compiler/ir.js";
import type { PrecisionMode } from "../compiler/model.js";
import { compile } from "../compiler/pipeline.js";
import { pruneGraph } from "../runtime/cpu-executor.js";
import { arenaPlan, type PlanOptions, planTrainStep, probeOutputNames } from "../runtime/gpu-plan.js";

const USAGE = "usage: node --import tsx bench/memory.ts FILE.fog [--batch B] [--seq T] [--modes bf16,fp8,fp8dpa] [--top N]";
const MODES: readonly PrecisionMode[] = ["bf16", "fp8", "fp8dpa"];

/** An H100 under Dawn/Vulkan as runtime/device.ts reports it (limits the plan depends on). */
export const H100_PLAN_OPTIONS: PlanOptions = {
  maxSharedBytes: 49152,
  maxBindingBytes: 2 ** 31 - 4, // Dawn's storage-binding limit there (docs/perf.md: 390M logits at batch 4 do not fit)
  offsetAlign: 256,
  caps: {
    f16: true,
    subgroups: true,
    subgroupMinSize: 32,
    subgroupMaxSize: 32,
    subgroupMatrix: [{ componentType: "f16", resultComponentType: "f32", M: 16, N: 16, K: 16 }],
    maxComputeWorkgroupStorageSize: 49152,
    isCpu: false,
  },
};

/**
 * maxBufferSize assumed for the H100 (the arenas' cap): Dawn's Vulkan backend assumes 2 GiB where the
 * driver does not report one (lavapipe reports 4 GiB); at 390M and GPT-2-small a 4 GiB cap plans
 * within 0.2% of this.
 */
export const H100_MAX_BUFFER_BYTES = 2 ** 31;

export interface LiveBuffer {
  label: string;
  bytes: number;
  node?: number;
  nodeName: string;
  storage: string;
  saved: boolean;
}

export interface ModeMemory {
  mode: PrecisionMode;
  batch: number;
  seq: number;
  transient: number;
  unshared: number;
  /** Bytes of each arena holding the transient buffers (runtime/gpu-build.ts builds them so). */
  arenas: number[];
  /** The most bytes of transient buffers live at once, and the kernel where that happens. */
  peak: number;
  peakKernel: string;
  live: LiveBuffer[];
  /** Bytes live at the peak per storage, and how many of them are saved for the backward pass. */
  byStorage: Record<string, number>;
  savedBytes: number;
}

/** Plans `g`'s training step (no probes, as bench/train.ts runs it) and measures its transient memory. */
export function measure(g: Graph, mode: PrecisionMode, opts: PlanOptions = H100_PLAN_OPTIONS, maxBufferBytes = H100_MAX_BUFFER_BYTES): ModeMemory {
  const probes = probeOutputNames(g);
  const step = pruneGraph(g, Object.keys(g.outputs).filter((k) => !probes.includes(k)));
  const plan = planTrainStep(step, opts, { probes: false });
  const { transient, unshared, first, last, arenas } = arenaPlan(plan, { maxBufferBytes, offsetAlign: opts.offsetAlign });
  // Live bytes per kernel: a buffer is live from its first to its last binding kernel.
  const delta = new Float64Array(plan.kernels.length + 1);
  for (const [b, f] of first) {
    delta[f] += plan.buffers[b].bytes;
    delta[last.get(b)! + 1] -= plan.buffers[b].bytes;
  }
  let at = 0;
  let peak = 0;
  let cur = 0;
  for (let i = 0; i < plan.kernels.length; i++) {
    cur += delta[i];
    if (cur > peak) [peak, at] = [cur, i];
  }
  const storage = plan.fused!.storage;
  const roleOfKernel = (i: number): string | undefined => {
    const n = plan.kernels[i].node;
    return n === undefined ? undefined : step.nodes[n].role;
  };
  const live: LiveBuffer[] = [];
  for (const [b, f] of first) {
    if (f > at || last.get(b)! < at) continue;
    const buf = plan.buffers[b];
    const n = buf.node !== undefined ? step.nodes[buf.node] : undefined;
    // Saved: made in the forward, still read in the backward.
    const saved = roleOfKernel(f) === "fwd" && roleOfKernel(last.get(b)!) === "bwd";
    const isValue = n !== undefined && buf.label === n.name;
    live.push({ label: buf.label, bytes: buf.bytes, ...(n ? { node: n.id } : {}), nodeName: n ? `%${n.id} ${n.op} ${n.name}` : "-", storage: isValue ? storage[n!.id] : "f32 (scratch)", saved });
  }
  live.sort((a, b) => b.bytes - a.bytes);
  const byStorage: Record<string, number> = {};
  for (const l of live) byStorage[l.storage] = (byStorage[l.storage] ?? 0) + l.bytes;
  const savedBytes = live.filter((l) => l.saved).reduce((a, l) => a + l.bytes, 0);
  return { mode, batch: step.batch, seq: step.seqLen, transient, unshared, arenas, peak, peakKernel: plan.kernels[at].label, live, byStorage, savedBytes };
}

const mib = (b: number): string => `${(b / 2 ** 20).toFixed(1)} MiB`;

function main(): void {
  const argv = process.argv.slice(2);
  const opts = new Map<string, string>();
  const files: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === "--help" || argv[i] === "-h") return console.log(USAGE);
    if (argv[i].startsWith("--") && i + 1 < argv.length) opts.set(argv[i].slice(2), argv[++i]);
    else files.push(argv[i]);
  }
  if (files.length !== 1) {
    console.error(USAGE);
    process.exit(1);
  }
  const int = (k: string): number | undefined => (opts.has(k) ? Number(opts.get(k)) : undefined);
  const modes = (opts.get("modes") ?? MODES.join(",")).split(",") as PrecisionMode[];
  const top = int("top") ?? 15;
  const file = resolve(files[0]);
  const results: ModeMemory[] = [];
  for (const mode of modes) {
    const r = compile(file, { precision: mode, ...(int("batch") ? { batch: int("batch") } : {}), ...(int("seq") ? { seqLen: int("seq") } : {}) });
    if (!r.program) throw new Error(`${files[0]} does not compile (${mode}):\n${r.diagnostics.map((d) => d.message).join("\n")}`);
    results.push(measure(r.program.train, mode));
  }
  const base = results.find((r) => r.mode === "bf16");
  const r0 = results[0];
  console.log(`${files[0]} (${r0.batch} × ${r0.seq} tokens a step): training-step transient memory from the GPU plan (H100 limits; no GPU)`);
  console.log("");
  console.log("| mode | transient | × BF16 | arenas | unshared | live at peak | saved for bwd at peak |");
  console.log("|---|---|---|---|---|---|---|");
  for (const r of results) {
    const ratio = base ? (r.transient / base.transient).toFixed(3) : "-";
    console.log(`| ${r.mode} | ${mib(r.transient)} | ${ratio} | ${r.arenas.length} | ${mib(r.unshared)} | ${mib(r.peak)} | ${mib(r.savedBytes)} |`);
  }
  for (const r of results) {
    console.log("");
    const st = Object.entries(r.byStorage).map(([k, v]) => `${k} ${mib(v)}`).join(", ");
    console.log(`${r.mode}: peak ${mib(r.peak)} at "${r.peakKernel}"; live by storage: ${st}; ${r.live.length} buffers live`);
    console.log(`| bytes | buffer | producing node | storage | saved |`);
    console.log(`|---|---|---|---|---|`);
    for (const l of r.live.slice(0, top)) console.log(`| ${mib(l.bytes)} | ${l.label} | ${l.nodeName} | ${l.storage} | ${l.saved ? "yes" : "no"} |`);
    if (top === 0) continue;
    // The same tensor of every layer together (b3.ffn.fc1 → bN.ffn.fc1).
    const groups = new Map<string, { bytes: number; count: number; op: string; storage: string; saved: boolean }>();
    for (const l of r.live) {
      const key = l.label.replace(/^b\d+\./, "bN.");
      const op = l.nodeName.split(" ")[1] ?? "-";
      const grp = groups.get(key) ?? { bytes: 0, count: 0, op, storage: l.storage, saved: l.saved };
      groups.set(key, { ...grp, bytes: grp.bytes + l.bytes, count: grp.count + 1 });
    }
    console.log("");
    console.log(`| bytes (all layers) | buffer | × | op | storage | saved |`);
    console.log(`|---|---|---|---|---|---|`);
    for (const [k, v] of [...groups].sort((a, b) => b[1].bytes - a[1].bytes).slice(0, top)) console.log(`| ${mib(v.bytes)} | ${k} | ${v.count} | ${v.op} | ${v.storage} | ${v.saved ? "yes" : "no"} |`);
  }
}

if (process.argv[1] && resolve(process.argv[1]) === resolve(new URL(import.meta.url).pathname)) main();
