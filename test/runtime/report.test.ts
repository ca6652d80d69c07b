// `fogc report`: logs written in runtime/train.ts's format (records with kurtosisRecord, warnings from
// a real KurtosisMonitor) are drawn, and the drawing is read back from the SVG: every series'
// points (values from the aria-labels, positions checked against the axis scales), the warning
// rules at their steps, the gaps and markers of non-finite values; plus bad input and the PNGs.
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { afterAll, describe, expect, it } from "vitest";
import { KurtosisMonitor, kurtosisRecord } from "../../runtime/kurtosis.js";
import { DATA_ELEMENT_ID, type EmbeddedData } from "../../runtime/report/html.js";
import { parseRunLog, ReportError, readRunLog } from "../../runtime/report/log.js";
import { renderSvg } from "../../runtime/report/render.js";
import { writeReport } from "../../runtime/report/write.js";
import type { KurtosisWarningEvent, LogRecord, RunEvent } from "../../runtime/train.js";
import { mulberry32 } from "../helpers/mulberry32.js";

const made: string[] = [];
afterAll(() => {
  for (const d of made) rmSync(d, { recursive: true, force: true });
});
function tempDir(): string {
  const d = mkdtempSync(join(tmpdir(), "fogc-report-"));
  made.push(d);
  return d;
}

const PROBES = ["qkv_input", "mlp_out"] as const;
const LAYERS = 3;

interface Synthetic {
  text: string;
  /** Per-layer kurtosis as written: key → [step, value][]. */
  kurtosis: Map<string, [number, number][]>;
  losses: [number, number][];
  warnings: KurtosisWarningEvent[];
}

/**
 * A log as `fogc run --log` writes it: a run line, a record every 10 steps with probes every 10, a
 * validation loss every 50, and the warnings a KurtosisMonitor raises on a planted rise of
 * `qkv_input` layer 1 (×1.25 per point from step 200) — as in the divergence runs.
 */
function synthetic(seed: number, options: { steps?: number; nanLossAt?: number; nanKurtosis?: { key: string; step: number } } = {}): Synthetic {
  const rand = mulberry32(seed);
  const steps = options.steps ?? 300;
  const run: RunEvent = {
    event: "run",
    model: `model_${seed}`,
    file: "/x/model.fog",
    recipe: "fp8dpa",
    precision: "fp8dpa",
    backend: "cpu",
    steps,
    start_step: 0,
    seed,
    batch: 4,
    seq_len: 32,
    params: 123456,
    started: "2025-01-01T00:00:00.000Z",
  };
  const lines = [JSON.stringify(run)];
  const monitor = new KurtosisMonitor();
  const kurtosis = new Map<string, [number, number][]>();
  const losses: [number, number][] = [];
  const warnings: KurtosisWarningEvent[] = [];
  for (let step = 10; step <= steps; step += 10) {
    const values: Record<string, number> = {};
    for (const probe of PROBES) {
      for (let layer = 0; layer < LAYERS; layer++) {
        const key = `${probe}_layer${String(layer).padStart(2, "0")}`;
        const rise = probe === "qkv_input" && layer === 1 && step > 200 ? 1.25 ** ((step - 200) / 10) : 1;
        let v = (3 + layer + (probe === "mlp_out" ? 2 : 0)) * Math.exp(0.03 * (rand() - 0.5)) * rise;
        if (options.nanKurtosis?.key === key && options.nanKurtosis.step === step) v = NaN;
        values[key] = v;
        if (Number.isFinite(v)) kurtosis.set(key, [...(kurtosis.get(key) ?? []), [step, v]]);
      }
    }
    const loss = step === options.nanLossAt ? NaN : 2 + 3 * Math.exp(-step / 80) + 0.05 * rand();
    if (Number.isFinite(loss)) losses.push([step, loss]);
    const record: LogRecord = {
      step,
      loss,
      lr: 1e-3 * Math.min(1, step / 50),
      grad_norm: 1 + rand(),
      tokens_per_s: 1000 + 100 * rand(),
      ...(step % 50 === 0 ? { val_loss: loss + 0.1 } : {}),
      kurtosis: kurtosisRecord(values),
    };
    lines.push(JSON.stringify(record)); // NaN → null, as in train.ts
    for (const w of monitor.observe(step, values)) {
      const event: KurtosisWarningEvent = { event: "kurtosis_warning", ...w, action: "continue" };
      warnings.push(event);
      lines.push(JSON.stringify(event));
    }
  }
  return { text: lines.join("\n") + "\n", kurtosis, losses, warnings };
}

/** The elements of an SVG that carry an aria-label, with their label and attributes. */
interface Mark {
  tag: string;
  label: string;
  role: string;
  attrs: Record<string, string>;
}
function marksOf(svg: string): Mark[] {
  const out: Mark[] = [];
  for (const m of svg.matchAll(/<(\w+)\s([^>]*?aria-label="[^"]*"[^>]*?)\/?>/g)) {
    const attrs: Record<string, string> = {};
    for (const a of m[2].matchAll(/([\w:-]+)="([^"]*)"/g)) attrs[a[1]] = a[2];
    out.push({ tag: m[1], label: attrs["aria-label"].replace(/&amp;/g, "&").replace(/&#39;/g, "'"), role: attrs["aria-roledescription"] ?? "", attrs });
  }
  return out;
}
function translate(m: Mark): [number, number] {
  const t = /translate\(([-\d.e]+),([-\d.e]+)\)/.exec(m.attrs.transform ?? "");
  if (!t) throw new Error(`no translate on ${m.tag} ${m.label}`);
  return [Number(t[1]), Number(t[2])];
}

/** Each panel's SVG, by panel id, from the report page. */
function panelSvgs(html: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const m of html.matchAll(/<figure id="panel-([\w-]+)" data-panel="[\w-]+">(<svg[\s\S]*?<\/svg>)/g)) out.set(m[1], m[2]);
  return out;
}

/** The points drawn in a panel: `run | line` → [step, value, x, y][]. */
function pointsOf(svg: string): Map<string, [number, number, number, number][]> {
  const out = new Map<string, [number, number, number, number][]>();
  for (const m of marksOf(svg).filter((x) => x.role === "point" && x.label.split(" | ").length === 4)) {
    const [run, line, step, value] = m.label.split(" | ");
    if (value === "non-finite") continue;
    const [x, y] = translate(m);
    const key = `${run} | ${line}`;
    out.set(key, [...(out.get(key) ?? []), [Number(step), Number(value), x, y]]);
  }
  return out;
}

/** Checks that pixel = a + b·f(value) over all points (the axis is linear in f), and returns (a, b). */
function checkAxis(pairs: [number, number][], f: (v: number) => number): [number, number] {
  const sorted = [...pairs].sort((p, q) => f(p[0]) - f(q[0]));
  const [lo, hi] = [sorted[0], sorted.at(-1)!];
  const b = (hi[1] - lo[1]) / (f(hi[0]) - f(lo[0]));
  const a = lo[1] - b * f(lo[0]);
  for (const [v, px] of pairs) expect(Math.abs(a + b * f(v) - px)).toBeLessThan(0.01);
  return [a, b];
}

describe("reading logs", () => {
  it("reads the repository's real 200-step FOG-flash-tiny log: 20 records, 24 per-layer probes each, layer means left out", () => {
    const log = readRunLog("test/data/logs/fog-flash-tiny-fp8dpa.jsonl");
    expect(log.label).toBe("fog-flash-tiny-fp8dpa");
    expect(log.points.map((p) => p.step)).toEqual(Array.from({ length: 20 }, (_, i) => 10 * (i + 1)));
    for (const p of log.points) {
      expect(Object.keys(p.kurtosis).length).toBe(24);
      expect(Object.keys(p.kurtosis).some((k) => k.endsWith("_avg"))).toBe(false);
    }
    const raw = JSON.parse(readFileSync("test/data/logs/fog-flash-tiny-fp8dpa.jsonl", "utf8").split("\n")[0]) as LogRecord;
    expect(log.points[0]).toMatchObject({ step: 10, loss: raw.loss, lr: raw.lr, grad_norm: raw.grad_norm });
    expect(log.points[0].kurtosis.qkv_input_layer02).toBe(raw.kurtosis.qkv_input_layer02);
  });

  it("keeps a resumed run's later record of a step, every run line, warnings; non-finite (null, Python NaN/Infinity) as null", () => {
    const text = [
      `{"event":"run","model":"m","file":"f","recipe":"r","precision":"fp8","backend":"cpu","steps":30,"start_step":0,"seed":1,"batch":2,"seq_len":8,"params":10,"started":"t"}`,
      `{"step":10,"loss":3.5,"lr":0.1,"grad_norm":1,"tokens_per_s":5,"kurtosis":{"q_layer00":3.1,"q_avg":3.1}}`,
      `{"step":20,"loss":3.0,"lr":0.1,"grad_norm":1,"tokens_per_s":5,"kurtosis":{}}`,
      `{"event":"run","model":"m","file":"f","recipe":"r","precision":"fp8","backend":"cpu","steps":30,"start_step":10,"seed":1,"batch":2,"seq_len":8,"params":10,"started":"t"}`,
      `{"step":20,"loss":2.9,"lr":0.1,"grad_norm":null,"tokens_per_s":5,"kurtosis":{"q_layer00":null}}`,
      `{"event":"kurtosis_warning","step":20,"series":"q_layer00","probe":"q","layer":0,"value":null,"baseline":3.1,"threshold":4.3,"reason":"non_finite","since":20,"action":"continue"}`,
      `{"step": 30, "loss": NaN, "grad_norm": Infinity, "val_loss": -Infinity}`,
      `{"event":"profile","anything":[1,2]}`,
      "",
    ].join("\n");
    const log = parseRunLog(text, "x.jsonl");
    expect(log.runs.map((r) => r.start_step)).toEqual([0, 10]);
    expect(log.points).toEqual([
      { step: 10, loss: 3.5, lr: 0.1, grad_norm: 1, tokens_per_s: 5, kurtosis: { q_layer00: 3.1 } },
      { step: 20, loss: 2.9, lr: 0.1, grad_norm: null, tokens_per_s: 5, kurtosis: { q_layer00: null } },
      { step: 30, loss: null, grad_norm: null, val_loss: null, kurtosis: {} },
    ]);
    expect(log.warnings).toEqual([{ step: 20, series: "q_layer00", probe: "q", layer: 0, value: null, baseline: 3.1, threshold: 4.3, reason: "non_finite", since: 20, action: "continue" }]);
  });

  it("names the file and line of a malformed line; a missing file and an empty log are errors too", () => {
    const good = `{"step":1,"loss":2,"kurtosis":{}}`;
    const cases: [string, RegExp][] = [
      [`${good}\n{"step":2,"loss":`, /^bad\.jsonl:2: not a JSON object \(/],
      [`${good}\n\n[1,2]`, /^bad\.jsonl:3: not a JSON object$/],
      [`{"step":1}`, /^bad\.jsonl:1: the record has no "loss"$/],
      [`${good}\n{"step":-1,"loss":2}`, /^bad\.jsonl:2: "step" must be an integer ≥ 0, found -1$/],
      [`{"step":1,"loss":"2"}`, /^bad\.jsonl:1: "loss" must be a number or null, found "2"$/],
      [`{"step":1,"loss":2,"kurtosis":{"q_layer00":"x"}}`, /^bad\.jsonl:1: kurtosis "q_layer00" must be a number or null, found "x"$/],
      [`{"step":1,"loss":2,"kurtosis":[1]}`, /^bad\.jsonl:1: "kurtosis" must be an object/],
      [`${good}\n{"event":"kurtosis_warning","step":1,"series":"s","probe":"p","layer":"0","value":1,"reason":"band"}`, /^bad\.jsonl:2: "layer" must be an integer or null/],
      [`{"event":"run"}`, /^bad\.jsonl:1: "model" must be a string/],
      [`\n\n`, /^bad\.jsonl: no step records/],
      [`{"event":"run","model":"m"}\n`, /^bad\.jsonl: no step records/],
    ];
    for (const [text, message] of cases) {
      expect(() => parseRunLog(text, "bad.jsonl"), text).toThrow(message);
      expect(() => parseRunLog(text, "bad.jsonl")).toThrow(ReportError);
    }
    expect(() => readRunLog("/nonexistent/run.jsonl")).toThrow(/^no such file: \/nonexistent\/run\.jsonl$/);
  });
});

describe("writeReport", () => {
  it("overlays two logs: a series per probe and layer with the logged points, warnings at their steps, a legend entry per log", async () => {
    const dir = tempDir();
    const a = synthetic(1);
    const b = synthetic(2);
    writeFileSync(join(dir, "llama3.jsonl"), a.text);
    writeFileSync(join(dir, "fog-max.jsonl"), b.text);
    expect(a.warnings.length).toBeGreaterThan(0);
    expect(a.warnings.every((w) => w.probe === "qkv_input" && w.layer === 1 && w.step > 200)).toBe(true);

    const r = await writeReport([join(dir, "llama3.jsonl"), join(dir, "fog-max.jsonl")], { out: join(dir, "out", "r.html") });
    expect(r.html).toBe(join(dir, "out", "r.html"));
    const html = readFileSync(r.html, "utf8");
    expect(html).not.toMatch(/<script\s[^>]*src=|<link\s|https?:\/\/(?!www\.w3\.org)/); // nothing fetched at view time
    const svgs = panelSvgs(html);
    expect([...svgs.keys()]).toEqual(["loss", "grad_norm", "lr", "tokens_per_s", "kurtosis_qkv_input", "kurtosis_mlp_out"]);

    for (const probe of PROBES) {
      const svg = svgs.get(`kurtosis_${probe}`)!;
      const drawn = pointsOf(svg);
      const expected = new Map<string, [number, number][]>();
      for (const [name, s] of [["llama3", a], ["fog-max", b]] as const) {
        for (let layer = 0; layer < LAYERS; layer++) expected.set(`${name} | layer ${layer}`, s.kurtosis.get(`${probe}_layer0${layer}`)!);
      }
      expect([...drawn.keys()].sort()).toEqual([...expected.keys()].sort());
      for (const [key, pts] of expected) expect(drawn.get(key)!.map(([s, v]) => [s, v])).toEqual(pts);
      // Positions: x linear in the step, y linear in log(kurtosis), y growing downwards.
      const all = [...drawn.values()].flat();
      checkAxis(all.map(([s, , x]) => [s, x]), (s) => s);
      const [, slope] = checkAxis(all.map(([, v, , y]) => [v, y]), Math.log);
      expect(slope).toBeLessThan(0);
      // One line path per series, dashed for the second log (the legend names both).
      const lines = marksOf(svg).filter((m) => m.role === "line mark");
      expect(lines.length).toBe(2 * LAYERS);
      const legends = marksOf(svg).filter((m) => m.role === "legend").map((m) => m.label);
      expect(legends).toEqual([`Symbol legend for fill color and stroke color with 3 values: layer 0, layer 1, layer 2`, "Symbol legend for strokeDash with 2 values: llama3, fog-max"]);
    }

    // Warning rules at their steps: on the loss panel all of them, on a probe's panel its own.
    const warned = (s: Synthetic): number[] => [...new Set(s.warnings.map((w) => w.step))];
    const rulesOf = (svg: string): Mark[] => marksOf(svg).filter((m) => m.tag === "line" && m.label.startsWith("warning | "));
    const stepsOf = (svg: string): number[] => rulesOf(svg).map((m) => Number(m.label.split(" | ")[1]));
    const allWarned = [...warned(a), ...warned(b)].sort((x, y) => x - y);
    expect(stepsOf(svgs.get("loss")!).sort((x, y) => x - y)).toEqual(allWarned);
    expect(stepsOf(svgs.get("kurtosis_qkv_input")!).sort((x, y) => x - y)).toEqual(allWarned);
    expect(stepsOf(svgs.get("kurtosis_mlp_out")!)).toEqual([]);
    const svg = svgs.get("kurtosis_qkv_input")!;
    const [x0, dx] = checkAxis([...pointsOf(svg).values()].flat().map(([s, , x]) => [s, x]), (s) => s);
    for (const m of rulesOf(svg)) expect(translate(m)[0]).toBeCloseTo(x0 + dx * Number(m.label.split(" | ")[1]), 2);
    const first = a.warnings[0];
    expect(svg).toContain(`>llama3: L1 qkv_input ${first.value.toPrecision(3)}</text>`);

    // The embedded data is the parsed logs; the header names each run's model and precision.
    const data = JSON.parse(new RegExp(`<script type="application/json" id="${DATA_ELEMENT_ID}">(.*)</script>`).exec(html)![1]) as EmbeddedData;
    expect(data.logs.map((l) => l.label)).toEqual(["llama3", "fog-max"]);
    expect(data.logs[0].warnings.map((w) => w.step)).toEqual(a.warnings.map((w) => w.step));
    expect(data.logs[1].points.map((p) => [p.step, p.loss])).toEqual(b.losses);
    expect(html).toContain("<td>model_1</td><td>fp8dpa (fp8dpa)</td><td>cpu</td><td>300 / 300</td><td>4 × 32</td><td>123,456</td>");
  });

  it("draws a non-finite value as a gap in its line with a marker at its step", async () => {
    const dir = tempDir();
    const s = synthetic(3, { steps: 120, nanLossAt: 60, nanKurtosis: { key: "mlp_out_layer02", step: 80 } });
    writeFileSync(join(dir, "nan.jsonl"), s.text);
    const r = await writeReport(join(dir, "nan.jsonl"));
    expect(r.html).toBe(join(dir, "nan.html"));
    const svgs = panelSvgs(readFileSync(r.html, "utf8"));
    for (const [panel, series, step] of [["loss", "train", 60], ["kurtosis_mlp_out", "layer 2", 80]] as const) {
      const svg = svgs.get(panel)!;
      const markers = marksOf(svg).filter((m) => m.label.endsWith(" | non-finite"));
      expect(markers.map((m) => m.label)).toEqual([`nan | ${series} | ${step} | non-finite`]);
      const [x0, dx] = checkAxis([...pointsOf(svg).values()].flat().map(([st, , x]) => [st, x]), (v) => v);
      expect(translate(markers[0])[0]).toBeCloseTo(x0 + dx * step, 2);
      // The series' line is two pieces: a path with two move-tos; every other line is one piece.
      const lines = marksOf(svg).filter((m) => m.role === "line mark");
      const pieces = lines.map((m) => (m.attrs.d.match(/M/g) ?? []).length);
      expect(pieces.filter((n) => n === 2).length).toBe(1);
      expect(pieces.every((n) => n === 1 || n === 2)).toBe(true);
      expect(pointsOf(svg).get(`nan | ${series}`)!.map(([st]) => st)).not.toContain(step);
    }
  });

  it("writes one PNG per panel and a combined one, each a valid PNG of the stated size", async () => {
    const dir = tempDir();
    writeFileSync(join(dir, "a.jsonl"), synthetic(4, { steps: 100 }).text);
    for (const scale of [1, 2]) {
      const pngDir = join(dir, `png${scale}`);
      const r = await writeReport(join(dir, "a.jsonl"), { png: pngDir, pngScale: scale });
      const svgs = panelSvgs(readFileSync(r.html, "utf8"));
      expect(r.pngs.map((p) => p.panel)).toEqual([...svgs.keys(), "report"]);
      expect(readdirSync(pngDir).sort()).toEqual(r.pngs.map((p) => `${p.panel}.png`).sort());
      for (const p of r.pngs) {
        const png = readFileSync(p.path);
        expect([...png.subarray(0, 8)]).toEqual([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
        expect(png.subarray(12, 16).toString("ascii")).toBe("IHDR");
        expect([png.readUInt32BE(16), png.readUInt32BE(20)]).toEqual([p.width, p.height]);
        expect(png.subarray(-8, -4).toString("ascii")).toBe("IEND");
        const svg = svgs.get(p.panel);
        if (svg) {
          const [w, h] = /width="(\d+)" height="(\d+)"/.exec(svg)!.slice(1).map(Number);
          expect([p.width, p.height]).toEqual([w * scale, h * scale]);
        }
      }
    }
  });

  it("a spec that vega-lite warns about is an error, not a silently different chart", async () => {
    const spec = { data: { values: [{ a: "x", b: 1 }] }, mark: "line", encoding: { x: { field: "a", type: "nominal", scale: { type: "log" } }, y: { field: "b", type: "quantitative" } } };
    await expect(renderSvg(spec)).rejects.toThrow(/^report chart: .*log/i);
    await expect(renderSvg({ ...spec, encoding: { ...spec.encoding, x: { field: "a", type: "nominal" } } })).resolves.toMatch(/^<svg /);
  });

  it("bad input writes nothing: an existing report stays as it was, no temporary files are left", async () => {
    const dir = tempDir();
    writeFileSync(join(dir, "good.jsonl"), synthetic(5, { steps: 50 }).text);
    writeFileSync(join(dir, "bad.jsonl"), `{"step":10,"loss":1,"kurtosis":{}}\n{"step":20,"loss":1,"kurtosis":{"q_layer00":true}}\n`);
    const out = join(dir, "r.html");
    writeFileSync(out, "previous report");
    await expect(writeReport([join(dir, "good.jsonl"), join(dir, "bad.jsonl")], { out, png: join(dir, "png") })).rejects.toThrow(
      new ReportError(`${join(dir, "bad.jsonl")}:2: kurtosis "q_layer00" must be a number or null, found true`),
    );
    await expect(writeReport([join(dir, "good.jsonl"), join(dir, "missing.jsonl")], { out })).rejects.toThrow(`no such file: ${join(dir, "missing.jsonl")}`);
    await expect(writeReport([], { out })).rejects.toThrow(ReportError);
    await expect(writeReport(join(dir, "good.jsonl"), { out, labels: ["a", "b"] })).rejects.toThrow(/2 labels for 1 logs/);
    mkdirSync(join(dir, "adir"));
    await expect(writeReport(join(dir, "good.jsonl"), { out: join(dir, "adir") })).rejects.toThrow(/is a directory/);
    expect(readFileSync(out, "utf8")).toBe("previous report");
    expect(existsSync(join(dir, "png"))).toBe(false);
    // A failed rename (the PNG name is taken by a directory) removes every temporary it wrote.
    mkdirSync(join(dir, "png2", "loss.png"), { recursive: true });
    await expect(writeReport(join(dir, "good.jsonl"), { out, png: join(dir, "png2") })).rejects.toThrow(/is a directory/);
    expect(readdirSync(dir).sort()).toEqual(["adir", "bad.jsonl", "good.jsonl", "png2", "r.html"]);
    expect(readdirSync(join(dir, "png2"))).toEqual(["loss.png"]);
    await writeReport(join(dir, "good.jsonl"), { out });
    expect(readFileSync(out, "utf8")).toMatch(/^<!DOCTYPE html>/);
    expect(readdirSync(dir).filter((f) => f.includes(".tmp-"))).toEqual([]);
  });

  it("fogc report: exit 1 and a one-line message for a malformed log; the report path on success", () => {
    const dir = tempDir();
    writeFileSync(join(dir, "bad.jsonl"), `{"step":10,"loss":1}\n{oops}\n`);
    writeFileSync(join(dir, "ok.jsonl"), synthetic(6, { steps: 30 }).text);
    const fogc = (...args: string[]) => spawnSync(process.execPath, ["--import", "tsx", "cli/fogc.ts", "report", ...args], { encoding: "utf8" });
    const bad = fogc(join(dir, "bad.jsonl"), "-o", join(dir, "bad.html"));
    expect(bad.status).toBe(1);
    expect(bad.stderr).toMatch(new RegExp(`^fogc: ${join(dir, "bad.jsonl").replace(/[.*+?^${}()|[\]\\/]/g, "\\$&")}:2: not a JSON object \\(`));
    expect(bad.stderr).not.toMatch(/\n\s+at /);
    expect(existsSync(join(dir, "bad.html"))).toBe(false);
    const ok = fogc(join(dir, "ok.jsonl"), "--png", join(dir, "png"));
    expect(ok.stderr).toBe("");
    expect(ok.status).toBe(0);
    expect(ok.stdout).toContain(`wrote ${join(dir, "ok.html")}`);
    expect(existsSync(join(dir, "png", "report.png"))).toBe(true);
  });

  it("fogc run --report without --log: trains, writes FILE.html here from a temporary log, removes the log", () => {
    const dir = tempDir();
    writeFileSync(join(dir, "tiny.fog"), TINY_FOG);
    writeFileSync(join(dir, "text.txt"), "the cat sat on the mat. the dog sat on the log. a cat and a dog met. ".repeat(40));
    const before = new Set(readdirSync(tmpdir()).filter((f) => f.startsWith("fogc-run-")));
    // Run from the workspace (the default report lands in the current directory): tsx by its path.
    const tsx = pathToFileURL(join(process.cwd(), "node_modules/tsx/dist/loader.mjs")).href;
    const run = spawnSync(process.execPath, ["--import", tsx, join(process.cwd(), "cli/fogc.ts"), "run", "tiny.fog", "--backend", "cpu", "--report"], { cwd: dir, encoding: "utf8" });
    expect(run.status, run.stderr).toBe(0);
    expect(run.stdout).toContain(`wrote ${join(dir, "tiny.html")} (6 panels, 4 log records, 0 kurtosis warnings)`);
    expect(readdirSync(tmpdir()).filter((f) => f.startsWith("fogc-run-") && !before.has(f))).toEqual([]);
    const html = readFileSync(join(dir, "tiny.html"), "utf8");
    const data = JSON.parse(new RegExp(`<script type="application/json" id="${DATA_ELEMENT_ID}">(.*)</script>`).exec(html)![1]) as EmbeddedData;
    expect(data.logs[0].label).toBe("tiny");
    expect(data.logs[0].runs).toMatchObject([{ model: "tiny", precision: "fp8dpa", backend: "cpu", steps: 6, start_step: 0, batch: 2, seq_len: 8 }]);
    expect(data.logs[0].points.map((p) => p.step)).toEqual([2, 3, 4, 6]); // probe steps and evaluations (eval_every 3)
    expect(Object.keys(data.logs[0].points[0].kurtosis).sort()).toEqual(["mlp_out_layer00", "qkv_input_layer00"]);
    expect([...panelSvgs(html).keys()]).toEqual(["loss", "grad_norm", "lr", "tokens_per_s", "kurtosis_qkv_input", "kurtosis_mlp_out"]);
  });
});

/** FOG-max (examples/fog-max-tiny.fog) shrunk to a few seconds of CPU training, probing two tensors every 2 steps. */
const TINY_FOG = `
import "${join(process.cwd(), "examples", "fog-max-tiny.fog")}"
model tiny extends fog_max_tiny {
  context = 8  width = 16  layers = 1  heads = 2  kv_heads = 1  head_dim = 8  mlp_width = 32
  probes { every = 2  tensors = [qkv_input, mlp_out] }
  train { data = "text.txt"  batch = 2  seq_len = 8  steps = 6  schedule = constant(warmup = 1)  eval_every = 3  eval_batches = 1  log_every = 2 }
}
`;
