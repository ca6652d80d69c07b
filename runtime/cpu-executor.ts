// The CPU backend: runs the compiled training graph (forward, backward, FP8/bf16 casts; the probes on
// steps that ask) on the reference interpreter in f32 with a persistent ScaleState, then clips and
// applies AdamW on f32 master weights. Slow but exact: the oracle for the WebGPU executor's steps.
import type { Graph, Node } from "../compiler/ir.js";
import { paramNodes } from "../compiler/ir.js";
import type { Batch } from "./data.js";
import { probeOutputs, stripProbes } from "../compiler/probes.js";
import { cloneState, type Executor, type ExecutorInit, type StepStats, type TrainState } from "./executor.js";
import { type AdamWStep, adamwUpdate, clipFactor, globalNorm, type ParamGroup } from "./optimizer.js";
import { outputValue, runReference } from "./reference.js";
import { ScaleState, type ScaleSlotSnapshot } from "./scale-state.js";

/**
 * The sub-graph that computes `outputs` (their ancestors only), renumbered so node ids are indices
 * again. Scale slots are kept whole, so a ScaleState of the full graph serves the sub-graph.
 */
export function pruneGraph(g: Graph, outputs: readonly string[]): Graph {
  const keep = new Uint8Array(g.nodes.length);
  const stack = outputs.map((name) => {
    const id = g.outputs[name];
    if (id === undefined) throw new Error(`pruneGraph: the graph has no output "${name}"`);
    return id;
  });
  while (stack.length) {
    const id = stack.pop() as number;
    if (keep[id]) continue;
    keep[id] = 1;
    stack.push(...g.nodes[id].inputs);
  }
  const remap = new Map<number, number>();
  const nodes: Node[] = [];
  for (const n of g.nodes) {
    if (!keep[n.id]) continue;
    remap.set(n.id, nodes.length);
    nodes.push({ ...n, id: nodes.length, inputs: n.inputs.map((i) => remap.get(i) as number) } as Node);
  }
  const outs: Record<string, number> = {};
  for (const name of outputs) outs[name] = remap.get(g.outputs[name]) as number;
  return { nodes, outputs: outs, scaleSlots: g.scaleSlots, taps: [], batch: g.batch, seqLen: g.seqLen };
}

/** Parameter name → node id in `g`. */
function paramIds(g: Graph): Map<string, number> {
  return new Map(paramNodes(g).map((p) => [p.name, p.id]));
}

export class CpuExecutor implements Executor {
  readonly backend = "cpu" as const;
  private readonly train: Graph;
  /** The train graph without its probe nodes: what steps that do not log probes run. */
  private readonly trainNoProbes: Graph;
  private readonly lossGraph: Graph;
  private readonly logitsGraph: Graph;
  private readonly groups = new Map<string, ParamGroup>();
  private readonly vocab: number;
  /** Parameter names in declaration order: the order gradients are summed in, on every run. */
  private readonly order: string[];
  private params = new Map<string, Float32Array>();
  private m = new Map<string, Float32Array>();
  private v = new Map<string, Float32Array>();
  private scales: ScaleState;
  private step = 0;

  constructor(init: ExecutorInit) {
    this.train = init.train;
    this.trainNoProbes = stripProbes(this.train);
    this.lossGraph = pruneGraph(this.train, ["loss"]);
    this.logitsGraph = pruneGraph(this.train, ["logits"]);
    for (const p of paramNodes(this.train)) this.groups.set(p.name, { decay: p.attrs.decay, lrScale: p.attrs.lrScale });
    this.order = [...this.groups.keys()];
    this.scales = new ScaleState(this.train.scaleSlots);
    const logits = this.train.nodes[this.train.outputs.logits];
    this.vocab = logits.shape[logits.shape.length - 1];
  }

  /** The graph a training step runs (for tests and for comparing backends). */
  get trainGraph(): Graph {
    return this.train;
  }

  private feeds(g: Graph): Map<number, Float32Array> {
    const feeds = new Map<number, Float32Array>();
    for (const [name, id] of paramIds(g)) {
      const p = this.params.get(name);
      if (!p) throw new Error(`CpuExecutor: no value for parameter "${name}" (call loadState first)`);
      feeds.set(id, p);
    }
    return feeds;
  }

  private checkBatch(g: Graph, tokens: Int32Array): void {
    const want = g.batch * g.seqLen;
    if (tokens.length !== want) throw new Error(`CpuExecutor: batch of ${tokens.length} tokens, the graph was lowered for ${g.batch}×${g.seqLen} = ${want}`);
  }

  /** A copy of the scale state, so evaluation and sampling leave training's amax histories alone. */
  private scratchScales(): ScaleState {
    const s = new ScaleState(this.train.scaleSlots);
    s.restore(this.scales.snapshot());
    return s;
  }

  /** One step on the train graph without its probe nodes. */
  async trainStep(batch: Batch, hyper: AdamWStep): Promise<StepStats> {
    return this.runStep(batch, hyper, false);
  }

  /** One step on the whole train graph, probes included (docs/probes.md). */
  async trainStepWithProbes(batch: Batch, hyper: AdamWStep): Promise<StepStats> {
    return this.runStep(batch, hyper, true);
  }

  private runStep(batch: Batch, hyper: AdamWStep, probes: boolean): StepStats {
    const g = probes ? this.train : this.trainNoProbes;
    this.checkBatch(g, batch.tokens);
    const values = runReference(
      g,
      { params: this.feeds(g), tokens: batch.tokens, targets: batch.targets },
      { precision: "f32", scaleState: this.scales },
    );
    // End of the step's passes: delayed-scaling slots take their new scale from the amax history.
    this.scales.update();
    const loss = outputValue(g, values, "loss")[0];
    const names = this.order;
    const grads = names.map((name) => outputValue(g, values, `grad:${name}`));
    const gradNorm = globalNorm(grads);
    const factor = clipFactor(gradNorm, hyper.clip);
    names.forEach((name, i) => {
      adamwUpdate(this.params.get(name)!, grads[i], this.m.get(name)!, this.v.get(name)!, hyper, this.groups.get(name)!, factor);
    });
    this.step = hyper.step;
    if (!probes) return { loss, gradNorm };
    const kurtosis: Record<string, number> = {};
    for (const p of probeOutputs(g)) kurtosis[p.key] = (values.get(p.id) as Float64Array)[0];
    return { loss, gradNorm, kurtosis };
  }

  async evalLoss(batch: Batch): Promise<number> {
    this.checkBatch(this.lossGraph, batch.tokens);
    const values = runReference(
      this.lossGraph,
      { params: this.feeds(this.lossGraph), tokens: batch.tokens, targets: batch.targets },
      { precision: "f32", scaleState: this.scratchScales() },
    );
    return outputValue(this.lossGraph, values, "loss")[0];
  }

  async lastLogits(tokens: Int32Array, lengths: readonly number[]): Promise<Float32Array> {
    const g = this.logitsGraph;
    this.checkBatch(g, tokens);
    if (lengths.length !== g.batch) throw new Error(`CpuExecutor.lastLogits: ${lengths.length} lengths for a batch of ${g.batch}`);
    const values = runReference(g, { params: this.feeds(g), tokens }, { precision: "f32", scaleState: this.scratchScales() });
    const logits = outputValue(g, values, "logits");
    const V = this.vocab;
    const out = new Float32Array(g.batch * V);
    lengths.forEach((len, b) => {
      if (!(len >= 1 && len <= g.seqLen)) throw new Error(`CpuExecutor.lastLogits: length ${len} outside [1, ${g.seqLen}]`);
      const row = b * g.seqLen + len - 1;
      out.set(logits.subarray(row * V, (row + 1) * V), b * V);
    });
    return out;
  }

  async readState(): Promise<TrainState> {
    return cloneState({ params: this.params, m: this.m, v: this.v, scales: this.scales.snapshot(), step: this.step });
  }

  async loadState(s: TrainState): Promise<void> {
    for (const p of paramNodes(this.train)) {
      const n = p.shape.reduce((a, b) => a * b, 1);
      for (const [what, map] of [["params", s.params], ["m", s.m], ["v", s.v]] as const) {
        const a = map.get(p.name);
        if (!a) throw new Error(`CpuExecutor.loadState: ${what} has no "${p.name}"`);
        if (a.length !== n) throw new Error(`CpuExecutor.loadState: ${what} "${p.name}" has ${a.length} values, shape [${p.shape}] needs ${n}`);
      }
    }
    const c = cloneState(s);
    const only = (m: Map<string, Float32Array>): Map<string, Float32Array> => new Map(this.order.map((k) => [k, m.get(k)!]));
    this.params = only(c.params);
    this.m = only(c.m);
    this.v = only(c.v);
    // No scale snapshot = a fresh run: every slot starts at step 0 (s = 1 under delayed scaling).
    const scales = new ScaleState(this.train.scaleSlots);
    if (c.scales.length) scales.restore(c.scales);
    this.scales = scales;
    this.step = c.step;
  }

  dispose(): void {
    this.params.clear();
    this.m.clear();
    this.v.clear();
  }
}

/** What a decoder (sampling with a KV cache) is built from; both backends take the same. */
export interface DecoderInit {
  /** The decode graph for `rows` new tokens per sequence (compileDecode), the same for every call with that many. */
  graphFor: (rows: number) => Graph;
  params: Map<string, Float32Array>;
  /** The decode graphs' FP8 slot state, in their slot order (every decode graph has the same slots). */
  scales: ScaleSlotSnapshot[];
}

/** Sampling with a KV cache: each call feeds new tokens at a position and keeps the caches for the next. */
export interface Decoder {
  /** Runs `tokens` (batch × rows, row-major) at `position`; returns each sequence's last-row logits [batch, vocab]. */
  step(tokens: Int32Array, position: number): Promise<Float32Array>;
  dispose(): void;
}

/**
 * The CPU decoder: runs decode graphs on the reference in f32, the caches kept as f32 arrays by
 * name between calls. The scale state is never updated: delayed slots cast with the checkpoint's
 * scales, frozen; current slots take theirs from each call's amax.
 */
export class CpuDecoder implements Decoder {
  private readonly caches = new Map<string, Float32Array>();
  private readonly scales: ScaleState;
  private readonly params: Map<string, Float32Array>;

  constructor(private readonly init: DecoderInit) {
    const g = init.graphFor(1);
    this.scales = new ScaleState(g.scaleSlots);
    this.scales.restore(init.scales);
    this.params = init.params;
    for (const n of g.nodes) if (n.op === "kv_cache") this.caches.set(n.name, new Float32Array(n.shape.reduce((a, b) => a * b, 1)));
  }

  async step(tokens: Int32Array, position: number): Promise<Float32Array> {
    const rows = tokens.length / this.init.graphFor(1).batch;
    if (!Number.isInteger(rows) || rows < 1) throw new Error(`CpuDecoder.step: ${tokens.length} tokens is not a whole number of rows per sequence`);
    const g = this.init.graphFor(rows);
    const params = new Map<number, Float32Array>();
    const caches = new Map<number, Float32Array>();
    for (const n of g.nodes) {
      if (n.op === "param") {
        const p = this.params.get(n.name);
        if (!p) throw new Error(`CpuDecoder: no value for parameter "${n.name}"`);
        params.set(n.id, p);
      } else if (n.op === "kv_cache") caches.set(n.id, this.caches.get(n.name)!);
    }
    const values = runReference(g, { params, tokens, position: Int32Array.of(position), caches }, { precision: "f32", scaleState: this.scales });
    for (const name of this.caches.keys()) this.caches.set(name, Float32Array.from(outputValue(g, values, `kv:${name}`)));
    const logits = outputValue(g, values, "logits");
    const V = g.nodes[g.outputs.logits].shape[1];
    const out = new Float32Array(g.batch * V);
    for (let b = 0; b < g.batch; b++) out.set(logits.subarray(((b + 1) * rows - 1) * V, (b + 1) * rows * V), b * V);
    return out;
  }

  dispose(): void {
    this.caches.clear();
  }
}
