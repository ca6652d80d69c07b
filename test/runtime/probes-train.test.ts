// Kurtosis probes in training (CPU executor, a two-layer width-16 model): the JSONL values equal a direct
// computation on the reference, `every` is respected, probes do not change the run, and kurtosis
// warnings reach the log, the progress stream and `--on-warning continue|checkpoint|stop` (and resume).
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { probeOutputs, stripProbes } from "../../compiler/probes.js";
import { checkpointPath, listCheckpoints, readCheckpoint } from "../../runtime/checkpoint.js";
import { BatchSampler, loadDataset } from "../../runtime/data.js";
import type { MonitorOptions, Warning } from "../../runtime/kurtosis.js";
import { runReference } from "../../runtime/reference.js";
import { ScaleState } from "../../runtime/scale-state.js";
import { compileForRun, type KurtosisWarningEvent, type LogRecord, RunError, train, type TrainOptions } from "../../runtime/train.js";

const FOG = (probes: string) => `
model tiny {
  vocab = 256  context = 8  width = 16  layers = 2  heads = 2  mlp_width = 32
  head { tied = true  norm = rmsnorm(eps = 1e-5) }
  attention attn { rope = rope }
  mlp ffn { activation = swiglu }
  block {
    h = h + attn(rmsnorm(h))
    h = h + ffn(rmsnorm(h))
  }
  precision = fp8
  ${probes}
  train {
    data = "text.txt"  tokenizer = bytes  batch = 2  seq_len = 8  steps = 6  seed = 3
    optimizer = adamw(lr = 1e-2, beta1 = 0.9, beta2 = 0.95, eps = 1e-8, weight_decay = 0.1, clip = 1.0)
    schedule = constant(warmup = 1)
    eval_every = 100  eval_batches = 1  log_every = 1  val_fraction = 0.1
  }
}
`;

const made: string[] = [];
afterAll(() => made.forEach((d) => rmSync(d, { recursive: true, force: true })));

function workspace(probes = "probes { every = 2 }"): { dir: string; fog: string } {
  const dir = mkdtempSync(join(tmpdir(), "fogc-probes-"));
  made.push(dir);
  const fog = join(dir, "tiny.fog");
  writeFileSync(fog, FOG(probes));
  writeFileSync(join(dir, "text.txt"), "the cat sat on the mat. the dog sat on the log. a cat and a dog met. ".repeat(40));
  return { dir, fog };
}

const quiet = { progress: null } satisfies Partial<TrainOptions>;
type Line = LogRecord | KurtosisWarningEvent;
const readLog = (path: string): Line[] => readFileSync(path, "utf8").trim().split("\n").map((l) => JSON.parse(l) as Line);
const records = (lines: Line[]): LogRecord[] => lines.filter((l): l is LogRecord => !("event" in l));

/** mean over rows of mean(x⁴)/mean(x²)² of the rows of `parts` concatenated (papers.md §7.1), written out again. */
function perTokenKurtosis(parts: { data: Float64Array; width: number }[]): number {
  const rows = parts[0].data.length / parts[0].width;
  let sum = 0;
  for (let r = 0; r < rows; r++) {
    const v = parts.flatMap(({ data, width }) => Array.from(data.subarray(r * width, (r + 1) * width)));
    const m2 = v.reduce((a, x) => a + x * x, 0) / v.length;
    const m4 = v.reduce((a, x) => a + x ** 4, 0) / v.length;
    sum += m4 / m2 ** 2;
  }
  return sum / rows;
}

describe("probes in training", () => {
  it("logs, every `every` steps, the kurtosis of the step's forward pass (= a direct computation) and the layer means", async () => {
    const { dir, fog } = workspace();
    const log = join(dir, "run.jsonl");
    const ck = join(dir, "ck");
    await train({ file: fog, backend: "cpu", steps: 4, log, checkpoint: ck, checkpointEvery: 1, ...quiet });
    const recs = records(readLog(log));
    expect(recs.map((r) => r.step)).toEqual([1, 2, 3, 4]);
    expect(recs.map((r) => Object.keys(r.kurtosis).length)).toEqual([0, 24, 0, 24]); // 8 tensors × 2 layers + 8 means

    // Step s runs on the weights, FP8 scales and batch the checkpoint of step s − 1 holds.
    const program = compileForRun(fog, {});
    const g = stripProbes(program.train);
    const data = await loadDataset(program.model.train, dir);
    for (const step of [2, 4]) {
      const ckpt = readCheckpoint(checkpointPath(ck, step - 1));
      const sampler = new BatchSampler(data.train, 2, 8, 3);
      sampler.restore(ckpt.meta.sampler);
      const batch = sampler.next();
      const scales = new ScaleState(g.scaleSlots);
      scales.restore(ckpt.state.scales);
      const params = new Map(g.nodes.filter((n) => n.op === "param").map((n) => [n.id, ckpt.state.params.get(n.name)!]));
      const values = runReference(g, { params, tokens: batch.tokens, targets: batch.targets }, { precision: "f32", scaleState: scales });
      const logged = recs[step - 1].kurtosis;
      for (const tap of g.taps) {
        const key = `${tap.probe}_layer${String(tap.layer).padStart(2, "0")}`;
        const direct = perTokenKurtosis(tap.nodes.map((id) => ({ data: values.get(id)!, width: g.nodes[id].shape[1] })));
        expect(logged[key]).toBeCloseTo(direct, 5);
        expect(Math.fround(logged[key])).toBe(logged[key]); // an f32 result, exactly as computed
      }
      for (const t of ["activation", "qkv_input", "qkv", "q", "k", "mlp_intermediate", "mlp_post_act", "mlp_out"]) {
        expect(logged[`${t}_avg`]).toBeCloseTo((logged[`${t}_layer00`] + logged[`${t}_layer01`]) / 2, 12);
      }
    }
  });

  it("probes change nothing else: the same losses and state with probes on every step and with probes off", async () => {
    const on = workspace("probes { every = 1 }");
    const off = workspace("probes { enabled = false }");
    const a = await train({ file: on.fog, backend: "cpu", steps: 4, checkpoint: join(on.dir, "ck"), ...quiet });
    const b = await train({ file: off.fog, backend: "cpu", steps: 4, checkpoint: join(off.dir, "ck"), log: join(off.dir, "log.jsonl"), ...quiet });
    expect(a.losses).toEqual(b.losses);
    expect(readCheckpoint(a.checkpoint!).state).toEqual(readCheckpoint(b.checkpoint!).state);
    for (const r of records(readLog(join(off.dir, "log.jsonl")))) expect(r.kurtosis).toEqual({});
    expect(probeOutputs(compileForRun(off.fog, {}).train)).toEqual([]);
  });

  // A hair-trigger monitor: any point above the previous one's is out of band, so warnings come at once.
  const trigger: Partial<MonitorOptions> = { warmup: 0, minHistory: 1, window: 1, k: 0, minRise: 0, consecutive: 1, jump: 1e9 };

  it("warnings go to the JSONL log and one progress line per step; continue / checkpoint / stop", async () => {
    const { dir, fog } = workspace("probes { every = 1  tensors = [qkv_input, mlp_out] }");
    const lines: string[] = [];
    const progress = { write: (t: string) => lines.push(t) };
    const log = join(dir, "a.jsonl");
    const a = await train({ file: fog, backend: "cpu", log, monitor: trigger, progress });
    expect(a.warnings.length).toBeGreaterThan(0);
    const events = readLog(log).filter((l): l is KurtosisWarningEvent => "event" in l && l.event === "kurtosis_warning");
    expect(events.map(({ event, action, ...w }) => (expect([event, action]).toEqual(["kurtosis_warning", "continue"]), w))).toEqual(a.warnings);
    const first: Warning = a.warnings[0];
    expect(first.step).toBeGreaterThan(1);
    const warnLines = lines.filter((l) => l.startsWith("fogc: kurtosis warning"));
    expect(warnLines.length).toBe(new Set(a.warnings.map((w) => w.step)).size);
    expect(warnLines[0]).toMatch(new RegExp(`^fogc: kurtosis warning at step ${first.step}: layer ${first.layer} ${first.probe} kurtosis [\\d.]+, baseline [\\d.]+, `));

    const stop = await train({ file: fog, backend: "cpu", checkpoint: join(dir, "stop"), onWarning: "stop", monitor: trigger, ...quiet });
    expect(stop.stopped).toEqual({ step: first.step, warning: first });
    expect(stop.losses).toEqual(a.losses.slice(0, first.step));
    expect(stop.checkpoint).toBe(checkpointPath(join(dir, "stop"), first.step));
    expect(listCheckpoints(join(dir, "stop")).map((c) => c.step)).toEqual([first.step]);

    const cont = await train({ file: fog, backend: "cpu", checkpoint: join(dir, "cont"), onWarning: "checkpoint", monitor: trigger, ...quiet });
    expect(cont.losses).toEqual(a.losses);
    expect(listCheckpoints(join(dir, "cont")).map((c) => c.step)).toEqual([...new Set([...a.warnings.map((w) => w.step), 6])].sort((x, y) => x - y));

    await expect(train({ file: fog, backend: "cpu", onWarning: "checkpoint", ...quiet })).rejects.toThrow(/--on-warning checkpoint needs --checkpoint DIR/);
    await expect(train({ file: fog, backend: "cpu", monitor: { window: 0 }, ...quiet })).rejects.toThrow(RunError);
  });

  it("after --resume the monitor continues from the log: the same warnings as an uninterrupted run", async () => {
    const { dir, fog } = workspace("probes { every = 1  tensors = [qkv_input, mlp_out] }");
    const monitor = { ...trigger, window: 3, minHistory: 3 };
    const full = await train({ file: fog, backend: "cpu", monitor, ...quiet });
    const log = join(dir, "r.jsonl");
    const ck = join(dir, "ck");
    const crash = new Error("crash");
    const base = { file: fog, backend: "cpu", log, checkpoint: ck, checkpointEvery: 3, monitor, ...quiet } as const;
    await expect(train({ ...base, onLog: (r) => { if (r.step === 5) throw crash; } })).rejects.toBe(crash);
    const resumed = await train({ ...base, resume: true });
    expect(resumed.startStep).toBe(3);
    expect(resumed.warnings).toEqual(full.warnings.filter((w) => w.step > 3));
    expect(full.warnings.some((w) => w.step > 3)).toBe(true);
    // Without a log to replay, the monitor would start over: no baseline until step 7.
    const other = { ...base, checkpoint: join(dir, "ck2") };
    await expect(train({ ...other, onLog: (r) => { if (r.step === 5) throw crash; } })).rejects.toBe(crash);
    const cold = await train({ ...other, log: join(dir, "empty.jsonl"), resume: true });
    expect(cold.losses).toEqual(resumed.losses);
    expect(cold.warnings).toEqual([]);
  });
});
