// Checkpoints as safetensors files: weights, AdamW moments, FP8 scale state, step and sampler state,
// with the model's name, .fog path and parameter-shape hash in `__metadata__`. Written through a temp
// file + fsync + rename (a crash never leaves half a checkpoint); read back with full validation.
import { createHash } from "node:crypto";
import { closeSync, fsyncSync, openSync, readdirSync, readFileSync, readSync, renameSync, rmSync, writeSync } from "node:fs";
import { basename, dirname, join } from "node:path";
import type { Graph } from "../compiler/ir.js";
import { paramNodes } from "../compiler/ir.js";
import type { SamplerState } from "./data.js";
import type { TrainState } from "./executor.js";

/** A checkpoint that cannot be written, read or used; the message names the file and the fix. */
export class CheckpointError extends Error {
  override readonly name = "CheckpointError";
}

export const CHECKPOINT_FORMAT = "fogc-checkpoint-1";
const MAX_HEADER = 100 * 1024 * 1024;

export interface CheckpointMeta {
  model: string;
  /** Absolute path of the .fog file the model was compiled from. */
  file: string;
  /** `paramShapesHash` of the model's forward graph. */
  shapesHash: string;
  /** Optimizer updates done (also in `state.step`). */
  step: number;
  /** The run's total steps (the learning-rate schedule depends on it). */
  totalSteps: number;
  seed: number;
  /** The precision mode the run used (the recipe's, or `--precision`). */
  precision: string;
  tokenizer: string;
  sampler: SamplerState;
}

export interface Checkpoint {
  meta: CheckpointMeta;
  state: TrainState;
  /** Shape of every parameter, by name. */
  shapes: Map<string, number[]>;
}

/** A short hash of the parameters' names and shapes in declaration order: which model a checkpoint fits. */
export function paramShapesHash(g: Graph): string {
  const desc = paramNodes(g).map((p) => [p.name, p.shape]);
  return createHash("sha256").update(JSON.stringify(desc)).digest("hex").slice(0, 16);
}

export function paramShapes(g: Graph): Map<string, number[]> {
  return new Map(paramNodes(g).map((p) => [p.name, [...p.shape]]));
}

// ---------------------------------------------------------------------------------------------
// safetensors encoding

type DType = "F32" | "F64" | "I32";
type TypedArray = Float32Array | Float64Array | Int32Array;
const BYTES: Record<DType, number> = { F32: 4, F64: 8, I32: 4 };
const LITTLE_ENDIAN = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;

interface TensorEntry {
  name: string;
  dtype: DType;
  shape: number[];
  data: TypedArray;
}

/** The tensor's bytes in little-endian order. */
function leBytes(t: TensorEntry): Uint8Array {
  if (LITTLE_ENDIAN) return new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength);
  const out = new Uint8Array(t.data.byteLength);
  const dv = new DataView(out.buffer);
  t.data.forEach((x, i) => {
    if (t.dtype === "F32") dv.setFloat32(i * 4, x, true);
    else if (t.dtype === "F64") dv.setFloat64(i * 8, x, true);
    else dv.setInt32(i * 4, x, true);
  });
  return out;
}

function fromLeBytes(dtype: DType, bytes: Uint8Array): TypedArray {
  const copy = new Uint8Array(bytes); // aligned and owned
  if (LITTLE_ENDIAN) {
    if (dtype === "F32") return new Float32Array(copy.buffer);
    if (dtype === "F64") return new Float64Array(copy.buffer);
    return new Int32Array(copy.buffer);
  }
  const dv = new DataView(copy.buffer);
  const n = copy.length / BYTES[dtype];
  if (dtype === "F32") return Float32Array.from({ length: n }, (_, i) => dv.getFloat32(i * 4, true));
  if (dtype === "F64") return Float64Array.from({ length: n }, (_, i) => dv.getFloat64(i * 8, true));
  return Int32Array.from({ length: n }, (_, i) => dv.getInt32(i * 4, true));
}

function tensorsOf(c: Checkpoint): TensorEntry[] {
  const out: TensorEntry[] = [];
  for (const [name, shape] of c.shapes) {
    for (const [prefix, map] of [["param", c.state.params], ["adam_m", c.state.m], ["adam_v", c.state.v]] as const) {
      const data = map.get(name);
      if (!data) throw new CheckpointError(`cannot write checkpoint: ${prefix} has no tensor "${name}"`);
      out.push({ name: `${prefix}.${name}`, dtype: "F32", shape, data });
    }
  }
  const s = c.state.scales;
  if (s.length) {
    out.push({ name: "fp8.scale", dtype: "F64", shape: [s.length], data: Float64Array.from(s, (x) => x.scale) });
    out.push({ name: "fp8.head", dtype: "I32", shape: [s.length], data: Int32Array.from(s, (x) => x.head) });
    s.forEach((x, i) => out.push({ name: `fp8.${i}.amax_history`, dtype: "F32", shape: [x.history.length], data: x.history }));
  }
  return out;
}

function metadataOf(m: CheckpointMeta, slots: number): Record<string, string> {
  return {
    format: CHECKPOINT_FORMAT,
    model: m.model,
    file: m.file,
    shapes_hash: m.shapesHash,
    step: String(m.step),
    total_steps: String(m.totalSteps),
    seed: String(m.seed),
    precision: m.precision,
    tokenizer: m.tokenizer,
    sampler: JSON.stringify(m.sampler),
    fp8_slots: String(slots),
  };
}

export interface WriteOptions {
  /** Called after each chunk is written (bytes so far, total): progress, and a seam for crash tests. */
  onProgress?: (written: number, total: number) => void;
}

/** Where a step's checkpoint goes in `dir`: `step-00000100.safetensors`. */
export function checkpointPath(dir: string, step: number): string {
  return join(dir, `step-${String(step).padStart(8, "0")}.safetensors`);
}

const CHECKPOINT_NAME = /^step-(\d+)\.safetensors$/;
const TEMP_NAME = /^\.step-\d+\.safetensors\.tmp-(\d+)$/;

/**
 * Writes `c` to `path` atomically: into `.NAME.tmp-PID` in the same directory, fsync, rename over
 * `path`, fsync the directory. A crash at any point leaves either the old file or the new one.
 */
export function writeCheckpoint(path: string, c: Checkpoint, options: WriteOptions = {}): void {
  const tensors = tensorsOf(c);
  const header: Record<string, unknown> = { __metadata__: metadataOf(c.meta, c.state.scales.length) };
  let offset = 0;
  for (const t of tensors) {
    const n = t.data.length * BYTES[t.dtype];
    if (t.data.length !== t.shape.reduce((a, b) => a * b, 1)) throw new CheckpointError(`cannot write checkpoint: "${t.name}" has ${t.data.length} values for shape [${t.shape}]`);
    header[t.name] = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + n] };
    offset += n;
  }
  let json = JSON.stringify(header);
  json += " ".repeat((8 - ((8 + Buffer.byteLength(json)) % 8)) % 8); // data starts 8-aligned
  const head = Buffer.alloc(8 + Buffer.byteLength(json));
  head.writeBigUInt64LE(BigInt(Buffer.byteLength(json)), 0);
  head.write(json, 8, "utf8");
  const total = head.length + offset;

  const tmp = join(dirname(path), `.${basename(path)}.tmp-${process.pid}`);
  let fd: number | undefined;
  try {
    fd = openSync(tmp, "w");
    let written = 0;
    const put = (bytes: Uint8Array): void => {
      for (let at = 0; at < bytes.length; ) at += writeSync(fd!, bytes, at, bytes.length - at);
      written += bytes.length;
      options.onProgress?.(written, total);
    };
    put(head);
    for (const t of tensors) put(leBytes(t));
    fsyncSync(fd);
    closeSync(fd);
    fd = undefined;
    renameSync(tmp, path);
  } catch (e) {
    if (fd !== undefined) closeSync(fd);
    rmSync(tmp, { force: true });
    throw new CheckpointError(`cannot write checkpoint ${path}: ${(e as Error).message}`);
  }
  try {
    const dfd = openSync(dirname(path), "r");
    try {
      fsyncSync(dfd);
    } finally {
      closeSync(dfd);
    }
  } catch {
    // Directories cannot be fsynced on every platform; the rename itself is still atomic.
  }
}

/** The checkpoints in `dir` by step, oldest first (temp files of interrupted writes are never listed). */
export function listCheckpoints(dir: string): { step: number; path: string }[] {
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return [];
  }
  return names
    .map((n) => ({ m: CHECKPOINT_NAME.exec(n), n }))
    .filter((x): x is { m: RegExpExecArray; n: string } => x.m !== null)
    .map(({ m, n }) => ({ step: Number(m[1]), path: join(dir, n) }))
    .sort((a, b) => a.step - b.step);
}

export function latestCheckpoint(dir: string): string | undefined {
  return listCheckpoints(dir).at(-1)?.path;
}

/** Deletes temp files left in `dir` by writers that no longer run (killed mid-write). */
export function removeStaleTemps(dir: string): string[] {
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return [];
  }
  const removed: string[] = [];
  for (const n of names) {
    const m = TEMP_NAME.exec(n);
    if (!m) continue;
    const pid = Number(m[1]);
    let alive = pid === process.pid;
    if (!alive) {
      try {
        process.kill(pid, 0);
        alive = true;
      } catch (e) {
        alive = (e as NodeJS.ErrnoException).code === "EPERM";
      }
    }
    if (!alive) {
      rmSync(join(dir, n), { force: true });
      removed.push(n);
    }
  }
  return removed;
}

// ---------------------------------------------------------------------------------------------
// Reading and validation

const DAMAGED = "the file is damaged (an interrupted copy, or not a checkpoint); delete it to resume from an earlier checkpoint in its directory, or start again without --resume";

interface RawEntry {
  dtype: DType;
  shape: number[];
  begin: number;
  end: number;
}

interface RawFile {
  metadata: Record<string, string>;
  entries: Map<string, RawEntry>;
  data: Buffer;
}

function parseFile(path: string, headerOnly: boolean): RawFile {
  const fail = (why: string): never => {
    throw new CheckpointError(`${path}: ${why}; ${DAMAGED}`);
  };
  let buf: Buffer;
  try {
    buf = headerOnly ? readHeaderBytes(path) : readFileSync(path);
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    const why = err.code === "ENOENT" ? "no such file" : err.code === "EISDIR" ? "is a directory, not a checkpoint file" : err.message;
    throw new CheckpointError(`${path}: cannot read checkpoint: ${why}`);
  }
  if (buf.length < 8) fail(`truncated: ${buf.length} bytes, less than the 8-byte header length`);
  const n = buf.readBigUInt64LE(0);
  if (n > BigInt(MAX_HEADER)) fail(`bad header: its length field says ${n} bytes`);
  const hlen = Number(n);
  if (8 + hlen > buf.length) fail(`truncated: the header needs ${hlen} bytes, the file has ${buf.length - 8} after the length field`);
  let header: unknown;
  try {
    header = JSON.parse(buf.toString("utf8", 8, 8 + hlen));
  } catch {
    fail("bad header: not valid JSON");
  }
  if (typeof header !== "object" || header === null || Array.isArray(header)) return fail("bad header: not a JSON object");
  const h = header as Record<string, unknown>;
  const meta = h.__metadata__;
  if (typeof meta !== "object" || meta === null || Array.isArray(meta) || !Object.values(meta).every((v) => typeof v === "string")) {
    fail("bad header: no __metadata__ string map");
  }
  const metadata = meta as Record<string, string>;
  if (metadata.format !== CHECKPOINT_FORMAT) {
    throw new CheckpointError(`${path}: not a fogc checkpoint (metadata format is ${JSON.stringify(metadata.format ?? null)}, expected "${CHECKPOINT_FORMAT}"); pass a file that 'fogc run --checkpoint DIR' wrote`);
  }
  const data = buf.subarray(8 + hlen);
  const entries = new Map<string, RawEntry>();
  for (const [name, v] of Object.entries(h)) {
    if (name === "__metadata__") continue;
    const e = v as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
    if (typeof e !== "object" || e === null) fail(`bad header: entry "${name}" is not an object`);
    if (e.dtype !== "F32" && e.dtype !== "F64" && e.dtype !== "I32") fail(`bad header: tensor "${name}" has unsupported dtype ${JSON.stringify(e.dtype)}`);
    const dtype = e.dtype as DType;
    if (!Array.isArray(e.shape) || !e.shape.every((d) => Number.isInteger(d) && d >= 0)) fail(`bad header: tensor "${name}" has a bad shape`);
    const shape = e.shape as number[];
    const off = e.data_offsets;
    if (!Array.isArray(off) || off.length !== 2 || !off.every((d) => Number.isInteger(d) && d >= 0) || off[1] < off[0]) fail(`bad header: tensor "${name}" has bad data_offsets`);
    const [begin, end] = off as [number, number];
    if (end - begin !== shape.reduce((a, b) => a * b, 1) * BYTES[dtype]) fail(`bad header: tensor "${name}" has ${end - begin} bytes for ${dtype} [${shape}]`);
    if (!headerOnly && end > data.length) fail(`truncated: tensor "${name}" needs bytes up to ${end} of the data section, which holds ${data.length}`);
    entries.set(name, { dtype, shape, begin, end });
  }
  return { metadata, entries, data };
}

/** The first bytes of a file, enough for its header (for `readCheckpointMeta`). */
function readHeaderBytes(path: string): Buffer {
  const fd = openSync(path, "r");
  try {
    const len = Buffer.alloc(8);
    const got = readSyncFull(fd, len, 0);
    if (got < 8) return len.subarray(0, got);
    const n = len.readBigUInt64LE(0);
    if (n > BigInt(MAX_HEADER)) return len;
    const buf = Buffer.alloc(8 + Number(n));
    len.copy(buf);
    const more = readSyncFull(fd, buf.subarray(8), 8);
    return buf.subarray(0, 8 + more);
  } finally {
    closeSync(fd);
  }
}

function readSyncFull(fd: number, into: Buffer, position: number): number {
  let got = 0;
  for (;;) {
    const n = readSync(fd, into, got, into.length - got, position + got);
    if (n === 0) return got;
    got += n;
    if (got === into.length) return got;
  }
}

function metaOf(path: string, md: Record<string, string>): CheckpointMeta {
  const num = (key: string): number => {
    const v = Number(md[key]);
    if (md[key] === undefined || !Number.isFinite(v)) throw new CheckpointError(`${path}: bad header: metadata "${key}" is ${JSON.stringify(md[key] ?? null)}, not a number; ${DAMAGED}`);
    return v;
  };
  const str = (key: string): string => {
    if (md[key] === undefined) throw new CheckpointError(`${path}: bad header: metadata has no "${key}"; ${DAMAGED}`);
    return md[key];
  };
  let sampler: SamplerState;
  try {
    const s = JSON.parse(str("sampler")) as SamplerState;
    if (!Array.isArray(s.prng) || s.prng.length !== 4 || typeof s.step !== "number") throw new Error("shape");
    sampler = { prng: [s.prng[0], s.prng[1], s.prng[2], s.prng[3]], step: s.step };
  } catch (e) {
    if (e instanceof CheckpointError) throw e;
    throw new CheckpointError(`${path}: bad header: metadata "sampler" is not a sampler state; ${DAMAGED}`);
  }
  return {
    model: str("model"),
    file: str("file"),
    shapesHash: str("shapes_hash"),
    step: num("step"),
    totalSteps: num("total_steps"),
    seed: num("seed"),
    precision: str("precision"),
    tokenizer: str("tokenizer"),
    sampler,
  };
}

/** Only the metadata (reads just the header): which model, file and step a checkpoint holds. */
export function readCheckpointMeta(path: string): CheckpointMeta {
  return metaOf(path, parseFile(path, true).metadata);
}

/** What a checkpoint must fit: the model being resumed or sampled. */
export interface ExpectedModel {
  name: string;
  file?: string;
  shapesHash: string;
  shapes: Map<string, number[]>;
  /** Number of FP8 scale slots of the training graph. */
  fp8Slots: number;
}

/** Reads and validates a checkpoint; with `expect`, also that it belongs to that model. */
export function readCheckpoint(path: string, expect?: ExpectedModel): Checkpoint {
  const raw = parseFile(path, false);
  const meta = metaOf(path, raw.metadata);
  if (expect && (meta.shapesHash !== expect.shapesHash || meta.model !== expect.name)) {
    throw new CheckpointError(
      `${path}: checkpoint of model '${meta.model}' (parameter shapes ${meta.shapesHash}, from ${meta.file}) does not fit model '${expect.name}' (parameter shapes ${expect.shapesHash}${expect.file ? `, from ${expect.file}` : ""}); ` +
        `use the .fog file and --model the checkpoint was trained with, or a different --checkpoint directory`,
    );
  }
  const tensor = (name: string, dtype: DType, shape?: number[]): TypedArray => {
    const e = raw.entries.get(name);
    if (!e) throw new CheckpointError(`${path}: tensor "${name}" is missing; ${DAMAGED}`);
    if (e.dtype !== dtype) throw new CheckpointError(`${path}: tensor "${name}" is ${e.dtype}, expected ${dtype}; ${DAMAGED}`);
    if (shape && (e.shape.length !== shape.length || e.shape.some((d, i) => d !== shape[i]))) {
      throw new CheckpointError(`${path}: tensor "${name}" has shape [${e.shape}], the model needs [${shape}]; use the .fog file and --model the checkpoint was trained with`);
    }
    return fromLeBytes(dtype, raw.data.subarray(e.begin, e.end));
  };
  const shapes = new Map<string, number[]>();
  if (expect) for (const [k, s] of expect.shapes) shapes.set(k, s);
  else for (const [name, e] of raw.entries) if (name.startsWith("param.")) shapes.set(name.slice(6), e.shape);
  const params = new Map<string, Float32Array>();
  const m = new Map<string, Float32Array>();
  const v = new Map<string, Float32Array>();
  for (const [name, shape] of shapes) {
    params.set(name, tensor(`param.${name}`, "F32", shape) as Float32Array);
    m.set(name, tensor(`adam_m.${name}`, "F32", shape) as Float32Array);
    v.set(name, tensor(`adam_v.${name}`, "F32", shape) as Float32Array);
  }
  const slots = Number(raw.metadata.fp8_slots ?? "0");
  if (!Number.isInteger(slots) || slots < 0) throw new CheckpointError(`${path}: bad header: metadata "fp8_slots" is ${JSON.stringify(raw.metadata.fp8_slots)}; ${DAMAGED}`);
  if (expect && slots !== expect.fp8Slots) {
    throw new CheckpointError(
      `${path}: checkpoint has ${slots} FP8 scale slots, this run's graph has ${expect.fp8Slots} (a different precision recipe); resume with the --precision the checkpoint was trained with (${meta.precision})`,
    );
  }
  const scales = [];
  if (slots) {
    const sc = tensor("fp8.scale", "F64", [slots]);
    const hd = tensor("fp8.head", "I32", [slots]);
    for (let i = 0; i < slots; i++) {
      const history = tensor(`fp8.${i}.amax_history`, "F32") as Float32Array;
      if (!(hd[i] >= 0 && hd[i] < history.length)) throw new CheckpointError(`${path}: FP8 slot ${i} has ring head ${hd[i]} outside its history of ${history.length}; ${DAMAGED}`);
      scales.push({ scale: sc[i], history, head: hd[i] });
    }
  }
  return { meta, shapes, state: { params, m, v, scales, step: meta.step } };
}
