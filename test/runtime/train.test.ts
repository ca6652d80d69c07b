// The training loop (runtime/train.ts) on the CPU executor with a tiny .fog model (width 16, one
// layer, batch 2, seq 8, bytes): the loss falls, the JSONL log, exact resume after a crash (FP8
// scale state included), generation from the checkpoint, and the user errors of `run`/`generate`.
import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { CheckpointError, listCheckpoints, readCheckpoint } from "../../runtime/checkpoint.js";
import { DataError } from "../../runtime/data.js";
import { generate, sampleToken } from "../../runtime/generate.js";
import { Prng } from "../../runtime/prng.js";
import { type LogRecord, RunError, type RunEvent, train, type TrainOptions } from "../../runtime/train.js";

const TINY = `
model tiny {
  vocab     = 256
  context   = 8
  width     = 16
  layers    = 1
  heads     = 2
  mlp_width = 32

  head { tied = true  norm = rmsnorm(eps = 1e-5) }
  attention attn { rope = rope }
  mlp ffn { activation = swiglu }
  block {
    h = h + attn(rmsnorm(h))
    h = h + ffn(rmsnorm(h))
  }
  precision = bf16

  train {
    data         = "text.txt"
    tokenizer    = bytes
    batch        = 2
    seq_len      = 8
    steps        = 20
    seed         = 1
    optimizer    = adamw(lr = 1e-2, beta1 = 0.9, beta2 = 0.95, eps = 1e-8, weight_decay = 0.1, clip = 1.0)
    schedule     = wsd(warmup = 2, decay = 0.2, min_lr = 1e-4)
    eval_every   = 10
    eval_batches = 2
    log_every    = 5
    val_fraction = 0.1
  }
}

model tiny_wide extends tiny { width = 32 }
`;

const made: string[] = [];
afterAll(() => made.forEach((d) => rmSync(d, { recursive: true, force: true })));

/** A directory with tiny.fog and its training text (English, repetitive enough to learn fast). */
function workspace(): { dir: string; fog: string } {
  const dir = mkdtempSync(join(tmpdir(), "fogc-train-"));
  made.push(dir);
  const fog = join(dir, "tiny.fog");
  writeFileSync(fog, TINY);
  const sentences = [
    "the cat sat on the mat. ",
    "the dog sat on the log. ",
    "a cat and a dog met on the mat. ",
    "the jury said the cat was on the mat. ",
  ];
  writeFileSync(join(dir, "text.txt"), Array.from({ length: 400 }, (_, i) => sentences[(i * 7) % 4]).join(""));
  return { dir, fog };
}

const quiet = { progress: null } satisfies Partial<TrainOptions>;

describe("train", () => {
  it("trains a tiny model on the CPU: the loss falls, the log has one record per log step", async () => {
    const { dir, fog } = workspace();
    const log = join(dir, "logs", "run.jsonl");
    const records: LogRecord[] = [];
    const r = await train({ file: fog, model: "tiny", backend: "cpu", log, onLog: (x) => records.push(x), ...quiet });
    expect(r.backend).toBe("cpu");
    expect(r.losses.length).toBe(20);
    const mean = (xs: number[]): number => xs.reduce((a, b) => a + b, 0) / xs.length;
    expect(r.losses[0]).toBeCloseTo(Math.log(256), 0);
    expect(mean(r.losses.slice(-5))).toBeLessThan(mean(r.losses.slice(0, 5)) - 1);
    expect(r.valLoss).toBeLessThan(r.losses[0] - 1);

    const all = readFileSync(log, "utf8").trim().split("\n").map((l) => JSON.parse(l) as LogRecord | RunEvent);
    expect(all[0]).toMatchObject({ event: "run", model: "tiny", backend: "cpu", steps: 20, start_step: 0 });
    const lines = all.filter((l): l is LogRecord => !("event" in l));
    expect(lines).toEqual(records);
    expect(lines.map((l) => l.step)).toEqual([5, 10, 15, 20]);
    expect(lines.map((l) => l.val_loss !== undefined)).toEqual([false, true, false, true]);
    for (const l of lines) {
      expect(Object.keys(l).sort()).toEqual(["grad_norm", "kurtosis", "loss", "lr", "step", "tokens_per_s", ...(l.val_loss !== undefined ? ["val_loss"] : [])].sort());
      expect(Object.keys(l.kurtosis).length).toBe(l.step % 10 === 0 ? 16 : 0); // probes every 10 steps: 8 tensors, 8 layer means
      expect(l.loss).toBe(r.losses[l.step - 1]);
      expect(l.tokens_per_s).toBeGreaterThan(0);
    }
    expect(lines[0].lr).toBe(1e-2); // step 5 (index 4): past warmup, before the decay
    expect(lines[3].lr).toBe(1e-4); // the last step runs at min_lr

    // Same seed, same run: losses are deterministic; the log is appended to.
    const again = await train({ file: fog, model: "tiny", backend: "cpu", steps: 5, log, ...quiet });
    expect(again.losses).toEqual(r.losses.slice(0, 5)); // a loss comes before its step's update
    expect(readFileSync(log, "utf8").trim().split("\n").length).toBe(1 + 4 + 1 + 1); // run, 4 records; run, 1 record
  });

  it("resumes bit-identically after a crash (FP8 delayed scaling state included)", async () => {
    const { dir, fog } = workspace();
    const base = { file: fog, model: "tiny", backend: "cpu", precision: "fp8dpa", steps: 12, checkpointEvery: 4, ...quiet } as const;
    const full = await train({ ...base, checkpoint: join(dir, "full") });
    expect(full.losses.length).toBe(12);

    const ckpt = join(dir, "crashed");
    const crash = new Error("simulated crash");
    await expect(
      train({
        ...base,
        checkpoint: ckpt,
        onLog: (rec) => {
          if (rec.step === 10) throw crash;
        },
      }),
    ).rejects.toBe(crash);
    expect(listCheckpoints(ckpt).map((c) => c.step)).toEqual([4, 8]);
    const meta = readCheckpoint(listCheckpoints(ckpt)[1].path).state;
    expect(meta.scales.length).toBeGreaterThan(0);
    expect(meta.scales.some((s) => s.scale !== 1)).toBe(true);

    const resumed = await train({ ...base, checkpoint: ckpt, resume: true });
    expect(resumed.startStep).toBe(8);
    expect(resumed.losses).toEqual(full.losses.slice(8));
    expect(resumed.valLoss).toBe(full.valLoss);
    const a = readCheckpoint(full.checkpoint!);
    const b = readCheckpoint(resumed.checkpoint!);
    expect(b.state).toEqual(a.state);
    expect(b.meta.sampler).toEqual(a.meta.sampler);
  });

  it("generates from a checkpoint: seeded, greedy at temperature 0", async () => {
    const { dir, fog } = workspace();
    const r = await train({ file: fog, model: "tiny", backend: "cpu", steps: 20, checkpoint: join(dir, "ck"), ...quiet });
    const opts = { checkpoint: r.checkpoint!, prompt: "the cat", tokens: 6, seed: 5 };
    const pieces: string[] = [];
    const g1 = await generate({ ...opts, onText: (t) => pieces.push(t) });
    const g2 = await generate(opts);
    expect(g1.tokens.length).toBe(6);
    expect(g1).toEqual(g2);
    expect(g1.text).toBe("the cat" + g1.completion);
    expect(pieces.join("")).toBe(g1.completion);
    const greedy = await generate({ ...opts, temperature: 0 });
    const greedy2 = await generate({ ...opts, temperature: 0, seed: 99 });
    expect(greedy.tokens).toEqual(greedy2.tokens);

    // Greedy decoding agrees with the executor's own argmax for the first token.
    expect(sampleToken(Float32Array.of(0, 3, 3, 1), { temperature: 0, topK: 0, vocab: 4 }, Prng.fromSeed(0))).toBe(1);
    const counts = [0, 0, 0, 0];
    const p = Prng.fromSeed(1);
    for (let i = 0; i < 400; i++) counts[sampleToken(Float32Array.of(0, 2, 2.1, -5), { temperature: 1, topK: 2, vocab: 4 }, p)]++;
    expect(counts[0] + counts[3]).toBe(0); // top-2 only
    expect(Math.min(counts[1], counts[2])).toBeGreaterThan(120);
  });

  it("reports user errors clearly", async () => {
    const { dir, fog } = workspace();
    await expect(train({ file: join(dir, "missing.fog"), ...quiet })).rejects.toThrow(/no such file: .*missing\.fog/);
    await expect(train({ file: fog, model: "tiny", resume: true, ...quiet })).rejects.toThrow(/--resume needs --checkpoint/);

    const ck = join(dir, "ck");
    await train({ file: fog, model: "tiny", backend: "cpu", steps: 2, checkpoint: ck, ...quiet });
    await expect(train({ file: fog, model: "tiny", backend: "cpu", steps: 2, checkpoint: ck, ...quiet })).rejects.toThrow(/already holds checkpoints.*--resume/);
    await expect(train({ file: fog, model: "tiny_wide", backend: "cpu", steps: 4, checkpoint: ck, resume: true, ...quiet })).rejects.toThrow(CheckpointError);
    await expect(train({ file: fog, model: "tiny", backend: "cpu", steps: 4, precision: "fp8", checkpoint: ck, resume: true, ...quiet })).rejects.toThrow(/FP8 scale slots/);

    writeFileSync(join(dir, "nodata.fog"), TINY.replace('"text.txt"', '"corpora/missing.txt"'));
    await expect(train({ file: join(dir, "nodata.fog"), model: "tiny", backend: "cpu", ...quiet })).rejects.toThrow(DataError);
    writeFileSync(join(dir, "bad.fog"), TINY.replace("width     = 16", "width     = 15"));
    const err = await train({ file: join(dir, "bad.fog"), model: "tiny", backend: "cpu", ...quiet }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(RunError);
    expect((err as RunError).diagnostics.length).toBeGreaterThan(0);
  });

  it("fogc run / generate: output, and exit 1 with a clear message for a bad file or a corrupt checkpoint", async () => {
    const { dir, fog } = workspace();
    const r = await train({ file: fog, model: "tiny", backend: "cpu", steps: 2, checkpoint: join(dir, "ck"), ...quiet });
    const good = r.checkpoint!;
    const bad = join(dir, "ck", "step-00000001.safetensors");
    writeFileSync(bad, readFileSync(good).subarray(0, 100));
    // Each CLI process spends seconds building the parser: run them side by side, from the
    // repository root (where tsx resolves), with absolute paths into the workspace.
    const fogc = (...args: string[]): Promise<{ status: number | null; stdout: string; stderr: string }> =>
      new Promise((res) => {
        const child = spawn(process.execPath, ["--import", "tsx", join("cli", "fogc.ts"), ...args]);
        let stdout = "";
        let stderr = "";
        child.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
        child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
        child.on("close", (status) => res({ status, stdout, stderr }));
      });
    const [run, gen, corrupt, missing, noDir] = await Promise.all([
      fogc("run", fog, "--model", "tiny", "--backend", "cpu", "--steps", "2", "--checkpoint", join(dir, "ck2")),
      fogc("generate", good, "--prompt", "the ", "--tokens", "5", "--temperature", "0"),
      fogc("generate", bad, "--prompt", "x", "--tokens", "3"),
      fogc("run", join(dir, "nope.fog")),
      fogc("run", fog, "--model", "tiny", "--on-warning", "checkpoint"),
    ]);
    expect(run.stderr).toMatch(/^step 2\/2  loss \d\.\d{4}  val \d\.\d{4}  lr \S+  \d+(\.\d)?k? tok\/s  ETA 0s\n$/); // not a TTY: a line per log step
    expect(run.status).toBe(0);
    expect(run.stdout).toMatch(/tiny: trained steps 1\.\.2 on cpu, loss \d\.\d{4}, val_loss \d\.\d{4}.*\ncheckpoint .*ck2\/step-00000002\.safetensors/);
    expect(gen.status).toBe(0);
    const greedy = await generate({ checkpoint: good, prompt: "the ", tokens: 5, temperature: 0 });
    expect(gen.stdout).toBe(greedy.text + "\n");
    expect(corrupt.status).toBe(1);
    expect(corrupt.stdout).toBe("");
    expect(corrupt.stderr).toMatch(/^fogc: .*step-00000001\.safetensors: truncated.*delete it/);
    expect(corrupt.stderr).not.toMatch(/\n\s+at /); // no stack trace
    expect(missing.status).toBe(1);
    expect(missing.stderr).toMatch(/^fogc: no such file: .*nope\.fog\n$/);
    expect(noDir.status).toBe(1);
    expect(noDir.stderr).toMatch(/^fogc: --on-warning checkpoint needs --checkpoint DIR/);
  });
});
