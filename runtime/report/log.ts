// Reading a training log (`fogc run --log`, or train.py --jsonl of an exported package) for
// `fogc report`: one JSON object a line, validated field by field, so a bad line is named by file and
// line. Non-finite values (written as null by fogc, NaN/Infinity by Python) are kept as null: gaps.
import { existsSync, readFileSync, statSync } from "node:fs";
import { parseProbeKey } from "../../compiler/probes.js";
import type { RunEvent } from "../train.js";

/** A user-facing failure of `fogc report`: a missing file, an empty log, a malformed line (exit 1). */
export class ReportError extends Error {
  override readonly name = "ReportError";
}

/** One step record; every number is null where the log holds a non-finite value. */
export interface StepPoint {
  step: number;
  loss: number | null;
  val_loss?: number | null;
  lr?: number | null;
  grad_norm?: number | null;
  tokens_per_s?: number | null;
  /** Per-layer kurtosis only (`<probe>_layerNN`); the logged `<probe>_avg` means are left out. */
  kurtosis: Record<string, number | null>;
}

/** A kurtosis warning as logged (runtime/train.ts KurtosisWarningEvent), non-finite numbers as null. */
export interface LoggedWarning {
  step: number;
  series: string;
  probe: string;
  layer: number | null;
  value: number | null;
  baseline: number | null;
  threshold: number | null;
  reason: string;
  since: number;
  action?: string;
}

/** The `run` lines of a log (one per `train` call); older logs have none. */
export type RunInfo = Omit<RunEvent, "event">;

export interface RunLog {
  /** The path it was read from. */
  file: string;
  /** Legend name: the file's base name, unless the caller names it. */
  label: string;
  runs: RunInfo[];
  /** Sorted by step; where a resumed run logged a step again, its later record. */
  points: StepPoint[];
  warnings: LoggedWarning[];
}

type Json = Record<string, unknown>;

/** Python's json.dumps writes NaN, Infinity and -Infinity bare; JSON.parse wants them quoted away. */
function parseLine(text: string): unknown {
  return JSON.parse(text.replace(/([:,[]\s*)(-?Infinity|NaN)(?=\s*[,}\]])/g, "$1null"));
}

class LineReader {
  constructor(
    private readonly where: string,
    private readonly obj: Json,
  ) {}

  fail(message: string): never {
    throw new ReportError(`${this.where}: ${message}`);
  }

  /** A number, or null for a logged non-finite value; undefined when absent and optional. */
  num(key: string, required: true): number | null;
  num(key: string, required?: false): number | null | undefined;
  num(key: string, required = false): number | null | undefined {
    const v = this.obj[key];
    if (v === undefined) return required ? this.fail(`the record has no "${key}"`) : undefined;
    if (v === null || typeof v === "number") return v;
    return this.fail(`"${key}" must be a number or null, found ${JSON.stringify(v)}`);
  }

  step(key = "step"): number {
    const v = this.obj[key];
    if (typeof v !== "number" || !Number.isInteger(v) || v < 0) this.fail(`"${key}" must be an integer ≥ 0, found ${JSON.stringify(v)}`);
    return v;
  }

  str(key: string): string {
    const v = this.obj[key];
    if (typeof v !== "string") this.fail(`"${key}" must be a string, found ${JSON.stringify(v)}`);
    return v;
  }
}

function readStep(r: LineReader, obj: Json): StepPoint {
  const point: StepPoint = { step: r.step(), loss: r.num("loss", true), kurtosis: {} };
  for (const key of ["val_loss", "lr", "grad_norm", "tokens_per_s"] as const) {
    const v = r.num(key);
    if (v !== undefined) point[key] = v;
  }
  const k = obj.kurtosis;
  if (k !== undefined) {
    if (k === null || typeof k !== "object" || Array.isArray(k)) r.fail(`"kurtosis" must be an object (probe → value), found ${JSON.stringify(k)}`);
    for (const [key, v] of Object.entries(k as Json)) {
      if (v !== null && typeof v !== "number") r.fail(`kurtosis "${key}" must be a number or null, found ${JSON.stringify(v)}`);
      if (parseProbeKey(key)) point.kurtosis[key] = v;
    }
  }
  return point;
}

function readWarning(r: LineReader, obj: Json): LoggedWarning {
  const layer = obj.layer;
  if (layer !== null && !(typeof layer === "number" && Number.isInteger(layer))) r.fail(`"layer" must be an integer or null, found ${JSON.stringify(layer)}`);
  return {
    step: r.step(),
    series: r.str("series"),
    probe: r.str("probe"),
    layer,
    value: r.num("value", true),
    baseline: r.num("baseline") ?? null,
    threshold: r.num("threshold") ?? null,
    reason: r.str("reason"),
    since: obj.since === undefined ? r.step() : r.step("since"),
    ...(typeof obj.action === "string" ? { action: obj.action } : {}),
  };
}

function readRun(r: LineReader, obj: Json): RunInfo {
  r.str("model");
  const { event: _event, ...info } = obj;
  return info as unknown as RunInfo;
}

/** Parses a log's text; `file` names it in messages. Lines of unknown `event` kinds are skipped. */
export function parseRunLog(text: string, file: string, label?: string): RunLog {
  const byStep = new Map<number, StepPoint>();
  const runs: RunInfo[] = [];
  const warnings: LoggedWarning[] = [];
  const lines = text.split("\n");
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i].trim();
    if (!line) continue;
    const where = `${file}:${i + 1}`;
    let parsed: unknown;
    try {
      parsed = parseLine(line);
    } catch (e) {
      throw new ReportError(`${where}: not a JSON object (${(e as Error).message})`);
    }
    if (parsed === null || typeof parsed !== "object" || Array.isArray(parsed)) throw new ReportError(`${where}: not a JSON object`);
    const obj = parsed as Json;
    const r = new LineReader(where, obj);
    if (obj.event === undefined) {
      const point = readStep(r, obj);
      byStep.delete(point.step); // a resumed run's record of a step replaces the crashed run's
      byStep.set(point.step, point);
    } else if (obj.event === "kurtosis_warning") warnings.push(readWarning(r, obj));
    else if (obj.event === "run") runs.push(readRun(r, obj));
    else if (typeof obj.event !== "string") r.fail(`"event" must be a string, found ${JSON.stringify(obj.event)}`);
  }
  if (byStep.size === 0) throw new ReportError(`${file}: no step records (an empty log, or a run that stopped before its first log step)`);
  const points = [...byStep.values()].sort((a, b) => a.step - b.step);
  return { file, label: label ?? defaultLabel(file), runs, points, warnings };
}

function defaultLabel(file: string): string {
  const base = file.split(/[\\/]/).pop() ?? file;
  return base.replace(/\.jsonl?$/i, "") || base;
}

/** Reads and parses one log file. */
export function readRunLog(file: string, label?: string): RunLog {
  if (!existsSync(file)) throw new ReportError(`no such file: ${file}`);
  if (statSync(file).isDirectory()) throw new ReportError(`${file} is a directory, not a log file`);
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (e) {
    throw new ReportError(`cannot read ${file}: ${(e as Error).message}`);
  }
  return parseRunLog(text, file, label);
}

/** Gives logs distinct legend names: where base names collide, the paths as given. */
export function distinctLabels(logs: RunLog[]): RunLog[] {
  const counts = new Map<string, number>();
  for (const l of logs) counts.set(l.label, (counts.get(l.label) ?? 0) + 1);
  const seen = new Map<string, number>();
  return logs.map((l) => {
    if (counts.get(l.label)! === 1) return l;
    const n = (seen.get(l.label) ?? 0) + 1;
    seen.set(l.label, n);
    const byPath = logs.filter((o) => o.file === l.file).length === 1;
    return { ...l, label: byPath ? l.file : `${l.label} (${n})` };
  });
}
