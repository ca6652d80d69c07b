// Sampling from a trained checkpoint (`fogc generate`): recompiles the model the checkpoint records,
// loads its weights and FP8 scales, and samples token by token with temperature and top-k from a
// seeded PRNG. With the KV cache (default) a decode graph (compiler/pipeline.ts compileDecode) runs
// the prompt once and then one token per call; `cache: false` reruns the whole window per token.
import { existsSync, statSync } from "node:fs";
import type { Graph, ScaleSlot } from "../compiler/ir.js";
import type { PrecisionMode } from "../compiler/model.js";
import { compileDecode } from "../compiler/pipeline.js";
import { latestCheckpoint, paramShapes, paramShapesHash, readCheckpoint, readCheckpointMeta } from "./checkpoint.js";
import { CpuDecoder, type Decoder, type DecoderInit } from "./cpu-executor.js";
import { loadTokenizer, type TokenizerName } from "./data.js";
import type { Executor } from "./executor.js";
import { hashString, Prng } from "./prng.js";
import type { ScaleSlotSnapshot } from "./scale-state.js";
import { type BackendChoice, compileForRun, createExecutor, RunError } from "./train.js";

export interface GenerateOptions {
  /** A checkpoint written by `fogc run --checkpoint DIR`. */
  checkpoint: string;
  prompt: string;
  /** Number of tokens to sample. */
  tokens: number;
  /** Softmax temperature (default 1); 0 picks the most likely token every time. */
  temperature?: number;
  /** Sample among the k most likely tokens only; 0 or absent = all. */
  topK?: number;
  seed?: number;
  /** The .fog file, when it moved since training (default: the path the checkpoint records). */
  file?: string;
  /** `auto` (WebGPU when an adapter is found, else the CPU), `webgpu` or `cpu`. Default here `cpu`
   *  (a library call on a small model starts faster there); the CLI's default is `auto`, as `run`'s. */
  backend?: BackendChoice;
  /** Sample with a KV cache (default true); false reruns the whole window for every token. */
  cache?: boolean;
  /** One-line notices (the backend fallback). */
  notice?: (line: string) => void;
  /** Called once the checkpoint is loaded, before the first token is sampled. */
  onStart?: (info: GenerateInfo) => void;
  /** Called with each new piece of decoded text as it is sampled. */
  onText?: (text: string) => void;
}

/** How sampling runs, for the user: backend, cache, and what precision the forward computes in. */
export interface GenerateInfo {
  backend: "cpu" | "webgpu";
  cache: boolean;
  /** The cache's positions: the training window. */
  context: number;
  /** "FP8 E4M3 weights and activations, scales from the checkpoint", "BF16 GEMM operands", … */
  precision: string;
}

export interface GenerateResult {
  model: string;
  info: GenerateInfo;
  /** Prompt + completion. */
  text: string;
  completion: string;
  /** Sampled token ids. */
  tokens: number[];
}

export interface SampleOptions {
  temperature: number;
  topK: number;
  /** Only ids below this are candidates (the tokenizer's vocabulary when the model's is larger). */
  vocab: number;
}

/** Draws one token id from a row of logits: argmax at temperature 0, else top-k softmax sampling. */
export function sampleToken(logits: ArrayLike<number>, o: SampleOptions, prng: Prng): number {
  const n = Math.min(o.vocab, logits.length);
  let best = 0;
  for (let i = 1; i < n; i++) if (logits[i] > logits[best]) best = i;
  if (!(o.temperature > 0)) return best;
  let ids = Array.from({ length: n }, (_, i) => i);
  if (o.topK > 0 && o.topK < n) ids = ids.sort((a, b) => logits[b] - logits[a] || a - b).slice(0, o.topK);
  const max = logits[best];
  const w = ids.map((i) => Math.exp((logits[i] - max) / o.temperature));
  const total = w.reduce((a, b) => a + b, 0);
  let u = prng.nextFloat() * total;
  for (let j = 0; j < ids.length; j++) {
    u -= w[j];
    if (u < 0) return ids[j];
  }
  return ids[ids.length - 1];
}

const MODES: readonly string[] = ["bf16", "fp8", "fp8dpa"];

/**
 * The decode graph's FP8 slot state from the training graph's, by slot name: the decode graph is
 * lowered and cast by the same passes, so each of its slots is a training slot of the same name.
 * An empty snapshot (a checkpoint without scales) starts every slot fresh.
 */
export function decodeScales(decodeSlots: readonly ScaleSlot[], trainSlots: readonly ScaleSlot[], snapshot: readonly ScaleSlotSnapshot[]): ScaleSlotSnapshot[] {
  const byName = new Map(trainSlots.map((s) => [`${s.name}:${s.format}`, s.id]));
  return decodeSlots.map((slot) => {
    const id = byName.get(`${slot.name}:${slot.format}`);
    if (id === undefined) throw new Error(`generate: the decode graph's FP8 slot "${slot.name}" (${slot.format}) has no counterpart in the training graph`);
    const snap = snapshot[id];
    return snap ? { scale: snap.scale, history: snap.history.slice(), head: snap.head } : { scale: 1, history: new Float32Array(slot.scaling.kind === "delayed" ? slot.scaling.history : 1), head: 0 };
  });
}

/** One line on what the sampling forward computes in, read off the decode graph's casts and slots. */
export function precisionLine(g: Graph): string {
  const slots = g.scaleSlots;
  const bf16 = g.nodes.some((n) => n.op === "cast" && n.attrs.to === "bf16");
  if (!slots.length) return bf16 ? "BF16 GEMM operands (f32 accumulation)" : "f32";
  const formats = (role: ScaleSlot["role"]): string => [...new Set(slots.filter((s) => s.role === role).map((s) => s.format.toUpperCase()))].join("/");
  const [w, a] = [formats("weight"), formats("activation")];
  const what = w === a ? `FP8 ${w} weights and activations` : `FP8 ${w || "—"} weights, ${a || "—"} activations`;
  const kinds = new Set(slots.filter((s) => s.role !== "gradient").map((s) => s.scaling.kind));
  const how = [kinds.has("delayed") ? "scales from the checkpoint" : "", kinds.has("current") ? "current scaling: scales per call" : "", kinds.has("blockwise") ? "blockwise scales per call" : ""].filter(Boolean).join("; ");
  const dpa = g.nodes.some((n) => n.op === "attention" && n.attrs.fp8) ? ", attention P in FP8 (FP8DPA)" : "";
  return `${what}${dpa}${bf16 ? ", BF16 for the other GEMMs" : ""}, ${how}`;
}

async function gpuModule(): Promise<typeof import("./gpu-executor.js")> {
  return import("./gpu-executor.js");
}

/** The decoder for a backend choice; `auto` falls back to the CPU with a notice. */
async function createDecoder(choice: BackendChoice, init: DecoderInit, notice: (line: string) => void): Promise<{ decoder: Decoder; backend: "cpu" | "webgpu" }> {
  if (choice === "cpu") return { decoder: new CpuDecoder(init), backend: "cpu" };
  const gpu = await gpuModule();
  if (await gpu.hasAdapter()) return { decoder: await gpu.createGpuDecoder(init), backend: "webgpu" };
  if (choice === "webgpu") throw new RunError("--backend webgpu: no WebGPU adapter found on this machine; use --backend cpu, or install a Vulkan driver (scripts/ has a lavapipe installer)");
  notice("fogc: no WebGPU adapter found; sampling on the CPU reference backend (slow)");
  return { decoder: new CpuDecoder(init), backend: "cpu" };
}

/** Next-token logits for a growing sequence of ids: with a KV cache, or the whole window every time. */
interface LogitsSource {
  /** Logits after `ids` (all ids so far; the source sees each once, in order). */
  next(ids: readonly number[]): Promise<Float32Array>;
  dispose(): void;
}

/**
 * With the KV cache: the prompt (its last `context` ids) in one call, then one id per call. When
 * the cache is full, it drops it and re-prefills the last ⌊context/2⌋ ids (positions restart at 0,
 * as the window of the no-cache path does; a cheaper slide than re-running a full window per token).
 */
function cachedSource(decoder: Decoder, context: number): LogitsSource {
  const keep = Math.max(1, Math.floor(context / 2));
  let position = 0;
  return {
    async next(ids) {
      let feed: readonly number[];
      if (position === 0) feed = ids.slice(-context);
      else if (position === context) {
        feed = ids.slice(-keep);
        position = 0;
      } else feed = ids.slice(-1);
      const logits = await decoder.step(Int32Array.from(feed), position);
      position += feed.length;
      return logits;
    },
    dispose: () => decoder.dispose(),
  };
}

/** Without a cache: the last `context` ids as one window through the executor's forward. */
function windowSource(exec: Executor, context: number): LogitsSource {
  const window = new Int32Array(context);
  return {
    async next(ids) {
      const ctx = ids.slice(-context);
      window.fill(0);
      window.set(ctx);
      return exec.lastLogits(window, [ctx.length]);
    },
    dispose: () => exec.dispose(),
  };
}

export async function generate(options: GenerateOptions): Promise<GenerateResult> {
  if (!(Number.isInteger(options.tokens) && options.tokens >= 1)) throw new RunError(`--tokens must be an integer ≥ 1, got ${options.tokens}`);
  const temperature = options.temperature ?? 1;
  if (!(temperature >= 0)) throw new RunError(`--temperature must be ≥ 0, got ${temperature}`);
  const topK = options.topK ?? 0;
  if (!(Number.isInteger(topK) && topK >= 0)) throw new RunError(`--top-k must be an integer ≥ 0, got ${topK}`);
  const choice = options.backend ?? "cpu";
  if (!["auto", "cpu", "webgpu"].includes(choice)) throw new RunError(`--backend must be auto, webgpu or cpu, got '${choice}'`);
  const useCache = options.cache ?? true;
  const notice = options.notice ?? ((line: string) => console.error(line));

  const checkpoint = resolveCheckpoint(options.checkpoint);
  const meta = readCheckpointMeta(checkpoint);
  const file = options.file ?? meta.file;
  if (!existsSync(file)) throw new RunError(`${checkpoint} was trained from ${file}, which no longer exists; pass the .fog file with --file`);
  const program = compileForRun(file, {
    model: meta.model,
    ...(MODES.includes(meta.precision) ? { precision: meta.precision as PrecisionMode } : {}),
    batch: 1,
  });
  const { model, forward } = program;
  for (const c of model.components) {
    if (c.kind === "attention" && !c.causal) throw new RunError(`generate needs causal attention; model '${model.name}' has attention '${c.name}' with causal = false`);
  }
  const ckpt = readCheckpoint(checkpoint, {
    name: model.name,
    file,
    shapesHash: paramShapesHash(forward),
    shapes: paramShapes(forward),
    fp8Slots: program.train.scaleSlots.length,
  });
  if (meta.tokenizer !== "bytes" && meta.tokenizer !== "gpt2") throw new RunError(`${checkpoint}: unknown tokenizer '${meta.tokenizer}' in its metadata`);
  const tokenizer = await loadTokenizer(meta.tokenizer satisfies TokenizerName);
  // The cache (and the no-cache window) spans the sequence length the model was trained at.
  const context = forward.seqLen;
  const graphs = new Map<number, Graph>();
  const graphFor = (rows: number): Graph => {
    let g = graphs.get(rows);
    if (!g) graphs.set(rows, (g = compileDecode(model, { batch: 1, rows, context })));
    return g;
  };
  const decodeGraph = graphFor(1);

  let source: LogitsSource;
  let backend: "cpu" | "webgpu";
  if (useCache) {
    const scales = decodeScales(decodeGraph.scaleSlots, program.train.scaleSlots, ckpt.state.scales);
    const made = await createDecoder(choice, { graphFor, params: ckpt.state.params, scales }, notice);
    source = cachedSource(made.decoder, context);
    backend = made.backend;
  } else {
    const exec = await createExecutor(choice, { forward, train: program.train, model }, notice);
    await exec.loadState(ckpt.state);
    source = windowSource(exec, context);
    backend = exec.backend;
  }
  const info: GenerateInfo = { backend, cache: useCache, context, precision: precisionLine(decodeGraph) };
  try {
    // An empty prompt starts from a newline, so the first token has a context.
    const ids = Array.from(tokenizer.encode(options.prompt.length ? options.prompt : "\n"));
    const sampled: number[] = [];
    const prng = Prng.fromSeed(options.seed ?? 0, hashString("generate"));
    let emitted = "";
    options.onStart?.(info);
    for (let i = 0; i < options.tokens; i++) {
      const logits = await source.next(ids);
      const next = sampleToken(logits, { temperature, topK, vocab: tokenizer.vocab }, prng);
      ids.push(next);
      sampled.push(next);
      if (options.onText) {
        const text = tokenizer.decode(sampled);
        // Hold back a trailing partial UTF-8 character until its next bytes arrive.
        if (!text.endsWith("\uFFFD") && text.startsWith(emitted)) {
          options.onText(text.slice(emitted.length));
          emitted = text;
        }
      }
    }
    const completion = tokenizer.decode(sampled);
    if (options.onText && completion !== emitted && completion.startsWith(emitted)) options.onText(completion.slice(emitted.length));
    return { model: model.name, info, text: options.prompt + completion, completion, tokens: sampled };
  } finally {
    source.dispose();
  }
}

/** A checkpoint file, or the newest checkpoint in a `fogc run --checkpoint DIR` directory. */
function resolveCheckpoint(path: string): string {
  if (!existsSync(path) || !statSync(path).isDirectory()) return path;
  const latest = latestCheckpoint(path);
  if (!latest) throw new RunError(`${path}: no checkpoint in this directory (fogc run --checkpoint ${path} writes step-NNNNNNNN.safetensors files)`);
  return latest;
}
