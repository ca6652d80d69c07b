// THE pass list. compile() runs the front end and each pass in order, one line each; every
// stage's output is kept on the Program so `fogc compile --emit STAGE` can print it.
import type { Diagnostic } from "../grammar/diagnostics.js";
import { type CheckOptions, check } from "./check.js";
import type { Graph } from "./ir.js";
import { autodiff } from "./autodiff.js";
import { lowerModel } from "./lower-model.js";
import { applyPrecision } from "./precision.js";
import { insertProbes } from "./probes.js";
import type { CheckedModel } from "./model.js";
import type { SourceFile } from "./resolve.js";
import { type ModelStats, modelStats } from "./stats.js";

export interface CompileOptions extends CheckOptions {
  /** Batch and sequence length to lower for; default: the file's train section. */
  batch?: number;
  seqLen?: number;
}

export interface Program {
  model: CheckedModel;
  /** Forward graph: embedding → blocks → head → loss. */
  forward: Graph;
  /** One training step's graph: forward, backward, the recipe's FP8/bf16 casts, and the kurtosis probes (role "probe"). */
  train: Graph;
  stats: ModelStats;
}

export interface CompileResult {
  program?: Program;
  diagnostics: Diagnostic[];
  files: Map<string, SourceFile>;
}

export function compile(file: string, options: CompileOptions = {}): CompileResult {
  const checked = check(file, options); //                       .fog → AST → CheckedModel
  const { model } = checked;
  if (!model) return { diagnostics: checked.diagnostics, files: checked.files };
  const batch = options.batch ?? model.train.batch;
  const seqLen = options.seqLen ?? model.train.seqLen;
  const forward = lowerModel(model, { batch, seqLen }); //         CheckedModel → forward graph IR
  const grads = autodiff(forward); //                              + backward graph (one VJP per op)
  const cast = applyPrecision(grads, model); //                    + quantize/cast on GEMM operands
  const train = insertProbes(cast, model); //                      + kurtosis probes on the taps (run on logging steps only)
  const stats = modelStats(forward); //                            params, FLOPs, memory from the IR
  return { program: { model, forward, train, stats }, diagnostics: checked.diagnostics, files: checked.files };
}

/**
 * The decode graph of a checked model (sampling with a KV cache, docs/ir.md Decode): `rows` new
 * tokens per sequence attending over caches of `context` positions, lowered by the same lowerModel
 * and given the same precision pass as training, so FP8 models cast weights and activations through
 * slots of the same names as the training graph's (the caller restores their scale state by name).
 */
export function compileDecode(model: CheckedModel, { batch, rows, context }: { batch: number; rows: number; context: number }): Graph {
  if (!(Number.isInteger(rows) && rows >= 1 && rows <= context)) throw new Error(`compileDecode: ${rows} new rows per call do not fit a cache of ${context} positions`);
  const decode = lowerModel(model, { batch, seqLen: rows, decode: { context } }); // forward only, KV caches
  return applyPrecision(decode, model); //                                          + quantize/cast on GEMM operands
}
