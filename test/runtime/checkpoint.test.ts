// Checkpoints (runtime/checkpoint.ts): a bit-exact round trip, the safetensors layout, every
// corruption case giving a CheckpointError that names the file, and a writer killed with SIGKILL
// mid-write leaving the previous checkpoint loadable and its temp file never taken for a checkpoint.
import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, describe, expect, it } from "vitest";
import {
  type Checkpoint,
  CheckpointError,
  checkpointPath,
  type ExpectedModel,
  latestCheckpoint,
  listCheckpoints,
  readCheckpoint,
  readCheckpointMeta,
  removeStaleTemps,
  writeCheckpoint,
} from "../../runtime/checkpoint.js";

const made: string[] = [];
const tmp = (): string => {
  const d = mkdtempSync(join(tmpdir(), "fogc-ckpt-"));
  made.push(d);
  return d;
};
afterAll(() => made.forEach((d) => rmSync(d, { recursive: true, force: true })));

function sample(): Checkpoint {
  const shapes = new Map<string, number[]>([
    ["embed.weight", [4, 3]],
    ["b0.norm.gain", [3]],
  ]);
  const fill = (n: number, f: (i: number) => number): Float32Array => Float32Array.from({ length: n }, (_, i) => f(i));
  return {
    meta: {
      model: "tiny",
      file: "/models/tiny.fog",
      shapesHash: "abcdef0123456789",
      step: 7,
      totalSteps: 20,
      seed: 3,
      precision: "fp8",
      tokenizer: "bytes",
      sampler: { prng: [1, 4294967295, 0, 12345], step: 7 },
    },
    state: {
      params: new Map([
        ["embed.weight", fill(12, (i) => Math.sin(i) / 3)],
        ["b0.norm.gain", fill(3, (i) => 1 + i * 1e-7)],
      ]),
      m: new Map([
        ["embed.weight", fill(12, (i) => i * 1e-3)],
        ["b0.norm.gain", fill(3, () => Number.MIN_VALUE)],
      ]),
      v: new Map([
        ["embed.weight", fill(12, (i) => i * i * 1e-9)],
        ["b0.norm.gain", fill(3, () => 0)],
      ]),
      scales: [
        { scale: 448 / 3.0000001, history: Float32Array.of(3, 2.5, 0, 1), head: 2 },
        { scale: 2 ** -20, history: Float32Array.of(7), head: 0 },
      ],
      step: 7,
    },
    shapes,
  };
}

const expected = (c: Checkpoint): ExpectedModel => ({ name: c.meta.model, shapesHash: c.meta.shapesHash, shapes: c.shapes, fp8Slots: c.state.scales.length });

function expectCheckpointError(f: () => unknown, path: string, pattern: RegExp): void {
  let err: unknown;
  try {
    f();
  } catch (e) {
    err = e;
  }
  expect(err).toBeInstanceOf(CheckpointError);
  const msg = (err as Error).message;
  expect(msg).toContain(path);
  expect(msg).toMatch(pattern);
}

describe("checkpoint files", () => {
  it("round-trips weights, moments, scale state and metadata bit for bit", () => {
    const dir = tmp();
    const c = sample();
    const path = checkpointPath(dir, 7);
    expect(path.endsWith("step-00000007.safetensors")).toBe(true);
    writeCheckpoint(path, c);
    const r = readCheckpoint(path, expected(c));
    expect(r.meta).toEqual(c.meta);
    expect(r.state).toEqual(c.state);
    expect(readCheckpointMeta(path)).toEqual(c.meta);
    // Without an expected model, shapes come from the file.
    expect(readCheckpoint(path).shapes).toEqual(c.shapes);
    expect(readdirSync(dir)).toEqual(["step-00000007.safetensors"]); // no temp file left
  });

  it("is a valid safetensors file (8-byte length, JSON header, aligned data)", () => {
    const dir = tmp();
    const path = join(dir, "x.safetensors");
    writeCheckpoint(path, sample());
    const buf = readFileSync(path);
    const n = Number(buf.readBigUInt64LE(0));
    expect((8 + n) % 8).toBe(0);
    type Entry = { dtype: string; shape: number[]; data_offsets: number[] };
    const { __metadata__: metadata, ...header } = JSON.parse(buf.toString("utf8", 8, 8 + n)) as Record<string, Entry> & { __metadata__: Record<string, string> };
    expect(metadata.model).toBe("tiny");
    expect(header["param.embed.weight"]).toEqual({ dtype: "F32", shape: [4, 3], data_offsets: [0, 48] });
    expect(header["fp8.scale"].dtype).toBe("F64");
    const e = header["adam_v.b0.norm.gain"];
    expect(buf.length).toBeGreaterThanOrEqual(8 + n + e.data_offsets[1]);
    const last = Math.max(...Object.values(header).map((t) => t.data_offsets[1]));
    expect(buf.length).toBe(8 + n + last);
  });

  it("rejects truncated files, naming the file and the fix", () => {
    const dir = tmp();
    const path = join(dir, "t.safetensors");
    writeCheckpoint(path, sample());
    const full = readFileSync(path);
    for (const cut of [0, 5, 20, full.length - 1]) {
      writeFileSync(path, full.subarray(0, cut));
      expectCheckpointError(() => readCheckpoint(path), path, /truncated.*delete it/);
    }
  });

  it("rejects garbage headers and files that are not fogc checkpoints", () => {
    const dir = tmp();
    const path = join(dir, "g.safetensors");
    const withHeader = (h: string): Buffer => {
      const len = Buffer.alloc(8);
      len.writeBigUInt64LE(BigInt(Buffer.byteLength(h)));
      return Buffer.concat([len, Buffer.from(h)]);
    };
    writeFileSync(path, Buffer.from("this is not a checkpoint at all, just text"));
    expectCheckpointError(() => readCheckpoint(path), path, /bad header|truncated/);
    writeFileSync(path, withHeader("{not json"));
    expectCheckpointError(() => readCheckpoint(path), path, /bad header: not valid JSON/);
    writeFileSync(path, withHeader('{"__metadata__":{"format":"pt"}}'));
    expectCheckpointError(() => readCheckpoint(path), path, /not a fogc checkpoint/);
    expectCheckpointError(() => readCheckpoint(join(dir, "missing.safetensors")), "missing.safetensors", /no such file/);
  });

  it("rejects a wrong dtype or shape", () => {
    const dir = tmp();
    const path = join(dir, "d.safetensors");
    writeCheckpoint(path, sample());
    const buf = readFileSync(path);
    const n = Number(buf.readBigUInt64LE(0));
    const header = buf.toString("utf8", 8, 8 + n);
    // Same byte length: F32 → I32 keeps every offset valid.
    writeFileSync(path, Buffer.concat([buf.subarray(0, 8), Buffer.from(header.replace('"param.b0.norm.gain":{"dtype":"F32"', '"param.b0.norm.gain":{"dtype":"I32"')), buf.subarray(8 + n)]));
    expectCheckpointError(() => readCheckpoint(path, expected(sample())), path, /"param.b0.norm.gain" is I32, expected F32/);
    writeCheckpoint(path, sample());
    const other = sample();
    other.shapes.set("b0.norm.gain", [1, 3]);
    expectCheckpointError(() => readCheckpoint(path, expected(other)), path, /shape \[3\], the model needs \[1,3\]/);
  });

  it("rejects a checkpoint of another model or precision recipe", () => {
    const dir = tmp();
    const path = join(dir, "m.safetensors");
    const c = sample();
    writeCheckpoint(path, c);
    expectCheckpointError(() => readCheckpoint(path, { ...expected(c), name: "other", shapesHash: "ffff" }), path, /does not fit model 'other'.*--model/);
    expectCheckpointError(() => readCheckpoint(path, { ...expected(c), fp8Slots: 5 }), path, /2 FP8 scale slots.*--precision the checkpoint was trained with \(fp8\)/);
  });

  it("lists only finished checkpoints, newest last", () => {
    const dir = tmp();
    writeCheckpoint(checkpointPath(dir, 10), sample());
    writeCheckpoint(checkpointPath(dir, 2), sample());
    writeFileSync(join(dir, ".step-00000011.safetensors.tmp-999999"), "partial");
    writeFileSync(join(dir, "notes.txt"), "x");
    expect(listCheckpoints(dir).map((c) => c.step)).toEqual([2, 10]);
    expect(latestCheckpoint(dir)).toBe(checkpointPath(dir, 10));
    expect(latestCheckpoint(join(dir, "none"))).toBeUndefined();
  });
});

describe("crash safety", () => {
  it("a writer killed with SIGKILL mid-write leaves the previous checkpoint intact", async () => {
    const dir = tmp();
    const child = spawn(process.execPath, ["--import", "tsx", fileURLToPath(new URL("./checkpoint-writer.child.ts", import.meta.url)), dir], {
      stdio: ["ignore", "pipe", "pipe"],
    });
    let out = "";
    let err = "";
    child.stderr.on("data", (d: Buffer) => (err += d.toString()));
    const exited = new Promise<NodeJS.Signals | null>((res) => child.on("exit", (_code, signal) => res(signal)));
    await new Promise<void>((res, rej) => {
      child.stdout.on("data", (d: Buffer) => {
        out += d.toString();
        if (out.includes("MID")) res();
      });
      child.on("exit", () => rej(new Error(`writer exited early: ${out} ${err}`)));
    });
    child.kill("SIGKILL");
    expect(await exited).toBe("SIGKILL");
    expect(out).toContain("WROTE 2");
    expect(out).not.toContain("WROTE 3");

    const files = readdirSync(dir).sort();
    const temp = `.step-00000003.safetensors.tmp-${child.pid}`;
    expect(files).toEqual([temp, "step-00000001.safetensors", "step-00000002.safetensors"]);
    // The half-written temp file is not a checkpoint, and is no valid one either.
    expect(listCheckpoints(dir).map((c) => c.step)).toEqual([1, 2]);
    expectCheckpointError(() => readCheckpoint(join(dir, temp)), temp, /truncated/);
    const latest = latestCheckpoint(dir)!;
    const c = readCheckpoint(latest);
    expect(c.meta.step).toBe(2);
    expect(c.state.params.get("a")!.every((x) => x === 2)).toBe(true);
    expect(c.state.v.get("d")!.every((x) => x === 1)).toBe(true);
    // A later run clears the dead writer's temp file.
    expect(removeStaleTemps(dir)).toEqual([temp]);
    expect(existsSync(join(dir, temp))).toBe(false);
  });
});
