// The TypeScript FP8 codec against PyTorch's casts, bit for bit, from the tables that
// scripts/fp8-tables.py writes to test/data/fp8/ (PyTorch casts are non-saturating; the "-sat" tables
// clamp to ±max first). Skipped only while test/data/fp8 does not exist; a missing file then fails.
import { createHash } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { decodeFP8, encodeFP8, type Fp8Format } from "../../runtime/fp8.js";
import { FP8_RANDOM_COUNT, FP8_RANDOM_SEED, f16InputBits, fp8RandomInputBits } from "../helpers/fp8-inputs.js";

const DIR = fileURLToPath(new URL("../data/fp8/", import.meta.url));
const PRESENT = existsSync(DIR);
const TITLE = PRESENT
  ? "FP8 codec vs PyTorch reference tables (test/data/fp8)"
  : "FP8 codec vs PyTorch reference tables: SKIPPED, test/data/fp8 is missing (run `python3 scripts/fp8-tables.py` on a host with PyTorch and commit test/data/fp8)";
const FORMATS: Fp8Format[] = ["e4m3", "e5m2"];

function read(name: string): Buffer {
  return readFileSync(DIR + name);
}

interface Manifest {
  torch: string;
  seed: number;
  count: number;
  inputs_sha256: { f16: string; random: string };
}

const sha256 = (a: Uint32Array): string => createHash("sha256").update(new Uint8Array(a.buffer, a.byteOffset, a.byteLength)).digest("hex");

describe.skipIf(!PRESENT)(TITLE, () => {
  const inputs = PRESENT ? { f16: f16InputBits(), random: fp8RandomInputBits() } : { f16: new Uint32Array(), random: new Uint32Array() };

  it("the tables were made from the same inputs (seed, count, sha256 of the input bits)", () => {
    const m = JSON.parse(read("manifest.json").toString("utf8")) as Manifest;
    expect([m.seed, m.count]).toEqual([FP8_RANDOM_SEED, FP8_RANDOM_COUNT]);
    expect(m.inputs_sha256).toEqual({ f16: sha256(inputs.f16), random: sha256(inputs.random) });
  });

  for (const f of FORMATS) {
    it(`${f}: decode of all 256 codes equals torch's (NaN as NaN)`, () => {
      const b = read(`decode-${f}.bin`);
      expect(b.length).toBe(1024);
      const want = new Float32Array(b.buffer.slice(b.byteOffset, b.byteOffset + 1024));
      const got = decodeFP8(Uint8Array.from({ length: 256 }, (_, i) => i), f);
      const bad: string[] = [];
      for (let c = 0; c < 256; c++) {
        const ok = Number.isNaN(want[c]) ? Number.isNaN(got[c]) : Object.is(got[c], want[c]);
        if (!ok) bad.push(`0x${c.toString(16)}: ours ${got[c]}, torch ${want[c]}`);
      }
      expect(bad).toEqual([]);
    });

    for (const set of ["f16", "random"] as const) {
      for (const saturate of [false, true]) {
        const file = `encode-${set}-${f}${saturate ? "-sat" : ""}.bin`;
        it(`${f} ${saturate ? "saturating" : "non-saturating"} encode of the ${set} inputs equals ${file} bit for bit`, () => {
          const bits = inputs[set];
          const want = read(file);
          expect(want.length).toBe(bits.length);
          const got = encodeFP8(new Float32Array(bits.buffer), f, { saturate });
          const bad: string[] = [];
          let count = 0;
          for (let i = 0; i < bits.length; i++) {
            if (got[i] === want[i]) continue;
            if (++count <= 8) bad.push(`#${i} bits 0x${bits[i].toString(16)}: ours 0x${got[i].toString(16)}, torch 0x${want[i].toString(16)}`);
          }
          if (count > 8) bad.push(`... ${count} mismatches in all`);
          expect(bad).toEqual([]);
        });
      }
    }
  }
});
