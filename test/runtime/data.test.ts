// Training data (runtime/data.ts): Brown tag stripping, tokenizer round trips, the train/validation
// split, the seeded batch sampler (determinism, state restore), validation batches and path errors.
import { mkdtempSync, mkdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it, onTestFinished } from "vitest";
import {
  BatchSampler,
  brownFileToText,
  brownText,
  bytesTokenizer,
  DataError,
  loadDataset,
  loadTokenizer,
  readTrainingText,
  splitTokens,
  stripBrownTags,
  validationBatches,
} from "../../runtime/data.js";
import { Prng } from "../../runtime/prng.js";

describe("Brown corpus", () => {
  it("strips tags and attaches punctuation and quotes", () => {
    expect(stripBrownTags("The/at jury/nn said/vbd ``/`` no/at evidence/nn ''/'' ,/, (/( Atlanta's/np$ )/) ./.")).toBe(
      'The jury said "no evidence", (Atlanta\'s).',
    );
    expect(stripBrownTags("1/2/cd inch/nn")).toBe("1/2 inch"); // the tag is after the last slash
  });

  it("joins sentences into paragraphs (a tab starts one)", () => {
    const raw = "\n\n\tThe/at jury/nn met/vbd ./.\nIt/pps voted/vbd ./.\n\n\n\tA/at new/jj one/cd ./.\n";
    expect(brownFileToText(raw)).toBe("The jury met. It voted.\nA new one.");
    const headline = "\tA/at vote/nn ./.\nMerger/nn-hl proposed/vbn-hl\nThe/at plan/nn ./.\nIt/pps failed/vbd ./.\n";
    expect(brownFileToText(headline)).toBe("A vote.\nMerger proposed\nThe plan. It failed.");
  });

  it("loads the whole corpus as natural text", () => {
    const text = brownText();
    expect(text.startsWith("The Fulton County Grand Jury said Friday an investigation of Atlanta's recent primary election produced \"no evidence\"")).toBe(true);
    expect(text.length).toBeGreaterThan(5_500_000);
    expect(text).not.toMatch(/\/(at|nn|vbd|np-tl|nns) /); // ("B.t.u./sq. ft." is real text)
    expect(text).not.toContain("``");
  });
});

describe("tokenizers", () => {
  it("bytes round-trips any text, vocab 256", () => {
    const s = "Grüße, naïve café — ✓ 😀\n";
    const ids = bytesTokenizer.encode(s);
    expect(ids.length).toBe(Buffer.byteLength(s));
    expect(Math.max(...ids)).toBeLessThan(256);
    expect(bytesTokenizer.decode(ids)).toBe(s);
  });

  it("gpt2 encodes with GPT-2's ids and round-trips", async () => {
    const t = await loadTokenizer("gpt2");
    expect(t.vocab).toBe(50257);
    expect(Array.from(t.encode("Hello world"))).toEqual([15496, 995]);
    const s = "The jury said \"no evidence\" — 42 times.\n<|endoftext|>";
    expect(t.decode(t.encode(s))).toBe(s);
  });
});

describe("split and batches", () => {
  const stream = Int32Array.from({ length: 1000 }, (_, i) => i);

  it("validation is the contiguous tail", () => {
    const { train, val } = splitTokens(stream.subarray(0, 100), 0.1);
    expect(Array.from(train)).toEqual(Array.from({ length: 90 }, (_, i) => i));
    expect(Array.from(val)).toEqual(Array.from({ length: 10 }, (_, i) => 90 + i));
    expect(splitTokens(stream.subarray(0, 101), 0.1).val.length).toBe(11); // ⌈10.1⌉
  });

  it("targets are the tokens shifted by one, windows inside the stream", () => {
    const s = new BatchSampler(stream, 4, 8, 1);
    for (let k = 0; k < 50; k++) {
      const b = s.next();
      expect(b.tokens.length).toBe(32);
      for (let r = 0; r < 4; r++) {
        const t0 = b.tokens[r * 8];
        for (let j = 0; j < 8; j++) {
          expect(b.tokens[r * 8 + j]).toBe(t0 + j);
          expect(b.targets[r * 8 + j]).toBe(t0 + j + 1);
        }
        expect(t0 + 8).toBeLessThan(1000);
      }
    }
  });

  it("is deterministic by seed and resumes from its state", () => {
    const draw = (s: BatchSampler, n: number): number[][] => Array.from({ length: n }, () => Array.from(s.next().tokens));
    const a = new BatchSampler(stream, 2, 5, 7);
    const b = new BatchSampler(stream, 2, 5, 7);
    expect(draw(a, 5)).toEqual(draw(b, 5));
    expect(draw(new BatchSampler(stream, 2, 5, 8), 5)).not.toEqual(draw(new BatchSampler(stream, 2, 5, 7), 5));
    const state = JSON.parse(JSON.stringify(a.state())) as ReturnType<BatchSampler["state"]>;
    expect(state.step).toBe(5);
    const rest = draw(a, 5);
    const c = new BatchSampler(stream, 2, 5, 123);
    c.restore(state);
    expect(draw(c, 5)).toEqual(rest);
  });

  it("validation batches are fixed and spread over the split", () => {
    const v1 = validationBatches(stream, 2, 10, 3);
    const v2 = validationBatches(stream, 2, 10, 3);
    expect(v1).toEqual(v2);
    expect(v1.map((b) => [b.tokens[0], b.tokens[10]])).toEqual([[0, 165], [330, 495], [660, 825]]);
  });

  it("PRNG: uniform ints in range, floats in [0, 1), normals with unit variance", () => {
    const p = Prng.fromSeed(42);
    let s = 0;
    let s2 = 0;
    let bad = 0;
    for (let i = 0; i < 20000; i++) {
      const [x, y] = p.normalPair();
      s += x + y;
      s2 += x * x + y * y;
      const f = p.nextFloat();
      const k = p.nextInt(7);
      if (!(f >= 0 && f < 1) || !(k >= 0 && k < 7 && Number.isInteger(k))) bad++;
    }
    expect(bad).toBe(0);
    expect(Math.abs(s / 40000)).toBeLessThan(0.02);
    expect(Math.abs(s2 / 40000 - 1)).toBeLessThan(0.03);
    expect(Prng.fromState(p.state()).nextU32()).toBe(p.nextU32());
  });
});

describe("text sources", () => {
  it("names the missing path, relative to the .fog directory", () => {
    expect(() => readTrainingText({ kind: "path", path: "nope/corpus.txt" }, "/tmp/somewhere")).toThrow(DataError);
    expect(() => readTrainingText({ kind: "path", path: "nope/corpus.txt" }, "/tmp/somewhere")).toThrow("/tmp/somewhere/nope/corpus.txt");
  });

  it("reads a file, or a folder's text files in path order (binary skipped)", async () => {
    const dir = mkdtempSync(join(tmpdir(), "fogc-data-"));
    onTestFinished(() => rmSync(dir, { recursive: true, force: true }));
    mkdirSync(join(dir, "books", "sub"), { recursive: true });
    writeFileSync(join(dir, "one.txt"), "hello");
    writeFileSync(join(dir, "books", "b.txt"), "second");
    writeFileSync(join(dir, "books", "a.txt"), "first");
    writeFileSync(join(dir, "books", "sub", "c.md"), "third");
    writeFileSync(join(dir, "books", "z.bin"), Buffer.from([1, 0, 2]));
    expect(readTrainingText({ kind: "path", path: "one.txt" }, dir)).toBe("hello");
    expect(readTrainingText({ kind: "path", path: "books" }, dir)).toBe("first\n\nsecond\n\nthird");
    await expect(loadDataset({ data: { kind: "path", path: "one.txt" }, tokenizer: "bytes", valFraction: 0.2, seqLen: 8 }, dir)).rejects.toThrow(
      /fewer than one window/,
    );
  });
});
