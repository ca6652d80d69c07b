// Times parse + check + lower of the 390M FOG-max model (goal: < 100 ms warm) and prints the
// figures; run with `node --import tsx bench/parse.ts`. Never asserts on time.
import { readFileSync } from "node:fs";
import { performance } from "node:perf_hooks";
import { parseFog } from "../grammar/index.js";
import { check } from "../compiler/check.js";
import { compile } from "../compiler/pipeline.js";

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
