// The divergence demonstration (docs/divergence.md): a sweep of architecture × peak learning rate ×
// amax-history length in FP8DPA (plus optional BF16 controls), each run through the library's `train`
// with the kurtosis early warning on (`--on-warning continue`), writing <out>/<run>.jsonl as it goes. After every run
// (and with --analyze, from the logs alone) it prints one row per run: smoothed loss at a few steps,
// the minimum, the first loss spike, the first warning and the lead (spike − warning).
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { parseProbeKey } from "../compiler/probes.js";
import { KurtosisMonitor, type MonitorOptions } from "../runtime/kurtosis.js";
import { writeReport } from "../runtime/report/write.js";
import { type BackendChoice, RunError, train } from "../runtime/train.js";

const HERE = dirname(fileURLToPath(import.meta.url));
const EXPERIMENTS = resolve(HERE, "../examples/experiments");

const USAGE = `Usage: node --import tsx bench/divergence.ts [options]
  --out DIR          where each run's .fog variant and .jsonl log go (default runs/divergence)
  --steps N          steps per run (default: the models' 1500; --smoke: 30)
  --archs A,B        architectures, in order (default llama3,fog_max; also op, olmo2)
  --lrs X,Y          peak learning rates (default 1e-2,3e-2; --smoke: 3e-2)
  --histories H,G    amax history lengths of the delayed scaling (default 16,1024; --smoke: 16)
  --bf16 A,B         also run these architectures in BF16 at each rate, after the FP8DPA runs (controls)
  --only RUN[,RUN]   run only these (names as --list prints them)
  --backend B        auto | cpu | webgpu (default auto)
  --budget-s S       start no new run once S seconds have passed since the sweep began
  --spike-delta D    a spike is the smoothed loss D nats above its running minimum (default 0.1)
  --spike-after N    judge spikes only after step N, the learning-rate warmup (default 100; --smoke: 5)
  --monitor K=V,...  judge the logged kurtosis again with these KurtosisMonitor settings (e.g.
                     warmup=30,k=4; minRise and jump in log units): the table's warnings come from
                     that replay instead of the run's own (which used the defaults of docs/probes.md)
  --smoke            toy size (2 layers, width 32, batch 4 × 32, probes every 2 steps): a quick check
  --list             print the runs and their order, run nothing
  --no-report        do not write <out>/<cell>.html and PNGs (fogc report of the runs of each rate and history)
  --analyze          run nothing; print the table (and reports) from the logs already in --out`;

/** One run of the sweep. */
interface RunSpec {
  name: string;
  arch: string;
  lr: number;
  /** Amax history of the FP8DPA recipe; null for a BF16 control run. */
  history: number | null;
}

/** The calibration-size model of each architecture: examples/experiments/<file>, model <model>. */
const ARCHS: Record<string, { file: string; model: string }> = {
  llama3: { file: "llama3-calib.fog", model: "llama3_calib" },
  fog_max: { file: "fog-max-calib.fog", model: "fog_max_calib" },
  op: { file: "op-calib.fog", model: "op_calib" },
  olmo2: { file: "olmo2-calib.fog", model: "olmo2_calib" },
};

const SMOKE_WARMUP = 5;
/**
 * The toy size of --smoke, written into each variant: small enough that 30 steps take seconds on
 * the CPU backend, with probes every 2 steps so the monitor (5 warm-up + 8 baseline points) judges
 * series from step 26.
 */
const SMOKE = {
  model: { context: 32, width: 32, layers: 2, heads: 2, kv_heads: 1, head_dim: 16, mlp_width: 64 },
  train: { batch: 4, seq_len: 32, schedule: `constant(warmup = ${SMOKE_WARMUP})`, eval_every: 20, eval_batches: 1, log_every: 2 },
  probesEvery: 2,
  steps: 30,
  /** Its learning-rate warmup (the schedule above): spikes are judged after it. */
  warmup: SMOKE_WARMUP,
  lrs: [3e-2],
  histories: [16],
};

/** Logged points averaged into the smoothed loss: 5 points are 50 steps at log_every 10. */
const SMOOTH_POINTS = 5;

function fail(message: string): never {
  process.stderr.write(`divergence: ${message}\n`);
  process.exit(1);
}

/** `1e-2` for 0.01: run names and tables stay short and unambiguous. */
function fmtLr(lr: number): string {
  const [m, e] = lr.toExponential().split("e");
  return `${m}e${Number(e)}`;
}

/** The runs of one rate and history (or BF16) form a cell, with one report: `lr1e-2-h16`, `lr1e-2-bf16`. */
function cellKey(run: Pick<RunSpec, "lr" | "history">): string {
  return `lr${fmtLr(run.lr)}-${run.history === null ? "bf16" : `h${run.history}`}`;
}

function runName(arch: string, lr: number, history: number | null): string {
  return `${arch.replace(/_/g, "-")}-${cellKey({ lr, history })}`;
}

/**
 * The sweep in the order it runs: history-major, then learning rate, then architecture, so each
 * Llama3 run is followed by the FOG run it is compared with and a budget cut leaves whole pairs.
 */
function plan(archs: string[], lrs: number[], histories: number[], bf16: string[]): RunSpec[] {
  const runs: RunSpec[] = [];
  for (const history of [...histories, ...(bf16.length ? [null] : [])]) {
    for (const lr of lrs) for (const arch of history === null ? bf16 : archs) runs.push({ name: runName(arch, lr, history), arch, lr, history });
  }
  return runs;
}

/**
 * The .fog file of one run: the architecture's calibration model with this run's peak rate and
 * amax history (and, with --smoke, the toy sizes). Written next to the log, so `fogc run` on it
 * repeats the run.
 */
function variantSource(run: RunSpec, outDir: string, smoke: boolean): { text: string; model: string } {
  const base = ARCHS[run.arch];
  const model = `${base.model}_${cellKey(run).replace(/[^a-z0-9]/gi, "_")}`;
  const importPath = relative(outDir, join(EXPERIMENTS, base.file)).split("\\").join("/");
  const lines = [
    `// Written by bench/divergence.ts (docs/divergence.md): ${run.arch} in ${run.history === null ? "BF16" : `FP8DPA, amax history ${run.history}`},`,
    `// peak lr ${run.lr}${smoke ? ", at the --smoke toy size" : ""}.`,
    `import "${importPath}"`,
    "",
    `model ${model} extends ${base.model} {`,
    ...(smoke ? Object.entries(SMOKE.model).map(([k, v]) => `  ${k} = ${v}`) : []),
    run.history === null ? "  precision = bf16" : `  precision { scaling = delayed(history = ${run.history}, margin = 0, amax = max) }`,
    "  train {",
    `    optimizer = adamw(lr = ${run.lr}, beta1 = 0.9, beta2 = 0.95, eps = 1e-8, weight_decay = 0.1, clip = 1.0)`,
    ...(smoke ? Object.entries(SMOKE.train).map(([k, v]) => `    ${k} = ${v}`) : []),
    "  }",
    ...(smoke ? [`  probes { every = ${SMOKE.probesEvery} }`] : []),
    "}",
    "",
  ];
  return { text: lines.join("\n"), model };
}

// ---------------------------------------------------------------- analysis of one log

function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const h = s.length >> 1;
  return s.length % 2 ? s[h] : (s[h - 1] + s[h]) / 2;
}

interface LogPoint {
  step: number;
  loss: number;
}

interface WarningEvent {
  step: number;
  series: string;
  reason: string;
  value: number;
  baseline: number;
}

export interface RunSummary {
  name: string;
  /** Last step logged. */
  lastStep: number;
  /** Smoothed loss at the report steps (NaN where the run has not got there). */
  lossAt: { step: number; loss: number }[];
  minLoss: number;
  minStep: number;
  /**
   * Step-to-step noise of one logged loss: 1.4826·MAD of successive differences / √2 (robust to the
   * trend and to spikes). The smoothed loss's noise is about this / √SMOOTH_POINTS; the spike delta
   * should be several times that.
   */
  noise: number;
  /** Largest excess of the smoothed loss over its running minimum (nats); Infinity when it went non-finite. */
  maxRise: number;
  /** First step at which the loss was non-finite or the smoothed loss exceeded its running minimum by delta. */
  spike?: { step: number; kind: "non_finite" | "rise"; loss: number };
  warnings: WarningEvent[];
  /** spike.step − the step of the first warning, and of the last warning at or before the spike (when there is one). */
  lead?: { first: number; last: number };
}

/**
 * Reads a run's log: the loss records (the later record of a step wins, null loss = NaN) and the
 * kurtosis_warning events. Malformed lines (a killed run's half-written last line) are skipped.
 */
interface RunLog {
  points: LogPoint[];
  warnings: WarningEvent[];
  /** Per-layer kurtosis of each probe step, in step order (null in the log = NaN). */
  kurtosis: { step: number; values: Record<string, number> }[];
  steps?: number;
}

function readLog(path: string): RunLog {
  const byStep = new Map<number, number>();
  const kurtosis = new Map<number, Record<string, number>>();
  let steps: number | undefined;
  const warnings: WarningEvent[] = [];
  for (const line of readFileSync(path, "utf8").split("\n")) {
    if (!line.trim()) continue;
    let rec: Record<string, unknown>;
    try {
      rec = JSON.parse(line) as Record<string, unknown>;
    } catch {
      continue;
    }
    if (rec.event === "kurtosis_warning") warnings.push(rec as unknown as WarningEvent);
    else if (rec.event === "run" && typeof rec.steps === "number") steps = rec.steps;
    else if (rec.event === undefined && typeof rec.step === "number" && "loss" in rec) {
      byStep.set(rec.step, typeof rec.loss === "number" ? rec.loss : NaN);
      // What the run's monitor was fed: the per-layer keys (the record adds `<probe>_avg`).
      const perLayer = Object.entries((rec.kurtosis ?? {}) as Record<string, number | null>).filter(([k]) => parseProbeKey(k));
      if (perLayer.length) kurtosis.set(rec.step, Object.fromEntries(perLayer.map(([k, v]) => [k, v ?? NaN])));
    }
  }
  const points = [...byStep].sort((a, b) => a[0] - b[0]).map(([step, loss]) => ({ step, loss }));
  const probeSteps = [...kurtosis].sort((a, b) => a[0] - b[0]).map(([step, values]) => ({ step, values }));
  return { points, warnings, kurtosis: probeSteps, ...(steps !== undefined ? { steps } : {}) };
}

/** The warnings a KurtosisMonitor with `options` raises on a run's logged kurtosis, as train() feeds it. */
function replayWarnings(log: RunLog, options: Partial<MonitorOptions>): WarningEvent[] {
  const monitor = new KurtosisMonitor(options);
  const lastFinite = log.points.find((p) => !Number.isFinite(p.loss))?.step ?? Infinity;
  // train() does not feed the monitor the probes of a step whose loss is not finite.
  return log.kurtosis.filter((k) => k.step < lastFinite).flatMap((k) => monitor.observe(k.step, k.values));
}

/** `--monitor warmup=30,k=4` → { warmup: 30, k: 4 }, checked against MonitorOptions' keys. */
function monitorOptions(text: string): Partial<MonitorOptions> {
  const known = ["window", "warmup", "minHistory", "k", "minRise", "consecutive", "jump"];
  const out: Record<string, number> = {};
  for (const item of text.split(",").map((s) => s.trim()).filter(Boolean)) {
    const [key, value] = item.split("=");
    if (!known.includes(key)) fail(`--monitor: unknown setting '${key}' (known: ${known.join(", ")})`);
    const n = Number(value);
    if (value === undefined || !Number.isFinite(n)) fail(`--monitor: '${item}' needs a number, as in ${key}=${key === "minRise" ? "0.336" : "5"}`);
    out[key] = n;
  }
  try {
    new KurtosisMonitor(out);
  } catch (e) {
    fail(`--monitor: ${(e as Error).message}`);
  }
  return out;
}

/**
 * The spike rule (docs/divergence.md): the smoothed loss at a logged step is the mean of the last
 * SMOOTH_POINTS logged losses; the run spikes at the first step whose loss is non-finite, or whose
 * smoothed loss exceeds the minimum of the earlier smoothed losses by `delta` nats, judged after step
 * `after` (the learning-rate warmup, whose first fast drop and bumps are not a divergence).
 */
export function summarize(name: string, points: LogPoint[], warnings: WarningEvent[], totalSteps: number, delta: number, after = 0): RunSummary {
  const smooth: LogPoint[] = [];
  let runningMin = Infinity;
  let minStep = 0;
  let maxRise = 0;
  let spike: RunSummary["spike"];
  for (let i = 0; i < points.length; i++) {
    const { step, loss } = points[i];
    if (!Number.isFinite(loss)) {
      spike ??= { step, kind: "non_finite", loss }; // non-finite counts from step 1
      maxRise = Infinity;
      break; // train() ends a run at its first non-finite loss
    }
    if (i + 1 < SMOOTH_POINTS) continue;
    const window = points.slice(i + 1 - SMOOTH_POINTS, i + 1);
    const s = window.reduce((a, p) => a + p.loss, 0) / SMOOTH_POINTS;
    smooth.push({ step, loss: s });
    if (Number.isFinite(runningMin) && step > after) {
      maxRise = Math.max(maxRise, s - runningMin);
      if (!spike && s > runningMin + delta) spike = { step, kind: "rise", loss: s };
    }
    if (s < runningMin) {
      runningMin = s;
      minStep = step;
    }
  }
  // calibration.md's 300 / 600 / 900 / 1500 of 1,500 steps; each the last smoothed point at or before it.
  const reportSteps = [1, 2, 3, 5].map((k) => Math.round((k * totalSteps) / 5));
  const lastStep = points.at(-1)?.step ?? 0;
  const lossAt = reportSteps.map((step) => ({ step, loss: lastStep >= step ? (smooth.filter((p) => p.step <= step).at(-1)?.loss ?? NaN) : NaN }));
  const finite = points.filter((p) => Number.isFinite(p.loss)).map((p) => p.loss);
  const diffs = finite.slice(1).map((x, i) => x - finite[i]);
  const noise = diffs.length >= 2 ? (1.4826 * median(diffs.map((d) => Math.abs(d - median(diffs))))) / Math.SQRT2 : NaN;
  const before = spike ? warnings.filter((w) => w.step <= spike.step) : [];
  const lead = spike && before.length ? { first: spike.step - before[0].step, last: spike.step - before.at(-1)!.step } : undefined;
  return {
    name,
    lastStep,
    lossAt,
    minLoss: runningMin,
    minStep,
    noise,
    maxRise,
    ...(spike ? { spike } : {}),
    warnings,
    ...(lead !== undefined ? { lead } : {}),
  };
}

function table(rows: RunSummary[]): string {
  const f = (x: number, d = 3): string => (Number.isFinite(x) ? x.toFixed(d) : x === Infinity ? "inf" : "-");
  const header = ["run", "last", ...(rows[0]?.lossAt.map((p) => `loss@${p.step}`) ?? []), "min (step)", "noise", "max rise", "spike (kind)", "first warning", "warnings", "lead first/last"];
  const body = rows.map((r) => [
    r.name,
    String(r.lastStep),
    ...r.lossAt.map((p) => f(p.loss)),
    Number.isFinite(r.minLoss) ? `${f(r.minLoss)} (${r.minStep})` : "-",
    f(r.noise),
    f(r.maxRise),
    r.spike ? `${r.spike.step} (${r.spike.kind === "non_finite" ? "NaN" : "rise"})` : "none",
    r.warnings[0] ? `${r.warnings[0].step} ${r.warnings[0].series} (${r.warnings[0].reason})` : "none",
    String(r.warnings.length),
    r.lead ? `${r.lead.first}/${r.lead.last}` : "-",
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...body.map((b) => b[i].length)));
  return [header, ...body].map((cells) => cells.map((c, i) => c.padEnd(widths[i])).join("  ").trimEnd()).join("\n");
}

// ---------------------------------------------------------------- the sweep

function list(value: string | undefined, what: string, parse: (s: string) => number | string): (number | string)[] | undefined {
  if (value === undefined) return undefined;
  const items = value.split(",").map((s) => s.trim()).filter(Boolean);
  if (!items.length) fail(`${what} is empty`);
  return items.map(parse);
}

function positiveNumber(what: string) {
  return (s: string): number => {
    const n = Number(s);
    if (!(Number.isFinite(n) && n > 0)) fail(`${what}: '${s}' is not a positive number`);
    return n;
  };
}

function positiveInt(what: string) {
  return (s: string): number => {
    const n = Number(s);
    if (!(Number.isInteger(n) && n >= 1)) fail(`${what}: '${s}' is not an integer ≥ 1`);
    return n;
  };
}

async function main(): Promise<void> {
  let args;
  try {
    args = parseArgs({
      options: {
        out: { type: "string", default: "runs/divergence" },
        steps: { type: "string" },
        archs: { type: "string" },
        lrs: { type: "string" },
        histories: { type: "string" },
        only: { type: "string" },
        bf16: { type: "string" },
        backend: { type: "string", default: "auto" },
        "budget-s": { type: "string" },
        "spike-delta": { type: "string", default: "0.1" },
        "spike-after": { type: "string" },
        monitor: { type: "string" },
        smoke: { type: "boolean", default: false },
        list: { type: "boolean", default: false },
        analyze: { type: "boolean", default: false },
        "no-report": { type: "boolean", default: false },
        help: { type: "boolean", default: false },
      },
      strict: true,
    }).values;
  } catch (e) {
    fail(`${(e as Error).message}\n${USAGE}`);
  }
  if (args.help) {
    console.log(USAGE);
    return;
  }
  const smoke = args.smoke;
  const archs = (list(args.archs, "--archs", (s) => s) ?? ["llama3", "fog_max"]) as string[];
  const bf16 = (list(args.bf16, "--bf16", (s) => s) ?? []) as string[];
  for (const a of [...archs, ...bf16]) if (!ARCHS[a]) fail(`--archs/--bf16: unknown architecture '${a}' (known: ${Object.keys(ARCHS).join(", ")})`);
  const lrs = (list(args.lrs, "--lrs", positiveNumber("--lrs")) ?? (smoke ? SMOKE.lrs : [1e-2, 3e-2])) as number[];
  const histories = (list(args.histories, "--histories", positiveInt("--histories")) ?? (smoke ? SMOKE.histories : [16, 1024])) as number[];
  const steps = args.steps !== undefined ? positiveInt("--steps")(args.steps) : smoke ? SMOKE.steps : undefined;
  const budget = args["budget-s"] !== undefined ? positiveNumber("--budget-s")(args["budget-s"]) : Infinity;
  const delta = positiveNumber("--spike-delta")(args["spike-delta"]);
  const spikeAfter = args["spike-after"] !== undefined ? positiveInt("--spike-after")(args["spike-after"]) : smoke ? SMOKE.warmup : 100;
  const backend = args.backend as BackendChoice;
  if (!["auto", "cpu", "webgpu"].includes(backend)) fail(`--backend must be auto, cpu or webgpu, got '${backend}'`);
  const outDir = resolve(args.out);
  const replay = args.monitor !== undefined ? monitorOptions(args.monitor) : undefined;

  let runs = plan(archs, lrs, histories, bf16);
  if (args.only !== undefined) {
    const wanted = list(args.only, "--only", (s) => s) as string[];
    const known = new Set(runs.map((r) => r.name));
    for (const w of wanted) if (!known.has(w)) fail(`--only: no run named '${w}' in this sweep (runs: ${[...known].join(", ")})`);
    runs = runs.filter((r) => wanted.includes(r.name));
  }
  if (args.list) {
    for (const r of runs) console.log(r.name);
    return;
  }

  const logOf = (r: RunSpec): string => join(outDir, `${r.name}.jsonl`);
  const summaries = (): RunSummary[] =>
    runs
      .filter((r) => existsSync(logOf(r)))
      .map((r) => {
        const log = readLog(logOf(r));
        const warnings = replay ? replayWarnings(log, replay) : log.warnings;
        // The report steps scale with the run's planned length (its `run` line; 1500 in the model files).
        return summarize(r.name, log.points, warnings, log.steps ?? steps ?? 1500, delta, spikeAfter);
      });
  /** fogc report of the runs of one cell (Llama3 and FOG overlaid), with PNGs. */
  const cellReport = async (cell: RunSpec): Promise<void> => {
    const key = cellKey(cell);
    const logs = runs.filter((r) => cellKey(r) === key && existsSync(logOf(r)));
    if (args["no-report"] || !logs.length) return;
    try {
      const written = await writeReport(logs.map(logOf), {
        out: join(outDir, `${key}.html`),
        png: join(outDir, "png", key),
        labels: logs.map((r) => r.name),
        title: `${cell.history === null ? "BF16" : `FP8DPA, amax history ${cell.history},`} at peak lr ${cell.lr}: ${logs.map((r) => r.arch).join(" vs ")}`,
      });
      console.log(`  report: ${relative(process.cwd(), written.html)}, ${written.pngs.length} PNGs in ${relative(process.cwd(), join(outDir, "png", key))}`);
    } catch (e) {
      console.log(`  report of ${key} not written: ${(e as Error).message}`);
    }
  };
  const report = (): void => {
    const rows = summaries();
    console.log(`\n${table(rows)}\n(loss: mean of the last ${SMOOTH_POINTS} logged training losses; noise: sd of one logged loss; spike: non-finite, or after step ${spikeAfter} that mean > its running minimum + ${delta}; lead = spike − the first / the last warning before it` +
        `${replay ? `; warnings replayed with ${JSON.stringify(replay)}` : ""})`);
    writeFileSync(join(outDir, "summary.json"), JSON.stringify({ delta, spikeAfter, smoothPoints: SMOOTH_POINTS, runs: rows }, (_, v) => (typeof v === "number" && !Number.isFinite(v) ? String(v) : v), 1) + "\n");
  };

  if (args.analyze) {
    if (!existsSync(outDir)) fail(`--analyze: ${outDir} does not exist`);
    report();
    for (const cell of runs.filter((r, i) => runs.findIndex((q) => cellKey(q) === cellKey(r)) === i)) await cellReport(cell);
    return;
  }

  mkdirSync(outDir, { recursive: true });
  const began = performance.now();
  console.log(`divergence: ${runs.length} runs (${runs.map((r) => r.name).join(", ")}) → ${outDir}${Number.isFinite(budget) ? `; budget ${budget} s` : ""}`);
  for (const run of runs) {
    const elapsed = (performance.now() - began) / 1000;
    if (elapsed > budget) {
      console.log(`divergence: ${elapsed.toFixed(0)} s elapsed, over the ${budget} s budget: not starting ${run.name} and the runs after it`);
      break;
    }
    const variant = variantSource(run, outDir, smoke);
    const fogPath = join(outDir, `${run.name}.fog`);
    const logPath = join(outDir, `${run.name}.jsonl`);
    writeFileSync(fogPath, variant.text);
    if (existsSync(logPath)) {
      console.log(`divergence: replacing the earlier ${logPath}`);
      rmSync(logPath);
    }
    const t0 = performance.now();
    console.log(`\n== ${run.name}: ${run.arch} ${run.history === null ? "BF16" : `FP8DPA, amax history ${run.history}`}, lr ${run.lr} (${relative(process.cwd(), fogPath)})`);
    // Pass the run's notices and warning lines through; its per-step progress is replaced by one line per 100 steps.
    const progress = {
      write(text: string): boolean {
        for (const line of text.split("\n")) if (line.startsWith("fogc:")) console.log(`  ${line}`);
        return true;
      },
    };
    try {
      const result = await train({
        file: fogPath,
        model: variant.model,
        ...(steps !== undefined ? { steps } : {}),
        backend,
        log: logPath,
        onWarning: "continue",
        progress,
        onLog: (r) => {
          if (r.step % (smoke ? 10 : 100) === 0) {
            console.log(`  ${run.name} step ${r.step}  loss ${r.loss.toFixed(4)}${r.val_loss !== undefined ? `  val ${r.val_loss.toFixed(4)}` : ""}  ${((performance.now() - t0) / 1000).toFixed(0)} s (${((performance.now() - t0) / r.step).toFixed(0)} ms/step with startup)`);
          }
        },
      });
      console.log(`  ${run.name}: ${result.losses.length} steps on ${result.backend} in ${result.seconds.toFixed(1)} s (${((1000 * result.seconds) / Math.max(1, result.losses.length)).toFixed(1)} ms/step), ${result.warnings.length} warnings`);
    } catch (e) {
      // A diverged loss ends the run with a RunError after its record is logged: that is a result.
      // Any other failure is reported and the sweep goes on, so one bad run does not cost the others.
      if (e instanceof RunError && e.diagnostics.length) fail(`${e.message}\n${e.diagnostics.map((d) => d.message).join("\n")}`);
      console.log(`  ${run.name}: ${e instanceof RunError ? "" : "failed: "}${(e as Error).message}`);
    }
    report();
    // A cell's report (a few seconds of rendering) once its last run is done; --analyze draws any.
    if (runs.filter((r) => cellKey(r) === cellKey(run)).at(-1) === run) await cellReport(run);
  }
  console.log(`divergence: done in ${((performance.now() - began) / 1000).toFixed(0)} s`);
}

// Run only as a script, so that the analysis can be imported (tests, notebooks) without running a sweep.
if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) await main();
