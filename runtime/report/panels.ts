// The report's panels as Vega-Lite specs: loss and validation loss, gradient norm, learning rate,
// tokens/s, and one kurtosis panel per probe tensor with a line per layer (log y). Kurtosis warnings
// are vertical rules with a label; non-finite values break the line and get a red marker.
import { PROBE_TENSORS } from "../../compiler/model.js";
import { parseProbeKey } from "../../compiler/probes.js";
import type { LoggedWarning, RunLog, StepPoint } from "./log.js";

/** One drawn point: `value` null where the log holds a non-finite value (or ≤ 0 on a log axis). */
export interface PanelRow {
  run: string;
  /** The line within its run: `train`/`val`, `layer 3`, or the quantity. */
  line: string;
  step: number;
  value: number | null;
  /** The point's accessible description in the SVG (aria-label): `run | line | step | value`. */
  desc: string;
}

/** A warning rule: its step, its label, and the text row the label sits on (so close labels do not overlap). */
export interface RuleRow {
  step: number;
  label: string;
  row: number;
}

/** A Vega-Lite spec, checked by vega-lite when compiled (render.ts turns its warnings into errors). */
export type VegaLiteSpec = Record<string, unknown>;

export interface Panel {
  /** File-name-safe id: `loss`, `grad_norm`, `lr`, `tokens_per_s`, `kurtosis_<probe>`. */
  id: string;
  title: string;
  rows: PanelRow[];
  rules: RuleRow[];
  logY: boolean;
  width: number;
  height: number;
  /** A layer-spec without `$schema`/`config`, so it can be drawn alone or inside the combined figure. */
  spec: VegaLiteSpec;
}

export interface PanelOptions {
  /** Plot width and height in CSS pixels of the wide panels (loss, grad norm, lr, tokens/s). */
  width?: number;
  height?: number;
  /** Draw a marker on every point when a line has at most this many (default 150). */
  maxMarkers?: number;
}

const WARN_COLOR = "#d62728";
const NONFINITE_COLOR = "#b00020";
/** A dash-pattern legend draws short strokes (the line mark's point overlay would make them dots). */
const DASH_LEGEND = {
  title: null,
  orient: "right",
  symbolType: "stroke",
  symbolSize: 300,
  encode: { symbols: { update: { stroke: { value: "#333" }, strokeWidth: { value: 1.5 }, fill: { value: "transparent" } } } },
};
const SCALARS = [
  { id: "grad_norm", title: "Gradient norm", yTitle: "grad norm (before clipping)", logY: true },
  { id: "lr", title: "Learning rate", yTitle: "learning rate", logY: false },
  { id: "tokens_per_s", title: "Throughput", yTitle: "tokens / s", logY: false },
] as const;

function row(run: string, line: string, step: number, v: number | null | undefined, logY: boolean): PanelRow {
  const value = v === null || v === undefined || !Number.isFinite(v) || (logY && v <= 0) ? null : v;
  return { run, line, step, value, desc: `${run} | ${line} | ${step} | ${value === null ? "non-finite" : value}` };
}

/** Places labels on text rows so that labels closer than `gap` steps do not share a row. */
function placeRules(items: { step: number; label: string }[], span: number): RuleRow[] {
  const gap = span / 6;
  const lastOnRow: number[] = [];
  return [...items]
    .sort((a, b) => a.step - b.step)
    .map((it) => {
      let r = lastOnRow.findIndex((s) => it.step - s >= gap);
      if (r < 0) r = lastOnRow.length;
      lastOnRow[r] = it.step;
      return { ...it, row: r % 6 };
    });
}

function fmt(v: number | null): string {
  return v === null ? "non-finite" : v.toPrecision(3);
}

/** One rule per (run, step) with warnings: the first warning of the step named, the others counted. */
function warningRules(logs: RunLog[], keep: (w: LoggedWarning) => boolean, span: number): RuleRow[] {
  const items: { step: number; label: string }[] = [];
  for (const log of logs) {
    const byStep = new Map<number, LoggedWarning[]>();
    for (const w of log.warnings.filter(keep)) byStep.set(w.step, [...(byStep.get(w.step) ?? []), w]);
    for (const [step, ws] of byStep) {
      const w = ws[0];
      const where = w.layer === null ? w.probe : `L${w.layer} ${w.probe}`;
      const more = ws.length > 1 ? ` +${ws.length - 1}` : "";
      items.push({ step, label: `${logs.length > 1 ? `${log.label}: ` : ""}${where} ${fmt(w.value)}${more}` });
    }
  }
  return placeRules(items, span);
}

interface LineChart {
  id: string;
  title: string;
  yTitle: string;
  rows: PanelRow[];
  rules: RuleRow[];
  logY: boolean;
  /** The field lines are coloured by, and the one they are dashed by (if any). */
  color: "run" | "line";
  dash?: "run" | "line";
  /** Legend order of the `line` field. */
  lineOrder: string[];
  runOrder: string[];
  width: number;
  height: number;
  maxMarkers: number;
}

function lineChart(c: LineChart): Panel {
  const order = (field: "run" | "line"): string[] => (field === "run" ? c.runOrder : c.lineOrder);
  const colorCount = order(c.color).length;
  const perLine = new Map<string, number>();
  for (const r of c.rows) perLine.set(`${r.run}\u0000${r.line}`, (perLine.get(`${r.run}\u0000${r.line}`) ?? 0) + 1);
  const markers = Math.max(0, ...perLine.values()) <= c.maxMarkers;
  const x = { field: "step", type: "quantitative", title: "step", scale: { nice: false } };
  const layers: VegaLiteSpec[] = [
    {
      mark: { type: "line", strokeWidth: 1.5, ...(markers ? { point: { filled: true, size: 14 } } : {}) },
      encoding: {
        x,
        y: { field: "value", type: "quantitative", title: c.yTitle, scale: c.logY ? { type: "log" } : { zero: false } },
        color: {
          field: c.color,
          type: "nominal",
          sort: order(c.color),
          scale: { scheme: colorCount <= 10 ? "tableau10" : "viridis" },
          legend: { title: null, orient: "right" },
        },
        ...(c.dash ? { strokeDash: { field: c.dash, type: "nominal", sort: order(c.dash), legend: DASH_LEGEND } } : {}),
        detail: { field: "key", type: "nominal" },
        description: { field: "desc", type: "nominal" },
      },
    },
  ];
  if (c.rows.some((r) => r.value === null)) {
    layers.push({
      transform: [{ filter: "datum.value === null" }],
      mark: { type: "point", shape: "cross", filled: true, size: 60, color: NONFINITE_COLOR },
      encoding: { x, y: { value: c.height - 4 }, description: { field: "desc", type: "nominal" } },
    });
  }
  if (c.rules.length) {
    const data = { values: c.rules.map((r) => ({ ...r, desc: `warning | ${r.step} | ${r.label}` })) };
    layers.push(
      { data, mark: { type: "rule", color: WARN_COLOR, strokeDash: [4, 3], strokeWidth: 1.2 }, encoding: { x, description: { field: "desc", type: "nominal" } } },
      {
        data,
        mark: { type: "text", color: WARN_COLOR, align: "left", baseline: "top", dx: 3, fontSize: 9 },
        encoding: { x, y: { field: "ypx", type: "quantitative", scale: null }, text: { field: "label" }, description: { field: "desc", type: "nominal" } },
        transform: [{ calculate: "2 + datum.row * 11", as: "ypx" }],
      },
    );
  }
  const spec: VegaLiteSpec = {
    title: { text: c.title, anchor: "start" },
    width: c.width,
    height: c.height,
    data: { values: c.rows.map((r) => ({ ...r, key: `${r.run} ${r.line}` })) },
    layer: layers,
  };
  return { id: c.id, title: c.title, rows: c.rows, rules: c.rules, logY: c.logY, width: c.width, height: c.height, spec };
}

/** Probe tensors in papers.md §7.2 order, then user probes (`probe NAME = ...`) by name. */
function probeOrder(a: string, b: string): number {
  const ia = (PROBE_TENSORS as readonly string[]).indexOf(a);
  const ib = (PROBE_TENSORS as readonly string[]).indexOf(b);
  return (ia < 0 ? Infinity : ia) - (ib < 0 ? Infinity : ib) || (ia < 0 && ib < 0 ? a.localeCompare(b) : 0);
}

/** The panels of a report over one or more logs (several: overlaid, a legend entry per log). */
export function buildPanels(logs: RunLog[], options: PanelOptions = {}): Panel[] {
  const width = options.width ?? 640;
  const height = options.height ?? 200;
  const maxMarkers = options.maxMarkers ?? 150;
  const runOrder = logs.map((l) => l.label);
  const several = logs.length > 1;
  const steps = logs.flatMap((l) => l.points.map((p) => p.step));
  const span = Math.max(1, Math.max(...steps) - Math.min(...steps));
  const common = { runOrder, width, height, maxMarkers };
  const panels: Panel[] = [];

  const lossRows = logs.flatMap((l) => [
    ...l.points.map((p) => row(l.label, "train", p.step, p.loss, false)),
    ...l.points.filter((p) => p.val_loss !== undefined).map((p) => row(l.label, "validation", p.step, p.val_loss, false)),
  ]);
  panels.push(
    lineChart({
      ...common,
      id: "loss",
      title: "Loss",
      yTitle: "cross-entropy (nats / token)",
      rows: lossRows,
      rules: warningRules(logs, () => true, span),
      logY: false,
      color: several ? "run" : "line",
      ...(several ? { dash: "line" as const } : {}),
      lineOrder: ["train", "validation"],
    }),
  );

  for (const s of SCALARS) {
    const has = (p: StepPoint): boolean => p[s.id] !== undefined;
    if (!logs.some((l) => l.points.some(has))) continue;
    const rows = logs.flatMap((l) => l.points.filter(has).map((p) => row(l.label, s.id, p.step, p[s.id], s.logY)));
    panels.push(lineChart({ ...common, id: s.id, title: s.title, yTitle: s.yTitle, rows, rules: [], logY: s.logY, color: "run", lineOrder: [s.id] }));
  }

  // Kurtosis: one panel per probe tensor, a line per layer (coloured), a dash pattern per log.
  const layersOf = new Map<string, Set<number>>();
  for (const l of logs) {
    for (const p of l.points) {
      for (const key of Object.keys(p.kurtosis)) {
        const k = parseProbeKey(key)!;
        layersOf.set(k.probe, (layersOf.get(k.probe) ?? new Set()).add(k.layer));
      }
    }
  }
  for (const probe of [...layersOf.keys()].sort(probeOrder)) {
    const layers = [...layersOf.get(probe)!].sort((a, b) => a - b);
    const rows: PanelRow[] = [];
    for (const l of logs) {
      for (const p of l.points) {
        for (const [key, v] of Object.entries(p.kurtosis)) {
          const k = parseProbeKey(key)!;
          if (k.probe === probe) rows.push(row(l.label, `layer ${k.layer}`, p.step, v, true));
        }
      }
    }
    rows.sort((a, b) => a.step - b.step);
    panels.push(
      lineChart({
        ...common,
        width: Math.round(width * 0.7),
        id: `kurtosis_${probe.replace(/[^A-Za-z0-9_-]/g, "_")}`,
        title: `Kurtosis: ${probe}`,
        yTitle: "kurtosis (log scale)",
        rows,
        rules: warningRules(logs, (w) => w.probe === probe, span),
        logY: true,
        color: "line",
        ...(several ? { dash: "run" as const } : {}),
        lineOrder: layers.map((n) => `layer ${n}`),
      }),
    );
  }
  return panels;
}

/** All panels in one figure (two columns), for the combined PNG. */
export function combinedSpec(panels: Panel[], title: string): VegaLiteSpec {
  return {
    title: { text: title, anchor: "start", fontSize: 16 },
    columns: 2,
    concat: panels.map((p) => p.spec),
    resolve: { scale: { color: "independent", strokeDash: "independent", x: "independent", y: "independent" }, legend: { color: "independent", strokeDash: "independent" } },
  };
}
