// Kurtosis early warning (docs/probes.md): each probe's log-kurtosis series is judged against its own
// trailing robust baseline (median and MAD of the last W logged points, after a warm-up); a series
// that stays above its band for n points, or jumps out of it at once, raises a Warning.
import { parseProbeKey } from "../compiler/probes.js";

export interface MonitorOptions {
  /** Logged points of the trailing window the baseline (median, MAD) is taken over. */
  window: number;
  /** Logged points skipped at the start of each series (the initialisation transient). */
  warmup: number;
  /** Points the baseline needs before a series is judged. */
  minHistory: number;
  /** Band half-width in robust standard deviations σ̂ = 1.4826·MAD of log-kurtosis. */
  k: number;
  /** Smallest band half-width, in log-kurtosis: log 1.4, i.e. a 40% rise over the baseline median. */
  minRise: number;
  /** Consecutive points above the band that raise a `band` warning. */
  consecutive: number;
  /** Rise of log-kurtosis since the previous logged point that raises a `jump` warning at once (when above the band too): log 2. */
  jump: number;
}

/** The defaults and how they were chosen: docs/probes.md. */
export const DEFAULT_MONITOR: Readonly<MonitorOptions> = {
  window: 20,
  warmup: 5,
  minHistory: 8,
  k: 5,
  minRise: Math.log(1.4),
  consecutive: 2,
  jump: Math.log(2),
};

/**
 * `band`: above median + max(k·σ̂, minRise) for `consecutive` logged points; `jump`: out of the band
 * and at least `jump` higher (log) than the previous point; `non_finite`: the value is NaN, ±∞ or ≤ 0.
 */
export type WarningReason = "band" | "jump" | "non_finite";

export interface Warning {
  /** The step of the point that raised it. */
  step: number;
  /** The series: a probe key (`qkv_input_layer02`) or any name observe() was given. */
  series: string;
  /** Tensor name (`qkv_input`), or the series name when it is not a per-layer probe key. */
  probe: string;
  /** Layer of a per-layer probe key, else null. */
  layer: number | null;
  /** The kurtosis that raised it. */
  value: number;
  /** exp(median of the trailing window of log-kurtosis): the series' normal level (NaN before it has one). */
  baseline: number;
  /** The top of the band, in kurtosis: exp(median + max(k·σ̂, minRise)). */
  threshold: number;
  reason: WarningReason;
  /** The step at which the series left its band (the first of the consecutive points above it). */
  since: number;
}

interface Series {
  /** Finite points seen, warm-up included. */
  seen: number;
  /** Log-kurtosis of the last `window` points after the warm-up, oldest first. */
  history: number[];
  prev?: number;
  /** Consecutive points above the band, and the step of the first. */
  run: number;
  since: number;
  /** Warned during the current excursion (re-armed once a point is back inside the band). */
  alarmed: boolean;
  nonFinite: boolean;
}

function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const h = s.length >> 1;
  return s.length % 2 ? s[h] : (s[h - 1] + s[h]) / 2;
}

/** Watches every probe's kurtosis series; see docs/probes.md for the rule. */
export class KurtosisMonitor {
  readonly options: Readonly<MonitorOptions>;
  private readonly series = new Map<string, Series>();

  constructor(options: Partial<MonitorOptions> = {}) {
    const o = { ...DEFAULT_MONITOR, ...options };
    for (const key of ["window", "minHistory", "consecutive"] as const) {
      if (!(Number.isInteger(o[key]) && o[key] >= 1)) throw new Error(`KurtosisMonitor: ${key} must be an integer ≥ 1, got ${o[key]}`);
    }
    if (!(Number.isInteger(o.warmup) && o.warmup >= 0)) throw new Error(`KurtosisMonitor: warmup must be an integer ≥ 0, got ${o.warmup}`);
    if (o.minHistory > o.window) throw new Error(`KurtosisMonitor: minHistory ${o.minHistory} exceeds window ${o.window}`);
    for (const key of ["k", "minRise", "jump"] as const) {
      if (!(o[key] >= 0)) throw new Error(`KurtosisMonitor: ${key} must be ≥ 0, got ${o[key]}`);
    }
    this.options = o;
  }

  /**
   * Feeds one logged step's kurtosis values (series name → kurtosis) and returns the warnings they
   * raise, the series that left its band first (earliest `since`) first, ties by how far above
   * the band they are. A series warns once per excursion.
   */
  observe(step: number, values: Readonly<Record<string, number>>): Warning[] {
    const o = this.options;
    const raised: { w: Warning; excess: number }[] = [];
    for (const [name, value] of Object.entries(values)) {
      let s = this.series.get(name);
      if (!s) {
        s = { seen: 0, history: [], run: 0, since: step, alarmed: false, nonFinite: false };
        this.series.set(name, s);
      }
      const parsed = parseProbeKey(name);
      const base = { step, series: name, probe: parsed?.probe ?? name, layer: parsed?.layer ?? null, value };
      const ready = s.history.length >= o.minHistory;
      const med = ready ? median(s.history) : NaN;
      const width = ready ? Math.max(o.k * 1.4826 * median(s.history.map((y) => Math.abs(y - med))), o.minRise) : NaN;
      const band = { baseline: Math.exp(med), threshold: Math.exp(med + width) };
      if (!(Number.isFinite(value) && value > 0)) {
        if (!s.nonFinite) raised.push({ w: { ...base, ...band, reason: "non_finite", since: step }, excess: Infinity });
        s.nonFinite = true;
        continue;
      }
      s.nonFinite = false;
      const y = Math.log(value);
      s.seen++;
      if (s.seen > o.warmup) {
        if (ready) {
          const above = y > med + width;
          if (!above) {
            s.run = 0;
            s.alarmed = false;
          } else {
            if (s.run++ === 0) s.since = step;
            const reason: WarningReason | undefined = s.alarmed ? undefined : s.prev !== undefined && y - s.prev >= o.jump ? "jump" : s.run >= o.consecutive ? "band" : undefined;
            if (reason) {
              s.alarmed = true;
              raised.push({ w: { ...base, ...band, reason, since: s.since }, excess: (y - med) / width });
            }
          }
        }
        s.history.push(y);
        if (s.history.length > o.window) s.history.shift();
      }
      s.prev = y;
    }
    return raised.sort((a, b) => a.w.since - b.w.since || b.excess - a.excess).map((r) => r.w);
  }
}

/** The one line `fogc run` prints for a step's warnings (the first one named, the others counted). */
export function formatWarning(warnings: readonly Warning[]): string {
  const w = warnings[0];
  const where = w.layer === null ? w.probe : `layer ${w.layer} ${w.probe}`;
  const why =
    w.reason === "non_finite"
      ? "is not finite"
      : w.reason === "jump"
        ? `jumped above its band (≤ ${w.threshold.toPrecision(3)})`
        : `has been above its band (≤ ${w.threshold.toPrecision(3)}) since step ${w.since}`;
  const more = warnings.length > 1 ? `; ${warnings.length - 1} more probe${warnings.length > 2 ? "s" : ""} out of band` : "";
  const baseline = Number.isFinite(w.baseline) ? w.baseline.toPrecision(4) : "not known yet";
  return `fogc: kurtosis warning at step ${w.step}: ${where} kurtosis ${w.value.toPrecision(4)}, baseline ${baseline}, ${why}${more}`;
}

/** A log record's kurtosis: every per-layer value, plus `<probe>_avg`, the mean over its layers. */
export function kurtosisRecord(values: Readonly<Record<string, number>>): Record<string, number> {
  const out: Record<string, number> = { ...values };
  const groups = new Map<string, number[]>();
  for (const [key, v] of Object.entries(values)) {
    const p = parseProbeKey(key);
    if (p) groups.set(p.probe, [...(groups.get(p.probe) ?? []), v]);
  }
  for (const [probe, vs] of groups) out[`${probe}_avg`] = vs.reduce((a, b) => a + b, 0) / vs.length;
  return out;
}
