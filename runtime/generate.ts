// Sampling from a trained checkpoint (`fogc generate`): recompiles the model the checkpoint records,
// loads its weights and FP8 scales into the CPU executor, and samples token by token with
// temperature and top-k from a seeded PRNG. No KV cache: each token reruns the forward window.
import { existsSync } from "node:fs";
import type { PrecisionMode } from "../compiler/model.js";
import { paramShapes, paramShapesHash, readCheckpoint, readCheckpointMeta } from "./checkpoint.js";
import { CpuExecutor } from "./cpu-executor.js";
import { loadTokenizer, type TokenizerName } from "./data.js";
import { hashString, Prng } from "./prng.js";
import { compileForRun, RunError } from "./train.js";

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
  /** Called once the checkpoint is loaded, before the first token is sampled. */
  onStart?: () => void;
  /** Called with each new piece of decoded text as it is sampled. */
  onText?: (text: string) => void;
}

export interface GenerateResult {
  model: string;
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

export async function generate(options: GenerateOptions): Promise<GenerateResult> {
  if (!(Number.isInteger(options.tokens) && options.tokens >= 1)) throw new RunError(`--tokens must be an integer ≥ 1, got ${options.tokens}`);
  const temperature = options.temperature ?? 1;
  if (!(temperature >= 0)) throw new RunError(`--temperature must be ≥ 0, got ${temperature}`);
  const topK = options.topK ?? 0;
  if (!(Number.isInteger(topK) && topK >= 0)) throw new RunError(`--top-k must be an integer ≥ 0, got ${topK}`);

  const meta = readCheckpointMeta(options.checkpoint);
  const file = options.file ?? meta.file;
  if (!existsSync(file)) throw new RunError(`${options.checkpoint} was trained from ${file}, which no longer exists; pass the .fog file with --file`);
  const program = compileForRun(file, {
    model: meta.model,
    ...(MODES.includes(meta.precision) ? { precision: meta.precision as PrecisionMode } : {}),
    batch: 1,
  });
  const { model, forward } = program;
  for (const c of model.components) {
    if (c.kind === "attention" && !c.causal) throw new RunError(`generate needs causal attention; model '${model.name}' has attention '${c.name}' with causal = false`);
  }
  const exec = new CpuExecutor({ forward, train: program.train, model });
  try {
    const ckpt = readCheckpoint(options.checkpoint, {
      name: model.name,
      file,
      shapesHash: paramShapesHash(forward),
      shapes: paramShapes(forward),
      fp8Slots: exec.trainGraph.scaleSlots.length,
    });
    await exec.loadState(ckpt.state);
    if (meta.tokenizer !== "bytes" && meta.tokenizer !== "gpt2") throw new RunError(`${options.checkpoint}: unknown tokenizer '${meta.tokenizer}' in its metadata`);
    const tokenizer = await loadTokenizer(meta.tokenizer satisfies TokenizerName);
    const seqLen = forward.seqLen;
    // An empty prompt starts from a newline, so the first token has a context.
    const promptIds = Array.from(tokenizer.encode(options.prompt.length ? options.prompt : "\n"));
    const ids = [...promptIds];
    const sampled: number[] = [];
    const prng = Prng.fromSeed(options.seed ?? 0, hashString("generate"));
    const window = new Int32Array(seqLen);
    let emitted = "";
    options.onStart?.();
    for (let i = 0; i < options.tokens; i++) {
      const ctx = ids.slice(-seqLen);
      window.fill(0);
      window.set(ctx);
      const logits = await exec.lastLogits(window, [ctx.length]);
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
    return { model: model.name, text: options.prompt + completion, completion, tokens: sampled };
  } finally {
    exec.dispose();
  }
}
