// The WebGPU backend: plans the training graph once (runtime/gpu-plan.ts), keeps parameters, AdamW
// moments and FP8 scale state on the GPU, and runs each step as ONE command buffer (forward,
// backward, grad norm, clip, AdamW, scale update), reading back only the loss and the grad norm.
import type { KernelGraph } from "../compiler/fuse.js";
import type { Graph } from "../compiler/ir.js";
import { numel, paramNodes } from "../compiler/ir.js";
import { tokenIndex } from "../compiler/kernels/elementwise.js";
import { type Decoder, type DecoderInit, pruneGraph } from "./cpu-executor.js";
import { type Gpu, hasWebGpuAdapter, openGpu, withErrorScope } from "./device.js";
import { cloneState, type Batch, type Executor, type ExecutorInit, type StepStats, type TrainState } from "./executor.js";
import { type BuiltPlan, buildPlan, PipelineCache } from "./gpu-build.js";
import { type GraphPlan, KEYS, type PlanKernel, type PlanOptions, planGraph, planTrainStep, probeOutputNames, slotRings } from "./gpu-plan.js";
import { HYPER_WORDS, hyperValues } from "./gpu-kernels.js";
import { readTileCache, type TileCache } from "./gemm-autotune.js";
import type { AdamWStep } from "./optimizer.js";
import type { ScaleSlotSnapshot } from "./scale-state.js";

/** True when Dawn finds a WebGPU adapter (lavapipe counts). */
export async function hasAdapter(): Promise<boolean> {
  return hasWebGpuAdapter();
}

/** Options beyond the Executor contract: a device and a pipeline cache to share (tests, benchmarks). */
export interface GpuExecutorOptions {
  gpu?: Gpu;
  pipelines?: PipelineCache;
}

/** Timestamp queries for a step (bench/step.ts): one pair for the pass, or one pair per kernel. */
export interface Timestamps {
  querySet: GPUQuerySet;
  perKernel: boolean;
  /** QUERY_RESOLVE buffer the timestamps are resolved into. */
  resolve: GPUBuffer;
}

/** Graph outputs of the probe pass are named `kurtosis:<key>`. */
const KURTOSIS = "kurtosis:";

/** The largest staging buffer a state readback maps at once (one buffer larger than this gets its own). */
const READBACK_CHUNK = 256 * 2 ** 20;

const STORAGE = GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST;

/** Scale state buffers: per slot an f32 scale and a u32 ring head; all amax rings as f32 bits. */
interface StateBuffers {
  scales: GPUBuffer;
  heads: GPUBuffer;
  hist: GPUBuffer;
}

/** A plan for one kind of command buffer, with its own copy of the scale state if it must not touch training's. */
interface Program {
  plan: GraphPlan;
  built: BuiltPlan;
  /** Eval/sampling programs cast with a copy of the training scale state, made at the start of each run. */
  stateCopy?: StateBuffers;
}

/**
 * The GEMM tiles tuned on this adapter (bench/tune-model.ts and `bench/gemm.ts --tune` write them to
 * runtime/gemm-autotune.ts tileCachePath()): GEMMs of a tuned shape run with the winner.
 * FOGC_TUNED_TILES=0 ignores them (the default tiles, for comparisons).
 */
/** What planning needs of `gpu`: its limits and capabilities, and (`tuned`) its tuned GEMM tiles. */
export function planOptions(gpu: Gpu, tuned = true): PlanOptions {
  const { limits } = gpu.device;
  return {
    maxSharedBytes: limits.maxComputeWorkgroupStorageSize,
    maxBindingBytes: limits.maxStorageBufferBindingSize,
    offsetAlign: limits.minStorageBufferOffsetAlignment,
    caps: gpu.caps,
    ...(tuned ? tunedTiles(gpu) : {}),
  };
}

function tunedTiles(gpu: Gpu): Pick<PlanOptions, "tunedTiles"> {
  if (process.env.FOGC_TUNED_TILES === "0") return {};
  let entries: TileCache;
  try {
    entries = readTileCache();
  } catch (e) {
    // A cache only speeds GEMMs up: an unreadable one is reported and the default tiles run.
    console.warn(`fogc: ${(e as Error).message}; running with the default GEMM tiles`);
    return {};
  }
  return Object.keys(entries).length ? { tunedTiles: { adapter: gpu.caps.adapterName, entries } } : {};
}

export class GpuExecutor implements Executor {
  readonly backend = "webgpu" as const;
  /** The largest staging buffer readState maps at once (tests make it small to exercise the chunking). */
  readbackChunkBytes = READBACK_CHUNK;
  private step = 0;
  private disposed = false;

  private constructor(
    readonly gpu: Gpu,
    private readonly ownsGpu: boolean,
    private readonly graph: Graph,
    private readonly order: string[],
    private readonly externals: Map<string, GPUBuffer>,
    private readonly state: StateBuffers,
    private readonly train: Program,
    private readonly loss: Program,
    private readonly logits: Program,
    /** The step with the kurtosis probes (absent when the graph has none). */
    private readonly probes: Program | undefined,
    private readonly readback: GPUBuffer,
    private readonly vocab: number,
    /** Every buffer the executor made (destroyed by dispose; the plans destroy their own). */
    private readonly made: GPUBuffer[],
  ) {}

  /** Plans and builds everything a run needs: buffers, pipelines (compiled once) and bind groups. */
  static async create(init: ExecutorInit, options: GpuExecutorOptions = {}): Promise<GpuExecutor> {
    const gpu = options.gpu ?? (await openGpu());
    const owns = !options.gpu;
    try {
      return await GpuExecutor.build(gpu, owns, init.train, options.pipelines ?? new PipelineCache(gpu));
    } catch (e) {
      if (owns) gpu.destroy();
      throw e;
    }
  }

  private static async build(gpu: Gpu, owns: boolean, g: Graph, cache: PipelineCache): Promise<GpuExecutor> {
    const { device } = gpu;
    const opts = planOptions(gpu);
    const trainPlan = planTrainStep(g, opts, { probes: false });
    const probeNames = probeOutputNames(g);
    const probePlan = probeNames.length ? planTrainStep(g, opts, { probes: true }) : undefined;
    const lossPlan = planGraph(pruneGraph(g, ["loss"]), ["loss"], opts);
    const logitsPlan = planGraph(pruneGraph(g, ["logits"]), ["logits"], opts);
    const order = paramNodes(g).map((p) => p.name);
    const M = g.batch * g.seqLen;
    const nSlots = g.scaleSlots.length;

    const made: GPUBuffer[] = [];
    const buf = (bytes: number, label: string, usage = STORAGE): GPUBuffer => {
      const b = device.createBuffer({ size: Math.max(4, Math.ceil(bytes / 4) * 4), usage, label });
      made.push(b);
      return b;
    };
    try {
      const externals = new Map<string, GPUBuffer>();
      const state = await withErrorScope(
        device,
        () => {
          for (const p of paramNodes(g)) {
            const bytes = numel(p.shape) * 4;
            for (const key of [KEYS.param(p.name), KEYS.m(p.name), KEYS.v(p.name)]) externals.set(key, buf(bytes, key));
          }
          externals.set(KEYS.tokens, buf(M * 4, "tokens"));
          externals.set(KEYS.targets, buf(M * 4, "targets"));
          const index = trainPlan.buffers.find((b) => b.key === KEYS.tokenIndex);
          if (index) externals.set(KEYS.tokenIndex, buf(index.bytes, "token index"));
          externals.set(KEYS.hyper, buf(HYPER_WORDS * 4, "hyper"));
          const s = { scales: buf(nSlots * 4, "scales"), heads: buf(nSlots * 4, "heads"), hist: buf(trainPlan.histWords * 4, "amax history") };
          externals.set(KEYS.scales, s.scales).set(KEYS.heads, s.heads).set(KEYS.hist, s.hist);
          return s;
        },
        "GPU executor: buffers",
      );
      const copyOf = (label: string): StateBuffers => ({
        scales: buf(nSlots * 4, `${label} scales`),
        heads: buf(nSlots * 4, `${label} heads`),
        hist: buf(trainPlan.histWords * 4, `${label} amax history`),
      });
      const program = async (plan: GraphPlan, label: string, copy: boolean): Promise<Program> => {
        const stateCopy = copy && nSlots ? copyOf(label) : undefined;
        const ext = new Map(externals);
        if (stateCopy) ext.set(KEYS.scales, stateCopy.scales).set(KEYS.heads, stateCopy.heads).set(KEYS.hist, stateCopy.hist);
        return { plan, built: await buildPlan(gpu, plan, ext, cache, label), ...(stateCopy ? { stateCopy } : {}) };
      };
      // One after the other (error scopes are a per-device stack); the cache compiles a kernel the
      // plans share once, so the eval, sampling and probe plans add little.
      const train = await program(trainPlan, "train step", false);
      const loss = await program(lossPlan, "eval loss", true);
      const logits = await program(logitsPlan, "logits", true);
      const probes = probePlan && (await program(probePlan, "train step with probes", false));
      const logitsNode = g.nodes[g.outputs.logits];
      const vocab = logitsNode.shape[logitsNode.shape.length - 1];
      const readback = buf(Math.max(8 + probeNames.length * 4, g.batch * vocab * 4), "readback", GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST);
      const exec = new GpuExecutor(gpu, owns, g, order, externals, state, train, loss, logits, probes, readback, vocab, made);
      await exec.resetScales();
      return exec;
    } catch (e) {
      for (const b of made) b.destroy();
      throw e;
    }
  }

  /** Plans' kernel labels and memory (for benchmarks and reports). */
  get plans(): { train: BuiltPlan; loss: BuiltPlan; logits: BuiltPlan } {
    return { train: this.train.built, loss: this.loss.built, logits: this.logits.built };
  }

  /** The kernel groups of the training step's graph (compiler/fuse.ts) and each value's storage. */
  get trainFusion(): KernelGraph | undefined {
    return this.train.plan.fused;
  }

  /** The training step's planned kernels, in dispatch order (labels, sources, costs: runtime/profile.ts). */
  get trainKernels(): readonly PlanKernel[] {
    return this.train.plan.kernels;
  }

  private checkTokens(tokens: Int32Array, what: string): void {
    const want = this.graph.batch * this.graph.seqLen;
    if (tokens.length !== want) throw new Error(`GpuExecutor.${what}: batch of ${tokens.length} tokens, the graph was lowered for ${this.graph.batch}×${this.graph.seqLen} = ${want}`);
  }

  private live(): void {
    if (this.disposed) throw new Error("GpuExecutor: used after dispose()");
  }

  /** Encodes `p` (after copying the scale state into its private copy), then the readback copies; submits and maps. */
  private async run(p: Program, copies: [GPUBuffer, number, number][], timestamps?: Timestamps): Promise<ArrayBuffer> {
    const { device } = this.gpu;
    const enc = device.createCommandEncoder({ label: "fogc step" });
    if (p.stateCopy) {
      for (const k of ["scales", "heads", "hist"] as const) enc.copyBufferToBuffer(this.state[k], 0, p.stateCopy[k], 0, this.state[k].size);
    }
    p.built.encode(enc, timestamps);
    let at = 0;
    for (const [src, offset, bytes] of copies) {
      enc.copyBufferToBuffer(src, offset, this.readback, at, bytes);
      at += bytes;
    }
    if (timestamps) enc.resolveQuerySet(timestamps.querySet, 0, timestamps.querySet.count, timestamps.resolve, 0);
    device.queue.submit([enc.finish()]);
    await this.readback.mapAsync(GPUMapMode.READ, 0, Math.max(4, at));
    try {
      return this.readback.getMappedRange(0, Math.max(4, at)).slice(0);
    } finally {
      this.readback.unmap();
    }
  }

  private writeBatch(batch: { tokens: Int32Array; targets?: Int32Array }): void {
    // The kernels clamp ids into the vocabulary; the reference rejects them, and so does this.
    for (const [what, ids] of [["token", batch.tokens], ["target", batch.targets]] as const) {
      const bad = ids?.findIndex((t) => !(t >= 0 && t < this.vocab)) ?? -1;
      if (bad >= 0) throw new Error(`GpuExecutor: ${what} ${ids![bad]} at ${bad} is outside the vocabulary [0, ${this.vocab})`);
    }
    const q = this.gpu.device.queue;
    q.writeBuffer(this.externals.get(KEYS.tokens)!, 0, batch.tokens);
    if (batch.targets) q.writeBuffer(this.externals.get(KEYS.targets)!, 0, batch.targets);
    const index = this.externals.get(KEYS.tokenIndex);
    if (index) q.writeBuffer(index, 0, tokenIndex(batch.tokens, this.vocab));
  }

  /** Forward, backward, grad norm, clip, AdamW and the scale update in one command buffer; reads back loss and grad norm. */
  async trainStep(batch: Batch, hyper: AdamWStep, timestamps?: Timestamps): Promise<StepStats> {
    return this.step1(this.train, batch, hyper, false, timestamps);
  }

  /** The same step with the kurtosis probes computed too (StepStats.kurtosis); the loss, update and scales are trainStep's. */
  async trainStepWithProbes(batch: Batch, hyper: AdamWStep): Promise<StepStats> {
    return this.step1(this.probes ?? this.train, batch, hyper, true);
  }

  private async step1(p: Program, batch: Batch, hyper: AdamWStep, withProbes: boolean, timestamps?: Timestamps): Promise<StepStats> {
    this.live();
    this.checkTokens(batch.tokens, "trainStep");
    if (!(hyper.step >= 1)) throw new Error(`GpuExecutor.trainStep: step must be ≥ 1, got ${hyper.step}`);
    this.writeBatch(batch);
    this.gpu.device.queue.writeBuffer(this.externals.get(KEYS.hyper)!, 0, hyperValues(hyper));
    const { outputs } = p.plan;
    const b = p.built;
    const probes = Object.keys(outputs).filter((k) => k.startsWith(KURTOSIS));
    const reads: [GPUBuffer, number, number][] = ["loss", "sumsq", ...probes].map((k) => [b.buffer(outputs[k]), 0, 4]);
    const out = new Float32Array(await this.run(p, reads, timestamps));
    this.step = hyper.step;
    const stats: StepStats = { loss: out[0], gradNorm: Math.sqrt(out[1]) };
    if (withProbes) stats.kurtosis = Object.fromEntries(probes.map((k, i) => [k.slice(KURTOSIS.length), out[2 + i]]));
    return stats;
  }

  async evalLoss(batch: Batch): Promise<number> {
    this.live();
    this.checkTokens(batch.tokens, "evalLoss");
    this.writeBatch(batch);
    const out = await this.run(this.loss, [[this.loss.built.buffer(this.loss.plan.outputs.loss), 0, 4]]);
    return new Float32Array(out)[0];
  }

  async lastLogits(tokens: Int32Array, lengths: readonly number[]): Promise<Float32Array> {
    this.live();
    const { batch, seqLen } = this.graph;
    this.checkTokens(tokens, "lastLogits");
    if (lengths.length !== batch) throw new Error(`GpuExecutor.lastLogits: ${lengths.length} lengths for a batch of ${batch}`);
    const V = this.vocab;
    const logits = this.logits.built.buffer(this.logits.plan.outputs.logits);
    const copies = lengths.map((len, b): [GPUBuffer, number, number] => {
      if (!(len >= 1 && len <= seqLen)) throw new Error(`GpuExecutor.lastLogits: length ${len} outside [1, ${seqLen}]`);
      return [logits, (b * seqLen + len - 1) * V * 4, V * 4];
    });
    this.writeBatch({ tokens });
    return new Float32Array(await this.run(this.logits, copies));
  }

  /**
   * Copies `buffers` back (checkpoints only: not per-step traffic), through staging buffers of at most
   * READBACK_CHUNK bytes each: a 390M model's weights and moments are 4.6 GB, more than one mappable
   * buffer may hold.
   */
  private async readAll(buffers: GPUBuffer[]): Promise<ArrayBuffer[]> {
    const out: ArrayBuffer[] = [];
    for (let i = 0; i < buffers.length; ) {
      const group = [buffers[i++]];
      let total = group[0].size;
      while (i < buffers.length && total + buffers[i].size <= this.readbackChunkBytes) {
        total += buffers[i].size;
        group.push(buffers[i++]);
      }
      out.push(...(await this.readGroup(group, total)));
    }
    return out;
  }

  private async readGroup(buffers: GPUBuffer[], total: number): Promise<ArrayBuffer[]> {
    const { device } = this.gpu;
    const staging = device.createBuffer({ size: Math.max(4, total), usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST, label: "state readback" });
    try {
      const enc = device.createCommandEncoder();
      let at = 0;
      for (const b of buffers) {
        enc.copyBufferToBuffer(b, 0, staging, at, b.size);
        at += b.size;
      }
      device.queue.submit([enc.finish()]);
      await staging.mapAsync(GPUMapMode.READ);
      const all = staging.getMappedRange();
      at = 0;
      return buffers.map((b) => {
        const part = all.slice(at, at + b.size);
        at += b.size;
        return part;
      });
    } finally {
      staging.destroy();
    }
  }

  async readState(): Promise<TrainState> {
    this.live();
    const sizes = paramNodes(this.graph).map((p) => numel(p.shape));
    const kinds = [KEYS.param, KEYS.m, KEYS.v];
    const bufs = kinds.flatMap((k) => this.order.map((name) => this.externals.get(k(name))!));
    const data = await this.readAll([...bufs, this.state.scales, this.state.heads, this.state.hist]);
    const maps = kinds.map((_, ki) => new Map(this.order.map((name, i) => [name, new Float32Array(data[ki * this.order.length + i], 0, sizes[i])])));
    const [scales, heads, hist] = data.slice(-3);
    const sc = new Float32Array(scales);
    const hd = new Uint32Array(heads);
    const hs = new Float32Array(hist);
    const snaps: ScaleSlotSnapshot[] = this.train.plan.rings.map((r, i) => ({ scale: sc[i], history: hs.slice(r.offset, r.offset + r.length), head: hd[i] }));
    return cloneState({ params: maps[0], m: maps[1], v: maps[2], scales: snaps, step: this.step });
  }

  /** Every slot at step 0: s = 1, empty histories, heads 0. */
  private async resetScales(): Promise<void> {
    const n = this.graph.scaleSlots.length;
    const q = this.gpu.device.queue;
    q.writeBuffer(this.state.scales, 0, new Float32Array(Math.max(1, n)).fill(1));
    q.writeBuffer(this.state.heads, 0, new Uint32Array(Math.max(1, n)));
    q.writeBuffer(this.state.hist, 0, new Uint32Array(this.state.hist.size / 4));
    await q.onSubmittedWorkDone();
  }

  async loadState(s: TrainState): Promise<void> {
    this.live();
    const q = this.gpu.device.queue;
    const params = paramNodes(this.graph);
    for (const p of params) {
      const n = numel(p.shape);
      for (const [what, map] of [["params", s.params], ["m", s.m], ["v", s.v]] as const) {
        const a = map.get(p.name);
        if (!a) throw new Error(`GpuExecutor.loadState: ${what} has no "${p.name}"`);
        if (a.length !== n) throw new Error(`GpuExecutor.loadState: ${what} "${p.name}" has ${a.length} values, shape [${p.shape}] needs ${n}`);
      }
    }
    const rings = this.train.plan.rings;
    if (s.scales.length && s.scales.length !== rings.length) throw new Error(`GpuExecutor.loadState: ${s.scales.length} scale slots given, the graph has ${rings.length}`);
    s.scales.forEach((x, i) => {
      if (x.history.length !== rings[i].length || !(x.head >= 0 && x.head < rings[i].length)) {
        throw new Error(`GpuExecutor.loadState: slot #${i} "${this.graph.scaleSlots[i].name}" has an amax history of ${rings[i].length} (head ${x.head}, ${x.history.length} given)`);
      }
    });
    for (const p of params) {
      q.writeBuffer(this.externals.get(KEYS.param(p.name))!, 0, s.params.get(p.name)!);
      q.writeBuffer(this.externals.get(KEYS.m(p.name))!, 0, s.m.get(p.name)!);
      q.writeBuffer(this.externals.get(KEYS.v(p.name))!, 0, s.v.get(p.name)!);
    }
    if (!s.scales.length) await this.resetScales();
    else {
      const hist = new Float32Array(this.state.hist.size / 4);
      s.scales.forEach((x, i) => hist.set(x.history, rings[i].offset));
      q.writeBuffer(this.state.scales, 0, Float32Array.from(s.scales, (x) => x.scale));
      q.writeBuffer(this.state.heads, 0, Uint32Array.from(s.scales, (x) => x.head));
      q.writeBuffer(this.state.hist, 0, hist);
    }
    this.step = s.step;
    await q.onSubmittedWorkDone();
  }

  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    for (const p of [this.train, this.loss, this.logits, this.probes]) p?.built.destroy();
    for (const b of this.made) b.destroy();
    if (this.ownsGpu) this.gpu.destroy();
  }
}

/** The Executor for `init` on the default WebGPU adapter (the contract runtime/train.ts loads). */
export async function createGpuExecutor(init: ExecutorInit, options: GpuExecutorOptions = {}): Promise<GpuExecutor> {
  return GpuExecutor.create(init, options);
}

/**
 * Sampling with a KV cache on WebGPU: the weights, the caches (one buffer per kv_cache, written in
 * place by kv_write) and the decode slots' scale state live on the GPU; each call is ONE command
 * buffer (the decode graph for its number of new rows, planned and built on first use) and reads
 * back only each sequence's last row of logits. The scale state is never updated (delayed slots
 * keep the checkpoint's scales).
 */
export class GpuDecoder implements Decoder {
  private readonly programs = new Map<number, { graph: Graph; plan: GraphPlan; built: BuiltPlan; tokens: GPUBuffer }>();
  private disposed = false;

  private constructor(
    readonly gpu: Gpu,
    private readonly ownsGpu: boolean,
    private readonly init: DecoderInit,
    private readonly externals: Map<string, GPUBuffer>,
    private readonly readback: GPUBuffer,
    private readonly vocab: number,
    private readonly made: GPUBuffer[],
    private readonly pipelines: PipelineCache,
  ) {}

  static async create(init: DecoderInit, options: GpuExecutorOptions = {}): Promise<GpuDecoder> {
    const gpu = options.gpu ?? (await openGpu());
    const owns = !options.gpu;
    const made: GPUBuffer[] = [];
    const { device } = gpu;
    const buf = (bytes: number, label: string, usage = STORAGE): GPUBuffer => {
      const b = device.createBuffer({ size: Math.max(4, Math.ceil(bytes / 4) * 4), usage, label });
      made.push(b);
      return b;
    };
    try {
      const g = init.graphFor(1);
      const { rings, words } = slotRings(g.scaleSlots);
      if (init.scales.length !== rings.length) throw new Error(`GpuDecoder: ${init.scales.length} scale slots given, the decode graph has ${rings.length}`);
      const externals = new Map<string, GPUBuffer>();
      const q = device.queue;
      const vocab = g.nodes[g.outputs.logits].shape[1];
      const readback = await withErrorScope(
        device,
        () => {
          for (const n of g.nodes) {
            if (n.op === "param") {
              const data = init.params.get(n.name);
              if (!data || data.length !== numel(n.shape)) throw new Error(`GpuDecoder: parameter "${n.name}" needs ${numel(n.shape)} values, got ${data?.length ?? "none"}`);
              const b = buf(data.length * 4, KEYS.param(n.name));
              q.writeBuffer(b, 0, data);
              externals.set(KEYS.param(n.name), b);
            } else if (n.op === "kv_cache") externals.set(KEYS.cache(n.name), buf(numel(n.shape) * 4, KEYS.cache(n.name)));
          }
          externals.set(KEYS.position, buf(4, "position"));
          const nSlots = rings.length;
          const hist = new Float32Array(Math.max(1, words));
          init.scales.forEach((x, i) => hist.set(x.history, rings[i].offset));
          for (const [key, data] of [
            [KEYS.scales, Float32Array.from(init.scales, (x) => x.scale)],
            [KEYS.heads, Uint32Array.from(init.scales, (x) => x.head)],
            [KEYS.hist, hist],
          ] as const) {
            const b = buf(Math.max(nSlots, data.length) * 4, key);
            if (data.length) q.writeBuffer(b, 0, data);
            externals.set(key, b);
          }
          return buf(g.batch * vocab * 4, "logits readback", GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST);
        },
        "GPU decoder: buffers",
      );
      await q.onSubmittedWorkDone();
      return new GpuDecoder(gpu, owns, init, externals, readback, vocab, made, options.pipelines ?? new PipelineCache(gpu));
    } catch (e) {
      for (const b of made) b.destroy();
      if (owns) gpu.destroy();
      throw e;
    }
  }

  /** Plans and builds the program for `rows` new tokens ahead of its first call. */
  async prepare(rows: number): Promise<void> {
    await this.program(rows);
  }

  /** The decode program for `rows` new tokens per sequence, planned and built once. */
  private async program(rows: number) {
    const have = this.programs.get(rows);
    if (have) return have;
    const graph = this.init.graphFor(rows);
    const { device } = this.gpu;
    const plan = planGraph(graph, ["logits"], planOptions(this.gpu));
    const tokens = device.createBuffer({ size: Math.max(4, graph.batch * rows * 4), usage: STORAGE, label: `decode tokens ×${rows}` });
    this.made.push(tokens);
    const ext = new Map(this.externals).set(KEYS.tokens, tokens);
    const built = await buildPlan(this.gpu, plan, ext, this.pipelines, `decode ×${rows}`);
    const p = { graph, plan, built, tokens };
    this.programs.set(rows, p);
    return p;
  }

  async step(tokens: Int32Array, position: number): Promise<Float32Array> {
    if (this.disposed) throw new Error("GpuDecoder: used after dispose()");
    const batch = this.init.graphFor(1).batch;
    const rows = tokens.length / batch;
    if (!Number.isInteger(rows) || rows < 1) throw new Error(`GpuDecoder.step: ${tokens.length} tokens is not a whole number of rows per sequence`);
    const bad = tokens.findIndex((t) => !(t >= 0 && t < this.vocab));
    if (bad >= 0) throw new Error(`GpuDecoder: token ${tokens[bad]} at ${bad} is outside the vocabulary [0, ${this.vocab})`);
    const p = await this.program(rows);
    const context = p.graph.nodes.find((n) => n.op === "kv_cache")?.shape[2] ?? Infinity;
    if (!(Number.isInteger(position) && position >= 0 && position + rows <= context)) {
      throw new Error(`GpuDecoder: position ${position} with ${rows} new rows does not fit a cache of ${context} positions`);
    }
    const { device } = this.gpu;
    device.queue.writeBuffer(p.tokens, 0, tokens);
    device.queue.writeBuffer(this.externals.get(KEYS.position)!, 0, Int32Array.of(position));
    const enc = device.createCommandEncoder({ label: "fogc decode" });
    p.built.encode(enc);
    const logits = p.built.buffer(p.plan.outputs.logits);
    const V = this.vocab;
    for (let b = 0; b < batch; b++) enc.copyBufferToBuffer(logits, ((b + 1) * rows - 1) * V * 4, this.readback, b * V * 4, V * 4);
    device.queue.submit([enc.finish()]);
    await this.readback.mapAsync(GPUMapMode.READ, 0, batch * V * 4);
    try {
      return new Float32Array(this.readback.getMappedRange(0, batch * V * 4).slice(0));
    } finally {
      this.readback.unmap();
    }
  }

  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    for (const p of this.programs.values()) p.built.destroy();
    for (const b of this.made) b.destroy();
    if (this.ownsGpu) this.gpu.destroy();
  }
}

/** A KV-cache decoder on the default WebGPU adapter (runtime/generate.ts). */
export async function createGpuDecoder(init: DecoderInit, options: GpuExecutorOptions = {}): Promise<GpuDecoder> {
  const d = await GpuDecoder.create(init, options);
  try {
    await d.prepare(1); // the one-token program every sampled token runs: built before sampling starts
  } catch (e) {
    d.dispose();
    throw e;
  }
  return d;
}
