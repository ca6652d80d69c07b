// The batch `fogc run FILE` trains step K on, as JSON token ids (for bench/export-check.py); with --grads,
// also the loss and gradients of that batch at a checkpoint's weights on the CPU reference; with
// --stream, the whole training token stream (int32 LE) that the exported train.py reads as tokens:FILE.

//   node --import tsx bench/export-batch.ts FILE.fog --step K [--seed S] [--model NAME] [--precision bf16]
//        [--out batch.json] [--grads CKPT --grads-out grads.safetensors] [--stream train.bin]
import { writeFileSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { paramNodes } from "../compiler/ir.js";
import type { PrecisionMode } from "../compiler/model.js";
import { readCheckpoint } from "../runtime/checkpoint.js";
import { pruneGraph } from "../runtime/cpu-executor.js";
import { type Batch, BatchSampler, loadDataset } from "../runtime/data.js";
import { globalNorm } from "../runtime/optimizer.js";
import { outputValue, runReference } from "../runtime/reference.js";
import { ScaleState } from "../runtime/scale-state.js";
import { compileForRun } from "../runtime/train.js";

interface Args {
  file: string;
  step: number;
  seed?: number;
  model?: string;
  precision?: PrecisionMode;
  out?: string;
  grads?: string;
  gradsOut?: string;
  stream?: string;
}

function parseArgs(argv: string[]): Args {
  const usage = "usage: export-batch.ts FILE.fog --step K [--seed S] [--model NAME] [--precision bf16|fp8|fp8dpa] [--out F.json] [--grads CKPT --grads-out F.safetensors] [--stream F.bin]";
  const named = new Map<string, string>();
  const positional: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    if (argv[i].startsWith("--")) {
      const v = argv[i + 1];
      if (v === undefined) throw new Error(`${argv[i]} needs a value\n${usage}`);
      named.set(argv[i].slice(2), v);
      i++;
    } else positional.push(argv[i]);
  }
  const known = ["step", "seed", "model", "precision", "out", "grads", "grads-out", "stream"];
  for (const k of named.keys()) if (!known.includes(k)) throw new Error(`unknown option --${k}\n${usage}`);
  const int = (k: string): number | undefined => {
    const v = named.get(k);
    if (v === undefined) return undefined;
    const n = Number(v);
    if (!Number.isInteger(n) || n < 0) throw new Error(`--${k} must be a whole number, got ${v}`);
    return n;
  };
  const step = int("step") ?? (named.has("stream") ? 1 : undefined);
  if (positional.length !== 1 || step === undefined || step < 1) throw new Error(usage);
  if (named.has("grads") !== named.has("grads-out")) throw new Error(`--grads and --grads-out go together\n${usage}`);
  const precision = named.get("precision");
  if (precision !== undefined && !["bf16", "fp8", "fp8dpa"].includes(precision)) throw new Error(`--precision must be bf16, fp8 or fp8dpa`);
  return {
    file: positional[0],
    step,
    seed: int("seed"),
    model: named.get("model"),
    precision: precision as PrecisionMode | undefined,
    out: named.get("out"),
    grads: named.get("grads"),
    gradsOut: named.get("grads-out"),
    stream: named.get("stream"),
  };
}

/** A minimal safetensors writer for F32 tensors (the layout fogc's checkpoints use). */
function writeF32Safetensors(path: string, tensors: [string, number[], ArrayLike<number>][], metadata: Record<string, string>): void {
  const header: Record<string, unknown> = { __metadata__: metadata };
  let offset = 0;
  for (const [name, shape, data] of tensors) {
    header[name] = { dtype: "F32", shape, data_offsets: [offset, offset + 4 * data.length] };
    offset += 4 * data.length;
  }
  let json = JSON.stringify(header);
  json += " ".repeat((8 - ((8 + Buffer.byteLength(json)) % 8)) % 8);
  const head = Buffer.alloc(8 + Buffer.byteLength(json));
  head.writeBigUInt64LE(BigInt(Buffer.byteLength(json)), 0);
  head.write(json, 8, "utf8");
  const body = Buffer.alloc(offset);
  let at = 0;
  for (const [, , data] of tensors) for (let i = 0; i < data.length; i++, at += 4) body.writeFloatLE(data[i], at);
  writeFileSync(path, Buffer.concat([head, body]));
}

const rows = (a: Int32Array, b: Batch): number[][] => Array.from({ length: b.batch }, (_, r) => Array.from(a.subarray(r * b.seqLen, (r + 1) * b.seqLen)));

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2));
  const file = resolve(args.file);
  const program = compileForRun(file, { ...(args.model ? { model: args.model } : {}), ...(args.precision ? { precision: args.precision } : {}) });
  const { model } = program;
  const spec = { ...model.train, seed: args.seed ?? model.train.seed };
  const data = await loadDataset(spec, dirname(file));
  if (args.stream) {
    const le = new Int32Array(data.train);
    writeFileSync(args.stream, Buffer.from(le.buffer, le.byteOffset, le.byteLength));
    console.error(`wrote ${args.stream}: ${data.train.length} training tokens (int32 LE)`);
  }
  const sampler = new BatchSampler(data.train, spec.batch, spec.seqLen, spec.seed);
  let batch = sampler.next();
  for (let k = 1; k < args.step; k++) batch = sampler.next();
  const record: Record<string, unknown> = { model: model.name, step: args.step, seed: spec.seed, batch: batch.batch, seq_len: batch.seqLen, tokens: rows(batch.tokens, batch), targets: rows(batch.targets, batch) };

  if (args.grads && args.gradsOut) {
    const ckpt = readCheckpoint(args.grads);
    const names = paramNodes(program.train).map((p) => p.name);
    const g = pruneGraph(program.train, ["loss", ...names.map((n) => `grad:${n}`)]);
    const feeds = new Map<number, Float32Array>();
    for (const p of paramNodes(g)) {
      const v = ckpt.state.params.get(p.name);
      if (!v) throw new Error(`${args.grads}: no parameter ${p.name}`);
      feeds.set(p.id, v);
    }
    const scales = new ScaleState(program.train.scaleSlots);
    if (ckpt.state.scales.length === program.train.scaleSlots.length && ckpt.state.scales.length) scales.restore(ckpt.state.scales);
    const values = runReference(g, { params: feeds, tokens: batch.tokens, targets: batch.targets }, { precision: "f32", scaleState: scales });
    const grads = names.map((n) => outputValue(g, values, `grad:${n}`));
    const loss = outputValue(g, values, "loss")[0];
    const gradNorm = globalNorm(grads);
    const shapes = new Map(paramNodes(program.train).map((p) => [p.name, p.shape]));
    writeF32Safetensors(
      args.gradsOut,
      names.map((n, i) => [`grad.${n}`, shapes.get(n)!, grads[i]]),
      { loss: String(loss), grad_norm: String(gradNorm), checkpoint: resolve(args.grads), step: String(args.step) },
    );
    Object.assign(record, { loss, grad_norm: gradNorm, grads: args.gradsOut });
  }
  const json = JSON.stringify(record);
  if (args.out) writeFileSync(args.out, json + "\n");
  else process.stdout.write(json + "\n");
}

main().catch((e: unknown) => {
  console.error(`export-batch: ${(e as Error).message}`);
  process.exit(1);
});
