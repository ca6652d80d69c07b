// Mutation fuzzing of the `.fog` front end: seeded edits (token and character deletes, inserts,
// duplicates, swaps, random punctuation) of valid samples, checking that parseFog never throws and
// that every diagnostic is well placed and worded. Deterministic: the PRNG is seeded, no Math.random.
import { describe, expect, it } from "vitest";
import { parseFog, tokenize, type Diagnostic } from "../../grammar/index.js";
import { EXAMPLE } from "./example.js";
import { mulberry32 as prng } from "../helpers/mulberry32.js";

const SAMPLES: readonly string[] = [
  EXAMPLE,
  `import "a.fog"\nmodel tiny { width = 64; layers = 2\n  block { h = h + attn(h) }\n}\n`,
  `precision p {\n  override layers 0..3, 5 ffn.fc2 { mode = bf16 }\n  scaling = delayed(history = 16, margin = 0,)\n}\n`,
  `model m extends base {\n  x = -(1 + 2) * 3 ^ -4 / [1, "s\\"q", f(a = 1e-5, b)]\n  /* block\n comment */ y = 1.5e3 // line\n}\n`,
];

const PUNCTUATION = ["{", "}", "(", ")", "[", "]", ",", ";", "=", "+", "-", "*", "/", "^", ".", "..", '"', "/*", "*/", "//", "$", "\n", "\r\n", "\t", " ", "1e", "0..", "model", "import", "extends", "x"];


/** Piece boundaries of a text: its tokens and the gaps between them, so joining gives it back. */
function pieces(text: string): string[] {
  const out: string[] = [];
  let at = 0;
  for (const t of tokenize(text, "s.fog").tokens) {
    if (t.startOffset > at) out.push(text.slice(at, t.startOffset));
    out.push(t.image);
    at = t.startOffset + t.image.length;
  }
  if (at < text.length) out.push(text.slice(at));
  return out;
}

/**
 * One mutant: a whole sample (a quarter of the time) or a window of 8 to 80 of its pieces, then
 * one to four edits, either on characters or on pieces (tokens and the gaps between them).
 */
function mutate(sample: readonly string[], rand: () => number): string {
  const pick = <T,>(xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)];
  const edits = 1 + Math.floor(rand() * 4);
  let parts: string[];
  if (rand() < 0.25) {
    parts = [...sample];
  } else {
    const from = Math.floor(rand() * sample.length);
    parts = sample.slice(from, from + 8 + Math.floor(rand() * 72));
  }
  let chars = parts.join("");
  const charLevel = rand() < 0.35;
  for (let e = 0; e < edits; e++) {
    if (charLevel) {
      const i = Math.floor(rand() * (chars.length + 1));
      const op = Math.floor(rand() * 4);
      if (op === 0) chars = chars.slice(0, i) + chars.slice(i + 1 + Math.floor(rand() * 8));
      else if (op === 1) chars = chars.slice(0, i) + pick(PUNCTUATION) + chars.slice(i);
      else if (op === 2) chars = chars.slice(0, i) + chars.slice(i, i + 1 + Math.floor(rand() * 12)) + chars.slice(i);
      else chars = chars.slice(0, i) + String.fromCharCode(Math.floor(rand() * 0x300)) + chars.slice(i);
    } else {
      const i = Math.floor(rand() * parts.length);
      const j = Math.floor(rand() * parts.length);
      const op = Math.floor(rand() * 5);
      if (op === 0) parts.splice(i, 1 + Math.floor(rand() * 3));
      else if (op === 1) parts.splice(i, 0, pick(PUNCTUATION));
      else if (op === 2) parts.splice(i, 0, ...parts.slice(j, j + 1 + Math.floor(rand() * 6)));
      else if (op === 3) [parts[i], parts[j]] = [parts[j], parts[i]];
      else parts = parts.slice(0, i); // truncate: unclosed everything
    }
  }
  return charLevel ? chars : parts.join("");
}

function checkDiagnostic(d: Diagnostic, text: string, file: string): string | undefined {
  const lines = text.split(/\r?\n/);
  const { span } = d;
  if (d.message.trim() === "") return "empty message";
  if (d.message.startsWith("internal parser error")) return d.message;
  if (span.file !== file) return `wrong file ${span.file}`;
  if (!(Number.isInteger(span.line) && span.line >= 1 && span.line <= lines.length)) return `line ${span.line}`;
  if (!(Number.isInteger(span.col) && span.col >= 1 && span.col <= lines[span.line - 1].length + 1)) {
    return `col ${span.col} on line ${span.line}`;
  }
  if (!(span.offset >= 0 && span.endOffset >= span.offset && span.offset <= text.length)) return "offsets";
  return undefined;
}

describe("parseFog under mutation", () => {
  it("never throws and places every diagnostic inside the text (12,000 inputs)", () => {
    const rand = prng(0xf06);
    const tokenized = SAMPLES.map(pieces);
    const failures: string[] = [];
    let inputs = 0;
    let withErrors = 0;
    for (let n = 0; n < 12_000; n++) {
      const text = mutate(tokenized[Math.floor(rand() * tokenized.length)], rand);
      inputs++;
      let diagnostics: Diagnostic[];
      try {
        diagnostics = parseFog(text, "fuzz.fog").diagnostics;
      } catch (e) {
        failures.push(`threw ${String(e)} on ${JSON.stringify(text)}`);
        continue;
      }
      if (diagnostics.length > 0) withErrors++;
      for (const d of diagnostics) {
        const problem = checkDiagnostic(d, text, "fuzz.fog");
        if (problem !== undefined) failures.push(`${problem}: ${d.message} in ${JSON.stringify(text)}`);
      }
      if (failures.length >= 5) break;
    }
    expect(failures).toEqual([]);
    expect(inputs).toBe(12_000);
    // The mutations must actually break most inputs, or the test proves little.
    expect(withErrors).toBeGreaterThan(inputs / 2);
  });

  it("accepts every unmutated sample", () => {
    for (const s of SAMPLES) expect(parseFog(s, "s.fog").diagnostics).toEqual([]);
  });
});
