// The divergence demonstration (docs/divergence.md): a sweep of architecture × peak learning rate ×
// amax-history length, every run in FP8DPA through the library's `train` with the kurtosis early
// warning on (`--on-warning continue`), each writing <out>/<run>.jsonl as it goes. After every run
// (and with --analyze, from the logs alone) it prints one row per run: smoothed loss at a few steps,
// the minimum, the first loss spike, the first warning and the lead (spike − warning).
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { type BackendChoice, RunError, train } from "../runtime/train.js";

const HERE = dirname(fileURLToPath(import.meta.url));
const EXPERIMENTS = resolve(HERE, "../examples/experiments");

const USAGE = `Usage: node --import tsx bench/divergence.ts [options]
  --out DIR          where each run's .fog variant and .jsonl log go (default runs/divergence)
  --steps N          steps per run (default: the models' 1500; --smoke: 30)
  --archs A,B        architectures, in order (default llama3,fog_max; also op, olmo2)
  --lrs X,Y          peak learning rates (default 1e-2,3e-2; --smoke: 3e-2)
  --histories H,G    amax history lengths of the delayed scaling (default 16,1024; --smoke: 16)
  --only RUN[,RUN]   run only these (names as --list prints them)
  --backend B        auto | cpu | webgpu (default auto)
  --budget-s S       start no new run once S seconds have passed since the sweep began
  --spike-delta D    a spike is the smoothed loss D nats above its running minimum (default 0.1)
  --smoke            toy size (2 layers, width 32, batch 4 × 32, probes every 2 steps): a quick check
  --list             print the runs and their order, run nothing
  --analyze          run nothing; print the table from the logs already in --out`;

/** One cell of the sweep. */
interface RunSpec {
  name: string;
  arch: string;
  lr: number;
  history: number;
}

/** The calibration-size model of each architecture: examples/experiments/<file>, model <model>. */
const ARCHS: Record<string, { file: string; model: string }> = {
  llama3: { file: "llama3-calib.fog", model: "llama3_calib" },
  fog_max: { file: "fog-max-calib.fog", model: "fog_max_calib" },
  op: { file: "op-calib.fog", model: "op_calib" },
  olmo2: { file: "olmo2-calib.fog", model: "olmo2_calib" },
};

/**
 * The toy size of --smoke, written into each variant: small enough that 30 steps take seconds on
 * the CPU backend, with probes every 2 steps so the monitor (5 warm-up + 8 baseline points) judges
 * series from step 26.
 */
const SMOKE = {
  model: { context: 32, width: 32, layers: 2, heads: 2, kv_heads: 1, head_dim: 16, mlp_width: 64 },
  train: { batch: 4, seq_len: 32, schedule: "constant(warmup = 5)", eval_every: 20, eval_batches: 1, log_every: 2 },
  probesEvery: 2,
  steps: 30,
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

function runName(arch: string, lr: number, history: number): string {
  return `${arch.replace(/_/g, "-")}-lr${fmtLr(lr)}-h${history}`;
}

/**
 * The sweep in the order it runs: history-major, then learning rate, then architecture, so each
 * Llama3 run is followed by the FOG run it is compared with and a budget cut leaves whole pairs.
 */
function plan(archs: string[], lrs: number[], histories: number[]): RunSpec[] {
  const runs: RunSpec[] = [];
  for (const history of histories) for (const lr of lrs) for (const arch of archs) runs.push({ name: runName(arch, lr, history), arch, lr, history });
  return runs;
}

/**
 * The .fog file of one run: the architecture's calibration model with this run's peak rate and
 * amax history (and, with --smoke, the toy sizes). Written next to the log, so `fogc run` on it
 * repeats the run.
 */
function variantSource(run: RunSpec, outDir: string, smoke: boolean): { text: string; model: string } {
  const base = ARCHS[run.arch];
  const model = `${base.model}_${run.name.slice(run.arch.length + 1).replace(/[^a-z0-9]/gi, "_")}`;
  const importPath = relative(outDir, join(EXPERIMENTS, base.file)).split("\\").join("/");
  const lines = [
    `// Written by bench/divergence.ts (docs/divergence.md): ${run.arch} in FP8DPA, peak lr ${run.lr},`,
    `// amax history ${run.history}${smoke ? ", at the --smoke toy size" : ""}.`,
    `import "${importPath}"`,
    "",
    `model ${model} extends ${base.model} {`,
    ...(smoke ? Object.entries(SMOKE.model).map(([k, v]) => `  ${k} = ${v}`) : []),
    `  precision { scaling = delayed(history = ${run.history}, margin = 0, amax = max) }`,
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
function readLog(path: string): { points: LogPoint[]; warnings: WarningEvent[] } {
  const byStep = new Map<number, number>();
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
    else if (typeof rec.step === "number" && "loss" in rec) byStep.set(rec.step, typeof rec.loss === "number" ? rec.loss : NaN);
  }
  const points = [...byStep].sort((a, b) => a[0] - b[0]).map(([step, loss]) => ({ step, loss }));
  return { points, warnings };
}

/**
 * The spike rule (docs/divergence.md): the smoothed loss at a logged step is the mean of the last
 * SMOOTH_POINTS logged losses; the run spikes at the first step whose loss is non-finite, or whose
 * smoothed loss exceeds the minimum of the earlier smoothed losses by `delta` nats.
 */
export function summarize(name: string, points: LogPoint[], warnings: WarningEvent[], totalSteps: number, delta: number): RunSummary {
  const smooth: LogPoint[] = [];
  let runningMin = Infinity;
  let minStep = 0;
  let maxRise = 0;
  let spike: RunSummary["spike"];
  for (let i = 0; i < points.length; i++) {
    const { step, loss } = points[i];
    if (!Number.isFinite(loss)) {
      spike ??= { step, kind: "non_finite", loss };
      maxRise = Infinity;
      break; // train() ends a run at its first non-finite loss
    }
    if (i + 1 < SMOOTH_POINTS) continue;
    const window = points.slice(i + 1 - SMOOTH_POINTS, i + 1);
    const s = window.reduce((a, p) => a + p.loss, 0) / SMOOTH_POINTS;
    smooth.push({ step, loss: s });
    if (Number.isFinite(runningMin)) {
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
  const before = spike ? warnings.filter((w) => w.step <= spike.step) : [];
  const lead = spike && before.length ? { first: spike.step - before[0].step, last: spike.step - before.at(-1)!.step } : undefined;
  return {
    name,
    lastStep,
    lossAt,
    minLoss: runningMin,
    minStep,
    maxRise,
    ...(spike ? { spike } : {}),
    warnings,
    ...(lead !== undefined ? { lead } : {}),
  };
}

function table(rows: RunSummary[]): string {
  const f = (x: number, d = 3): string => (Number.isFinite(x) ? x.toFixed(d) : x === Infinity ? "inf" : "-");
  const header = ["run", "last", ...(rows[0]?.lossAt.map((p) => `loss@${p.step}`) ?? []), "min (step)", "max rise", "spike (kind)", "first warning", "warnings", "lead first/last"];
  const body = rows.map((r) => [
    r.name,
    String(r.lastStep),
    ...r.lossAt.map((p) => f(p.loss)),
    Number.isFinite(r.minLoss) ? `${f(r.minLoss)} (${r.minStep})` : "-",
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
        backend: { type: "string", default: "auto" },
        "budget-s": { type: "string" },
        "spike-delta": { type: "string", default: "0.1" },
        smoke: { type: "boolean", default: false },
        list: { type: "boolean", default: false },
        analyze: { type: "boolean", default: false },
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
  for (const a of archs) if (!ARCHS[a]) fail(`--archs: unknown architecture '${a}' (known: ${Object.keys(ARCHS).join(", ")})`);
  const lrs = (list(args.lrs, "--lrs", positiveNumber("--lrs")) ?? (smoke ? SMOKE.lrs : [1e-2, 3e-2])) as number[];
  const histories = (list(args.histories, "--histories", positiveInt("--histories")) ?? (smoke ? SMOKE.histories : [16, 1024])) as number[];
  const steps = args.steps !== undefined ? positiveInt("--steps")(args.steps) : smoke ? SMOKE.steps : undefined;
  const budget = args["budget-s"] !== undefined ? positiveNumber("--budget-s")(args["budget-s"]) : Infinity;
  const delta = positiveNumber("--spike-delta")(args["spike-delta"]);
  const backend = args.backend as BackendChoice;
  if (!["auto", "cpu", "webgpu"].includes(backend)) fail(`--backend must be auto, cpu or webgpu, got '${backend}'`);
  const outDir = resolve(args.out);

  let runs = plan(archs, lrs, histories);
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

  // The total for the report steps: --steps, else what the model files say (1500).
  const totalFor = (): number => steps ?? 1500;
  const summaries = (): RunSummary[] =>
    runs
      .filter((r) => existsSync(join(outDir, `${r.name}.jsonl`)))
      .map((r) => {
        const { points, warnings } = readLog(join(outDir, `${r.name}.jsonl`));
        return summarize(r.name, points, warnings, totalFor(), delta);
      });
  const report = (): void => {
    const rows = summaries();
    console.log(`\n${table(rows)}\n(loss: mean of the last ${SMOOTH_POINTS} logged training losses; spike: non-finite, or that mean > its running minimum + ${delta}; lead = spike − the first / the last warning before it)`);
    writeFileSync(join(outDir, "summary.json"), JSON.stringify({ delta, smoothPoints: SMOOTH_POINTS, runs: rows }, (_, v) => (typeof v === "number" && !Number.isFinite(v) ? String(v) : v), 1) + "\n");
  };

  if (args.analyze) {
    if (!existsSync(outDir)) fail(`--analyze: ${outDir} does not exist`);
    report();
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
    console.log(`\n== ${run.name}: ${run.arch} FP8DPA, lr ${run.lr}, amax history ${run.history} (${relative(process.cwd(), fogPath)})`);
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
            console.log(`  ${run.name} step ${r.step}  loss ${r.loss.toFixed(4)}${r.val_loss !== undefined ? `  val ${r.val_loss.toFixed(4)}` : ""}  ${((performance.now() - t0) / 1000).toFixed(0)} s`);
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
  }
  console.log(`divergence: done in ${((performance.now() - began) / 1000).toFixed(0)} s`);
}

// Run only as a script, so that the analysis can be imported (tests, notebooks) without running a sweep.
if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) await main();
