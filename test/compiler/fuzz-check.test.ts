// Fuzzes the whole front end (parse + resolve + check + lower + autodiff + precision) with random
// token-level mutations of the example files: every input must end in positioned diagnostics or a
// compiled program, never in an exception.
import { readFileSync } from "node:fs";
import { resolve as resolvePath } from "node:path";
import { describe, expect, it } from "vitest";
import { compile } from "../../compiler/pipeline.js";
import { tokenize } from "../../grammar/lexer.js";
import { parseFog } from "../../grammar/index.js";
import { mulberry32 as prng } from "../helpers/mulberry32.js";

const EXAMPLES = ["fog-flash-tiny", "fog-max-tiny", "llama3-tiny", "olmo2-tiny", "op-tiny", "llama3-smooth-swiglu-tiny", "fog-max", "llama3"];
const INPUTS = 10_000;


const SNIPPETS = ["0", "-1", "1e9", "0.5", "h", "none", "frozen(1)", "fp8dpa", "e5m2", "attn", "ffn", "layers", "{", "}", "(", ")", "=", ",", "[", "]", "+", "*", "/", "^", "..", "override", "rmsnorm(h)", "tanh", "\"x.fog\""];

function mutate(text: string, rand: () => number): string {
  const toks = tokenize(text, "m.fog").tokens.map((t) => ({ start: t.startOffset, end: (t.endOffset ?? t.startOffset) + 1 }));
  let out = text;
  const edits = 1 + Math.floor(rand() * 3);
  for (let e = 0; e < edits && toks.length; e++) {
    const t = toks[Math.floor(rand() * toks.length)];
    const r = rand();
    const pick = SNIPPETS[Math.floor(rand() * SNIPPETS.length)];
    const src = toks[Math.floor(rand() * toks.length)];
    const other = text.slice(src.start, src.end);
    if (t.end > out.length) continue;
    if (r < 0.3) out = out.slice(0, t.start) + out.slice(t.end);
    else if (r < 0.6) out = out.slice(0, t.start) + pick + out.slice(t.end);
    else if (r < 0.8) out = out.slice(0, t.start) + other + " " + out.slice(t.start);
    else out = out.slice(0, t.end) + " " + pick + out.slice(t.end);
  }
  return out;
}

describe("front-end fuzz over the examples", () => {
  it(`${INPUTS} mutated examples: only positioned diagnostics or a program`, () => {
    const rand = prng(20261123);
    const cache = new Map<string, ReturnType<typeof parseFog>>();
    let compiled = 0;
    for (let i = 0; i < INPUTS; i++) {
      const name = EXAMPLES[i % EXAMPLES.length];
      const entry = resolvePath(`examples/${name}.fog`);
      const text = mutate(readFileSync(entry, "utf8"), rand);
      const readFile = (p: string) => (p === entry ? text : readFileSync(p, "utf8"));
      let r: ReturnType<typeof compile>;
      try {
        r = compile(entry, { readFile, parseCache: cache, batch: 1, seqLen: 4 });
      } catch (e) {
        throw new Error(`input ${i} (${name}) threw ${(e as Error).stack}\n--- input ---\n${text}`);
      }
      if (r.program) compiled++;
      else expect(r.diagnostics.some((d) => d.severity === "error"), `input ${i}: no program and no error`).toBe(true);
      for (const d of r.diagnostics) {
        expect(d.message.length).toBeGreaterThan(0);
        expect(d.span.line).toBeGreaterThanOrEqual(1);
        expect(d.span.col).toBeGreaterThanOrEqual(1);
      }
    }
    // Some mutations are harmless (a changed number): the pipeline must also have run end to end.
    expect(compiled).toBeGreaterThan(INPUTS / 200);
  });
});
