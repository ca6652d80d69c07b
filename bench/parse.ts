// Times parse + check + lower of the 390M FOG-max model (goal: < 100 ms warm), then the GPU plan of
// its training step on top (the performance issue's goal: parse + compile + plan < 2 s warm; H100
// limits and caps, no GPU), and prints the figures; run with `node --import tsx bench/parse.ts`.
// Never asserts on time.
import { readFileSync } from "node:fs";
import { performance } from "node:perf_hooks";
import { parseFog } from "../grammar/index.js";
import { check } from "../compiler/check.js";
import { compile } from "../compiler/pipeline.js";
import { planTrainStep } from "../runtime/gpu-plan.js";
import { H100_PLAN_OPTIONS } from "./memory.js";

const file = "examples/fog-max.fog";
const runs = 20;

function time(label: string, fn: () => unknown): number {
  fn(); // warm-up: JIT, module loading
  const t0 = performance.now();
  for (let i = 0; i < runs; i++) fn();
  const ms = (performance.now() - t0) / runs;
  console.log(`${label.padEnd(34)} ${ms.toFixed(2).padStart(8)} ms`);
  return ms;
}

const text = readFileSync(file, "utf8");
console.log(`fogc parse/check/lower of ${file}, mean of ${runs} warm runs, node ${process.version}`);
time("parse (lexer + parser + AST)", () => parseFog(text, file));
time("check (incl. imports)", () => check(file));
const total = time("parse + check + lower (compile)", () => compile(file));
const nodes = compile(file).program!.forward.nodes.length;
console.log(`forward graph: ${nodes} nodes; goal < 100 ms: ${total < 100 ? "met" : "NOT met"} (${(total / 100).toFixed(2)}× the goal)`);

const planRuns = 3;
// At the batch bench/train.ts runs the 390M models with (the file's own train batch overflows a binding).
const plan = () => planTrainStep(compile(file, { batch: 3, seqLen: 1024 }).program!.train, H100_PLAN_OPTIONS, { probes: false });
plan(); // warm-up
const t0 = performance.now();
for (let i = 0; i < planRuns; i++) plan();
const planMs = (performance.now() - t0) / planRuns;
console.log(`${"parse + compile + plan (3×1024)".padEnd(34)} ${planMs.toFixed(2).padStart(8)} ms  (mean of ${planRuns}; ${plan().kernels.length} kernels); goal < 2 s: ${planMs < 2000 ? "met" : "NOT met"}`);
