// The training loop behind `fogc run`: compile a .fog model, load its data, pick a backend, then
// batch → train step → JSONL log records (kurtosis probes, early warnings), validation, atomic
// checkpoints, and exact resume (the same losses as an uninterrupted run), progress on stderr.
import { appendFileSync, existsSync, mkdirSync, readFileSync, statSync } from "node:fs";
import { dirname, resolve } from "node:path";
import type { Diagnostic } from "../grammar/diagnostics.js";
import type { PrecisionMode } from "../compiler/model.js";
import { compile, type Program } from "../compiler/pipeline.js";
import { parseProbeKey, probeOutputs } from "../compiler/probes.js";
import type { SourceFile } from "../compiler/resolve.js";
import {
  checkpointPath,
  type ExpectedModel,
  latestCheckpoint,
  paramShapes,
  paramShapesHash,
  readCheckpoint,
  removeStaleTemps,
  writeCheckpoint,
} from "./checkpoint.js";
import { CpuExecutor } from "./cpu-executor.js";
import { BatchSampler, loadDataset, validationBatches } from "./data.js";
import { type Executor, type ExecutorInit, type GpuExecutorModule, type StepStats, zeroMoments } from "./executor.js";
import { initParams } from "./init.js";
import { formatWarning, KurtosisMonitor, kurtosisRecord, type MonitorOptions, type Warning } from "./kurtosis.js";
import { learningRate } from "./optimizer.js";
import type { GpuExecutor } from "./gpu-executor.js";
import type { StepProfile } from "./profile.js";

/** A user-facing failure of `run`/`generate` (bad file, bad option, diverged run): message, exit 1. */
export class RunError extends Error {
  override readonly name = "RunError";
  constructor(
    message: string,
    /** Compile diagnostics, when the .fog file did not compile. */
    readonly diagnostics: Diagnostic[] = [],
    readonly files: Map<string, SourceFile> = new Map(),
  ) {
    super(message);
  }
}

export type BackendChoice = "auto" | "cpu" | "webgpu";

/**
 * What a kurtosis warning does to the run (`--on-warning`): `continue` logs it; `checkpoint` also
 * writes a checkpoint of that step and goes on; `stop` writes one (with `--checkpoint DIR`) and
 * ends the run there, as a success (TrainResult.stopped; `fogc run` exits 0).
 */
export type WarningAction = "continue" | "checkpoint" | "stop";
export const WARNING_ACTIONS: readonly WarningAction[] = ["continue", "checkpoint", "stop"];

/** Where progress goes: a writable with an optional TTY flag (process.stderr by default). */
export interface ProgressStream {
  write(text: string): unknown;
  isTTY?: boolean;
}

export interface TrainOptions {
  /** The .fog file. */
  file: string;
  /** Model to train (default: the file's last model). */
  model?: string;
  /** Replaces the recipe's mode everywhere (`--precision`). */
  precision?: PrecisionMode;
  /** Total optimizer steps (default: the train section's). */
  steps?: number;
  seed?: number;
  backend?: BackendChoice;
  /** JSONL file to append one record per log step to. */
  log?: string;
  /** Directory for checkpoints (`step-NNNNNNNN.safetensors`). */
  checkpoint?: string;
  /** Steps between checkpoints (default: the train section's eval_every); one is always written at the end. */
  checkpointEvery?: number;
  /** Continue from the newest checkpoint in `checkpoint`. */
  resume?: boolean;
  /** Progress line and notices; null silences them. Default process.stderr. */
  progress?: ProgressStream | null;
  /** Called with every log record. */
  onLog?: (record: LogRecord) => void;
  /** What a kurtosis warning does (default `continue`). */
  onWarning?: WarningAction;
  /** Early-warning thresholds (default DEFAULT_MONITOR, docs/probes.md). */
  monitor?: Partial<MonitorOptions>;
  /**
   * Time every kernel of one step (`--profile`, WebGPU only): the third step of this call (the last
   * if fewer; the next one if that is a probe step) runs with per-kernel timestamps; TrainResult.profile.
   */
  profile?: boolean;
}

/** One line of the JSONL log. */
export interface LogRecord {
  step: number;
  loss: number;
  lr: number;
  grad_norm: number;
  tokens_per_s: number;
  val_loss?: number;
  /**
   * On probe steps (every `probes.every` steps): `<probe>_layerNN` → kurtosis and `<probe>_avg`, the
   * mean over layers (docs/probes.md); `{}` on other steps.
   */
  kurtosis: Record<string, number>;
}

/**
 * The line each `train` call appends to the log before its first step record: what ran (the header
 * of `fogc report`). A resumed run appends another, with its `start_step`.
 */
export interface RunEvent {
  event: "run";
  model: string;
  file: string;
  /** The recipe's name and its mode (after `--precision`). */
  recipe: string;
  precision: PrecisionMode;
  backend: Executor["backend"];
  steps: number;
  start_step: number;
  seed: number;
  batch: number;
  seq_len: number;
  params: number;
  /** ISO 8601 time the run started. */
  started: string;
}

/** The JSONL line written for each kurtosis warning, after its step's record. */
export interface KurtosisWarningEvent extends Warning {
  event: "kurtosis_warning";
  /** What the run did about it (`--on-warning`). */
  action: WarningAction;
}

export interface TrainResult {
  model: string;
  backend: Executor["backend"];
  /** The step the run started from (0, or the resumed checkpoint's). */
  startStep: number;
  /** The run's total steps: where it ended, unless `stopped` says otherwise. */
  steps: number;
  /** Training loss of each step run by this call: losses[i] is step startStep + i + 1. */
  losses: number[];
  /** Validation loss at the last evaluation, if any ran. */
  valLoss?: number;
  /** The last checkpoint written. */
  checkpoint?: string;
  /** Training throughput over this call (tokens per second of train-step time). */
  tokensPerSecond: number;
  seconds: number;
  /** Kurtosis warnings raised by this call, in order. */
  warnings: Warning[];
  /** Set when `--on-warning stop` ended the run early: the step it stopped at and the warning. */
  stopped?: { step: number; warning: Warning };
  /** With `profile`: the profiled step's per-kernel GPU times (runtime/profile.ts formatProfile prints them). */
  profile?: StepProfile;
}

/** Compiles the file for training, turning diagnostics into a RunError. */
export function compileForRun(file: string, options: { model?: string; precision?: PrecisionMode; batch?: number }): Program {
  if (!existsSync(file)) throw new RunError(`no such file: ${file}`);
  const r = compile(file, {
    ...(options.model ? { model: options.model } : {}),
    ...(options.precision ? { precision: options.precision } : {}),
    ...(options.batch ? { batch: options.batch } : {}),
  });
  const errors = r.diagnostics.filter((d) => d.severity === "error").length;
  if (!r.program || errors) throw new RunError(`${file} does not compile (${errors} error${errors === 1 ? "" : "s"})`, r.diagnostics, r.files);
  return r.program;
}

async function loadGpuModule(): Promise<GpuExecutorModule | undefined> {
  // A computed specifier: the GPU executor is optional and may not exist in this build.
  const specifier = "./gpu-executor.js";
  let mod: Partial<GpuExecutorModule>;
  try {
    mod = (await import(specifier)) as Partial<GpuExecutorModule>;
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    if ((err.code === "ERR_MODULE_NOT_FOUND" || /Cannot find module|Failed to load url|does not exist/i.test(err.message)) && err.message.includes("gpu-executor")) return undefined;
    throw e;
  }
  if (typeof mod.createGpuExecutor !== "function" || typeof mod.hasAdapter !== "function") {
    throw new RunError("runtime/gpu-executor does not export createGpuExecutor(init) and hasAdapter() (the contract in runtime/executor.ts)");
  }
  return mod as GpuExecutorModule;
}

/** Builds the executor for a backend choice; `auto` falls back to the CPU with a one-line notice. */
export async function createExecutor(choice: BackendChoice, init: ExecutorInit, notice: (line: string) => void): Promise<Executor> {
  if (choice === "cpu") return new CpuExecutor(init);
  const gpu = await loadGpuModule();
  if (choice === "webgpu") {
    if (!gpu) throw new RunError("--backend webgpu: this build of fogc has no WebGPU executor yet (runtime/gpu-executor.ts is missing); use --backend cpu");
    if (!(await gpu.hasAdapter())) throw new RunError("--backend webgpu: no WebGPU adapter found on this machine; use --backend cpu, or install a Vulkan driver (scripts/ has a lavapipe installer)");
    return gpu.createGpuExecutor(init);
  }
  if (gpu && (await gpu.hasAdapter())) return gpu.createGpuExecutor(init);
  notice(`fogc: ${gpu ? "no WebGPU adapter found" : "no WebGPU executor in this build"}; training on the CPU reference backend (slow)`);
  return new CpuExecutor(init);
}

function fmtDuration(s: number): string {
  if (!Number.isFinite(s)) return "?";
  const t = Math.round(s);
  const h = Math.floor(t / 3600);
  const m = Math.floor((t % 3600) / 60);
  const sec = t % 60;
  return h ? `${h}h${String(m).padStart(2, "0")}m` : m ? `${m}m${String(sec).padStart(2, "0")}s` : `${sec}s`;
}

function fmtRate(x: number): string {
  return x >= 1e6 ? `${(x / 1e6).toFixed(2)}M` : x >= 1e3 ? `${(x / 1e3).toFixed(1)}k` : x.toFixed(0);
}

/**
 * On resume: feeds the monitor the kurtosis records of the log up to `upTo` (the later record of a
 * step counts), so its baselines and alarms continue where the interrupted run left them.
 */
function replayLog(monitor: KurtosisMonitor, path: string, upTo: number): void {
  if (!existsSync(path)) return;
  const byStep = new Map<number, Record<string, number>>();
  for (const line of readFileSync(path, "utf8").split("\n")) {
    let rec: Partial<LogRecord> & { event?: string };
    try {
      rec = JSON.parse(line) as Partial<LogRecord> & { event?: string };
    } catch {
      continue; // a blank line, or the half-written last line of a crash
    }
    if (rec.event !== undefined || typeof rec.step !== "number" || rec.step > upTo || !rec.kurtosis) continue;
    const perLayer = Object.fromEntries(Object.entries(rec.kurtosis).filter(([k]) => parseProbeKey(k)).map(([k, v]) => [k, v ?? NaN]));
    if (Object.keys(perLayer).length) byStep.set(rec.step, perLayer);
    else byStep.delete(rec.step);
  }
  for (const step of [...byStep.keys()].sort((a, b) => a - b)) monitor.observe(step, byStep.get(step)!);
}

function positiveInt(what: string, v: number | undefined, min = 1): void {
  if (v !== undefined && !(Number.isInteger(v) && v >= min)) throw new RunError(`${what} must be an integer ≥ ${min}, got ${v}`);
}

export async function train(options: TrainOptions): Promise<TrainResult> {
  positiveInt("--steps", options.steps);
  positiveInt("--seed", options.seed, 0);
  positiveInt("--checkpoint-every", options.checkpointEvery);
  if (options.resume && !options.checkpoint) throw new RunError("--resume needs --checkpoint DIR (the directory the run wrote its checkpoints to)");
  const action = options.onWarning ?? "continue";
  if (!WARNING_ACTIONS.includes(action)) throw new RunError(`--on-warning must be one of ${WARNING_ACTIONS.join(", ")}, got ${action}`);
  if (action === "checkpoint" && !options.checkpoint) throw new RunError("--on-warning checkpoint needs --checkpoint DIR (where to write the checkpoint of a warning's step)");
  let monitor: KurtosisMonitor;
  try {
    monitor = new KurtosisMonitor(options.monitor);
  } catch (e) {
    throw new RunError((e as Error).message);
  }
  const out = options.progress === undefined ? process.stderr : options.progress;
  const notice = (line: string): void => {
    out?.write(line + "\n");
  };

  const file = resolve(options.file);
  const program = compileForRun(file, options);
  const { model, forward } = program;
  const spec = { ...model.train, steps: options.steps ?? model.train.steps, seed: options.seed ?? model.train.seed };
  const total = spec.steps;
  const precision = options.precision ?? "recipe";

  const data = await loadDataset(spec, dirname(file));
  const sampler = new BatchSampler(data.train, spec.batch, spec.seqLen, spec.seed);
  const valBatches = validationBatches(data.val, spec.batch, spec.seqLen, spec.evalBatches);

  const exec = await createExecutor(options.backend ?? "auto", { forward, train: program.train, model }, notice);
  try {
    const params = initParams(forward, spec.seed);
    await exec.loadState({ params, m: zeroMoments(params), v: zeroMoments(params), scales: [], step: 0 });
    const expected: ExpectedModel = {
      name: model.name,
      file,
      shapesHash: paramShapesHash(forward),
      shapes: paramShapes(forward),
      fp8Slots: program.train.scaleSlots.length,
    };

    let start = 0;
    const dir = options.checkpoint ? resolve(options.checkpoint) : undefined;
    if (dir) {
      if (existsSync(dir) && !statSync(dir).isDirectory()) throw new RunError(`--checkpoint ${options.checkpoint}: not a directory`);
      mkdirSync(dir, { recursive: true });
      removeStaleTemps(dir);
      const latest = latestCheckpoint(dir);
      if (options.resume) {
        if (!latest) notice(`fogc: no checkpoint in ${dir}; starting from step 0`);
        else {
          const ckpt = readCheckpoint(latest, expected);
          await exec.loadState(ckpt.state);
          sampler.restore(ckpt.meta.sampler);
          start = ckpt.meta.step;
          if (ckpt.meta.totalSteps !== total) notice(`fogc: the checkpoint's run had ${ckpt.meta.totalSteps} steps, this one ${total}: the learning-rate schedule differs from the original run`);
          notice(`fogc: resuming ${model.name} from ${latest} (step ${start})`);
        }
      } else if (latest) {
        throw new RunError(`--checkpoint ${options.checkpoint} already holds checkpoints (newest ${latest}); pass --resume to continue that run, or choose another directory`);
      }
    }
    if (start > total) throw new RunError(`the checkpoint is at step ${start}, beyond this run's ${total} steps; pass a larger --steps`);
    if (options.log) mkdirSync(dirname(resolve(options.log)), { recursive: true });
    if (options.log && start > 0) replayLog(monitor, options.log, start);
    if (options.log) {
      const run: RunEvent = {
        event: "run",
        model: model.name,
        file,
        recipe: model.precision.name,
        precision: model.precision.base.mode,
        backend: exec.backend,
        steps: total,
        start_step: start,
        seed: spec.seed,
        batch: spec.batch,
        seq_len: spec.seqLen,
        params: program.stats.params,
        started: new Date().toISOString(),
      };
      appendFileSync(options.log, JSON.stringify(run) + "\n");
    }

    const { optimizer: opt, schedule } = spec;
    const ckptEvery = options.checkpointEvery ?? spec.evalEvery;
    const tokensPerStep = spec.batch * spec.seqLen;
    const tty = out?.isTTY === true;
    const losses: number[] = [];
    const warnings: Warning[] = [];
    let stopped: TrainResult["stopped"];
    // Probes run on every `probes.every`-th step (docs/probes.md); those steps always get a log record.
    const probeEvery = model.probes.enabled && probeOutputs(program.train).length ? model.probes.every : 0;
    let noProbeNotice = false;
    // --profile: two warm-up steps first (lazy pipeline compilation, caches), then one non-probe step.
    let profileAt = -1;
    let profiler: typeof import("./profile.js") | undefined;
    let profile: StepProfile | undefined;
    if (options.profile) {
      if (exec.backend !== "webgpu") throw new RunError("--profile times GPU kernels: it needs the WebGPU backend (this run is on the CPU; pass --backend webgpu)");
      const gpu = (exec as GpuExecutor).gpu;
      if (!gpu.caps.timestamps) throw new RunError(`--profile: adapter '${gpu.caps.adapterName}' has no timestamp queries`);
      profiler = await import("./profile.js");
      for (let s = Math.min(start + 2, total - 1); s < total && profileAt < 0; s++) if (!(probeEvery > 0 && (s + 1) % probeEvery === 0)) profileAt = s;
      if (profileAt < 0) notice("fogc: --profile: no step left to profile (every remaining step computes probes)");
    }
    let valLoss: number | undefined;
    let lastCheckpoint: string | undefined;
    let trainSeconds = 0;
    let windowSeconds = 0;
    let windowTokens = 0;
    const began = performance.now();

    const saveCheckpoint = async (step: number): Promise<void> => {
      if (!dir) return;
      const state = await exec.readState();
      const path = checkpointPath(dir, step);
      writeCheckpoint(path, {
        meta: {
          model: model.name,
          file,
          shapesHash: expected.shapesHash,
          step,
          totalSteps: total,
          seed: spec.seed,
          precision,
          tokenizer: spec.tokenizer,
          sampler: sampler.state(),
        },
        state,
        shapes: expected.shapes,
      });
      lastCheckpoint = path;
    };

    for (let step = start; step < total; step++) {
      const t0 = performance.now();
      const batch = sampler.next();
      const lr = learningRate(schedule, opt.lr, step, total);
      const probeStep = probeEvery > 0 && (step + 1) % probeEvery === 0;
      const hyper = { step: step + 1, lr, beta1: opt.beta1, beta2: opt.beta2, eps: opt.eps, weightDecay: opt.weightDecay, clip: opt.clip };
      let stats: StepStats;
      if (step === profileAt && profiler) {
        profile = await profiler.profileStep(exec as GpuExecutor, batch, hyper);
        stats = profile.stats;
      } else stats = probeStep && exec.trainStepWithProbes ? await exec.trainStepWithProbes(batch, hyper) : await exec.trainStep(batch, hyper);
      const dt = (performance.now() - t0) / 1000;
      trainSeconds += dt;
      windowSeconds += dt;
      windowTokens += tokensPerStep;
      losses.push(stats.loss);
      const done = step + 1;
      const diverged = !Number.isFinite(stats.loss);
      const isEval = done % spec.evalEvery === 0 || done === total;
      const isLog = done % spec.logEvery === 0 || isEval || diverged || probeStep;
      let recordVal: number | undefined;
      if (isEval && !diverged) {
        let sum = 0;
        for (const b of valBatches) sum += await exec.evalLoss(b);
        valLoss = recordVal = sum / valBatches.length;
      }
      const rate = windowSeconds > 0 ? windowTokens / windowSeconds : 0;
      if (probeStep && !stats.kurtosis && !noProbeNotice) {
        noProbeNotice = true;
        notice(`fogc: the ${exec.backend} backend does not compute kurtosis probes yet; the log's kurtosis stays {} and no early warning runs`);
      }
      // A diverged step's probes are NaN: the divergence error below says more than a warning would.
      const raised = stats.kurtosis && !diverged ? monitor.observe(done, stats.kurtosis) : [];
      if (isLog) {
        const record: LogRecord = {
          step: done,
          loss: stats.loss,
          lr,
          grad_norm: stats.gradNorm,
          tokens_per_s: rate,
          ...(recordVal !== undefined ? { val_loss: recordVal } : {}),
          kurtosis: stats.kurtosis ? kurtosisRecord(stats.kurtosis) : {},
        };
        if (options.log) appendFileSync(options.log, JSON.stringify(record) + "\n");
        options.onLog?.(record);
        windowSeconds = 0;
        windowTokens = 0;
      }
      if (raised.length) {
        warnings.push(...raised);
        if (options.log) {
          const events = raised.map((w): KurtosisWarningEvent => ({ event: "kurtosis_warning", ...w, action }));
          appendFileSync(options.log, events.map((e) => JSON.stringify(e) + "\n").join(""));
        }
        out?.write(`${tty ? "\r\x1b[K" : ""}${formatWarning(raised)}\n`);
      }
      if (out && (tty || isLog)) {
        const eta = (trainSeconds / (done - start)) * (total - done);
        const line =
          `step ${done}/${total}  loss ${stats.loss.toFixed(4)}` +
          (recordVal !== undefined ? `  val ${recordVal.toFixed(4)}` : "") +
          `  lr ${lr.toExponential(2)}  ${fmtRate(rate)} tok/s  ETA ${fmtDuration(eta)}`;
        out.write(tty ? `\r\x1b[K${line}` : `${line}\n`);
      }
      if (diverged) {
        if (tty) out?.write("\n");
        throw new RunError(`training diverged: the loss is ${stats.loss} at step ${done} (grad norm ${stats.gradNorm})${lastCheckpoint ? `; the last checkpoint is ${lastCheckpoint}` : ""}`);
      }
      const stop = raised.length > 0 && action === "stop";
      if (dir && (done % ckptEvery === 0 || done === total || (raised.length > 0 && action !== "continue"))) await saveCheckpoint(done);
      if (stop) {
        stopped = { step: done, warning: raised[0] };
        break;
      }
    }
    if (tty && out && total > start) out.write("\n");
    if (dir && start === total && !lastCheckpoint) lastCheckpoint = latestCheckpoint(dir);

    return {
      model: model.name,
      backend: exec.backend,
      startStep: start,
      steps: total,
      losses,
      ...(valLoss !== undefined ? { valLoss } : {}),
      ...(lastCheckpoint ? { checkpoint: lastCheckpoint } : {}),
      tokensPerSecond: trainSeconds > 0 ? (losses.length * tokensPerStep) / trainSeconds : 0,
      seconds: (performance.now() - began) / 1000,
      warnings,
      ...(stopped ? { stopped } : {}),
      ...(profile ? { profile } : {}),
    };
  } finally {
    exec.dispose();
  }
}
